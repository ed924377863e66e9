//! The engine's saga tests: a failure injected at each step in turn unwinds exactly
//! the steps before it, in reverse order; every command repeated changes nothing; a crash after
//! every log write, and a log cut after every entry, still end in the same state; duplicate,
//! stale and reordered replies are recorded and ignored; operators retry and abort stuck sagas.
//!
//! The log here is the in-memory store (the SQL stores pass the same contract in
//! `store_conformance.rs`); participants are the real participant module over SQLite.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use common::*;
use saga_core::engine::{Engine, EngineConfig};
use saga_core::inject::FaultPlan;
use saga_core::log::memory::MemoryStore;
use saga_core::log::{Created, ListQuery, SagaStore, SagaSummary, StoreError, StoreStats};
use saga_core::saga::PhaseStatus;
use saga_core::transport::Transport;
use saga_core::{EngineError, ReplyDisposition, SagaEvent, SagaId, SagaState, SagaStatus, StepKind};

async fn world(script: Script, faults: FaultPlan) -> World {
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, script).await);
    World::new(Arc::new(MemoryStore::new()), participants, faults).await
}

async fn run(world: &mut World) -> (SagaId, SagaState) {
    let id = SagaId::new();
    world.engine.start(SAGA, id, params()).await.expect("start");
    let state = world.pump(id).await.expect("pump");
    (id, state)
}

fn count(effects: &std::collections::HashMap<(String, String), i64>, step: &str, kind: &str) -> i64 {
    effects.get(&(step.to_owned(), kind.to_owned())).copied().unwrap_or(0)
}

/// Checks that the stored state is exactly the fold of the stored log.
async fn assert_state_is_fold_of_log(store: &dyn SagaStore, id: SagaId) {
    let history = store.history(id).await.expect("history");
    let state = store.load(id).await.expect("load").expect("exists");
    assert_eq!(SagaState::replay(id, &history).expect("replay"), state, "state row differs from the fold of the log");
}

#[tokio::test]
async fn all_steps_succeed_and_the_saga_completes() {
    let mut w = world(Script::default(), FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Completed);
    let effects = w.participants.db.effects(id).await;
    for step in STEPS {
        assert_eq!(count(&effects, step, "action"), 1, "{step} applied once");
        assert_eq!(count(&effects, step, "compensation"), 0, "{step} never compensated");
    }
    let history = w.store.history(id).await.unwrap();
    assert_eq!(
        sent(&history),
        STEPS.iter().map(|s| (s.to_string(), StepKind::Action)).collect::<Vec<_>>(),
        "actions in order, none compensated"
    );
    assert_eq!(state.outputs.len(), 3, "every output recorded");
    assert_state_is_fold_of_log(w.store.as_ref(), id).await;
}

#[tokio::test]
async fn an_injected_failure_at_each_step_compensates_exactly_the_steps_before_it_in_reverse() {
    for (i, failing) in STEPS.iter().enumerate() {
        let mut w = world(Script::default(), FaultPlan::none().fail_action(*failing)).await;
        let (id, state) = run(&mut w).await;
        assert_eq!(state.status, SagaStatus::Compensated, "failure at {failing}");
        let history = w.store.history(id).await.unwrap();
        let expected: Vec<String> = STEPS[..i].iter().rev().map(|s| s.to_string()).collect();
        assert_eq!(compensations(&history), expected, "failure at {failing}");
        let effects = w.participants.db.effects(id).await;
        for (j, step) in STEPS.iter().enumerate() {
            let applied = i64::from(j < i);
            assert_eq!(count(&effects, step, "action"), applied, "{step} action, failure at {failing}");
            assert_eq!(count(&effects, step, "compensation"), applied, "{step} compensation, failure at {failing}");
        }
        let failure = state.failure.expect("failure recorded");
        assert_eq!(failure.step.as_deref(), Some(*failing));
        assert_eq!(failure.code, saga_core::inject::INJECTED_CODE);
        assert_state_is_fold_of_log(w.store.as_ref(), id).await;
    }
}

#[tokio::test]
async fn a_business_refusal_by_the_participant_at_each_step_unwinds_the_same_way() {
    for (i, failing) in STEPS.iter().enumerate() {
        let script = Script::default().on(failing, StepKind::Action, &[Behavior::Refuse]);
        let mut w = world(script, FaultPlan::none()).await;
        let (id, state) = run(&mut w).await;
        assert_eq!(state.status, SagaStatus::Compensated);
        let expected: Vec<String> = STEPS[..i].iter().rev().map(|s| s.to_string()).collect();
        assert_eq!(compensations(&w.store.history(id).await.unwrap()), expected);
        assert_eq!(state.failure.expect("failure").code, "rechazado");
    }
}

