//! The marca participant on a real PostgreSQL and on SQLite, through saga-core's participant
//! module (dedup, stored replies, tombstones): reservations, each business refusal, release,
//! and concurrent campaigns that never overdraw a brand.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{code, command, pg_participant, scalar, sqlite_participant, Db};
use saga_core::participant::CommandHandler;
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{Centavos, LiberarPresupuesto, ReservarPresupuesto};
use uuid::Uuid;
use workers::marca::{
    self, Marca, MarcaSeed, CAMPANA_DUPLICADA, MARCA_DESCONOCIDA, MARCA_INACTIVA, PRESUPUESTO_INSUFICIENTE,
};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
    activa: Uuid,
    inactiva: Uuid,
}

const BUDGET: i64 = 1_000_000;

fn seeds() -> Vec<MarcaSeed> {
    vec![
        MarcaSeed {
            id_marca: Uuid::now_v7(),
            nombre: "Nike".into(),
            activa: true,
            presupuesto_disponible_centavos: BUDGET,
        },
        MarcaSeed {
            id_marca: Uuid::now_v7(),
            nombre: "Vieja".into(),
            activa: false,
            presupuesto_disponible_centavos: BUDGET,
        },
    ]
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&marca::PG_MIGRATOR, Marca).await;
    let seeds = seeds();
    let Db::Pg(pool) = &db else { unreachable!() };
    Marca::seed_postgres(pool, &seeds).await.unwrap();
    World { db, participant, activa: seeds[0].id_marca, inactiva: seeds[1].id_marca }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&marca::SQLITE_MIGRATOR, Marca).await;
    let seeds = seeds();
    let Db::Lite(pool) = &db else { unreachable!() };
    Marca::seed_sqlite(pool, &seeds).await.unwrap();
    World { db, participant, activa: seeds[0].id_marca, inactiva: seeds[1].id_marca }
}

impl World {
    async fn available(&self, id: Uuid) -> i64 {
        scalar(&self.db, "SELECT presupuesto_disponible_centavos FROM marca WHERE id_marca = $1", id).await
    }

    fn command(
        &self,
        saga: SagaId,
        kind: StepKind,
        attempt: u32,
        id_campana: Uuid,
        id_marca: Uuid,
        monto: i64,
    ) -> Command {
        let (message_type, body) = match kind {
            StepKind::Action => (
                "ReservarPresupuesto",
                serde_json::to_value(ReservarPresupuesto { id_campana, id_marca, monto_centavos: Centavos(monto) })
                    .unwrap(),
            ),
            StepKind::Compensation => (
                "LiberarPresupuesto",
                serde_json::to_value(LiberarPresupuesto { id_campana, id_marca, id_reserva: None }).unwrap(),
            ),
        };
        command("reservar_presupuesto", "comandos.marca", kind, attempt, saga, message_type, body)
    }

    async fn send(&self, command: &Command) -> Outcome {
        self.participant.handle(command).await.unwrap().reply.outcome
    }
}

async fn reserves_then_refuses_what_is_not_available(w: World) {
    let saga = SagaId::new();
    let campana = Uuid::now_v7();
    let ok = w.send(&w.command(saga, StepKind::Action, 1, campana, w.activa, 600_000)).await;
    match ok {
        Outcome::Success { output } => assert_eq!(output["disponible_restante_centavos"], 400_000),
        other => panic!("expected a reservation, got {other:?}"),
    }
    assert_eq!(w.available(w.activa).await, 400_000);
    let too_much = w.send(&w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), w.activa, 400_001)).await;
    assert_eq!(code(&too_much), PRESUPUESTO_INSUFICIENTE);
    assert_eq!(w.available(w.activa).await, 400_000, "a refusal changes nothing");
    let twice = w.send(&w.command(SagaId::new(), StepKind::Action, 1, campana, w.activa, 1)).await;
    assert_eq!(code(&twice), CAMPANA_DUPLICADA, "another saga for the same campaign id");
}

