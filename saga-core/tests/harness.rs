//! The per-saga test harness (`saga_core::testing`) on the two test sagas of `common`, the
//! sequential one and the parallel one, with participants on saga-core's participant module over
//! an in-memory SQLite; then proof that each check fails on a participant that breaks what it
//! checks: one that applies every delivery, one whose compensations are applied on every
//! delivery, one whose compensations undo nothing, one that refuses a retried compensation, and a
//! log whose compensations are out of order.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use async_trait::async_trait;
use common::*;
use saga_core::inject::FaultPlan;
use saga_core::log::memory::MemoryStore;
use saga_core::participant::SqliteParticipant;
use saga_core::participant::{CommandHandler, Disposition, Handled, Handler, HandlerError, ParticipantError};
use saga_core::testing::{assert_reverse_dependency_order, FakeParticipants, SagaHarness};
use saga_core::transport::{Command, Outcome, Reply};
use saga_core::{SagaEvent, SagaId, StepKind};
use serde_json::{json, Value};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// How a test participant's business code goes wrong: one flaw for each check to catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw {
    /// None: the participant module in front, an action adds one, a compensation takes it back.
    None,
    /// No participant module: every delivery is applied, duplicates included.
    AppliesEveryDelivery,
    /// Actions go through the participant module, compensations bypass it and are applied on
    /// every delivery.
    CompensationAppliedEveryDelivery,
    /// A compensation answers success and undoes nothing.
    CompensationUndoesNothing,
    /// A compensation's second or later attempt is answered transient: the participant cannot
    /// take a retried compensation, which only an operator's retry after a stuck saga sends.
    RefusesRetriedCompensation,
}

/// The business side: a ledger of +1 per action and -1 per compensation, per step.
struct Ledger {
    flaw: Flaw,
}

impl Ledger {
    async fn book(tx: &mut Transaction<'static, Sqlite>, command: &Command, delta: i64) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO ledger (step, delta) VALUES ($1, $2)")
            .bind(&command.correlation.step_name)
            .bind(delta)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Handler<Sqlite> for Ledger {
    async fn action(&self, tx: &mut Transaction<'static, Sqlite>, command: &Command) -> Result<Outcome, HandlerError> {
        Self::book(tx, command, 1).await?;
        Ok(Outcome::Success { output: json!({ "hecho": command.correlation.step_name }) })
    }

    async fn compensation(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        command: &Command,
    ) -> Result<Outcome, HandlerError> {
        match self.flaw {
            Flaw::CompensationUndoesNothing => {}
            Flaw::RefusesRetriedCompensation if command.correlation.attempt > 1 => {
                return Ok(Outcome::Transient { reason: "retried compensations are not taken".into() })
            }
            _ => Self::book(tx, command, -1).await?,
        }
        Ok(Outcome::Success { output: json!({ "deshecho": command.correlation.step_name }) })
    }
}

/// Runs the ledger on every delivery, in a transaction of its own, with no participant records:
/// what a worker that skipped `saga_core::participant` would do.
struct EveryDelivery {
    pool: SqlitePool,
    ledger: Ledger,
}

#[async_trait]
impl CommandHandler for EveryDelivery {
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
        let unavailable = ParticipantError::Unavailable;
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let outcome = match command.correlation.kind {
            StepKind::Action => self.ledger.action(&mut tx, command).await,
            StepKind::Compensation => self.ledger.compensation(&mut tx, command).await,
        }
        .map_err(|e| match e {
            saga_core::participant::HandlerError::Database(e) => ParticipantError::Unavailable(e),
            saga_core::participant::HandlerError::Invalid(why) => ParticipantError::Poison(why),
        })?;
        tx.commit().await.map_err(unavailable)?;
        Ok(Handled {
            reply: Reply { correlation: command.correlation.clone(), outcome },
            disposition: Disposition::Applied,
        })
    }
}

/// Sends actions to one handler and compensations to another.
struct Split {
    actions: Arc<dyn CommandHandler>,
    compensations: Arc<dyn CommandHandler>,
}

#[async_trait]
impl CommandHandler for Split {
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
        match command.correlation.kind {
            StepKind::Action => self.actions.handle(command).await,
            StepKind::Compensation => self.compensations.handle(command).await,
        }
    }
}

