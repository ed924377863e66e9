//! The pagos participant on a real PostgreSQL and on SQLite, through saga-core's participant
//! module: a payout with its 10% commission (exact, rounded half away from zero), the refusals,
//! one payout per partner and cycle even under concurrency, the state transitions of the
//! compensations and the confirmation, and a redelivered command applied once.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{code, payout_command, pg_participant, scalar, sqlite_participant, Db, INSTANCES};
use saga_core::participant::{CommandHandler, Disposition, Handled};
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{
    ConfirmarPago, MarcarPagoFallido, MetodoPago, Moneda, Monto, PagoConfirmado, PagoRegistrado, RegistrarPago,
    RevertirConfirmacion,
};
use uuid::Uuid;
use workers::pagos::{
    self, EstadoPago, Pago, Pagos, CICLO_YA_PAGADO, COMISION_PORCENTAJE, MONTO_INVALIDO, PAGO_DUPLICADO,
    PAGO_NO_CONFIRMABLE, TIPO_COMISION,
};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&pagos::PG_MIGRATOR, Pagos).await;
    World { db, participant }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&pagos::SQLITE_MIGRATOR, Pagos).await;
    World { db, participant }
}

fn usd(valor_menor: i64) -> Monto {
    Monto { valor_menor, moneda: Moneda::Usd }
}

fn registrar(id_pago: Uuid, partner: &str, ciclo: &str, monto: Monto) -> RegistrarPago {
    RegistrarPago {
        id_pago,
        id_partner: partner.into(),
        id_ciclo: ciclo.into(),
        monto,
        metodo_pago: MetodoPago { tipo: "BANK_TRANSFER".into(), mascara: "****1234".into() },
    }
}

impl World {
    fn registro(&self, saga: SagaId, attempt: u32, r: &RegistrarPago) -> Command {
        let body = serde_json::to_value(r).unwrap();
        payout_command("registrar_pago", "comandos.pagos", StepKind::Action, attempt, saga, "RegistrarPago", body)
    }

    fn fallido(&self, saga: SagaId, attempt: u32, id_pago: Uuid) -> Command {
        let body = serde_json::to_value(MarcarPagoFallido { id_pago }).unwrap();
        payout_command(
            "registrar_pago",
            "comandos.pagos",
            StepKind::Compensation,
            attempt,
            saga,
            "MarcarPagoFallido",
            body,
        )
    }

    fn confirmar(&self, saga: SagaId, id_pago: Uuid, id_confirmacion: &str) -> Command {
        let body = serde_json::to_value(ConfirmarPago { id_pago, id_confirmacion: id_confirmacion.into() }).unwrap();
        payout_command("confirmar_pago", "comandos.pagos", StepKind::Action, 1, saga, "ConfirmarPago", body)
    }

    fn revertir(&self, saga: SagaId, id_pago: Uuid) -> Command {
        let body = serde_json::to_value(RevertirConfirmacion { id_pago }).unwrap();
        payout_command(
            "confirmar_pago",
            "comandos.pagos",
            StepKind::Compensation,
            1,
            saga,
            "RevertirConfirmacion",
            body,
        )
    }

    async fn handle(&self, command: &Command) -> Handled {
        self.participant.handle(command).await.unwrap()
    }

    async fn send(&self, command: &Command) -> Outcome {
        self.handle(command).await.reply.outcome
    }

    async fn pago(&self, id: Uuid) -> Option<Pago> {
        match &self.db {
            Db::Pg(p) => Pagos::pago_postgres(p, id).await.unwrap(),
            Db::Lite(p) => Pagos::pago_sqlite(p, id).await.unwrap(),
        }
    }

    async fn estado(&self, id: Uuid) -> EstadoPago {
        self.pago(id).await.unwrap().estado
    }

