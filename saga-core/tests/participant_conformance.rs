//! The participant contract on SQLite and on a real PostgreSQL: one effect per saga step
//! whatever the redeliveries and retried attempts, stored replies, tombstones for compensations
//! that come first, nothing recorded for transient answers, one winner when attempts race
//! (actions, compensations, and actions against compensations, held open in their transactions
//! so they overlap), and a serving loop that dead-letters poison and goes on.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use saga_core::participant::{
    serve, CommandHandler, CommitStats, Disposition, Handled, ParticipantError, COMPENSATED_FIRST,
};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Correlation, Outcome, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use serde_json::json;

struct Fixture {
    db: ParticipantDb,
    handler: Arc<dyn CommandHandler>,
    /// What `handler`'s group commit has done.
    stats: Box<dyn Fn() -> CommitStats + Send + Sync>,
    /// `handler` and two more instances of the participant on the same database, as several
    /// worker processes would be: racers take turns among them, so races are between
    /// transactions, not only inside one instance's group commit.
    instances: Vec<Arc<dyn CommandHandler>>,
    pending: Arc<Mutex<HashMap<MessageId, Behavior>>>,
}

impl Fixture {
    async fn new(db: ParticipantDb) -> Self {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let (handler, stats) = db.handler_with_stats(pending.clone()).await;
        let instances = vec![handler.clone(), db.handler(pending.clone()).await, db.handler(pending.clone()).await];
        Self { db, handler, stats, instances, pending }
    }

    /// The instance the `i`th racer uses.
    fn instance(&self, i: usize) -> Arc<dyn CommandHandler> {
        self.instances[i % self.instances.len()].clone()
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
            let handler = f.instance(attempt as usize);
            let cmd = f.command(saga, StepKind::Action, attempt, Behavior::Succeed);
            tasks.push(tokio::spawn(async move { handler.handle(&cmd).await }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().expect("every racer gets an answer").reply.outcome);
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "every attempt got the same reply: {outcomes:?}");
        assert_eq!(f.effects(saga, "action").await, 1);
    }
}

/// Handles `first`, then, while its transaction is open, `rest` all at once: they queue behind
/// it and are handled together. Returns the answers of `rest`, in order.
async fn behind_a_slow_command(f: &Arc<Fixture>, first: Command, rest: Vec<Command>) -> Vec<Handled> {
    let slow = {
        let f = f.clone();
        tokio::spawn(async move { f.handler.handle(&first).await })
    };
    // The slow command holds its transaction for SLOW_HANDLER; the others arrive meanwhile.
    tokio::time::sleep(SLOW_HANDLER / 5).await;
    let tasks: Vec<_> = rest
        .into_iter()
        .map(|cmd| {
            let f = f.clone();
            tokio::spawn(async move { f.handler.handle(&cmd).await })
        })
        .collect();
    assert_eq!(slow.await.unwrap().unwrap().disposition, Disposition::Applied);
    let mut handled = Vec::new();
    for task in tasks {
        handled.push(task.await.unwrap().expect("every command gets an answer"));
    }
    handled
}

