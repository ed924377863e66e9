//! The participant contract on SQLite and on a real PostgreSQL: one effect per saga step
//! whatever the redeliveries and retried attempts, stored replies, tombstones for compensations
//! that come first, nothing recorded for transient answers, one winner when instances race, and
//! a serving loop that dead-letters poison and goes on.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use saga_core::participant::{serve, CommandHandler, Disposition, ParticipantError, COMPENSATED_FIRST};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Correlation, Outcome, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use serde_json::json;

struct Fixture {
    db: ParticipantDb,
    handler: Arc<dyn CommandHandler>,
    pending: Arc<Mutex<HashMap<MessageId, Behavior>>>,
}

impl Fixture {
    async fn new(db: ParticipantDb) -> Self {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let handler = db.handler(pending.clone()).await;
        Self { db, handler, pending }
    }

    fn command(&self, saga: SagaId, kind: StepKind, attempt: u32, behavior: Behavior) -> Command {
        let message_id = MessageId::new();
        self.pending.lock().unwrap().insert(message_id, behavior);
        Command {
            correlation: Correlation {
                saga_id: saga,
                saga_type: SAGA.into(),
                step_name: "uno".into(),
                attempt,
                kind,
                message_id,
            },
            participant: participant_of("uno"),
            reply_to: REPLY_TO.into(),
            message_type: "Hacer".into(),
            body: json!({}),
        }
    }

    async fn effects(&self, saga: SagaId, kind: &str) -> i64 {
        self.db.effects(saga).await.get(&("uno".to_owned(), kind.to_owned())).copied().unwrap_or(0)
    }
}

async fn a_redelivered_message_gets_the_stored_reply(f: Fixture) {
    let saga = SagaId::new();
    let cmd = f.command(saga, StepKind::Action, 1, Behavior::Succeed);
    let first = f.handler.handle(&cmd).await.unwrap();
    assert_eq!(first.disposition, Disposition::Applied);
    let again = f.handler.handle(&cmd).await.unwrap();
    assert_eq!(again.disposition, Disposition::DuplicateMessage);
    assert_eq!(again.reply, first.reply);
    assert_eq!(f.effects(saga, "action").await, 1);
}

async fn a_retried_attempt_gets_the_first_attempts_reply_with_its_own_correlation(f: Fixture) {
    let saga = SagaId::new();
    let first = f.handler.handle(&f.command(saga, StepKind::Action, 1, Behavior::Succeed)).await.unwrap();
    let retry_cmd = f.command(saga, StepKind::Action, 2, Behavior::Succeed);
    let retry = f.handler.handle(&retry_cmd).await.unwrap();
    assert_eq!(retry.disposition, Disposition::DuplicateStep);
    assert_eq!(retry.reply.outcome, first.reply.outcome);
    assert_eq!(retry.reply.correlation, retry_cmd.correlation, "the reply answers the attempt that asked");
    assert_eq!(f.effects(saga, "action").await, 1);
}

async fn a_refusal_is_stored_and_its_compensation_undoes_nothing(f: Fixture) {
    let saga = SagaId::new();
    let refused = f.handler.handle(&f.command(saga, StepKind::Action, 1, Behavior::Refuse)).await.unwrap();
    assert!(matches!(refused.reply.outcome, Outcome::BusinessFailure { .. }));
    let again = f.handler.handle(&f.command(saga, StepKind::Action, 2, Behavior::Succeed)).await.unwrap();
    assert_eq!(again.reply.outcome, refused.reply.outcome, "a refusal is final for the step");
    let comp = f.handler.handle(&f.command(saga, StepKind::Compensation, 1, Behavior::Succeed)).await.unwrap();
    assert!(matches!(comp.reply.outcome, Outcome::Success { .. }));
    assert_eq!(f.effects(saga, "action").await, 0);
    assert_eq!(f.effects(saga, "compensation").await, 0);
}