#[tokio::test]
async fn every_command_delivered_twice_changes_nothing() {
    // Without a failure, and with a failure at each step: same outcome, effects once.
    let scenarios: Vec<Option<&str>> = vec![None, Some("uno"), Some("dos"), Some("tres")];
    for failing in scenarios {
        let faults = match failing {
            Some(step) => FaultPlan::none().fail_action(step),
            None => FaultPlan::none(),
        };
        let mut plain = world(Script::default(), faults.clone()).await;
        let (plain_id, plain_state) = run(&mut plain).await;
        let mut doubled = world(Script::default(), faults.duplicate_commands()).await;
        let (id, state) = run(&mut doubled).await;
        assert_eq!(state.status, plain_state.status, "failure at {failing:?}");
        assert_eq!(
            compensations(&doubled.store.history(id).await.unwrap()),
            compensations(&plain.store.history(plain_id).await.unwrap())
        );
        assert_eq!(doubled.participants.db.effects(id).await, plain.participants.db.effects(plain_id).await);
        let ignored = doubled
            .store
            .history(id)
            .await
            .unwrap()
            .iter()
            .filter(|e| matches!(e.event, SagaEvent::ReplyIgnored { .. }))
            .count();
        if failing != Some("uno") {
            // (With `uno` failing, nothing is ever sent, so nothing is duplicated.)
            assert!(ignored > 0, "the duplicate replies were recorded as ignored");
        }
    }
}

#[tokio::test]
async fn a_retried_attempt_of_an_applied_step_gets_the_stored_reply() {
    // The reply of `dos` is lost: the engine times out and sends attempt 2 with a new message
    // id; the participant answers from its records and applies nothing twice.
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseReply]);
    let mut w = world(script, FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Completed);
    assert_eq!(state.steps[1].action.attempts, 2);
    assert_eq!(count(&w.participants.db.effects(id).await, "dos", "action"), 1);
    let history = w.store.history(id).await.unwrap();
    assert!(history.iter().any(|e| matches!(e.event, SagaEvent::TimedOut { step: 1, attempt: 1, .. })));
}

#[tokio::test]
async fn stale_duplicate_and_reordered_replies_are_recorded_and_ignored() {
    let script = Script::default().on("uno", StepKind::Action, &[Behavior::DuplicateReply]).on(
        "dos",
        StepKind::Action,
        &[Behavior::LoseReply],
    );
    let mut w = world(script, FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Completed);
    let before = w.store.history(id).await.unwrap();

    // The reply of attempt 1 of `dos` arrives after attempt 2 answered and the saga finished.
    let late = w.participants.held.lock().unwrap().pop().expect("held reply");
    assert_eq!(late.correlation.attempt, 1);
    assert_eq!(w.engine.handle_reply(&late).await.unwrap(), ReplyDisposition::Ignored);
    let after = w.store.history(id).await.unwrap();
    assert_eq!(after.len(), before.len() + 1, "the stale reply is recorded");
    match &after.last().unwrap().event {
        SagaEvent::ReplyIgnored { correlation, why, .. } => {
            assert_eq!(correlation.attempt, 1);
            assert!(why.contains("completed"), "{why}");
        }
        other => panic!("expected reply_ignored, got {other:?}"),
    }
    assert_eq!(w.engine.get(id).await.unwrap().unwrap().status, SagaStatus::Completed);

    // The duplicate reply of `uno` was recorded while `dos` was in flight.
    let dup = before.iter().find_map(|e| match &e.event {
        SagaEvent::ReplyIgnored { correlation, why, .. } if correlation.step_name == "uno" => Some(why.clone()),
        _ => None,
    });
    assert!(dup.expect("duplicate recorded").contains("dos"));

    // A reply for a saga this log does not hold.
    let mut stray = late.clone();
    stray.correlation.saga_id = SagaId::new();
    assert_eq!(w.engine.handle_reply(&stray).await.unwrap(), ReplyDisposition::UnknownSaga);
}