async fn commands_handled_together_share_a_commit_and_keep_their_own_answers(f: Fixture) {
    let f = Arc::new(f);
    let sagas: Vec<SagaId> = (0..8).map(|_| SagaId::new()).collect();
    let first = f.command(SagaId::new(), StepKind::Action, 1, Behavior::Slow);
    let mut rest: Vec<Command> = sagas.iter().map(|s| f.command(*s, StepKind::Action, 1, Behavior::Succeed)).collect();
    // A redelivery of a command in the same batch, a refusal, and a compensation before its action.
    rest.push(rest[0].clone());
    let refused = SagaId::new();
    rest.push(f.command(refused, StepKind::Action, 1, Behavior::Refuse));
    let tombstoned = SagaId::new();
    rest.push(f.command(tombstoned, StepKind::Compensation, 1, Behavior::Succeed));
    let before = (f.stats)();
    let handled = behind_a_slow_command(&f, first, rest).await;
    let stats = (f.stats)();
    let (writes, batches) = (stats.writes - before.writes, stats.batches - before.batches);
    assert_eq!(writes, 12);
    assert!(batches <= 3, "twelve commands arriving together took {batches} transactions");

    for (i, (h, saga)) in handled.iter().zip(&sagas).enumerate() {
        // The first and its redelivery race to the queue: either may be the one applied.
        if i > 0 {
            assert_eq!(h.disposition, Disposition::Applied);
        }
        assert_eq!(h.reply.correlation.saga_id, *saga, "each command gets its own answer");
        assert_eq!(f.effects(*saga, "action").await, 1);
    }
    let mut twins = [handled[0].disposition, handled[8].disposition];
    twins.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(twins, [Disposition::Applied, Disposition::DuplicateMessage], "one applied, its twin answered");
    assert_eq!(handled[8].reply, handled[0].reply);
    assert!(matches!(handled[9].reply.outcome, Outcome::BusinessFailure { .. }));
    assert_eq!(handled[10].disposition, Disposition::Tombstoned);
    assert_eq!(f.db.step_status(refused, "uno").await.as_deref(), Some("refused"));
    assert_eq!(f.db.step_status(tombstoned, "uno").await.as_deref(), Some("tombstone"));
}

async fn a_transient_answer_in_a_shared_transaction_keeps_nothing_of_its_own_and_spoils_no_other(f: Fixture) {
    let f = Arc::new(f);
    let sagas: Vec<SagaId> = (0..6).map(|_| SagaId::new()).collect();
    let first = f.command(SagaId::new(), StepKind::Action, 1, Behavior::Slow);
    let mut rest: Vec<Command> = sagas.iter().map(|s| f.command(*s, StepKind::Action, 1, Behavior::Succeed)).collect();
    let transient = SagaId::new();
    rest.insert(3, f.command(transient, StepKind::Action, 1, Behavior::TransientAfterWriting));
    let handled = behind_a_slow_command(&f, first, rest).await;

    assert_eq!(handled[3].disposition, Disposition::NotRecorded);
    assert!(matches!(handled[3].reply.outcome, Outcome::Transient { .. }));
    assert_eq!(f.effects(transient, "action").await, 0, "a transient answer's writes are rolled back");
    assert_eq!(f.db.step_status(transient, "uno").await, None);
    let others: Vec<_> = handled.iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, h)| h).collect();
    for (h, saga) in others.iter().zip(&sagas) {
        assert_eq!(h.disposition, Disposition::Applied, "{h:?}");
        assert_eq!(f.effects(*saga, "action").await, 1, "each effect once, after the batch was handled again");
    }
    // Nothing was recorded for it, so its next attempt runs.
    let next = f.handler.handle(&f.command(transient, StepKind::Action, 2, Behavior::Succeed)).await.unwrap();
    assert_eq!(next.disposition, Disposition::Applied);
    assert_eq!(f.effects(transient, "action").await, 1);
}

/// Handles `commands` all at once, each in its own task, released together by a barrier; each
/// waits its delay after the barrier first (to choose who is likely to read the step's record
/// first). Returns the answers in the order of `commands`.
async fn race(f: &Arc<Fixture>, commands: Vec<(Command, Duration)>) -> Vec<Handled> {
    let barrier = Arc::new(tokio::sync::Barrier::new(commands.len()));
    let tasks: Vec<_> = commands
        .into_iter()
        .enumerate()
        .map(|(i, (cmd, delay))| {
            let (handler, barrier) = (f.instance(i), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                tokio::time::sleep(delay).await;
                handler.handle(&cmd).await
            })
        })
        .collect();
    let mut handled = Vec::new();
    for task in tasks {
        handled.push(task.await.unwrap().expect("every racer gets an answer"));
    }
    handled
}

