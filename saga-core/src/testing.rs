//! The test harness every saga gets (feature `testing`): given a registered definition, its start
//! parameters and fake participants, [`SagaHarness`] runs the same four checks on it, each over a fresh world (an in-memory log, the in-process transport, a manual
//! clock, fresh participants) driven by a deterministic pump:
//!
//! 1. every action and compensation repeated gives the same result;
//! 2. a failure injected at each step in turn unwinds cleanly, in reverse dependency order, back
//!    to the business state before the saga;
//! 3. a crash after every log write recovers to the same end state and the same effects;
//! 4. a compensation that keeps failing leaves the saga stuck, and an operator's retry finishes it.
//!
//! A saga opts in with one test, where `FakeWorkers` is its [`FakeParticipants`]:
//!
//! ```ignore
//! #[tokio::test]
//! async fn the_saga_passes_the_harness() {
//!     SagaHarness::new(registry(), CrearCampaña::NAME, params(), || FakeWorkers::fresh()).run_all().await;
//! }
//! ```
//!
//! The checks compare what the participants report ([`FakeParticipants::snapshot`]) and what the
//! log says; a failing check panics with a message naming the saga, the check, the scenario (the
//! step failed, the crash point) and what differed.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::clock::{Clock, ManualClock};
use crate::definition::{Registry, RetryPolicy, SagaDefinition};
use crate::engine::{Engine, EngineConfig};
use crate::id::{SagaId, StepKind};
use crate::inject::{FaultPlan, INJECTED_CODE};
use crate::log::memory::MemoryStore;
use crate::log::SagaStore;
use crate::participant::CommandHandler;
use crate::saga::{LogEntry, SagaEvent, SagaState, SagaStatus};
use crate::transport::in_process::InProcessTransport;
use crate::transport::{Command, Delivery, Outcome, Receiver, Reply, Transport};

/// The participants of one run: a handler per participant address and the business state they
/// hold. The harness asks for fresh ones before every run and keeps them across the run's engine
/// restarts, as a worker outlives an orchestrator crash. They must be deterministic (the same
/// commands, the same replies and state): the crash check replays the reference run up to each
/// write.
#[async_trait]
pub trait FakeParticipants: Send + Sync {
    /// The handler of a participant address (a step's `participant`, e.g. "comandos.marca"); the
    /// harness serves each step's participant with it. `None` for an address it does not serve,
    /// which makes every check fail at once, naming the address.
    fn handler(&self, participant: &str) -> Option<Arc<dyn CommandHandler>>;

    /// The business state the checks compare (balances held, bookings, contexts open...). Must
    /// not contain values generated per run (fresh uuids, times): compare what matters.
    async fn snapshot(&self) -> Value;
}

/// The checks' names, as they open a failing check's message.
const REPEATED: &str = "every step repeated gives the same result";
const UNWINDS: &str = "a failure at each step unwinds in order";
const CRASH: &str = "a crash after every log write recovers";
const STUCK: &str = "a failing compensation is stuck until an operator retries";

/// Where the engine sends replies in every run.
const REPLY_TO: &str = "harness.respuestas";

/// Seeds of the engine's jitter, first start and restarts: fixed, so the log, and so the crash
/// points, are the same in every run of a scenario.
const SEED: u64 = 42;
const RESTART_SEED: u64 = 43;

/// How many pump rounds a run may take before it is reported as looping. Each round delivers at
/// least one message or fires a timer; a saga of tens of steps with retries rests in hundreds.
const MAX_ROUNDS: usize = 10_000;

/// The write budget that lifts an injected crash: `fail_writes_after` adds it to the writes so
/// far, and half the range can neither overflow nor be reached.
const LIFTED: u64 = u64::MAX / 2;

type Fresh = Box<dyn Fn() -> Pin<Box<dyn Future<Output = Box<dyn FakeParticipants>> + Send>> + Send + Sync>;

/// Runs the harness's checks on one saga type. Each check builds every world it needs from
/// scratch, so the checks can run in any order, alone or through [`SagaHarness::run_all`].
pub struct SagaHarness {
    registry: Arc<Registry>,
    definition: Arc<SagaDefinition>,
    params: Value,
    fresh: Fresh,
}