    async fn count(&self, sql: &str) -> i64 {
        match &self.db {
            Db::Pg(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
            Db::Lite(p) => sqlx::query_scalar(sql).fetch_one(p).await.unwrap(),
        }
    }
}

fn success<T: serde::de::DeserializeOwned>(outcome: Outcome) -> T {
    match outcome {
        Outcome::Success { output } => serde_json::from_value(output).unwrap(),
        other => panic!("expected a success, got {other:?}"),
    }
}

/// Registers a payout of `monto` and returns its commission's amount, as answered and as stored.
async fn comision(w: &World, monto: Monto) -> (i64, i64) {
    let r = registrar(Uuid::now_v7(), "partner-1", &Uuid::now_v7().to_string(), monto);
    let out: PagoRegistrado = success(w.send(&w.registro(SagaId::new(), 1, &r)).await);
    let stored = w.pago(r.id_pago).await.unwrap();
    assert_eq!(stored.transacciones, out.transacciones, "the reply is what was stored");
    (out.transacciones[0].monto.valor_menor, stored.transacciones[0].monto.valor_menor)
}

async fn registers_a_payout_with_its_ten_percent_commission(w: World) {
    let id = Uuid::now_v7();
    let r = registrar(id, "partner-1", "2026-11", usd(150_050));
    let out: PagoRegistrado = success(w.send(&w.registro(SagaId::new(), 1, &r)).await);
    assert_eq!(out.id_pago, id);
    assert_eq!(out.transacciones.len(), 1);
    let t = &out.transacciones[0];
    assert_eq!((t.tipo.as_str(), t.porcentaje, t.monto), (TIPO_COMISION, COMISION_PORCENTAJE, usd(15_005)));
    let pago = w.pago(id).await.unwrap();
    assert_eq!(pago.estado, EstadoPago::Procesando);
    assert_eq!((pago.id_partner.as_str(), pago.id_ciclo.as_str(), pago.monto), ("partner-1", "2026-11", usd(150_050)));
    assert_eq!(pago.metodo_pago, r.metodo_pago);
    assert_eq!(pago.id_confirmacion, None);
    assert_eq!(pago.transacciones, out.transacciones);
    // 1500.55 USD: 150.055 is rounded half away from zero to 150.06; 1500.54 gives 150.05.
    assert_eq!(comision(&w, usd(150_055)).await, (15_006, 15_006));
    assert_eq!(comision(&w, usd(150_054)).await, (15_005, 15_005));
    // A currency without decimals: 1505 CLP gives 150.5, so 151.
    assert_eq!(comision(&w, Monto { valor_menor: 1505, moneda: Moneda::Clp }).await, (151, 151));
    assert_eq!(comision(&w, usd(1)).await, (0, 0), "a commission under half a cent is nothing");
}

async fn a_payout_of_zero_or_less_is_refused(w: World) {
    for valor in [0, -100] {
        let r = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(valor));
        assert_eq!(code(&w.send(&w.registro(SagaId::new(), 1, &r)).await), MONTO_INVALIDO);
        assert!(w.pago(r.id_pago).await.is_none(), "a refusal records nothing");
    }
}

async fn a_cycle_is_paid_once(w: World) {
    let primero = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(10_000));
    let saga_primero = SagaId::new();
    success::<PagoRegistrado>(w.send(&w.registro(saga_primero, 1, &primero)).await);
    let segundo = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(20_000));
    match w.send(&w.registro(SagaId::new(), 1, &segundo)).await {
        Outcome::BusinessFailure { code, reason } => {
            assert_eq!(code, CICLO_YA_PAGADO);
            assert!(reason.contains(&primero.id_pago.to_string()), "the reason names the other payout: {reason}");
        }
        other => panic!("expected CICLO_YA_PAGADO, got {other:?}"),
    }
    assert!(w.pago(segundo.id_pago).await.is_none());
    // Once the first failed, it paid nothing: its cycle is free for a new payout, and that one
    // holds it in turn.
    w.send(&w.fallido(saga_primero, 1, primero.id_pago)).await;
    assert_eq!(w.pago(primero.id_pago).await.map(|p| p.estado), Some(EstadoPago::Fallido));
    let tercero = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(20_000));
    success::<PagoRegistrado>(w.send(&w.registro(SagaId::new(), 1, &tercero)).await);
    let cuarto = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(20_000));
    assert_eq!(code(&w.send(&w.registro(SagaId::new(), 1, &cuarto)).await), CICLO_YA_PAGADO);
    // Another cycle, or another partner's same cycle, is paid.
    let otro_ciclo = registrar(Uuid::now_v7(), "partner-1", "2026-12", usd(20_000));
    success::<PagoRegistrado>(w.send(&w.registro(SagaId::new(), 1, &otro_ciclo)).await);
    let otro_partner = registrar(Uuid::now_v7(), "partner-2", "2026-11", usd(20_000));
    success::<PagoRegistrado>(w.send(&w.registro(SagaId::new(), 1, &otro_partner)).await);
    // Another saga with a payout id already used (for another cycle).
    let mismo_id = registrar(primero.id_pago, "partner-3", "2027-01", usd(1));
    assert_eq!(code(&w.send(&w.registro(SagaId::new(), 1, &mismo_id)).await), PAGO_DUPLICADO);
    assert_eq!(w.count("SELECT COUNT(*) FROM pago").await, 4);
}

