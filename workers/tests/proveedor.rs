//! The proveedor participant on a real PostgreSQL and on SQLite, through saga-core's participant
//! module: each refusal, the timeout of a first attempt and the retried attempt that goes through,
//! voiding a fresh operation and refunding a settled one, and a compensation that comes before
//! its action.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{code, payout_command, pg_participant, scalar, sqlite_participant, Db};
use saga_core::participant::{CommandHandler, Disposition, Handled, COMPENSATED_FIRST};
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{AnularPago, EnviarPago, MetodoPago, Moneda, Monto, PagoEnviado};
use uuid::Uuid;
use workers::proveedor::{
    self, Proveedor, LIMITE_EXCEDIDO, LIMITE_POR_OPERACION, LIQUIDACION, METODOS_SOPORTADOS, METODO_NO_SOPORTADO,
    PAGO_DUPLICADO, TARJETA_RECHAZADA,
};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&proveedor::PG_MIGRATOR, Proveedor).await;
    World { db, participant }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&proveedor::SQLITE_MIGRATOR, Proveedor).await;
    World { db, participant }
}

fn envio(valor_menor: i64, tipo: &str, mascara: &str) -> EnviarPago {
    EnviarPago {
        id_pago: Uuid::now_v7(),
        id_partner: "partner-1".into(),
        monto: Monto { valor_menor, moneda: Moneda::Usd },
        metodo_pago: MetodoPago { tipo: tipo.into(), mascara: mascara.into() },
    }
}

impl World {
    fn enviar(&self, saga: SagaId, attempt: u32, e: &EnviarPago) -> Command {
        let body = serde_json::to_value(e).unwrap();
        payout_command("enviar_pago", "comandos.proveedor", StepKind::Action, attempt, saga, "EnviarPago", body)
    }

    fn anular(&self, saga: SagaId, attempt: u32, id_pago: Uuid) -> Command {
        let body = serde_json::to_value(AnularPago { id_pago, id_operacion: None }).unwrap();
        payout_command("enviar_pago", "comandos.proveedor", StepKind::Compensation, attempt, saga, "AnularPago", body)
    }

    async fn handle(&self, command: &Command) -> Handled {
        self.participant.handle(command).await.unwrap()
    }

    async fn send(&self, command: &Command) -> Outcome {
        self.handle(command).await.reply.outcome
    }

    async fn operaciones(&self, id_pago: Uuid) -> i64 {
        scalar(&self.db, "SELECT COUNT(*) FROM operacion WHERE id_pago = $1", id_pago).await
    }

    async fn estado(&self, id_pago: Uuid) -> String {
        match &self.db {
            Db::Pg(p) => sqlx::query_scalar("SELECT estado FROM operacion WHERE id_pago = $1")
                .bind(id_pago)
                .fetch_one(p)
                .await
                .unwrap(),
            Db::Lite(p) => sqlx::query_scalar("SELECT estado FROM operacion WHERE id_pago = $1")
                .bind(id_pago)
                .fetch_one(p)
                .await
                .unwrap(),
        }
    }

    async fn reembolsos(&self, id_pago: Uuid) -> Vec<(i64, String)> {
        let sql =
            "SELECT r.valor_menor, r.moneda FROM reembolso r JOIN operacion o ON o.id_operacion = r.id_operacion \
                   WHERE o.id_pago = $1";
        match &self.db {
            Db::Pg(p) => sqlx::query_as(sql).bind(id_pago).fetch_all(p).await.unwrap(),
            Db::Lite(p) => sqlx::query_as(sql).bind(id_pago).fetch_all(p).await.unwrap(),
        }
    }

    /// Makes the operation of `id_pago` `secs` seconds old.
    async fn envejecer(&self, id_pago: Uuid, secs: i64) {
        let creada = chrono::Utc::now() - chrono::TimeDelta::seconds(secs);
        let sql = "UPDATE operacion SET creada_en = $2 WHERE id_pago = $1";
        let aged = match &self.db {
            Db::Pg(p) => sqlx::query(sql).bind(id_pago).bind(creada).execute(p).await.unwrap().rows_affected(),
            Db::Lite(p) => sqlx::query(sql).bind(id_pago).bind(creada).execute(p).await.unwrap().rows_affected(),
        };
        assert_eq!(aged, 1);
    }
}

fn enviado(outcome: Outcome) -> PagoEnviado {
    match outcome {
        Outcome::Success { output } => serde_json::from_value(output).unwrap(),
        other => panic!("expected the payout sent, got {other:?}"),
    }
}