impl SagaHarness {
    /// A harness for the newest registered version of `saga_type`, started with `params`, whose
    /// participants come fresh from `fresh` for every run.
    ///
    /// Panics when `saga_type` is not registered or has no steps.
    pub fn new<F, Fut, P>(registry: Arc<Registry>, saga_type: &str, params: Value, fresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = P> + Send + 'static,
        P: FakeParticipants + 'static,
    {
        let definition = registry
            .latest(saga_type)
            .unwrap_or_else(|| panic!("saga harness: saga type {saga_type:?} is not registered"));
        assert!(!definition.steps.is_empty(), "saga harness: saga type {saga_type:?} has no steps");
        let fresh: Fresh = Box::new(move || {
            let participants = fresh();
            Box::pin(async move { Box::new(participants.await) as Box<dyn FakeParticipants> })
        });
        Self { registry, definition, params, fresh }
    }

    /// Runs the four checks, in order; the first that fails panics.
    pub async fn run_all(&self) {
        self.every_step_repeated_gives_the_same_result().await;
        self.a_failure_at_each_step_unwinds_in_order().await;
        self.a_crash_after_every_log_write_recovers().await;
        self.a_failing_compensation_is_stuck_until_an_operator_retries().await;
    }

    /// Check 1: every action and compensation repeated gives the same result. The saga without
    /// faults, then with a failure injected at each step in turn, is run once plainly and once
    /// with every command delivered twice (same message id): the status and the business state
    /// must be the same. The log must show each delivered command's second reply recorded as
    /// ignored, so the check cannot pass because nothing was repeated.
    pub async fn every_step_repeated_gives_the_same_result(&self) {
        let mut scenarios = vec![("no failure".to_owned(), FaultPlan::none())];
        scenarios.extend(self.steps().map(|s| (format!("failure injected at {s}"), FaultPlan::none().fail_action(s))));
        for (scenario, faults) in scenarios {
            let plain = self.run_to_rest(REPEATED, &scenario, faults.clone()).await;
            if faults.is_empty() {
                self.expect_status(REPEATED, &scenario, &plain.state, SagaStatus::Completed);
            }
            let doubled_scenario = format!("{scenario}, every command delivered twice");
            let doubled = self.run_to_rest(REPEATED, &doubled_scenario, faults.clone().duplicate_commands()).await;
            self.expect_status(REPEATED, &doubled_scenario, &doubled.state, plain.state.status);
            if doubled.after != plain.after {
                self.fail(
                    REPEATED,
                    &doubled_scenario,
                    format!(
                        "the business state differs from the run without duplicates: a step is not idempotent\n  \
                         without duplicates: {}\n  with duplicates:    {}",
                        plain.after, doubled.after
                    ),
                );
            }
            let delivered = delivered_commands(&doubled.history, &faults);
            if faults.is_empty() && delivered.is_empty() {
                self.fail(REPEATED, &doubled_scenario, "no command was delivered, so nothing was repeated");
            }
            for command in delivered {
                let c = &command.correlation;
                let seen = doubled
                    .history
                    .iter()
                    .any(|e| matches!(&e.event, SagaEvent::ReplyIgnored { correlation, .. } if correlation == c));
                if !seen {
                    self.fail(
                        REPEATED,
                        &doubled_scenario,
                        format!(
                            "the log shows no second reply to {} {} attempt {} (no reply_ignored entry): \
                             the duplicate was not delivered, so the check proves nothing",
                            c.step_name, c.kind, c.attempt
                        ),
                    );
                }
            }
        }
    }

    /// Check 2: a failure injected at each step in turn (each parallel sibling too) unwinds
    /// cleanly and in order. The saga must end compensated, with the failure recorded at that
    /// step; every step whose action succeeded (per the log) must have had its compensation
    /// succeed; no step whose action was never sent may be compensated; compensations must run
    /// in reverse dependency order ([`assert_reverse_dependency_order`]); and the business state
    /// after must equal the state before the saga started.
    pub async fn a_failure_at_each_step_unwinds_in_order(&self) {
        for step in self.steps() {
            let scenario = format!("failure injected at {step}");
            let ran = self.run_to_rest(UNWINDS, &scenario, FaultPlan::none().fail_action(step)).await;
            self.expect_status(UNWINDS, &scenario, &ran.state, SagaStatus::Compensated);
            match &ran.state.failure {
                Some(f) if f.step.as_deref() == Some(step) && f.code == INJECTED_CODE => {}
                other => {
                    self.fail(UNWINDS, &scenario, format!("the recorded failure is {other:?}, not the injected one"))
                }
            }
            self.expect_unwound(UNWINDS, &scenario, &ran.history, &ran.before, &ran.after);
        }
    }

    /// Check 3: a crash after every log write recovers to the same end state and the same
    /// effects. A reference run without faults, and one with a failure injected at the last
    /// step, count their log writes; then for every write k, a fresh world whose log fails every
    /// write after the k-th is driven until the engine errors (the crash; after the last write,
    /// until the saga rests, and the process dies at rest); the failure is lifted, a new engine is built on the same log (the restart, once with the
    /// broker's queues kept, as in the distributed mode, once with them lost, as in the embedded
    /// mode), `recover()`s and is driven to rest. The status and the business state must be the
    /// reference's, and compensations must still run in reverse dependency order.
    pub async fn a_crash_after_every_log_write_recovers(&self) {
        let last = self.definition.steps.last().map(|s| s.name.as_str()).unwrap_or_default();
        let references = [
            ("no failure".to_owned(), FaultPlan::none(), SagaStatus::Completed),
            (format!("failure injected at {last}"), FaultPlan::none().fail_action(last), SagaStatus::Compensated),
        ];
        for (scenario, faults, expected) in references {
            let reference = self.run_to_rest(CRASH, &scenario, faults.clone()).await;
            self.expect_status(CRASH, &scenario, &reference.state, expected);
            let writes = reference.writes;
            for queues in [Queues::Kept, Queues::Lost] {
                for k in 1..=writes {
                    let point = format!("{scenario}, crash after write {k} of {writes}, {queues}");
                    self.crash_and_recover(&point, &faults, k, queues, &reference).await;
                }
            }
        }
    }

    /// Check 4: a compensation that keeps failing leaves the saga stuck, and an operator's retry
    /// finishes it. For each step whose compensation runs when a later step fails (the failing
    /// step chosen as late in the definition as possible: the last step, for a chain), that
    /// failure plus an injected failure of every attempt of the step's compensation must leave
    /// the saga stuck at that step. A new engine without the faults (the cause fixed) and
    /// `engine.retry(id, note)` must then end it compensated, with the business state from
    /// before the saga, the unwinding rules of check 2 holding, and the note in the log.
    ///
    /// A saga where no failure compensates anything (a single step) has nothing to check here.
    pub async fn a_failing_compensation_is_stuck_until_an_operator_retries(&self) {
        // For each step, the latest-declared failing step whose failure compensates it.
        let mut pairs: BTreeMap<usize, &str> = BTreeMap::new();
        for failing in self.steps().rev() {
            let scenario = format!("failure injected at {failing}");
            let ran = self.run_to_rest(STUCK, &scenario, FaultPlan::none().fail_action(failing)).await;
            for (i, step) in self.definition.steps.iter().enumerate() {
                if sent(&ran.history, &step.name, StepKind::Compensation) {
                    pairs.entry(i).or_insert(failing);
                }
            }
        }
        for (index, failing) in pairs {
            let step = self.definition.steps[index].name.as_str();
            let scenario = format!("failure injected at {failing}, every compensation of {step} failing");
            let faults = FaultPlan::none().fail_action(failing).fail_compensation(step);
            let mut run = Run::new(self, faults).await;
            let before = run.participants.snapshot().await;
            let id = SagaId::new();
            if let Err(e) = run.engine.start(&self.definition.name, id, self.params.clone()).await {
                self.fail(STUCK, &scenario, format!("the saga did not start: {e}"));
            }
            let stuck = run.pump(id).await.unwrap_or_else(|e| self.fail(STUCK, &scenario, e));
            self.expect_status(STUCK, &scenario, &stuck, SagaStatus::Stuck);
            let history = run.history(id).await;
            let at = history.iter().find_map(|e| match &e.event {
                SagaEvent::Stuck { step, .. } => Some(*step),
                _ => None,
            });
            if at != Some(Some(index as u32)) {
                self.fail(STUCK, &scenario, format!("stuck at step index {at:?}, not at {step} ({index})"));
            }

            let scenario = format!("{scenario}, then restarted without faults and retried");
            let note = format!("saga harness: compensation of {step} fixed");
            run.restart(FaultPlan::none(), Queues::Kept).await;
            match run.engine.retry(id, &note).await {
                Ok(state) if state.status == SagaStatus::Compensating => {}
                Ok(state) => self.fail(STUCK, &scenario, format!("the retry left the saga {}", state.status)),
                Err(e) => self.fail(STUCK, &scenario, format!("the retry failed: {e}")),
            }
            let state = run.pump(id).await.unwrap_or_else(|e| self.fail(STUCK, &scenario, e));
            self.expect_status(STUCK, &scenario, &state, SagaStatus::Compensated);
            let history = run.history(id).await;
            let noted =
                history.iter().any(|e| matches!(&e.event, SagaEvent::OperatorRetried { note: n } if *n == note));
            if !noted {
                self.fail(STUCK, &scenario, format!("the log has no operator_retried entry with the note {note:?}"));
            }
            let after = run.participants.snapshot().await;
            self.expect_unwound(STUCK, &scenario, &history, &before, &after);
        }
    }

    // ---- Internals ---------------------------------------------------------------------------

    fn steps(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.definition.steps.iter().map(|s| s.name.as_str())
    }

    fn fail(&self, check: &str, scenario: &str, problem: impl fmt::Display) -> ! {
        panic!("saga {}: check \"{check}\" failed ({scenario}): {problem}", self.definition.name)
    }

    fn expect_status(&self, check: &str, scenario: &str, state: &SagaState, expected: SagaStatus) {
        if state.status != expected {
            let why = state.stuck_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
            self.fail(check, scenario, format!("the saga ended {}{why}, expected {expected}", state.status));
        }
    }

    /// The rules of a clean unwinding (check 2), on a run that ended compensated.
    fn expect_unwound(&self, check: &str, scenario: &str, history: &[LogEntry], before: &Value, after: &Value) {
        for (i, step) in self.definition.steps.iter().enumerate() {
            if accepted_success(history, i, StepKind::Action) && !accepted_success(history, i, StepKind::Compensation) {
                self.fail(check, scenario, format!("{}'s action succeeded but its compensation never did", step.name));
            }
            if !sent(history, &step.name, StepKind::Action) && sent(history, &step.name, StepKind::Compensation) {
                self.fail(check, scenario, format!("{} was compensated although its action was never sent", step.name));
            }
        }
        if let Some(problem) = crate::saga::compensation_order_violation(history, &self.definition) {
            self.fail(check, scenario, problem);
        }
        if after != before {
            self.fail(
                check,
                scenario,
                format!(
                    "the business state after compensating differs from the state before the saga\n  \
                     before: {}\n  after:  {}",
                    before, after
                ),
            );
        }
    }

    /// One run in a fresh world, from start to rest, without crashes.
    async fn run_to_rest(&self, check: &str, scenario: &str, faults: FaultPlan) -> Ran {
        let mut run = Run::new(self, faults).await;
        let before = run.participants.snapshot().await;
        let id = SagaId::new();
        if let Err(e) = run.engine.start(&self.definition.name, id, self.params.clone()).await {
            self.fail(check, scenario, format!("the saga did not start: {e}"));
        }
        let state = run.pump(id).await.unwrap_or_else(|e| self.fail(check, scenario, e));
        let history = run.history(id).await;
        let after = run.participants.snapshot().await;
        Ran { state, history, before, after, writes: run.store.writes() }
    }

    /// One crash point of check 3.
    async fn crash_and_recover(&self, point: &str, faults: &FaultPlan, k: u64, queues: Queues, reference: &Ran) {
        let mut run = Run::new(self, faults.clone()).await;
        run.store.fail_writes_after(k);
        let id = SagaId::new();
        let crashed = match run.engine.start(&self.definition.name, id, self.params.clone()).await {
            Err(_) => true,
            Ok(_) => match run.pump(id).await {
                Err(Stop::Crashed(_)) => true,
                Err(stop) => self.fail(CRASH, point, stop),
                Ok(_) => false,
            },
        };
        // Up to write k the run is the reference's, so it crashes at write k + 1, unless k is the
        // reference's last write: then it rests, and the process dies at rest.
        let writes = reference.writes;
        if crashed != (k < writes) {
            let what = if crashed { "crashed" } else { "rested without crashing" };
            self.fail(
                CRASH,
                point,
                format!(
                    "the run {what} after {} writes, the reference made {writes}: the runs differ \
                     (are the participants deterministic?)",
                    run.store.writes()
                ),
            );
        }
        if run.store.load(id).await.ok().flatten().is_none() {
            self.fail(CRASH, point, "the saga's first write succeeded, yet the log does not hold it");
        }
        run.store.fail_writes_after(LIFTED);
        run.restart(faults.clone(), queues).await;
        if let Err(e) = run.engine.recover().await {
            self.fail(CRASH, point, format!("recovery failed: {e}"));
        }
        let state = run.pump(id).await.unwrap_or_else(|e| self.fail(CRASH, point, format!("after recovery: {e}")));
        if state.status != reference.state.status {
            self.fail(
                CRASH,
                point,
                format!("the saga ended {}, the reference {}", state.status, reference.state.status),
            );
        }
        let after = run.participants.snapshot().await;
        if after != reference.after {
            self.fail(
                CRASH,
                point,
                format!(
                    "the business state differs from the reference run's\n  reference: {}\n  recovered: {after}",
                    reference.after
                ),
            );
        }
        if let Some(problem) = crate::saga::compensation_order_violation(&run.history(id).await, &self.definition) {
            self.fail(CRASH, point, problem);
        }
    }
}

/// What a run left: the saga's end state and log, and the business state before and after.
struct Ran {
    state: SagaState,
    history: Vec<LogEntry>,
    before: Value,
    after: Value,
    /// Successful log writes (creates and appends) in the run.
    writes: u64,
}

/// What the broker's queues hold after a restart.
#[derive(Clone, Copy, Debug)]
enum Queues {
    /// Kept, as a broker outlives the orchestrator (distributed mode): messages in flight arrive.
    Kept,
    /// Lost with the process, as the in-process transport's are (embedded mode): only the log's
    /// resends bring commands back, and replies in flight are gone.
    Lost,
}

impl fmt::Display for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Queues::Kept => "queues kept on restart",
            Queues::Lost => "queues lost on restart",
        })
    }
}