#[tokio::test]
async fn a_reply_from_a_superseded_attempt_does_not_move_the_saga() {
    // Attempt 1 of `uno` times out; before attempt 2 is answered, attempt 1's (late) success
    // arrives: it must be ignored, and the saga must wait for attempt 2.
    let script = Script::default().on("uno", StepKind::Action, &[Behavior::LoseReply, Behavior::LoseReply]);
    let mut w = world(script, FaultPlan::none()).await;
    let id = SagaId::new();
    w.engine.start(SAGA, id, params()).await.unwrap();
    // Deliver attempt 1, fire its timeout and the retry: attempt 2 goes out, its reply is lost too.
    w.pump_until(id, |s| s.steps[0].action.attempts == 2 && !s.in_flight.is_empty() && s.version > 4).await.unwrap();
    let state = w.engine.get(id).await.unwrap().unwrap();
    let in_flight = state.in_flight.first().cloned().expect("attempt in flight");
    assert!(in_flight.command.correlation.attempt >= 2, "a retry is in flight");
    let first = w.participants.held.lock().unwrap().first().cloned().expect("attempt 1 reply held");
    assert_eq!(first.correlation.attempt, 1);
    assert_eq!(w.engine.handle_reply(&first).await.unwrap(), ReplyDisposition::Ignored);
    let after = w.engine.get(id).await.unwrap().unwrap();
    assert_eq!(after.in_flight, state.in_flight, "still waiting for the attempt in flight");
    assert_eq!(after.steps[0].action.status, PhaseStatus::InProgress);
}

#[tokio::test]
async fn transient_answers_are_retried_with_backoff_then_succeed() {
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::Transient, Behavior::Transient]);
    let mut w = world(script, FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Completed);
    assert_eq!(state.steps[1].action.attempts, 3);
    let history = w.store.history(id).await.unwrap();
    let retries: Vec<_> = history
        .iter()
        .filter_map(|e| match &e.event {
            SagaEvent::RetryScheduled { attempt, at, .. } => Some((*attempt, *at - e.at)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 2);
    // 100 ms then 200 ms, each with up to half jitter taken off.
    let (a2, d2) = retries[0];
    let (a3, d3) = retries[1];
    assert_eq!((a2, a3), (2, 3));
    assert!(d2 >= chrono::Duration::milliseconds(50) && d2 <= chrono::Duration::milliseconds(100), "{d2}");
    assert!(d3 >= chrono::Duration::milliseconds(100) && d3 <= chrono::Duration::milliseconds(200), "{d3}");
    assert_eq!(count(&w.participants.db.effects(id).await, "dos", "action"), 1);
}

#[tokio::test]
async fn a_step_that_never_answers_times_out_and_is_compensated_as_possibly_run() {
    let lost = [Behavior::LoseCommand; 3];
    let script = Script::default().on("dos", StepKind::Action, &lost);
    let mut w = world(script, FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(state.steps[1].action.status, PhaseStatus::GaveUp);
    assert_eq!(state.failure.as_ref().unwrap().code, "gave_up");
    let history = w.store.history(id).await.unwrap();
    let timeouts = history.iter().filter(|e| matches!(e.event, SagaEvent::TimedOut { step: 1, .. })).count();
    assert_eq!(timeouts, 3);
    // `dos` may have run, so it is compensated first; then `uno`. `tres` never ran.
    assert_eq!(compensations(&history), vec!["dos".to_owned(), "uno".to_owned()]);
    let effects = w.participants.db.effects(id).await;
    // The participant never saw `dos`'s action: its compensation leaves a tombstone, no effect.
    assert_eq!(count(&effects, "dos", "action"), 0);
    assert_eq!(count(&effects, "dos", "compensation"), 0);
    assert_eq!(count(&effects, "uno", "compensation"), 1);
}

#[tokio::test]
async fn a_late_action_after_its_compensation_is_refused() {
    // `dos`'s command is delayed (held) past its timeouts; the saga compensates; then the old
    // command arrives at the participant: the tombstone refuses it, nothing is applied.
    let lost = [Behavior::LoseCommand; 3];
    let mut w = world(Script::default().on("dos", StepKind::Action, &lost), FaultPlan::none()).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Compensated);
    let history = w.store.history(id).await.unwrap();
    let late = history
        .iter()
        .find_map(|e| match &e.event {
            SagaEvent::CommandSent { command, .. } if command.correlation.step_name == "dos" => Some(command.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(late.correlation.kind, StepKind::Action);
    w.transport.send_command(&late).await.unwrap();
    // `pump` would return at once (the saga rests) and leave the command queued: deliver it.
    let replies = w.deliver_queued_commands().await;
    assert_eq!(replies.len(), 1, "the late command was handled: {replies:?}");
    let reply = &replies[0];
    assert_eq!(reply.correlation, late.correlation);
    match &reply.outcome {
        saga_core::transport::Outcome::BusinessFailure { code, .. } => {
            assert_eq!(code, saga_core::participant::COMPENSATED_FIRST)
        }
        other => panic!("the late action must be refused, got {other:?}"),
    }
    assert_eq!(count(&w.participants.db.effects(id).await, "dos", "action"), 0, "late action refused");
    // Its refusal reaches an engine that is done with the saga: recorded, and nothing moves.
    assert_eq!(w.engine.handle_reply(reply).await.unwrap(), ReplyDisposition::Ignored);
    assert_eq!(w.engine.get(id).await.unwrap().unwrap().status, SagaStatus::Compensated);
}

#[tokio::test]
async fn a_compensation_that_keeps_failing_makes_the_saga_stuck_until_an_operator_retries() {
    let faults = FaultPlan::none().fail_action("tres").fail_compensation("uno");
    let mut w = world(Script::default(), faults).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Stuck);
    assert!(state.stuck_reason.as_deref().unwrap().contains("uno"));
    assert_eq!(compensations(&w.store.history(id).await.unwrap()), vec!["dos".to_owned(), "uno".to_owned()]);

    // Retry refused while the fault persists? No: the operator fixes the cause (restart without
    // the fault), then retries.
    w.restart(FaultPlan::none());
    let err = w.engine.abort(SagaId::new(), "nope").await.unwrap_err();
    assert!(matches!(err, EngineError::NotFound(_)));
    let state = w.engine.retry(id, "participant fixed").await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensating);
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensated);
    let history = w.store.history(id).await.unwrap();
    assert!(history
        .iter()
        .any(|e| matches!(&e.event, SagaEvent::OperatorRetried { note } if note == "participant fixed")));
    let effects = w.participants.db.effects(id).await;
    assert_eq!(count(&effects, "uno", "compensation"), 1);
    assert_eq!(count(&effects, "dos", "compensation"), 1);
    // Nothing left to retry.
    assert!(matches!(w.engine.retry(id, "again").await, Err(EngineError::InvalidState { .. })));
}

#[tokio::test]
async fn an_operator_abandons_a_stuck_saga() {
    let mut w = world(Script::default(), FaultPlan::none().fail_action("dos").fail_compensation("uno")).await;
    let (id, state) = run(&mut w).await;
    assert_eq!(state.status, SagaStatus::Stuck);
    let state = w.engine.abort(id, "fixed by hand in marca").await.unwrap();
    assert_eq!(state.status, SagaStatus::Aborted);
    let history = w.store.history(id).await.unwrap();
    let tail: Vec<&str> = history.iter().rev().take(2).map(|e| e.event.name()).collect();
    assert_eq!(tail, vec!["aborted", "operator_aborted"]);
    assert!(matches!(w.engine.abort(id, "again").await, Err(EngineError::InvalidState { .. })));
}

#[tokio::test]
async fn an_operator_aborts_a_running_saga_and_what_may_have_run_is_compensated() {
    // `dos`'s command is lost, so the saga waits on it; the operator aborts.
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseCommand]);
    let mut w = world(script, FaultPlan::none()).await;
    let id = SagaId::new();
    w.engine.start(SAGA, id, params()).await.unwrap();
    // Deliver `uno` and its reply; stop while `dos` is in flight, before its deadline.
    w.pump_until(id, |s| s.in_flight_for("dos").is_some()).await.unwrap();
    let state = w.engine.abort(id, "customer cancelled").await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensating);
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(state.failure.as_ref().unwrap().code, "aborted");
    assert_eq!(compensations(&w.store.history(id).await.unwrap()), vec!["dos".to_owned(), "uno".to_owned()]);
}