async fn sends_through_every_supported_method_and_refuses_the_rest(w: World) {
    for tipo in METODOS_SOPORTADOS {
        let e = envio(150_050, tipo, "****1234");
        let out = enviado(w.send(&w.enviar(SagaId::new(), 1, &e)).await);
        let hex = out.id_operacion.simple().to_string().to_uppercase();
        assert_eq!(out.id_confirmacion, format!("PRV-{}", &hex[22..]), "PRV- and ten hex digits of the operation");
        assert_eq!(w.estado(e.id_pago).await, "AUTORIZADA");
    }
    let refusals = [
        (envio(100, "CRYPTO", "****1234"), METODO_NO_SOPORTADO),
        (envio(100, "bank_transfer", "****1234"), METODO_NO_SOPORTADO),
        (envio(100, "CARD", "****0002"), TARJETA_RECHAZADA),
        (envio(LIMITE_POR_OPERACION + 1, "BANK_TRANSFER", "****1234"), LIMITE_EXCEDIDO),
    ];
    for (e, expected) in refusals {
        let outcome = w.send(&w.enviar(SagaId::new(), 1, &e)).await;
        assert_eq!(code(&outcome), expected, "{e:?}");
        assert_eq!(w.operaciones(e.id_pago).await, 0, "a refusal records no operation");
    }
    let al_limite = envio(LIMITE_POR_OPERACION, "PAYPAL", "ana@example.com");
    enviado(w.send(&w.enviar(SagaId::new(), 1, &al_limite)).await);
    // The payout id is the provider's idempotency key: another saga cannot send it again.
    let otra_vez = EnviarPago { id_pago: al_limite.id_pago, ..envio(100, "CARD", "****1234") };
    assert_eq!(code(&w.send(&w.enviar(SagaId::new(), 1, &otra_vez)).await), PAGO_DUPLICADO);
    assert_eq!(w.operaciones(al_limite.id_pago).await, 1);
}

async fn a_first_attempt_times_out_and_the_retry_goes_through(w: World) {
    let saga = SagaId::new();
    let e = envio(10_000, "CARD", "****0119");
    let first = w.handle(&w.enviar(saga, 1, &e)).await;
    assert!(matches!(first.reply.outcome, Outcome::Transient { .. }), "got {:?}", first.reply.outcome);
    assert_eq!(first.disposition, Disposition::NotRecorded);
    assert_eq!(w.operaciones(e.id_pago).await, 0);
    // The same step's next attempt is not a duplicate: nothing was recorded for attempt 1.
    let second = w.handle(&w.enviar(saga, 2, &e)).await;
    assert_eq!(second.disposition, Disposition::Applied);
    let out = enviado(second.reply.outcome.clone());
    assert_eq!(w.operaciones(e.id_pago).await, 1);
    // And a third attempt gets the second's reply.
    let third = w.handle(&w.enviar(saga, 3, &e)).await;
    assert_eq!((third.disposition, enviado(third.reply.outcome)), (Disposition::DuplicateStep, out));
}

async fn a_fresh_operation_is_voided_and_a_settled_one_refunded(w: World) {
    let saga = SagaId::new();
    let fresca = envio(10_000, "CARD", "****1234");
    enviado(w.send(&w.enviar(saga, 1, &fresca)).await);
    assert!(matches!(w.send(&w.anular(saga, 1, fresca.id_pago)).await, Outcome::Success { .. }));
    assert_eq!(w.estado(fresca.id_pago).await, "ANULADA");
    assert!(w.reembolsos(fresca.id_pago).await.is_empty(), "a void refunds nothing");

    let saga = SagaId::new();
    let vieja = envio(25_000, "BANK_TRANSFER", "****9876");
    enviado(w.send(&w.enviar(saga, 1, &vieja)).await);
    w.envejecer(vieja.id_pago, LIQUIDACION.as_secs() as i64 + 1).await;
    assert!(matches!(w.send(&w.anular(saga, 1, vieja.id_pago)).await, Outcome::Success { .. }));
    assert_eq!(w.estado(vieja.id_pago).await, "REEMBOLSADA");
    assert_eq!(w.reembolsos(vieja.id_pago).await, vec![(25_000, "USD".to_owned())]);
    // A compensation delivered again (another attempt) refunds nothing more.
    w.send(&w.anular(saga, 2, vieja.id_pago)).await;
    assert_eq!(w.reembolsos(vieja.id_pago).await.len(), 1);

    // Just under the settlement time, an operation is still voided.
    let saga = SagaId::new();
    let casi = envio(10_000, "PAYPAL", "ana@example.com");
    enviado(w.send(&w.enviar(saga, 1, &casi)).await);
    w.envejecer(casi.id_pago, LIQUIDACION.as_secs() as i64 - 5).await;
    w.send(&w.anular(saga, 1, casi.id_pago)).await;
    assert_eq!(w.estado(casi.id_pago).await, "ANULADA");
}

async fn a_void_before_the_send_leaves_a_tombstone(w: World) {
    let saga = SagaId::new();
    let e = envio(10_000, "CARD", "****1234");
    let void = w.handle(&w.anular(saga, 1, e.id_pago)).await;
    assert_eq!(void.disposition, Disposition::Tombstoned);
    assert!(matches!(void.reply.outcome, Outcome::Success { .. }));
    let late = w.send(&w.enviar(saga, 1, &e)).await;
    assert_eq!(code(&late), COMPENSATED_FIRST);
    assert_eq!(w.operaciones(e.id_pago).await, 0, "the late send charged nothing");
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn sends_through_every_supported_method_and_refuses_the_rest() {
                super::sends_through_every_supported_method_and_refuses_the_rest($db().await).await
            }
            #[tokio::test]
            async fn a_first_attempt_times_out_and_the_retry_goes_through() {
                super::a_first_attempt_times_out_and_the_retry_goes_through($db().await).await
            }
            #[tokio::test]
            async fn a_fresh_operation_is_voided_and_a_settled_one_refunded() {
                super::a_fresh_operation_is_voided_and_a_settled_one_refunded($db().await).await
            }
            #[tokio::test]
            async fn a_void_before_the_send_leaves_a_tombstone() {
                super::a_void_before_the_send_leaves_a_tombstone($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