/// Why the pump stopped before the saga rested.
#[derive(Debug)]
enum Stop {
    /// The engine failed: a write was refused (an injected crash) or a timer pass moved nothing.
    Crashed(String),
    /// The run cannot go on: a participant failed, or the saga waits for nothing, or loops.
    Stalled(String),
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Crashed(why) => write!(f, "the engine failed: {why}"),
            Stop::Stalled(why) => f.write_str(why),
        }
    }
}

/// A participant address, its handler, and its command subscription.
struct Endpoint {
    address: String,
    handler: Arc<dyn CommandHandler>,
    commands: Box<dyn Receiver<Command>>,
}

/// One world: an in-memory log, the in-process transport, a manual clock, an engine (rebuilt on
/// restarts) and the participants, which survive restarts.
struct Run {
    registry: Arc<Registry>,
    store: Arc<MemoryStore>,
    transport: InProcessTransport,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
    participants: Box<dyn FakeParticipants>,
    endpoints: Vec<Endpoint>,
    replies: Box<dyn Receiver<Reply>>,
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        reply_to: REPLY_TO.into(),
        // One try: a refused write is a crash here, not an outage to wait out.
        store_retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        // The pump looks at the queues right after `start`: wait for the in-process transport
        // to take the first commands (it does at once), so every run is the same.
        start_send_wait: std::time::Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

impl Run {
    async fn new(harness: &SagaHarness, faults: FaultPlan) -> Self {
        let participants = (harness.fresh)().await;
        let transport = InProcessTransport::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        for step in &harness.definition.steps {
            if endpoints.iter().any(|e| e.address == step.participant) {
                continue;
            }
            let handler = participants.handler(&step.participant).unwrap_or_else(|| {
                panic!(
                    "saga {}: no fake participant serves {} (step {})",
                    harness.definition.name, step.participant, step.name
                )
            });
            let commands = subscribe(transport.commands(&step.participant).await);
            endpoints.push(Endpoint { address: step.participant.clone(), handler, commands });
        }
        let replies = subscribe(transport.replies(REPLY_TO).await);
        // A fixed start, so every run of a scenario writes the same times.
        let clock = Arc::new(ManualClock::new(DateTime::<Utc>::UNIX_EPOCH));
        let store = Arc::new(MemoryStore::new());
        let engine = Engine::builder(store.clone(), harness.registry.clone(), Arc::new(transport.clone()))
            .clock(clock.clone())
            .config(engine_config())
            .faults(faults)
            .seed(SEED)
            .build();
        Self { registry: harness.registry.clone(), store, transport, clock, engine, participants, endpoints, replies }
    }

