//! The engine running for real. It survives its own bugs: a panic in the timer pass or in the
//! recovery pass is logged, counted and the task restarted, so sagas still complete; an engine
//! whose task keeps panicking reports itself as not running. A reply it cannot drive is
//! dead-lettered after bounded redeliveries, and a waiter on a saga is answered when the saga
//! rests. The engine runs for real here (`Engine::run_on`,
//! its timer and reply consumer), with the participants served by `participant::serve` over the
//! in-process transport; only the engine's clock is manual, so timeouts fire when a test says.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use common::*;
use saga_core::clock::ManualClock;
use saga_core::engine::{Engine, EngineConfig};
use saga_core::inject::{FaultPlan, PanicSite};
use saga_core::log::memory::MemoryStore;
use saga_core::log::SagaStore;
use saga_core::participant::{serve, CommandHandler, Handled, ParticipantError};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Transport};
use saga_core::{SagaId, SagaStatus, StepKind};

/// A participant that loses every delivery of the first action of `uno` (dead-lettered, as
/// poison would be), resends of the same message included, so the saga needs the timer: the
/// step times out and the next attempt is sent by a timer pass.
struct LosesFirstUno {
    inner: Arc<dyn CommandHandler>,
    lost: Mutex<Option<saga_core::MessageId>>,
}

#[async_trait]
impl CommandHandler for LosesFirstUno {
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
        let c = &command.correlation;
        if c.step_name == "uno" && c.kind == StepKind::Action {
            let lost = *self.lost.lock().unwrap().get_or_insert(c.message_id);
            if lost == c.message_id {
                return Err(ParticipantError::Poison("lost on purpose".into()));
            }
        }
        self.inner.handle(command).await
    }
}

/// Participants serving every test step on `transport` until `stop` fires.
async fn serve_participants(
    transport: &InProcessTransport,
    lose_first_uno: bool,
    stop: &tokio::sync::watch::Receiver<bool>,
) {
    let db = ParticipantDb::sqlite_memory().await;
    let inner = db.handler(Arc::new(Mutex::new(HashMap::new()))).await;
    let handler: Arc<dyn CommandHandler> =
        if lose_first_uno { Arc::new(LosesFirstUno { inner, lost: Mutex::new(None) }) } else { inner };
    for step in STEPS {
        let transport: Arc<dyn Transport> = Arc::new(transport.clone());
        let mut stop = stop.clone();
        tokio::spawn(serve(handler.clone(), transport, participant_of(step), async move {
            let _ = stop.wait_for(|s| *s).await;
        }));
    }
}

fn config() -> EngineConfig {
    EngineConfig { poll_interval: Duration::from_millis(10), ..test_config() }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().unwrap()))
}

/// Runs `engine` (its timer, recovery and reply consumer) until `stop` fires.
async fn run(engine: &Arc<Engine>, transport: &InProcessTransport, stop: &tokio::sync::watch::Receiver<bool>) {
    let replies = transport.replies(REPLY_TO).await.unwrap();
    let mut stop = stop.clone();
    tokio::spawn(engine.clone().run_on(replies, async move {
        let _ = stop.wait_for(|s| *s).await;
    }));
}

