//! Fresh databases for the participants' tests: a new PostgreSQL database per test on the
//! cluster `SAGA_TEST_DATABASE_URL` names (set by scripts/test.sh; without it the test fails,
//! saying so), or a new SQLite file; with the service's and the participant's migrations.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::sync::Arc;

use saga_core::log::sql::{create_database, migrate, pg_pool, sqlite_pool};
use saga_core::participant::{CommandHandler, Handler, PgParticipant, SqliteParticipant};
use saga_core::transport::{Command, Correlation, Outcome};
use saga_core::{MessageId, SagaId, StepKind};
use sqlx::migrate::Migrator;
use uuid::Uuid;

pub enum Db {
    Pg(sqlx::PgPool),
    Lite(sqlx::SqlitePool),
}

pub async fn fresh_pg() -> sqlx::PgPool {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    let url = create_database(&admin, "worker_test").await.expect("create a database at SAGA_TEST_DATABASE_URL");
    pg_pool(&url, 20).await.unwrap()
}

pub async fn fresh_sqlite() -> sqlx::SqlitePool {
    let path = std::env::temp_dir().join(format!("worker-test-{}.sqlite", Uuid::new_v4().simple()));
    sqlite_pool(&format!("sqlite://{}", path.display())).await.unwrap()
}

/// A participant over a fresh PostgreSQL database with `migrator` applied.
pub async fn pg_participant<H: Handler<sqlx::Postgres>>(
    migrator: &Migrator,
    handler: H,
) -> (Db, Arc<dyn CommandHandler>) {
    let pool = fresh_pg().await;
    migrate(migrator, &pool).await.unwrap();
    let participant = PgParticipant::new(pool.clone(), handler);
    participant.migrate().await.unwrap();
    (Db::Pg(pool), Arc::new(participant))
}

/// A participant over a fresh SQLite file with `migrator` applied.
pub async fn sqlite_participant<H: Handler<sqlx::Sqlite>>(
    migrator: &Migrator,
    handler: H,
) -> (Db, Arc<dyn CommandHandler>) {
    let pool = fresh_sqlite().await;
    migrate(migrator, &pool).await.unwrap();
    let participant = SqliteParticipant::new(pool.clone(), handler);
    participant.migrate().await.unwrap();
    (Db::Lite(pool), Arc::new(participant))
}

/// A command of CrearCampaña's step `step` for `participant`.
pub fn command(
    step: &str,
    participant: &str,
    kind: StepKind,
    attempt: u32,
    saga: SagaId,
    message_type: &str,
    body: serde_json::Value,
) -> Command {
    Command {
        correlation: Correlation {
            saga_id: saga,
            saga_type: "crear_campana".into(),
            step_name: step.into(),
            attempt,
            kind,
            message_id: MessageId::new(),
        },
        participant: participant.into(),
        reply_to: "respuestas.afiliaciones".into(),
        message_type: message_type.into(),
        body,
    }
}

/// A command of the payout saga (`procesar_pago`)'s step `step` for `participant`.
pub fn payout_command(
    step: &str,
    participant: &str,
    kind: StepKind,
    attempt: u32,
    saga: SagaId,
    message_type: &str,
    body: serde_json::Value,
) -> Command {
    let mut c = command(step, participant, kind, attempt, saga, message_type, body);
    c.correlation.saga_type = "procesar_pago".into();
    c
}

pub fn code(outcome: &Outcome) -> &str {
    match outcome {
        Outcome::BusinessFailure { code, .. } => code,
        other => panic!("expected a business failure, got {other:?}"),
    }
}

/// One integer from a query on either database.
pub async fn scalar(db: &Db, sql: &str, id: Uuid) -> i64 {
    match db {
        Db::Pg(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
        Db::Lite(p) => sqlx::query_scalar(sql).bind(id).fetch_one(p).await.unwrap(),
    }
}