    /// A new engine on the same log, clock and participants: a restart.
    async fn restart(&mut self, faults: FaultPlan, queues: Queues) {
        if let Queues::Lost = queues {
            self.transport = InProcessTransport::new();
            for endpoint in &mut self.endpoints {
                endpoint.commands = subscribe(self.transport.commands(&endpoint.address).await);
            }
            self.replies = subscribe(self.transport.replies(REPLY_TO).await);
        }
        self.engine = Engine::builder(self.store.clone(), self.registry.clone(), Arc::new(self.transport.clone()))
            .clock(self.clock.clone())
            .config(engine_config())
            .faults(faults)
            .seed(RESTART_SEED)
            .build();
    }

    /// The saga's log. Not an `async fn` of `&self`: its future would need `Run: Sync`, and
    /// receivers are only `Send`, which would make every check's future `!Send`.
    fn history(&self, id: SagaId) -> impl Future<Output = Vec<LogEntry>> + Send + 'static {
        let store = self.store.clone();
        // The in-memory store's reads never fail, crash or not.
        async move { store.history(id).await.unwrap_or_default() }
    }

    /// Delivers every queued command to its participant and every reply to the engine, and
    /// when nothing is queued moves the clock to the saga's next deadline or retry and fires the
    /// timers, until the saga rests (its status is no longer running or compensating).
    async fn pump(&mut self, id: SagaId) -> Result<SagaState, Stop> {
        for _ in 0..MAX_ROUNDS {
            let mut moved = false;
            for endpoint in &mut self.endpoints {
                while let Some(delivery) = try_recv(endpoint.commands.as_mut()) {
                    moved = true;
                    let command = &delivery.message;
                    let handled = endpoint.handler.handle(command).await.map_err(|e| {
                        let c = &command.correlation;
                        Stop::Stalled(format!(
                            "participant {} could not handle {} {} attempt {}: {e}",
                            endpoint.address, c.step_name, c.kind, c.attempt
                        ))
                    })?;
                    self.transport
                        .send_reply(&command.reply_to, &handled.reply)
                        .await
                        .map_err(|e| Stop::Stalled(format!("the in-process transport refused a reply: {e}")))?;
                    settle(delivery).await?;
                }
            }
            while let Some(delivery) = try_recv(self.replies.as_mut()) {
                moved = true;
                // On an error the delivery is dropped unsettled: the transport hands it back, as
                // a broker redelivers an unacknowledged message.
                self.engine.handle_reply(&delivery.message).await.map_err(|e| Stop::Crashed(e.to_string()))?;
                settle(delivery).await?;
            }
            if moved {
                continue;
            }
            let state = match self.engine.get(id).await {
                Ok(Some(state)) => state,
                Ok(None) => return Err(Stop::Stalled(format!("saga {id} is not in the log"))),
                Err(e) => return Err(Stop::Crashed(e.to_string())),
            };
            if !state.status.is_active() {
                return Ok(state);
            }
            let Some(wake) = state.wake_at() else {
                return Err(Stop::Stalled(format!(
                    "the saga is {} with no command in flight and no retry pending",
                    state.status
                )));
            };
            let now = self.clock.now();
            if let Ok(ahead) = (wake - now).to_std() {
                self.clock.advance(ahead);
            }
            // The timer pass logs and skips a saga whose write fails: nothing moving is the crash.
            match self.engine.tick().await {
                Ok(0) => return Err(Stop::Crashed("a timer pass made no progress (its write failed)".into())),
                Ok(_) => {}
                Err(e) => return Err(Stop::Crashed(e.to_string())),
            }
        }
        Err(Stop::Stalled(format!("the saga did not rest after {MAX_ROUNDS} pump rounds")))
    }
}