#[tokio::test]
async fn start_is_idempotent_on_the_saga_id() {
    let mut w = world(Script::default(), FaultPlan::none()).await;
    let id = SagaId::new();
    let first = w.engine.start(SAGA, id, params()).await.unwrap();
    assert!(first.created);
    let second = w.engine.start(SAGA, id, params()).await.unwrap();
    assert!(!second.created);
    assert_eq!(second.state.id, id);
    w.pump(id).await.unwrap();
    assert_eq!(count(&w.participants.db.effects(id).await, "uno", "action"), 1);
    let other = w.engine.start(SAGA, id, serde_json::json!({"otro": true})).await.unwrap_err();
    assert!(matches!(other, EngineError::IdReused(_)));
    assert!(matches!(w.engine.start("nope", SagaId::new(), params()).await, Err(EngineError::UnknownSagaType(_))));
}

/// The scenario the crash tests replay: a failure at `tres` after a lost reply at `dos`, so the
/// log holds actions, a timeout, a retry, a refusal and two compensations.
fn crash_scenario() -> (Script, FaultPlan) {
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseReply]).on(
        "tres",
        StepKind::Action,
        &[Behavior::Refuse],
    );
    (script, FaultPlan::none())
}

#[tokio::test]
async fn a_crash_after_every_log_write_still_reaches_the_same_end() {
    for saga in [SAGA, SAGA_PARALELA] {
        crash_after_every_write(saga).await;
    }
}