const RACERS: usize = 16;

/// On PostgreSQL the payouts are made to race for real: a transaction holds the table in SHARE
/// mode (reads go on, inserts wait) until every payout has checked the cycle, found it free and
/// queued its insert; then they all insert at once. Without it, short transactions mostly run one
/// after another and the check alone would pass. The racers are spread over [`INSTANCES`]
/// instances of the participant, each of which runs one transaction at a time (its group commit
/// carries the rest of its racers in the next): so that many transactions wait on the lock.
/// SQLite participants are serialized by design.
async fn concurrent_payouts_of_one_cycle_pay_it_once(w: World) {
    let w = Arc::new(w);
    let blocker = match &w.db {
        Db::Pg(pool) => {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("LOCK TABLE pago IN SHARE MODE").execute(&mut *tx).await.unwrap();
            Some((pool.clone(), tx))
        }
        Db::Lite(_) => None,
    };
    let mut tasks = Vec::new();
    for i in 0..RACERS {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let r = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(10_000 + i as i64));
            w.send(&w.registro(SagaId::new(), 1, &r)).await
        }));
    }
    if let Some((pool, tx)) = blocker {
        let waiting = "SELECT COUNT(*) FROM pg_locks WHERE relation = 'pago'::regclass AND NOT granted \
                       AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let n: i64 = sqlx::query_scalar(waiting).fetch_one(&pool).await.unwrap();
            if n == INSTANCES.min(RACERS) as i64 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "only {n} payout transactions reached the insert");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tx.commit().await.unwrap();
    }
    let mut applied = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Success { .. } => applied += 1,
            other => assert_eq!(code(&other), CICLO_YA_PAGADO),
        }
    }
    assert_eq!(applied, 1, "exactly one payout holds the cycle");
    assert_eq!(w.count("SELECT COUNT(*) FROM pago").await, 1);
    assert_eq!(w.count("SELECT COUNT(*) FROM transaccion_pago").await, 1, "and only its commission");
}

