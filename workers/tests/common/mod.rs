//! Fresh databases for the participants' tests: a new PostgreSQL database per test on the
//! cluster `SAGA_TEST_DATABASE_URL` names (set by scripts/test.sh; without it the test fails,
//! saying so), or a new SQLite file; with the service's and the participant's migrations.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use saga_core::log::sql::{create_database, migrate, pg_pool, sqlite_pool_with};
use saga_core::participant::{CommandHandler, Handled, Handler, ParticipantError, PgParticipant, SqliteParticipant};
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
    // Several connections, as before one writer per file was the default: the concurrency tests
    // race transactions across them.
    sqlite_pool_with(&format!("sqlite://{}", path.display()), 4).await.unwrap()
}

/// How many instances of a participant the tests' commands are spread over.
pub const INSTANCES: usize = 4;

/// Several instances of one participant on one database, as several worker processes would
/// be, taking commands in turn: concurrent commands then race in separate transactions, not
/// only inside one instance's group commit.
struct Instances {
    all: Vec<Arc<dyn CommandHandler>>,
    next: AtomicUsize,
}

impl Instances {
    /// [`INSTANCES`] participants made by `make`, taking commands in turn.
    fn of(make: impl Fn() -> Arc<dyn CommandHandler>) -> Arc<dyn CommandHandler> {
        Arc::new(Instances { all: (0..INSTANCES).map(|_| make()).collect(), next: AtomicUsize::new(0) })
    }
}

#[async_trait]
impl CommandHandler for Instances {
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.all.len();
        self.all[i].handle(command).await
    }
}

/// A participant over a fresh PostgreSQL database with `migrator` applied ([`INSTANCES`]
/// instances taking commands in turn).
pub async fn pg_participant<H: Handler<sqlx::Postgres> + Clone>(
    migrator: &Migrator,
    handler: H,
) -> (Db, Arc<dyn CommandHandler>) {
    let pool = fresh_pg().await;
    migrate(migrator, &pool).await.unwrap();
    // The participant tables are the database's: migrated once for every instance.
    PgParticipant::new(pool.clone(), handler.clone()).migrate().await.unwrap();
    let participants = Instances::of(|| Arc::new(PgParticipant::new(pool.clone(), handler.clone())));
    (Db::Pg(pool), participants)
}

/// A participant over a fresh SQLite file with `migrator` applied ([`INSTANCES`] instances
/// taking commands in turn).
pub async fn sqlite_participant<H: Handler<sqlx::Sqlite> + Clone>(
    migrator: &Migrator,
    handler: H,
) -> (Db, Arc<dyn CommandHandler>) {
    let pool = fresh_sqlite().await;
    migrate(migrator, &pool).await.unwrap();
    SqliteParticipant::new(pool.clone(), handler.clone()).migrate().await.unwrap();
    let participants = Instances::of(|| Arc::new(SqliteParticipant::new(pool.clone(), handler.clone())));
    (Db::Lite(pool), participants)
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
