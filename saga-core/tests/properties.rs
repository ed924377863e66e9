//! Property tests: random participant behaviour at every step and kind (success, refusal,
//! transient answers, lost commands, lost replies, duplicate replies), duplicate deliveries, and
//! a crash of the engine after a random number of log writes. Whatever happens:
//! - the saga rests in exactly one of completed, compensated or stuck (and a stuck saga, retried
//!   by an operator once the trouble passes, ends compensated);
//! - its current-state row is the fold of its log;
//! - no effect is applied twice; a completed saga applied every step; a compensated one undid
//!   every step it applied;
//! - compensations run in reverse dependency order, cover every step that ran or may have run,
//!   and never a step whose every attempt was definitively refused.
//!
//! Each case runs on the sequential test saga or on the parallel one (`dos` and `tres` in flight
//! together).

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use saga_core::inject::FaultPlan;
use saga_core::log::memory::MemoryStore;
use saga_core::transport::Outcome;
use saga_core::{SagaEvent, SagaId, SagaState, SagaStatus, StepKind};

fn behavior() -> impl Strategy<Value = Behavior> {
    prop_oneof![
        4 => Just(Behavior::Succeed),
        1 => Just(Behavior::Refuse),
        1 => Just(Behavior::Transient),
        1 => Just(Behavior::LoseCommand),
        1 => Just(Behavior::LoseReply),
        1 => Just(Behavior::DuplicateReply),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    plan: Vec<(usize, bool, Vec<Behavior>)>,
    duplicate_commands: bool,
    crash_after: Option<u64>,
    saga: &'static str,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec((0..3usize, any::<bool>(), proptest::collection::vec(behavior(), 0..4)), 0..6),
        any::<bool>(),
        proptest::option::of(1..25u64),
        prop_oneof![Just(SAGA), Just(SAGA_PARALELA)],
    )
        .prop_map(|(plan, duplicate_commands, crash_after, saga)| Case {
            plan,
            duplicate_commands,
            crash_after,
            saga,
        })
}

fn script(case: &Case) -> Script {
    let mut script = Script::default();
    for (step, compensation, behaviors) in &case.plan {
        let kind = if *compensation { StepKind::Compensation } else { StepKind::Action };
        script = script.on(STEPS[*step], kind, behaviors);
    }
    script
}

async fn run_case(case: Case) {
    let store = Arc::new(MemoryStore::new());
    if let Some(n) = case.crash_after {
        store.fail_writes_after(n);
    }
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, script(&case)).await);
    let faults = if case.duplicate_commands { FaultPlan::none().duplicate_commands() } else { FaultPlan::none() };
    let mut w = World::new(store.clone(), participants, faults.clone()).await;
    let lift = {
        let store = store.clone();
        move |_: &World| store.fail_writes_after(u64::MAX / 2)
    };
    let id = SagaId::new();
    if w.engine.start(case.saga, id, params()).await.is_err() {
        // Crashed before the saga existed: the caller retries with the same id.
        lift(&w);
        w.restart(faults.clone());
        w.engine.start(case.saga, id, params()).await.expect("start after restart");
    }
    let mut state = w.pump_through_crashes(id, lift).await;
    assert!(
        matches!(state.status, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Stuck),
        "rests in a terminal state, got {}",
        state.status
    );
    let history = w.store.history(id).await.unwrap();
    assert_eq!(SagaState::replay(id, &history).unwrap(), state, "state row is the fold of the log");
    check_compensations(&history, &state, case.saga);

    // An operator retries a stuck saga once the trouble passed (the script runs out).
    let mut retries = 0;
    while state.status == SagaStatus::Stuck {
        retries += 1;
        assert!(retries <= 4, "an operator retry eventually gets through");
        w.engine.retry(id, "trouble passed").await.unwrap();
        state = w.pump(id).await.unwrap();
    }
    let history = w.store.history(id).await.unwrap();
    check_compensations(&history, &state, case.saga);

    let effects = w.participants.db.effects(id).await;
    let count = |step: &str, kind: &str| effects.get(&(step.to_owned(), kind.to_owned())).copied().unwrap_or(0);
    for step in STEPS {
        assert!(count(step, "action") <= 1, "{step} applied twice");
        assert!(count(step, "compensation") <= 1, "{step} compensated twice");
        match state.status {
            SagaStatus::Completed => {
                assert_eq!((count(step, "action"), count(step, "compensation")), (1, 0), "{step} in a completed saga")
            }
            SagaStatus::Compensated => {
                assert_eq!(count(step, "action"), count(step, "compensation"), "{step} undone iff applied")
            }
            other => panic!("after operator retries the saga must rest completed or compensated, got {other}"),
        }
    }
}

fn check_compensations(history: &[saga_core::LogEntry], state: &SagaState, saga: &str) {
    assert_reverse_dependency_order(history, &definition_of(saga));
    let compensated: HashSet<usize> =
        compensations(history).iter().map(|s| STEPS.iter().position(|x| x == s).expect("known step")).collect();

    for (i, step) in STEPS.iter().enumerate() {
        let mut sent = false;
        let mut unknown = false;
        let mut succeeded = false;
        for entry in history {
            match &entry.event {
                SagaEvent::CommandSent { command, .. }
                    if command.correlation.step_name == STEPS[i] && command.correlation.kind == StepKind::Action =>
                {
                    sent = true
                }
                SagaEvent::TimedOut { step: s, kind: StepKind::Action, .. } if *s == i as u32 => unknown = true,
                SagaEvent::ReplyAccepted { step: s, kind: StepKind::Action, outcome, .. } if *s == i as u32 => {
                    match outcome {
                        Outcome::Success { .. } => succeeded = true,
                        Outcome::Transient { .. } => unknown = true,
                        Outcome::BusinessFailure { .. } => {}
                    }
                }
                _ => {}
            }
        }
        if state.status == SagaStatus::Completed {
            assert!(compensated.is_empty(), "a completed saga compensates nothing");
            continue;
        }
        if !sent {
            assert!(!compensated.contains(&i), "{step} never sent, yet compensated");
        } else if succeeded || unknown {
            // Stuck sagas may not have reached the lower steps yet.
            if state.status == SagaStatus::Compensated {
                assert!(compensated.contains(&i), "{step} ran or may have run, yet not compensated");
            }
        } else {
            // An action in flight when compensation starts is waited for: refused, it is not
            // compensated either.
            assert!(!compensated.contains(&i), "{step} was definitively refused, yet compensated");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_saga_rests_in_one_terminal_state_and_compensates_exactly_what_may_have_run(case in case()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(run_case(case));
    }
}