async fn crash_after_every_write(saga: &str) {
    let (script, faults) = crash_scenario();
    let mut reference = world(script, faults.clone()).await;
    let ref_id = SagaId::new();
    reference.engine.start(saga, ref_id, params()).await.expect("start");
    let ref_state = reference.pump(ref_id).await.expect("pump");
    let ref_effects = reference.participants.db.effects(ref_id).await;
    let writes = reference.store.history(ref_id).await.unwrap().len();
    assert_eq!(ref_state.status, SagaStatus::Compensated);

    for crash_after in 1..=writes as u64 {
        let (script, faults) = crash_scenario();
        let store = Arc::new(MemoryStore::new());
        store.fail_writes_after(crash_after);
        let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, script).await);
        let mut w = World::new(store.clone(), participants, faults).await;
        let id = SagaId::new();
        if w.engine.start(saga, id, params()).await.is_err() {
            continue; // crashed before the saga existed: nothing to recover
        }
        let lift_store = store.clone();
        let state = w.pump_through_crashes(id, move |_| lift_store.fail_writes_after(u64::MAX / 2)).await;
        assert_eq!(state.status, ref_state.status, "{saga}: crash after write {crash_after}");
        assert_eq!(
            w.participants.db.effects(id).await,
            ref_effects,
            "{saga}: effects, crash after write {crash_after}"
        );
        assert_reverse_dependency_order(&w.store.history(id).await.unwrap(), &definition_of(saga));
        assert_state_is_fold_of_log(w.store.as_ref(), id).await;
    }
}

#[tokio::test]
async fn a_log_cut_after_every_entry_recovers_to_the_same_end() {
    for saga in [SAGA, SAGA_PARALELA] {
        log_cut_after_every_entry(saga).await;
    }
}

async fn log_cut_after_every_entry(saga: &str) {
    let (script, faults) = crash_scenario();
    let mut reference = world(script, faults.clone()).await;
    let id = SagaId::new();
    reference.engine.start(saga, id, params()).await.expect("start");
    let ref_state = reference.pump(id).await.expect("pump");
    let history = reference.store.history(id).await.unwrap();
    let ref_effects = reference.participants.db.effects(id).await;

    for cut in 1..=history.len() {
        // The orchestrator's log is cut after `cut` entries, even inside one transaction's
        // entries. The participants did handle every command the prefix says was sent (the
        // crash-after-write test covers commands that never left), and their replies were lost
        // with the crash.
        let (script, _) = crash_scenario();
        let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, script).await);
        for entry in &history[..cut] {
            if let SagaEvent::CommandSent { command, .. } = &entry.event {
                participants.deliver(command).await;
            }
        }
        let store = Arc::new(MemoryStore::with_log(id, &history[..cut]).expect("prefix folds"));
        let mut w = World::new(store, participants, faults.clone()).await;
        w.engine.recover().await.expect("recover");
        let state = w.pump(id).await.expect("pump");
        assert_eq!(state.status, ref_state.status, "{saga}: cut after entry {cut}");
        assert_eq!(compensations(&w.store.history(id).await.unwrap()), compensations(&history), "{saga}: cut {cut}");
        assert_eq!(w.participants.db.effects(id).await, ref_effects, "{saga}: no effect repeated, cut {cut}");
        assert_state_is_fold_of_log(w.store.as_ref(), id).await;
    }
}

// ---- Parallel steps ----------------------------------------------------------------------------

async fn start_parallel(w: &mut World) -> SagaId {
    let id = SagaId::new();
    w.engine.start(SAGA_PARALELA, id, params()).await.expect("start");
    id
}

#[tokio::test]
async fn siblings_whose_dependency_succeeded_are_in_flight_together() {
    let mut w = world(Script::default(), FaultPlan::none()).await;
    let id = start_parallel(&mut w).await;
    let both = w.pump_until(id, |s| s.in_flight.len() == 2).await.unwrap();
    let names: Vec<&str> = both.in_flight.iter().map(|f| f.command.correlation.step_name.as_str()).collect();
    assert_eq!(names, ["dos", "tres"], "both siblings sent in the transition that accepted uno's reply");
    assert_eq!(both.steps[0].action.status, PhaseStatus::Succeeded);
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Completed);
    let effects = w.participants.db.effects(id).await;
    for step in STEPS {
        assert_eq!(count(&effects, step, "action"), 1, "{step} applied once");
    }
    assert_state_is_fold_of_log(w.store.as_ref(), id).await;
}