fn is_refused_late(outcome: &Outcome) -> bool {
    matches!(outcome, Outcome::BusinessFailure { code, .. } if code == COMPENSATED_FIRST)
}

async fn racing_compensations_of_an_applied_step_compensate_it_once(f: Fixture) {
    let f = Arc::new(f);
    for _ in 0..3 {
        let saga = SagaId::new();
        let action = f.handler.handle(&f.command(saga, StepKind::Action, 1, Behavior::Succeed)).await.unwrap();
        assert_eq!(action.disposition, Disposition::Applied);
        let compensations =
            (1..=6).map(|attempt| (f.command(saga, StepKind::Compensation, attempt, Behavior::Slow), Duration::ZERO));
        let handled = race(&f, compensations.collect()).await;
        assert_eq!(f.effects(saga, "compensation").await, 1, "one compensation effect for six racing attempts");
        for h in &handled {
            assert!(matches!(h.reply.outcome, Outcome::Success { .. }), "every attempt succeeds: {h:?}");
        }
        let applied = handled.iter().filter(|h| h.disposition == Disposition::Applied).count();
        assert_eq!(applied, 1, "one attempt ran the compensation, the others got its answer: {handled:?}");
        assert_eq!(f.db.step_status(saga, "uno").await.as_deref(), Some("compensated"));
        assert_eq!(f.effects(saga, "action").await, 1);
    }
}

/// The step records racing actions can start from: none, or one without a stored action reply
/// (which the decision table answers by running the action).
const STARTS: [Option<&str>; 3] = [None, Some("applied"), Some("refused")];

async fn racing_actions_of_one_step_apply_it_once_and_agree(f: Fixture) {
    let f = Arc::new(f);
    for start in STARTS {
        let saga = SagaId::new();
        if let Some(status) = start {
            f.db.seed_step(saga, "uno", status).await;
        }
        let actions =
            (1..=6).map(|attempt| (f.command(saga, StepKind::Action, attempt, Behavior::Slow), Duration::ZERO));
        let handled = race(&f, actions.collect()).await;
        assert_eq!(f.effects(saga, "action").await, 1, "one action effect for six racing attempts, from {start:?}");
        let outcomes: Vec<_> = handled.iter().map(|h| &h.reply.outcome).collect();
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "every attempt got the same reply: {outcomes:?}");
        assert!(matches!(outcomes[0], Outcome::Success { .. }), "{outcomes:?}");
        // The reply is stored now: a seventh attempt gets it and applies nothing.
        let later = f.handler.handle(&f.command(saga, StepKind::Action, 7, Behavior::Succeed)).await.unwrap();
        assert_eq!(later.disposition, Disposition::DuplicateStep, "from {start:?}");
        assert_eq!(&later.reply.outcome, outcomes[0]);
        assert_eq!(f.effects(saga, "action").await, 1, "from {start:?}");
    }
}