/// Waits (real time, at most 20 s) until `id` rests, advancing the engine's clock by a second
/// every 20 ms so deadlines and retries come due.
async fn settle(store: &dyn SagaStore, clock: &ManualClock, id: SagaId, advance: bool) -> SagaStatus {
    for _ in 0..1000 {
        let state = store.load(id).await.unwrap().unwrap();
        if !state.status.is_active() {
            return state.status;
        }
        if advance {
            clock.advance(Duration::from_secs(1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("saga {id} did not rest: {:#?}", store.load(id).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_timer_pass_is_restarted_and_sagas_still_complete() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let transport = InProcessTransport::new();
    let clock = clock();
    let faults = FaultPlan::none().panic_at(PanicSite::TimerPass, 3);
    let engine = Engine::builder(store.clone(), registry(), Arc::new(transport.clone()))
        .clock(clock.clone())
        .config(config())
        .faults(faults.clone())
        .build();
    serve_participants(&transport, true, &stop).await;
    run(&engine, &transport, &stop).await;

    let id = SagaId::new();
    engine.start(SAGA, id, params()).await.unwrap();
    assert_eq!(settle(store.as_ref(), &clock, id, true).await, SagaStatus::Completed);
    assert_eq!(faults.panics_left(PanicSite::TimerPass), 0, "the three injected panics struck");
    let history = store.history(id).await.unwrap();
    assert!(
        history.iter().any(|e| matches!(e.event, saga_core::SagaEvent::TimedOut { .. })),
        "the lost command timed out: the timer ran after its panics"
    );
    let health = engine.health();
    assert!(health.running, "the timer recovered: {health:?}");
    let timer = health.tasks.iter().find(|t| t.task == "timer").unwrap();
    assert_eq!(timer.panics_total, 3, "{health:?}");
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_recovery_pass_is_restarted_and_resends_what_was_in_flight() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let clock = clock();
    // The first process started the saga and died with its queues.
    let lost = InProcessTransport::new();
    let first = Engine::builder(store.clone(), registry(), Arc::new(lost.clone()))
        .clock(clock.clone())
        .config(config())
        .build();
    let id = SagaId::new();
    first.start(SAGA, id, params()).await.unwrap();
    drop(lost);

    let transport = InProcessTransport::new();
    let faults = FaultPlan::none().panic_at(PanicSite::RecoveryPass, 2);
    let engine = Engine::builder(store.clone(), registry(), Arc::new(transport.clone()))
        .clock(clock.clone())
        .config(config())
        .faults(faults.clone())
        .build();
    serve_participants(&transport, false, &stop).await;
    run(&engine, &transport, &stop).await;

    // The clock stands still: no deadline passes, so only recovery can resend the command.
    assert_eq!(settle(store.as_ref(), &clock, id, false).await, SagaStatus::Completed);
    assert_eq!(faults.panics_left(PanicSite::RecoveryPass), 0);
    let history = store.history(id).await.unwrap();
    assert!(history.iter().any(|e| matches!(e.event, saga_core::SagaEvent::CommandResent { .. })), "recovery resent");
    let health = engine.health();
    assert!(health.running, "{health:?}");
    assert_eq!(health.tasks.iter().find(|t| t.task == "recovery").unwrap().panics_total, 2);
    let _ = stop_tx.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_whose_timer_keeps_panicking_is_not_running_until_it_stops() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let transport = InProcessTransport::new();
    let clock = clock();
    let faults = FaultPlan::none().panic_at(PanicSite::TimerPass, u32::MAX);
    let engine = Engine::builder(store.clone(), registry(), Arc::new(transport.clone()))
        .clock(clock.clone())
        .config(EngineConfig {
            task_restart: saga_core::RetryPolicy {
                initial_backoff: Duration::from_millis(5),
                max_backoff: Duration::from_millis(20),
                ..config().task_restart
            },
            ..config()
        })
        .faults(faults.clone())
        .build();
    assert!(!engine.health().running, "an engine that was never run is not running");
    serve_participants(&transport, true, &stop).await;
    run(&engine, &transport, &stop).await;

    let mut down = false;
    for _ in 0..500 {
        if !engine.health().running {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(down, "a timer in a crash loop makes the engine not running: {:?}", engine.health());

    // The bug fixed (the panics stop): the timer's next pass makes the engine healthy, and a
    // saga that needs the timer completes.
    faults.stop_panics();
    let id = SagaId::new();
    engine.start(SAGA, id, params()).await.unwrap();
    assert_eq!(settle(store.as_ref(), &clock, id, true).await, SagaStatus::Completed);
    assert!(engine.health().running, "{:?}", engine.health());
    let _ = stop_tx.send(true);
    // Once run_on returns, the engine is not running any more.
    for _ in 0..500 {
        if !engine.health().running {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("a stopped engine still reports running");
}

/// A reply for a saga whose type this engine does not know (a replica deployed without it) is
/// handed back a bounded number of times, for a replica that knows it, then dead-lettered with
/// its reason where an operator sees it: not redelivered for ever. The saga is left as it was,
/// for its step's timeout (or the redrive) once its type is deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_no_engine_can_drive_is_dead_lettered_after_its_redeliveries() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let transport = InProcessTransport::new();
    let knows =
        Engine::builder(store.clone(), registry(), Arc::new(transport.clone())).clock(clock()).config(config()).build();
    let id = SagaId::new();
    knows.start(SAGA, id, params()).await.unwrap();
    let mut commands = transport.commands(&participant_of(STEPS[0])).await.unwrap();
    let command = tokio::time::timeout(Duration::from_secs(5), commands.recv()).await.unwrap().unwrap();
    let reply = saga_core::Reply {
        correlation: command.message.correlation.clone(),
        outcome: saga_core::Outcome::Success { output: serde_json::json!({}) },
    };
    command.ack().await.unwrap();
    let before = store.history(id).await.unwrap();

    let forgets = Engine::builder(store.clone(), Arc::new(saga_core::Registry::new()), Arc::new(transport.clone()))
        .clock(clock())
        .config(EngineConfig { unknown_type_redeliveries: 3, ..config() })
        .build();
    let mut dead = transport.dead_letters(REPLY_TO).await.unwrap();
    run(&forgets, &transport, &stop).await;
    transport.send_reply(REPLY_TO, &reply).await.unwrap();
    let dl = tokio::time::timeout(Duration::from_secs(20), dead.recv()).await.expect("dead-lettered").unwrap();
    assert!(dl.message.reason.contains("redelivered 3 times"), "{}", dl.message.reason);
    assert!(dl.message.reason.contains(SAGA), "{}", dl.message.reason);
    assert_eq!(store.history(id).await.unwrap(), before, "nothing was applied");
    assert!(forgets.health().running, "the engine goes on");
    let _ = stop_tx.send(true);
}

/// `Engine::wait` answers as soon as the saga rests, woken by the engine's own transition (its
/// periodic look is set beyond the test's limit, so only the wake-up can answer in time); with a
/// version, as soon as the log goes past it; a saga that does not move is answered as it is once
/// the limit runs out; an unknown saga is `None`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_is_answered_when_the_saga_rests_or_its_limit_runs_out() {
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let store: Arc<dyn SagaStore> = Arc::new(MemoryStore::new());
    let transport = InProcessTransport::new();
    let engine = Engine::builder(store.clone(), registry(), Arc::new(transport.clone()))
        .clock(clock())
        .config(EngineConfig { wait_poll: Duration::from_secs(3600), ..config() })
        .build();
    assert!(engine.wait(SagaId::new(), None, Duration::from_secs(1)).await.unwrap().is_none());

    // No participant answers yet: the saga stays running, and the limit answers the waiter.
    let id = SagaId::new();
    engine.start(SAGA, id, params()).await.unwrap();
    let began = std::time::Instant::now();
    let state = engine.wait(id, None, Duration::from_millis(300)).await.unwrap().unwrap();
    assert_eq!(state.status, SagaStatus::Running);
    assert!(began.elapsed() >= Duration::from_millis(300), "answered before its limit: {:?}", began.elapsed());

    // Waiters with an hour's limit and an hour's periodic look: only the engine's wake-up can
    // answer them within the test's 20 s.
    let version = state.version;
    let wait = |after: Option<i64>| {
        let engine = engine.clone();
        tokio::spawn(async move { engine.wait(id, after, Duration::from_secs(3600)).await })
    };
    let (rests, moves) = (wait(None), wait(Some(version)));
    serve_participants(&transport, false, &stop).await;
    run(&engine, &transport, &stop).await;
    let woken = |what: &'static str| move |_| panic!("{what}: not woken by the transition");
    let moved = tokio::time::timeout(Duration::from_secs(20), moves).await.unwrap_or_else(woken("version")).unwrap();
    assert!(moved.unwrap().unwrap().version > version);
    let rested = tokio::time::timeout(Duration::from_secs(20), rests).await.unwrap_or_else(woken("rest")).unwrap();
    assert_eq!(rested.unwrap().unwrap().status, SagaStatus::Completed);
    let _ = stop_tx.send(true);
}