async fn confirm_revert_and_fail_move_the_payout(w: World) {
    let saga = SagaId::new();
    let r = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(10_000));
    let id = r.id_pago;
    success::<PagoRegistrado>(w.send(&w.registro(saga, 1, &r)).await);
    let out: PagoConfirmado = success(w.send(&w.confirmar(saga, id, "PRV-0123456789")).await);
    assert_eq!(out.id_pago, id);
    let pago = w.pago(id).await.unwrap();
    assert_eq!((pago.estado, pago.id_confirmacion.as_deref()), (EstadoPago::Completado, Some("PRV-0123456789")));
    assert_eq!(pago.actualizado_en, out.completado_en);
    // A completed payout is not confirmed again (another saga's step).
    assert_eq!(code(&w.send(&w.confirmar(SagaId::new(), id, "PRV-X")).await), PAGO_NO_CONFIRMABLE);
    // Step 4's compensation takes it back to processing, without the undone confirmation.
    assert!(matches!(w.send(&w.revertir(saga, id)).await, Outcome::Success { .. }));
    let pago = w.pago(id).await.unwrap();
    assert_eq!((pago.estado, pago.id_confirmacion), (EstadoPago::Procesando, None));
    // Step 1's compensation marks it failed; a failed payout is never confirmed.
    assert!(matches!(w.send(&w.fallido(saga, 1, id)).await, Outcome::Success { .. }));
    assert_eq!(w.estado(id).await, EstadoPago::Fallido);
    assert_eq!(code(&w.send(&w.confirmar(SagaId::new(), id, "PRV-X")).await), PAGO_NO_CONFIRMABLE);
    // A payout that does not exist is not confirmable either.
    assert_eq!(code(&w.send(&w.confirmar(SagaId::new(), Uuid::now_v7(), "PRV-X")).await), PAGO_NO_CONFIRMABLE);

    // Marking failed works from any state: here, straight from completed.
    let saga = SagaId::new();
    let r = registrar(Uuid::now_v7(), "partner-1", "2026-12", usd(10_000));
    w.send(&w.registro(saga, 1, &r)).await;
    w.send(&w.confirmar(saga, r.id_pago, "PRV-1")).await;
    assert_eq!(w.estado(r.id_pago).await, EstadoPago::Completado);
    w.send(&w.fallido(saga, 1, r.id_pago)).await;
    assert_eq!(w.estado(r.id_pago).await, EstadoPago::Fallido);
}

async fn a_redelivered_command_applies_once(w: World) {
    let saga = SagaId::new();
    let r = registrar(Uuid::now_v7(), "partner-1", "2026-11", usd(10_000));
    let command = w.registro(saga, 1, &r);
    let first = w.handle(&command).await;
    assert_eq!(first.disposition, Disposition::Applied);
    let again = w.handle(&command).await;
    assert_eq!(again.disposition, Disposition::DuplicateMessage);
    assert_eq!(again.reply, first.reply);
    // A retried attempt (new message id) gets the first attempt's reply, not CICLO_YA_PAGADO.
    let retry = w.handle(&w.registro(saga, 2, &r)).await;
    assert_eq!(retry.disposition, Disposition::DuplicateStep);
    assert_eq!(retry.reply.outcome, first.reply.outcome);
    assert_eq!(w.count("SELECT COUNT(*) FROM pago").await, 1);
    assert_eq!(w.count("SELECT COUNT(*) FROM transaccion_pago").await, 1);
    // A compensation before the action leaves a tombstone; the late action is refused.
    let saga = SagaId::new();
    let tarde = registrar(Uuid::now_v7(), "partner-1", "2026-12", usd(10_000));
    assert_eq!(w.handle(&w.fallido(saga, 1, tarde.id_pago)).await.disposition, Disposition::Tombstoned);
    let late = w.send(&w.registro(saga, 1, &tarde)).await;
    assert_eq!(code(&late), saga_core::participant::COMPENSATED_FIRST);
    assert_eq!(
        scalar(&w.db, "SELECT COUNT(*) FROM pago WHERE id_pago = $1", tarde.id_pago).await,
        0,
        "the late action recorded nothing"
    );
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn registers_a_payout_with_its_ten_percent_commission() {
                super::registers_a_payout_with_its_ten_percent_commission($db().await).await
            }
            #[tokio::test]
            async fn a_payout_of_zero_or_less_is_refused() {
                super::a_payout_of_zero_or_less_is_refused($db().await).await
            }
            #[tokio::test]
            async fn a_cycle_is_paid_once() {
                super::a_cycle_is_paid_once($db().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_payouts_of_one_cycle_pay_it_once() {
                super::concurrent_payouts_of_one_cycle_pay_it_once($db().await).await
            }
            #[tokio::test]
            async fn confirm_revert_and_fail_move_the_payout() {
                super::confirm_revert_and_fail_move_the_payout($db().await).await
            }
            #[tokio::test]
            async fn a_redelivered_command_applies_once() {
                super::a_redelivered_command_applies_once($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