#[tokio::test]
async fn a_failure_injected_at_each_parallel_step_compensates_what_ran_siblings_included() {
    // uno fails: nothing ran. dos fails: tres was sent with it, so tres is waited for and
    // compensated, then uno. tres fails: the same with dos.
    let expected: [(&str, &[&str]); 3] = [("uno", &[]), ("dos", &["tres", "uno"]), ("tres", &["dos", "uno"])];
    for (failing, undone) in expected {
        let mut w = world(Script::default(), FaultPlan::none().fail_action(failing)).await;
        let id = start_parallel(&mut w).await;
        let state = w.pump(id).await.unwrap();
        assert_eq!(state.status, SagaStatus::Compensated, "failure at {failing}");
        let history = w.store.history(id).await.unwrap();
        assert_eq!(compensations(&history), undone, "failure at {failing}");
        assert_reverse_dependency_order(&history, &parallel_definition());
        let effects = w.participants.db.effects(id).await;
        for step in STEPS {
            let applied = i64::from(undone.contains(&step));
            assert_eq!(count(&effects, step, "action"), applied, "{step} action, failure at {failing}");
            assert_eq!(count(&effects, step, "compensation"), applied, "{step} compensation, failure at {failing}");
        }
        assert_state_is_fold_of_log(w.store.as_ref(), id).await;
    }
}

#[tokio::test]
async fn a_sibling_in_flight_is_waited_for_and_compensated_only_if_it_may_have_run() {
    // tres is refused while dos's reply is lost: dos may have run, so once it times out it is
    // compensated before uno. Then the same with dos refused too: nothing to undo for dos.
    let script = Script::default().on("tres", StepKind::Action, &[Behavior::Refuse]).on(
        "dos",
        StepKind::Action,
        &[Behavior::LoseReply],
    );
    let mut w = world(script, FaultPlan::none()).await;
    let id = start_parallel(&mut w).await;
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensated);
    let history = w.store.history(id).await.unwrap();
    assert_eq!(compensations(&history), ["dos", "uno"]);
    assert!(history.iter().any(|e| matches!(e.event, SagaEvent::TimedOut { step: 1, .. })), "dos waited for");
    assert!(
        !history.iter().any(|e| matches!(&e.event, SagaEvent::CommandSent { command, .. }
            if command.correlation.step_name == "dos" && command.correlation.attempt > 1 && command.correlation.kind == StepKind::Action)),
        "no action is retried once the saga compensates"
    );
    assert_reverse_dependency_order(&history, &parallel_definition());

    let script = Script::default().on("tres", StepKind::Action, &[Behavior::Refuse]).on(
        "dos",
        StepKind::Action,
        &[Behavior::Refuse],
    );
    let mut w = world(script, FaultPlan::none()).await;
    let id = start_parallel(&mut w).await;
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensated);
    assert_eq!(compensations(&w.store.history(id).await.unwrap()), ["uno"]);
}

#[tokio::test]
async fn recovery_resends_every_command_in_flight() {
    // Both siblings' commands are lost with the crash; the new engine resends both (same
    // message ids), and the saga completes with each effect once.
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseCommand]).on(
        "tres",
        StepKind::Action,
        &[Behavior::LoseCommand],
    );
    let mut w = world(script, FaultPlan::none()).await;
    let id = start_parallel(&mut w).await;
    let before = w.pump_until(id, |s| s.in_flight.len() == 2).await.unwrap();
    w.restart(FaultPlan::none());
    w.engine.recover().await.unwrap();
    let history = w.store.history(id).await.unwrap();
    let resent: Vec<_> = history
        .iter()
        .filter_map(|e| match &e.event {
            SagaEvent::CommandResent { message_id } => Some(*message_id),
            _ => None,
        })
        .collect();
    let in_flight: Vec<_> = before.in_flight.iter().map(|f| f.command.correlation.message_id).collect();
    assert_eq!(resent, in_flight, "each command in flight resent once, with its message id");
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Completed);
    let effects = w.participants.db.effects(id).await;
    for step in STEPS {
        assert_eq!(count(&effects, step, "action"), 1, "{step} applied once");
    }
}