/// The test saga's three participants (`comandos.uno`, `.dos`, `.tres`), on one in-memory SQLite.
struct TestParticipants {
    pool: SqlitePool,
    handler: Arc<dyn CommandHandler>,
    /// The addresses served; the others get no handler.
    serves: Vec<String>,
}

impl TestParticipants {
    async fn fresh(flaw: Flaw) -> Self {
        Self::serving(flaw, &STEPS).await
    }

    async fn serving(flaw: Flaw, steps: &[&str]) -> Self {
        let pool = saga_core::log::sql::sqlite_pool("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE ledger (step TEXT NOT NULL, delta INTEGER NOT NULL)").execute(&pool).await.unwrap();
        let participant = SqliteParticipant::new(pool.clone(), Ledger { flaw });
        participant.migrate().await.unwrap();
        let every_delivery = || Arc::new(EveryDelivery { pool: pool.clone(), ledger: Ledger { flaw } });
        let handler: Arc<dyn CommandHandler> = match flaw {
            Flaw::AppliesEveryDelivery => every_delivery(),
            Flaw::CompensationAppliedEveryDelivery => {
                Arc::new(Split { actions: Arc::new(participant), compensations: every_delivery() })
            }
            _ => Arc::new(participant),
        };
        Self { pool, handler, serves: steps.iter().map(|s| participant_of(s)).collect() }
    }
}

#[async_trait]
impl FakeParticipants for TestParticipants {
    fn handler(&self, participant: &str) -> Option<Arc<dyn CommandHandler>> {
        self.serves.iter().any(|s| s == participant).then(|| self.handler.clone())
    }

    /// What is applied and not undone, per step: `{"uno": 1}` while `uno` is held.
    async fn snapshot(&self) -> Value {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT step, SUM(delta) FROM ledger GROUP BY step HAVING SUM(delta) <> 0 ORDER BY step")
                .fetch_all(&self.pool)
                .await
                .unwrap();
        Value::Object(rows.into_iter().map(|(step, n)| (step, json!(n))).collect())
    }
}

fn harness(saga: &str, flaw: Flaw) -> SagaHarness {
    SagaHarness::new(registry(), saga, params(), move || TestParticipants::fresh(flaw))
}

/// Runs `check` on its own task and returns its panic message; fails if it did not panic.
async fn panic_of<F>(check: F) -> String
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let Err(e) = tokio::spawn(check).await else { panic!("the check passed; it was meant to fail") };
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "the failure should mention {part:?}: {message}");
    }
}

// ---- The test sagas pass ------------------------------------------------------------------------

#[tokio::test]
async fn the_sequential_saga_passes_every_check() {
    harness(SAGA, Flaw::None).run_all().await;
}

#[tokio::test]
async fn the_parallel_saga_passes_every_check() {
    harness(SAGA_PARALELA, Flaw::None).run_all().await;
}

// ---- Each check can fail ------------------------------------------------------------------------

#[tokio::test]
async fn a_participant_that_applies_every_delivery_fails_the_repeat_check() {
    let message =
        panic_of(async { harness(SAGA, Flaw::AppliesEveryDelivery).every_step_repeated_gives_the_same_result().await })
            .await;
    assert_mentions(
        &message,
        &[
            "saga prueba",
            "every step repeated gives the same result",
            "no failure, every command delivered twice",
            "not idempotent",
        ],
    );
}

#[tokio::test]
async fn a_compensation_applied_on_every_delivery_fails_the_repeat_check() {
    // Actions are deduplicated, so the saga without a failure passes; the first scenario that
    // compensates (dos fails, uno is undone twice) does not.
    let message = panic_of(async {
        harness(SAGA, Flaw::CompensationAppliedEveryDelivery).every_step_repeated_gives_the_same_result().await
    })
    .await;
    assert_mentions(
        &message,
        &["every step repeated", "failure injected at dos, every command delivered twice", "\"uno\":-1"],
    );
}