async fn unknown_and_inactive_brands_are_refused(w: World) {
    let unknown = w.send(&w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), Uuid::now_v7(), 1)).await;
    assert_eq!(code(&unknown), MARCA_DESCONOCIDA);
    let inactive = w.send(&w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), w.inactiva, 1)).await;
    assert_eq!(code(&inactive), MARCA_INACTIVA);
    assert_eq!(w.available(w.inactiva).await, BUDGET);
}

async fn release_restores_the_budget_once(w: World) {
    let saga = SagaId::new();
    let campana = Uuid::now_v7();
    w.send(&w.command(saga, StepKind::Action, 1, campana, w.activa, 250_000)).await;
    assert_eq!(w.available(w.activa).await, BUDGET - 250_000);
    assert!(matches!(
        w.send(&w.command(saga, StepKind::Compensation, 1, campana, w.activa, 0)).await,
        Outcome::Success { .. }
    ));
    assert_eq!(w.available(w.activa).await, BUDGET);
    // A retried compensation (new attempt, new message id) releases nothing more.
    w.send(&w.command(saga, StepKind::Compensation, 2, campana, w.activa, 0)).await;
    assert_eq!(w.available(w.activa).await, BUDGET);
}

async fn a_release_before_the_reservation_leaves_a_tombstone(w: World) {
    let saga = SagaId::new();
    let campana = Uuid::now_v7();
    assert!(matches!(
        w.send(&w.command(saga, StepKind::Compensation, 1, campana, w.activa, 0)).await,
        Outcome::Success { .. }
    ));
    let late = w.send(&w.command(saga, StepKind::Action, 1, campana, w.activa, 250_000)).await;
    assert_eq!(code(&late), saga_core::participant::COMPENSATED_FIRST);
    assert_eq!(w.available(w.activa).await, BUDGET, "the late reservation took nothing");
}

async fn concurrent_campaigns_never_overdraw(w: World) {
    let w = Arc::new(w);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let command = w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), w.activa, 100_000);
            w.send(&command).await
        }));
    }
    let mut reserved = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Success { .. } => reserved += 1,
            other => assert_eq!(code(&other), PRESUPUESTO_INSUFICIENTE),
        }
    }
    assert_eq!(reserved, 10, "exactly the budget's worth of campaigns");
    assert_eq!(w.available(w.activa).await, 0);
}

/// A daemon re-seeds at every start: brands already known keep their state (here, a
/// reservation's effect on the budget), new brands are added.
async fn seeding_again_never_undoes_reservations(w: World) {
    w.send(&w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), w.activa, 600_000)).await;
    assert_eq!(w.available(w.activa).await, 400_000);
    let mut again = vec![
        MarcaSeed { id_marca: w.activa, nombre: "Nike".into(), activa: true, presupuesto_disponible_centavos: BUDGET },
        MarcaSeed {
            id_marca: Uuid::now_v7(),
            nombre: "Nueva".into(),
            activa: true,
            presupuesto_disponible_centavos: 7,
        },
    ];
    match &w.db {
        Db::Pg(pool) => Marca::seed_postgres(pool, &again).await.unwrap(),
        Db::Lite(pool) => Marca::seed_sqlite(pool, &again).await.unwrap(),
    }
    assert_eq!(w.available(w.activa).await, 400_000, "the seed's budget does not overwrite the live one");
    let nueva = again.pop().unwrap();
    assert_eq!(w.available(nueva.id_marca).await, 7, "a new brand is added");
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn reserves_then_refuses_what_is_not_available() {
                super::reserves_then_refuses_what_is_not_available($db().await).await
            }
            #[tokio::test]
            async fn unknown_and_inactive_brands_are_refused() {
                super::unknown_and_inactive_brands_are_refused($db().await).await
            }
            #[tokio::test]
            async fn release_restores_the_budget_once() {
                super::release_restores_the_budget_once($db().await).await
            }
            #[tokio::test]
            async fn a_release_before_the_reservation_leaves_a_tombstone() {
                super::a_release_before_the_reservation_leaves_a_tombstone($db().await).await
            }
            #[tokio::test]
            async fn seeding_again_never_undoes_reservations() {
                super::seeding_again_never_undoes_reservations($db().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_campaigns_never_overdraw() {
                super::concurrent_campaigns_never_overdraw($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