#[tokio::test]
async fn an_operator_aborts_a_saga_with_siblings_in_flight() {
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseCommand]).on(
        "tres",
        StepKind::Action,
        &[Behavior::LoseReply],
    );
    let mut w = world(script, FaultPlan::none()).await;
    let id = start_parallel(&mut w).await;
    w.pump_until(id, |s| s.in_flight.len() == 2).await.unwrap();
    let state = w.engine.abort(id, "brand cancelled").await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensating);
    assert_eq!(state.in_flight.len(), 2, "the siblings' actions are waited for, not forgotten");
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Compensated);
    let history = w.store.history(id).await.unwrap();
    let undone = compensations(&history);
    assert_eq!(undone.last().map(String::as_str), Some("uno"));
    assert!(undone.contains(&"dos".to_owned()) && undone.contains(&"tres".to_owned()), "{undone:?}");
    assert_reverse_dependency_order(&history, &parallel_definition());
    let effects = w.participants.db.effects(id).await;
    assert_eq!(count(&effects, "tres", "action"), 1);
    assert_eq!(count(&effects, "tres", "compensation"), 1);
    assert_eq!(count(&effects, "dos", "action"), 0, "dos never arrived; its compensation left a tombstone");
}

#[tokio::test]
async fn a_saga_whose_definition_changed_under_its_version_is_stuck_and_the_others_go_on() {
    // A saga of `prueba` v1 is mid-way when a deployment registers a different `prueba` v1
    // (a step removed without a new version). Recovery must not index past the step list: the
    // saga is marked stuck with the reason, and a saga of another type still completes.
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::LoseCommand]);
    let mut w = world(script, FaultPlan::none()).await;
    let changed = SagaId::new();
    w.engine.start(SAGA, changed, params()).await.unwrap();
    w.pump_until(changed, |s| s.in_flight_for("dos").is_some()).await.unwrap();

    let mut registry = saga_core::Registry::new();
    let shorter = saga_core::SagaDefinition::new(SAGA, 1);
    let full = definition();
    let shorter = shorter.step(full.steps[0].clone()).step(full.steps[1].clone());
    registry.register(shorter).unwrap();
    registry.register(parallel_definition()).unwrap();
    w.restart_with(Arc::new(registry), FaultPlan::none());
    let other = SagaId::new();
    w.engine.start(SAGA_PARALELA, other, params()).await.unwrap();
    w.engine.recover().await.unwrap();

    let state = w.engine.get(changed).await.unwrap().unwrap();
    assert_eq!(state.status, SagaStatus::Stuck);
    let reason = state.stuck_reason.as_deref().unwrap();
    assert!(reason.contains("changed under the same version"), "{reason}");
    assert!(reason.contains("tres"), "the reason names the steps: {reason}");
    assert_eq!(w.pump(other).await.unwrap().status, SagaStatus::Completed);
    // Retrying cannot help while the definition differs; abandoning it is recorded.
    assert_eq!(w.engine.retry(changed, "try").await.unwrap().status, SagaStatus::Stuck);
    assert_eq!(w.engine.abort(changed, "repaired by hand").await.unwrap().status, SagaStatus::Aborted);
}

#[test]
fn a_graph_with_an_undeclared_dependency_is_refused() {
    let mut registry = saga_core::Registry::new();
    let def = saga_core::SagaDefinition::new("mal", 1)
        .step(definition().steps[1].clone().after("despues"))
        .step(definition().steps[0].clone());
    let err = registry.register(def).unwrap_err();
    assert!(err.to_string().contains("not declared before it"), "{err}");
}

/// A transport whose sends never return (a broker outage while its own retries go on).
struct SendsHang(saga_core::transport::in_process::InProcessTransport);

#[async_trait::async_trait]
impl Transport for SendsHang {
    async fn send_command(&self, _: &saga_core::Command) -> Result<(), saga_core::transport::TransportError> {
        std::future::pending().await
    }
    async fn send_reply(&self, _: &str, _: &saga_core::Reply) -> Result<(), saga_core::transport::TransportError> {
        std::future::pending().await
    }
    async fn commands(
        &self,
        participant: &str,
    ) -> Result<Box<dyn saga_core::transport::Receiver<saga_core::Command>>, saga_core::transport::TransportError> {
        self.0.commands(participant).await
    }
    async fn replies(
        &self,
        address: &str,
    ) -> Result<Box<dyn saga_core::transport::Receiver<saga_core::Reply>>, saga_core::transport::TransportError> {
        self.0.replies(address).await
    }
}

#[tokio::test]
async fn start_returns_once_the_saga_is_logged_even_if_the_transport_never_answers() {
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let transport = Arc::new(SendsHang(saga_core::transport::in_process::InProcessTransport::new()));
    // The default configuration: `start` does not wait on the transport.
    let engine = saga_core::Engine::builder(store.clone(), registry(), transport).build();
    let id = SagaId::new();
    let started = tokio::time::timeout(std::time::Duration::from_secs(5), engine.start(SAGA, id, params()))
        .await
        .expect("start answers without the transport")
        .unwrap();
    assert!(started.created);
    let state = store.load(id).await.unwrap().unwrap();
    assert_eq!(state.in_flight.len(), 1, "the first command is logged as sent: its timeout is the safety net");
    assert!(state.wake_at().is_some());
}