#[tokio::test]
async fn a_compensation_that_undoes_nothing_fails_the_unwind_check() {
    // On the parallel saga: dos fails, and its sibling tres, sent with it, is not undone either.
    let message = panic_of(async {
        harness(SAGA_PARALELA, Flaw::CompensationUndoesNothing).a_failure_at_each_step_unwinds_in_order().await
    })
    .await;
    assert_mentions(
        &message,
        &[
            "saga prueba_paralela",
            "a failure at each step unwinds in order",
            "failure injected at dos",
            "\"tres\":1",
            "\"uno\":1",
        ],
    );
}

#[tokio::test]
async fn a_participant_that_applies_every_delivery_fails_the_crash_check() {
    // The first crash point already shows it: uno's reply is lost with the crash, recovery
    // resends uno's command, and the participant applies it again.
    let message =
        panic_of(async { harness(SAGA, Flaw::AppliesEveryDelivery).a_crash_after_every_log_write_recovers().await })
            .await;
    assert_mentions(
        &message,
        &[
            "a crash after every log write recovers",
            "no failure, crash after write 1 of 4, queues kept on restart",
            "\"uno\":2",
        ],
    );
}

#[tokio::test]
async fn a_participant_that_refuses_retried_compensations_passes_the_rest_but_fails_the_stuck_check() {
    // Nothing but an operator's retry sends a compensation's second attempt here, so only the
    // fourth check can see this flaw.
    let h = harness(SAGA, Flaw::RefusesRetriedCompensation);
    h.every_step_repeated_gives_the_same_result().await;
    h.a_failure_at_each_step_unwinds_in_order().await;
    h.a_crash_after_every_log_write_recovers().await;
    let message = panic_of(async move { h.a_failing_compensation_is_stuck_until_an_operator_retries().await }).await;
    assert_mentions(
        &message,
        &[
            "a failing compensation is stuck until an operator retries",
            "failure injected at tres, every compensation of uno failing, then restarted without faults and retried",
            "ended stuck",
        ],
    );
}

#[tokio::test]
async fn a_participant_not_served_stops_every_check_naming_its_address() {
    let h = SagaHarness::new(registry(), SAGA, params(), || TestParticipants::serving(Flaw::None, &["uno", "dos"]));
    let message = panic_of(async move { h.run_all().await }).await;
    assert_mentions(&message, &["no fake participant serves comandos.tres (step tres)"]);
}

#[tokio::test]
async fn the_order_assertion_fails_on_a_compensation_sent_before_its_dependent_finished() {
    // A real log of the sequential saga failing at tres (dos then uno compensated), then the
    // same log with uno's compensation moved before dos's success.
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, Script::default()).await);
    let mut w = World::new(Arc::new(MemoryStore::new()), participants, FaultPlan::none().fail_action("tres")).await;
    let id = SagaId::new();
    w.engine.start(SAGA, id, params()).await.unwrap();
    w.pump(id).await.unwrap();
    let history = w.store.history(id).await.unwrap();
    assert_reverse_dependency_order(&history, &definition());

    let compensation_sent = |step: &str| {
        history.iter().position(|e| {
            matches!(&e.event, SagaEvent::CommandSent { command, .. }
            if command.correlation.step_name == step && command.correlation.kind == StepKind::Compensation)
        })
    };
    let dos_done = history
        .iter()
        .position(|e| matches!(e.event, SagaEvent::ReplyAccepted { step: 1, kind: StepKind::Compensation, .. }))
        .unwrap();
    let uno_sent = compensation_sent("uno").unwrap();
    assert!(dos_done < uno_sent);
    let mut reordered = history.clone();
    let entry = reordered.remove(uno_sent);
    reordered.insert(dos_done, entry);
    let caught = std::panic::catch_unwind(|| assert_reverse_dependency_order(&reordered, &definition())).unwrap_err();
    let message = caught.downcast_ref::<String>().cloned().unwrap_or_default();
    assert_mentions(&message, &["uno compensated", "before its dependent dos finished"]);
}