async fn racing_actions_and_compensations_of_one_step_end_as_the_tombstone_rule_says(f: Fixture) {
    let f = Arc::new(f);
    let mut ends = HashMap::new();
    for start in STARTS {
        for round in 0..4u64 {
            let saga = SagaId::new();
            if let Some(status) = start {
                f.db.seed_step(saga, "uno", status).await;
            }
            // Actions arrive 20 ms apart; the compensations likewise, starting later each round:
            // with the action's handler holding its transaction for SLOW_HANDLER (50 ms), the
            // first rounds have a compensation read the step before any action commits (a
            // tombstone), the last has them all read it after (a compensation), and one is on
            // the edge. The assertions hold for either end.
            let mut commands = Vec::new();
            for i in 0..4u32 {
                let action_delay = Duration::from_millis(20 * u64::from(i));
                let compensation_delay = Duration::from_millis(25 * round + 20 * u64::from(i));
                commands.push((f.command(saga, StepKind::Action, i + 1, Behavior::Slow), action_delay));
                commands.push((f.command(saga, StepKind::Compensation, i + 1, Behavior::Slow), compensation_delay));
            }
            let kinds: Vec<StepKind> = commands.iter().map(|(c, _)| c.correlation.kind).collect();
            let handled = race(&f, commands).await;
            let (actions, compensations): (Vec<_>, Vec<_>) =
                kinds.iter().zip(&handled).partition(|(k, _)| **k == StepKind::Action);
            let actions: Vec<_> = actions.into_iter().map(|(_, h)| h).collect();
            let compensations: Vec<_> = compensations.into_iter().map(|(_, h)| h).collect();
            let answers: Vec<String> = handled
                .iter()
                .map(|h| {
                    let c = &h.reply.correlation;
                    format!("{} {}: {:?} {}", c.kind, c.attempt, h.disposition, h.reply.outcome.label())
                })
                .collect();
            let context = format!("from {start:?}, round {round}: {answers:?}");

            for c in &compensations {
                assert!(matches!(c.reply.outcome, Outcome::Success { .. }), "every compensation succeeds, {context}");
            }
            let action_effects = f.effects(saga, "action").await;
            let compensation_effects = f.effects(saga, "compensation").await;
            assert!(action_effects <= 1, "{action_effects} action effects, {context}");
            assert!(compensation_effects <= 1, "{compensation_effects} compensation effects, {context}");
            // The compensations answered success, so nothing may be left applied.
            let status = f.db.step_status(saga, "uno").await;
            assert!(
                matches!(status.as_deref(), Some("compensated" | "tombstone")),
                "step left {status:?} after its compensation succeeded, {context}"
            );
            match start {
                // A seeded "applied" was an effect before the race: it is undone whatever wins.
                Some("applied") => assert_eq!(compensation_effects, 1, "{context}"),
                _ => assert_eq!(compensation_effects, action_effects, "each action effect undone once, {context}"),
            }
            if action_effects == 0 {
                for a in &actions {
                    assert!(is_refused_late(&a.reply.outcome), "no effect, so every action is refused, {context}");
                }
                if start.is_none() {
                    assert_eq!(status.as_deref(), Some("tombstone"), "{context}");
                }
            } else {
                let applied: Vec<_> = actions.iter().filter(|a| a.disposition == Disposition::Applied).collect();
                assert_eq!(applied.len(), 1, "one action ran, {context}");
                for a in &actions {
                    assert!(
                        a.reply.outcome == applied[0].reply.outcome || is_refused_late(&a.reply.outcome),
                        "an action gets the applied reply or a late refusal, {context}"
                    );
                }
                assert_eq!(status.as_deref(), Some("compensated"), "{context}");
            }
            // Whatever came first, the step is closed: one more of each changes nothing.
            let late = f.handler.handle(&f.command(saga, StepKind::Action, 9, Behavior::Succeed)).await.unwrap();
            assert!(is_refused_late(&late.reply.outcome), "{context}");
            let again = f.handler.handle(&f.command(saga, StepKind::Compensation, 9, Behavior::Succeed)).await.unwrap();
            assert_eq!(again.disposition, Disposition::DuplicateStep, "{context}");
            assert_eq!(f.effects(saga, "action").await, action_effects);
            assert_eq!(f.effects(saga, "compensation").await, compensation_effects);
            *ends.entry((start, action_effects)).or_insert(0) += 1;
        }
    }
    eprintln!("ends (start, action effects) -> rounds: {ends:?}");
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
            async fn commands_handled_together_share_a_commit_and_keep_their_own_answers() {
                super::commands_handled_together_share_a_commit_and_keep_their_own_answers(Fixture::new($make).await)
                    .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_transient_answer_in_a_shared_transaction_keeps_nothing_of_its_own_and_spoils_no_other() {
                super::a_transient_answer_in_a_shared_transaction_keeps_nothing_of_its_own_and_spoils_no_other(
                    Fixture::new($make).await,
                )
                .await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_attempts_of_one_step_apply_it_once() {
                super::racing_attempts_of_one_step_apply_it_once(Fixture::new($make).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_compensations_of_an_applied_step_compensate_it_once() {
                super::racing_compensations_of_an_applied_step_compensate_it_once(Fixture::new($make).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_actions_of_one_step_apply_it_once_and_agree() {
                super::racing_actions_of_one_step_apply_it_once_and_agree(Fixture::new($make).await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_actions_and_compensations_of_one_step_end_as_the_tombstone_rule_says() {
                super::racing_actions_and_compensations_of_one_step_end_as_the_tombstone_rule_says(
                    Fixture::new($make).await,
                )
                .await
            }
        }
    };
}

async fn sqlite_file() -> ParticipantDb {
    // A file with several connections, not memory: racing needs them on one database.
    let pool = saga_core::log::sql::sqlite_pool_with(&fresh_sqlite_url(), 4).await.expect("sqlite");
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

/// A transport whose codec cannot encode the replies of attempt 9 (a reply that does not fit its
/// topic's schema, say): everything else goes through the in-process transport.
struct CannotEncodeAttempt9 {
    inner: InProcessTransport,
    refused: std::sync::atomic::AtomicU32,
}

#[async_trait::async_trait]
impl Transport for CannotEncodeAttempt9 {
    async fn send_command(&self, command: &Command) -> Result<(), saga_core::transport::TransportError> {
        self.inner.send_command(command).await
    }
    async fn send_reply(
        &self,
        reply_to: &str,
        reply: &saga_core::Reply,
    ) -> Result<(), saga_core::transport::TransportError> {
        if reply.correlation.attempt == 9 {
            self.refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(saga_core::transport::TransportError::Codec("the reply does not fit its schema".into()));
        }
        self.inner.send_reply(reply_to, reply).await
    }
    async fn commands(
        &self,
        participant: &str,
    ) -> Result<Box<dyn saga_core::transport::Receiver<Command>>, saga_core::transport::TransportError> {
        self.inner.commands(participant).await
    }
    async fn replies(
        &self,
        address: &str,
    ) -> Result<Box<dyn saga_core::transport::Receiver<saga_core::Reply>>, saga_core::transport::TransportError> {
        self.inner.replies(address).await
    }
}

/// A reply that can never be encoded: the command (whose effect is committed) is dead-lettered
/// with the codec's reason instead of being redelivered for ever, and the loop keeps serving.
#[tokio::test]
async fn a_reply_that_cannot_be_encoded_dead_letters_its_command_and_keeps_serving() {
    let f = Fixture::new(sqlite_file().await).await;
    let inner = InProcessTransport::new();
    let transport = Arc::new(CannotEncodeAttempt9 { inner: inner.clone(), refused: 0.into() });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(f.handler.clone(), transport.clone(), participant_of("uno"), async {
        let _ = stop_rx.await;
    }));
    let mut replies = inner.replies(REPLY_TO).await.unwrap();
    let stuck_saga = SagaId::new();
    let unencodable = f.command(stuck_saga, StepKind::Action, 9, Behavior::Succeed);
    let good_saga = SagaId::new();
    let good = f.command(good_saga, StepKind::Action, 1, Behavior::Succeed);
    inner.send_command(&unencodable).await.unwrap();
    inner.send_command(&good).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.recv()).await.expect("a reply").unwrap();
    assert_eq!(reply.message.correlation, good.correlation, "the next command is served");
    reply.ack().await.unwrap();
    let dead = dead_letters(&inner, 1).await;
    assert_eq!(dead[0].message.correlation, unencodable.correlation);
    assert!(dead[0].reason.contains("does not fit its schema"), "{}", dead[0].reason);
    assert_eq!(f.effects(stuck_saga, "action").await, 1, "the effect was committed once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(transport.refused.load(std::sync::atomic::Ordering::SeqCst), 1, "not redelivered in a loop");
    assert_eq!(inner.pending_commands(&participant_of("uno")), 0, "nothing left to redeliver");
    assert!(!server.is_finished(), "the loop keeps serving");
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
