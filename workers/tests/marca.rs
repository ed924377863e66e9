//! The marca participant on a real PostgreSQL and on SQLite, through saga-core's participant
//! module (dedup, stored replies, tombstones): reservations, each business refusal, release,
//! and concurrent campaigns that never overdraw a brand.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use saga_core::log::sql::{migrate, pg_pool, sqlite_pool};
use saga_core::participant::{CommandHandler, PgParticipant, SqliteParticipant};
use saga_core::transport::{Command, Correlation, Outcome};
use saga_core::{MessageId, SagaId, StepKind};
use schemas::{Centavos, LiberarPresupuesto, ReservarPresupuesto};
use uuid::Uuid;
use workers::marca::{self, Marca, MarcaSeed, MARCA_DESCONOCIDA, MARCA_INACTIVA, PRESUPUESTO_INSUFICIENTE};

enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
    activa: Uuid,
    inactiva: Uuid,
}

const BUDGET: i64 = 1_000_000;

fn seeds() -> Vec<MarcaSeed> {
    vec![
        MarcaSeed { id_marca: Uuid::now_v7(), nombre: "Nike".into(), activa: true, presupuesto_disponible_centavos: BUDGET },
        MarcaSeed { id_marca: Uuid::now_v7(), nombre: "Vieja".into(), activa: false, presupuesto_disponible_centavos: BUDGET },
    ]
}

async fn postgres() -> World {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which starts PostgreSQL");
    let name = format!("marca_test_{}", Uuid::new_v4().simple());
    let admin_pool = pg_pool(&admin, 1).await.expect("reach PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(&admin_pool).await.unwrap();
    let pool = pg_pool(&format!("{}/{name}", admin.rsplit_once('/').unwrap().0), 20).await.unwrap();
    migrate(&marca::PG_MIGRATOR, &pool).await.unwrap();
    let seeds = seeds();
    Marca::seed_postgres(&pool, &seeds).await.unwrap();
    let participant = PgParticipant::new(pool.clone(), Marca);
    participant.migrate().await.unwrap();
    World { db: Db::Pg(pool), participant: Arc::new(participant), activa: seeds[0].id_marca, inactiva: seeds[1].id_marca }
}

async fn sqlite() -> World {
    let path = std::env::temp_dir().join(format!("marca-test-{}.sqlite", Uuid::new_v4().simple()));
    let pool = sqlite_pool(&format!("sqlite://{}", path.display())).await.unwrap();
    migrate(&marca::SQLITE_MIGRATOR, &pool).await.unwrap();
    let seeds = seeds();
    Marca::seed_sqlite(&pool, &seeds).await.unwrap();
    let participant = SqliteParticipant::new(pool.clone(), Marca);
    participant.migrate().await.unwrap();
    World { db: Db::Lite(pool), participant: Arc::new(participant), activa: seeds[0].id_marca, inactiva: seeds[1].id_marca }
}

impl World {
    async fn available(&self, id: Uuid) -> i64 {
        let q = "SELECT presupuesto_disponible_centavos FROM marca WHERE id_marca = $1";
        match &self.db {
            Db::Pg(p) => sqlx::query_scalar(q).bind(id).fetch_one(p).await.unwrap(),
            Db::Lite(p) => sqlx::query_scalar(q).bind(id).fetch_one(p).await.unwrap(),
        }
    }

    fn command(&self, saga: SagaId, kind: StepKind, attempt: u32, id_campana: Uuid, id_marca: Uuid, monto: i64) -> Command {
        let (message_type, body) = match kind {
            StepKind::Action => (
                "ReservarPresupuesto",
                serde_json::to_value(ReservarPresupuesto { id_campana, id_marca, monto_centavos: Centavos(monto) }).unwrap(),
            ),
            StepKind::Compensation => (
                "LiberarPresupuesto",
                serde_json::to_value(LiberarPresupuesto { id_campana, id_marca, id_reserva: None }).unwrap(),
            ),
        };
        Command {
            correlation: Correlation {
                saga_id: saga,
                saga_type: "crear_campana".into(),
                step_name: "reservar_presupuesto".into(),
                attempt,
                kind,
                message_id: MessageId::new(),
            },
            participant: "comandos.marca".into(),
            reply_to: "respuestas.afiliaciones".into(),
            message_type: message_type.into(),
            body,
        }
    }

    async fn send(&self, command: &Command) -> Outcome {
        self.participant.handle(command).await.unwrap().reply.outcome
    }
}

fn code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::BusinessFailure { code, .. } => code,
        other => panic!("expected a business failure, got {other:?}"),
    }
}

async fn reserves_then_refuses_what_is_not_available(w: World) {
    let saga = SagaId::new();
    let ok = w.send(&w.command(saga, StepKind::Action, 1, Uuid::now_v7(), w.activa, 600_000)).await;
    match ok {
        Outcome::Success { output } => assert_eq!(output["disponible_restante_centavos"], 400_000),
        other => panic!("expected a reservation, got {other:?}"),
    }
    assert_eq!(w.available(w.activa).await, 400_000);
    let too_much = w.send(&w.command(SagaId::new(), StepKind::Action, 1, Uuid::now_v7(), w.activa, 400_001)).await;
    assert_eq!(code(&too_much), PRESUPUESTO_INSUFICIENTE);
    assert_eq!(w.available(w.activa).await, 400_000, "a refusal changes nothing");
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
    assert!(matches!(w.send(&w.command(saga, StepKind::Compensation, 1, campana, w.activa, 0)).await, Outcome::Success { .. }));
    assert_eq!(w.available(w.activa).await, BUDGET);
    // A retried compensation (new attempt, new message id) releases nothing more.
    w.send(&w.command(saga, StepKind::Compensation, 2, campana, w.activa, 0)).await;
    assert_eq!(w.available(w.activa).await, BUDGET);
}

async fn a_release_before_the_reservation_leaves_a_tombstone(w: World) {
    let saga = SagaId::new();
    let campana = Uuid::now_v7();
    assert!(matches!(w.send(&w.command(saga, StepKind::Compensation, 1, campana, w.activa, 0)).await, Outcome::Success { .. }));
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
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_campaigns_never_overdraw() {
                super::concurrent_campaigns_never_overdraw($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