async fn a_compensation_runs_once_after_its_action(f: Fixture) {
    let saga = SagaId::new();
    f.handler.handle(&f.command(saga, StepKind::Action, 1, Behavior::Succeed)).await.unwrap();
    let comp = f.handler.handle(&f.command(saga, StepKind::Compensation, 1, Behavior::Succeed)).await.unwrap();
    assert_eq!(comp.disposition, Disposition::Applied);
    let again = f.handler.handle(&f.command(saga, StepKind::Compensation, 2, Behavior::Succeed)).await.unwrap();
    assert_eq!(again.disposition, Disposition::DuplicateStep);
    assert!(matches!(again.reply.outcome, Outcome::Success { .. }));
    assert_eq!(f.effects(saga, "compensation").await, 1);
}

async fn a_compensation_before_its_action_leaves_a_tombstone_and_the_late_action_is_refused(f: Fixture) {
    let saga = SagaId::new();
    let comp = f.handler.handle(&f.command(saga, StepKind::Compensation, 1, Behavior::Succeed)).await.unwrap();
    assert_eq!(comp.disposition, Disposition::Tombstoned);
    assert!(matches!(comp.reply.outcome, Outcome::Success { .. }));
    let late = f.handler.handle(&f.command(saga, StepKind::Action, 1, Behavior::Succeed)).await.unwrap();
    assert_eq!(late.disposition, Disposition::RefusedLate);
    match late.reply.outcome {
        Outcome::BusinessFailure { code, .. } => assert_eq!(code, COMPENSATED_FIRST),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(f.effects(saga, "action").await, 0);
    assert_eq!(f.effects(saga, "compensation").await, 0);
}

async fn a_transient_answer_records_nothing_so_the_next_attempt_runs(f: Fixture) {
    let saga = SagaId::new();
    let cmd = f.command(saga, StepKind::Action, 1, Behavior::Transient);
    let first = f.handler.handle(&cmd).await.unwrap();
    assert_eq!(first.disposition, Disposition::NotRecorded);
    assert!(matches!(first.reply.outcome, Outcome::Transient { .. }));
    let next = f.handler.handle(&f.command(saga, StepKind::Action, 2, Behavior::Succeed)).await.unwrap();
    assert_eq!(next.disposition, Disposition::Applied);
    assert_eq!(f.effects(saga, "action").await, 1);
}

async fn racing_attempts_of_one_step_apply_it_once(f: Fixture) {
    let f = Arc::new(f);
    for _ in 0..5 {
        let saga = SagaId::new();
        let mut tasks = Vec::new();
        for attempt in 1..=6 {
            let f = f.clone();
            let cmd = f.command(saga, StepKind::Action, attempt, Behavior::Succeed);
            tasks.push(tokio::spawn(async move { f.handler.handle(&cmd).await }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().expect("every racer gets an answer").reply.outcome);
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "every attempt got the same reply: {outcomes:?}");
        assert_eq!(f.effects(saga, "action").await, 1);
    }
}

macro_rules! conformance {
    ($db:ident, $make:expr) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn a_redelivered_message_gets_the_stored_reply() {
                super::a_redelivered_message_gets_the_stored_reply(Fixture::new($make).await).await
            }
            #[tokio::test]
            async fn a_retried_attempt_gets_the_first_attempts_reply_with_its_own_correlation() {
                super::a_retried_attempt_gets_the_first_attempts_reply_with_its_own_correlation(
                    Fixture::new($make).await,
                )
                .await
            }
            #[tokio::test]
            async fn a_refusal_is_stored_and_its_compensation_undoes_nothing() {
                super::a_refusal_is_stored_and_its_compensation_undoes_nothing(Fixture::new($make).await).await
            }
            #[tokio::test]
            async fn a_compensation_runs_once_after_its_action() {
                super::a_compensation_runs_once_after_its_action(Fixture::new($make).await).await
            }
            #[tokio::test]
            async fn a_compensation_before_its_action_leaves_a_tombstone_and_the_late_action_is_refused() {
                super::a_compensation_before_its_action_leaves_a_tombstone_and_the_late_action_is_refused(
                    Fixture::new($make).await,
                )
                .await
            }
            #[tokio::test]
            async fn a_transient_answer_records_nothing_so_the_next_attempt_runs() {
                super::a_transient_answer_records_nothing_so_the_next_attempt_runs(Fixture::new($make).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_attempts_of_one_step_apply_it_once() {
                super::racing_attempts_of_one_step_apply_it_once(Fixture::new($make).await).await
            }
        }
    };
}

async fn sqlite_file() -> ParticipantDb {
    // A file, not memory: racing needs several connections on one database.
    let pool = saga_core::log::sql::sqlite_pool(&fresh_sqlite_url()).await.expect("sqlite");
    sqlx::query(EFFECT_LOG_DDL).execute(&pool).await.expect("effect_log");
    ParticipantDb::Sqlite(pool)
}

async fn postgres() -> ParticipantDb {
    let (pool, _) = fresh_pg().await;
    ParticipantDb::postgres(pool).await
}

conformance!(sqlite, sqlite_file().await);
conformance!(postgres, postgres().await);

/// The commands dead-lettered on "uno", once there are `n` (within 5 s), checked to be exactly `n`.
async fn dead_letters(
    transport: &InProcessTransport,
    n: usize,
) -> Vec<saga_core::transport::in_process::DeadLetter<Command>> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let dead = transport.dead_commands(&participant_of("uno"));
        if dead.len() >= n || std::time::Instant::now() > deadline {
            assert_eq!(dead.len(), n, "{dead:?}");
            return dead;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn the_serving_loop_dead_letters_poison_and_keeps_serving() {
    let f = Fixture::new(sqlite_file().await).await;
    let transport = InProcessTransport::new();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(f.handler.clone(), Arc::new(transport.clone()), participant_of("uno"), async {
        let _ = stop_rx.await;
    }));
    let mut replies = transport.replies(REPLY_TO).await.unwrap();
    let poison = f.command(SagaId::new(), StepKind::Action, 1, Behavior::Poison);
    let good_saga = SagaId::new();
    let good = f.command(good_saga, StepKind::Action, 1, Behavior::Succeed);
    transport.send_command(&poison).await.unwrap();
    transport.send_command(&good).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await.expect("a reply").unwrap();
    assert_eq!(reply.message.correlation, good.correlation, "the good command after the poison is served");
    reply.ack().await.unwrap();
    // Commands are handled concurrently: the poison may be settled after the good reply.
    let dead = dead_letters(&transport, 1).await;
    assert_eq!(dead[0].message.correlation, poison.correlation);
    assert!(dead[0].reason.contains("scripted poison"));
    assert_eq!(f.effects(good_saga, "action").await, 1);
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

/// A handler that panics on a command (a bug): the command is dead-lettered with the panic as
/// its reason, not redelivered in a loop, and the next command is served.
struct PanicsOnSecondStep(Arc<dyn CommandHandler>);

#[async_trait::async_trait]
impl CommandHandler for PanicsOnSecondStep {
    async fn handle(&self, command: &Command) -> Result<saga_core::participant::Handled, ParticipantError> {
        if command.correlation.attempt == 7 {
            panic!("a bug in the handler");
        }
        self.0.handle(command).await
    }
}

#[tokio::test]
async fn a_panicking_handler_dead_letters_its_command_and_keeps_serving() {
    let f = Fixture::new(sqlite_file().await).await;
    let transport = InProcessTransport::new();
    let handler: Arc<dyn CommandHandler> = Arc::new(PanicsOnSecondStep(f.handler.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(handler, Arc::new(transport.clone()), participant_of("uno"), async {
        let _ = stop_rx.await;
    }));
    let mut replies = transport.replies(REPLY_TO).await.unwrap();
    let bug = f.command(SagaId::new(), StepKind::Action, 7, Behavior::Succeed);
    let good_saga = SagaId::new();
    let good = f.command(good_saga, StepKind::Action, 1, Behavior::Succeed);
    transport.send_command(&bug).await.unwrap();
    transport.send_command(&good).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await.expect("a reply").unwrap();
    assert_eq!(reply.message.correlation, good.correlation, "the command after the panic is served");
    reply.ack().await.unwrap();
    let dead = dead_letters(&transport, 1).await;
    assert_eq!(dead[0].message.correlation, bug.correlation);
    assert!(dead[0].reason.contains("panicked"), "{}", dead[0].reason);
    assert_eq!(transport.pending_commands(&participant_of("uno")), 0, "nothing left to redeliver");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