fn subscribe<M>(receiver: Result<Box<dyn Receiver<M>>, crate::transport::TransportError>) -> Box<dyn Receiver<M>> {
    // The in-process transport subscribes without I/O and cannot fail.
    receiver.unwrap_or_else(|e| panic!("saga harness: in-process subscription failed: {e}"))
}

async fn settle<M: Send>(delivery: Delivery<M>) -> Result<(), Stop> {
    delivery.ack().await.map_err(|e| Stop::Stalled(format!("the in-process transport refused an ack: {e}")))
}

/// The next queued delivery, without waiting: the pump is deterministic because it only ever
/// takes what is already queued.
fn try_recv<M: Send>(receiver: &mut dyn Receiver<M>) -> Option<Delivery<M>> {
    // The in-process receiver is ready on its first poll when a message is queued.
    let mut recv = std::pin::pin!(receiver.recv());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match recv.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.ok(),
        std::task::Poll::Pending => None,
    }
}

/// True when the log says a command of this step and kind was sent.
fn sent(history: &[LogEntry], step: &str, kind: StepKind) -> bool {
    history.iter().any(|e| {
        matches!(&e.event, SagaEvent::CommandSent { command, .. }
            if command.correlation.step_name == step && command.correlation.kind == kind)
    })
}

/// True when the log accepted a success for step `index`'s command of this kind.
fn accepted_success(history: &[LogEntry], index: usize, kind: StepKind) -> bool {
    history.iter().any(|e| {
        matches!(&e.event, SagaEvent::ReplyAccepted { step, kind: k, outcome: Outcome::Success { .. }, .. }
            if *step as usize == index && *k == kind)
    })
}

/// The commands the log says were sent that really reached the transport: not those the fault
/// plan answers itself.
fn delivered_commands<'a>(history: &'a [LogEntry], faults: &FaultPlan) -> Vec<&'a Command> {
    history
        .iter()
        .filter_map(|e| match &e.event {
            SagaEvent::CommandSent { command, .. }
                if !faults.fails(&command.correlation.step_name, command.correlation.kind) =>
            {
                Some(command)
            }
            _ => None,
        })
        .collect()
}

/// Checks that compensations ran in reverse dependency order: for every step and every step it
/// depends on, both compensated, the dependent's compensation succeeded before the dependency's
/// was first sent. Entries are counted by their position in `history`.
///
/// Panics, saying which steps and entries, when they did not.
pub fn assert_reverse_dependency_order(history: &[LogEntry], definition: &SagaDefinition) {
    if let Some(problem) = crate::saga::compensation_order_violation(history, definition) {
        panic!("saga {}: compensations out of reverse dependency order: {problem}", definition.name);
    }
}