/// The in-memory log, counting its `load`s: how often the engine read a saga's state.
struct CountingLoads {
    inner: MemoryStore,
    loads: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl SagaStore for CountingLoads {
    async fn create(&self, state: &SagaState, entries: &[saga_core::LogEntry]) -> Result<Created, StoreError> {
        self.inner.create(state, entries).await
    }
    async fn append(
        &self,
        expected: i64,
        state: &SagaState,
        entries: &[saga_core::LogEntry],
    ) -> Result<(), StoreError> {
        self.inner.append(expected, state, entries).await
    }
    async fn defer(&self, id: SagaId, until: DateTime<Utc>, error: &str) -> Result<u32, StoreError> {
        self.inner.defer(id, until, error).await
    }
    async fn count_ignored_reply(&self, id: SagaId) -> Result<(), StoreError> {
        self.inner.count_ignored_reply(id).await
    }
    async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, StoreError> {
        self.inner.summary(id).await
    }
    async fn load(&self, id: SagaId) -> Result<Option<SagaState>, StoreError> {
        self.loads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.load(id).await
    }
    async fn history(&self, id: SagaId) -> Result<Vec<saga_core::LogEntry>, StoreError> {
        self.inner.history(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaSummary>, StoreError> {
        self.inner.list(query).await
    }
    async fn active(&self, after: Option<SagaId>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        self.inner.active(after, limit).await
    }
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        self.inner.due(now, limit).await
    }
    async fn stats(&self) -> Result<StoreStats, StoreError> {
        self.inner.stats().await
    }
}

/// A reply's transition starts from the state the engine wrote last, not from a read of the
/// log: the same saga, run with the kept states turned off and then on, costs one read fewer
/// per reply applied (three steps, one reply each), and ends the same.
#[tokio::test]
async fn a_reply_starts_from_the_state_this_engine_wrote() {
    let mut reads = Vec::new();
    for written_states in [0, 10] {
        let store = Arc::new(CountingLoads { inner: MemoryStore::new(), loads: Default::default() });
        let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, Script::default()).await);
        let mut w = World::new(store.clone(), participants, FaultPlan::none()).await;
        w.engine = Engine::builder(store.clone(), registry(), Arc::new(w.transport.clone()))
            .clock(w.clock.clone())
            .config(EngineConfig { written_states, ..test_config() })
            .build();
        let (id, state) = run(&mut w).await;
        assert_eq!(state.status, SagaStatus::Completed);
        assert_state_is_fold_of_log(store.as_ref(), id).await;
        reads.push(store.loads.load(std::sync::atomic::Ordering::SeqCst));
    }
    assert_eq!(reads[0] - reads[1], STEPS.len(), "reads without and with kept states: {reads:?}");
}

/// An engine's kept state is only a guess: here another engine on the same log drove the saga
/// on (to stuck) while the first still kept the state it wrote at the start. The first engine's
/// operator retry, refused on the kept state (a running saga cannot be retried), is decided
/// again on the log and goes through; a reply it applies on a stale state meets the version
/// check and is applied to the log's state.
#[tokio::test]
async fn a_kept_state_another_engine_moved_past_is_decided_again_on_the_log() {
    let mut w = world(Script::default(), FaultPlan::none()).await;
    let id = SagaId::new();
    let first = w.engine.clone();
    first.start(SAGA, id, params()).await.unwrap();
    // The other engine: the same log and transport; its faults make `tres` refuse and `uno`'s
    // compensation fail until the saga is stuck.
    w.engine = Engine::builder(w.store.clone(), registry(), Arc::new(w.transport.clone()))
        .clock(w.clock.clone())
        .config(test_config())
        .faults(FaultPlan::none().fail_action("tres").fail_compensation("uno"))
        .build();
    assert_eq!(w.pump(id).await.unwrap().status, SagaStatus::Stuck);

    w.engine = first;
    let state = w.engine.retry(id, "participant fixed").await.expect("the retry is decided on the log");
    assert_eq!(state.status, SagaStatus::Compensating);
    assert_eq!(w.pump(id).await.unwrap().status, SagaStatus::Compensated);
    assert_state_is_fold_of_log(w.store.as_ref(), id).await;
    let effects = w.participants.db.effects(id).await;
    assert_eq!(count(&effects, "uno", "compensation"), 1);
    assert_eq!(count(&effects, "dos", "compensation"), 1);
}
