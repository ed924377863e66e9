//! The engine: starts sagas, applies replies, fires timeouts and retries, recovers after a
//! restart, and carries out operator actions. Every change is decided by the pure functions of
//! [`crate::saga`], written to the log in one transaction, and only then acted on (a command is
//! sent after the log says it was sent), so a crash at any instant leaves a log from which the
//! saga can be driven on.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use crate::clock::{Clock, SystemClock};
use crate::definition::{Registry, RetryPolicy, SagaType};
use crate::id::{SagaId, StepKind};
use crate::inject::{FaultPlan, PanicSite, INJECTED_CODE};
use crate::log::{Created, ListQuery, SagaStore, SagaSummary, StoreError};
use crate::saga::{self, Decide, Input, LogEntry, SagaEvent, SagaState, SagaStatus};
use crate::supervision::{panic_message, AbortOnDrop, Board, CatchUnwind, EngineHealth, EngineTask, TaskState};
use crate::transport::{Command, Outcome, Receiver, Reply, Transport, TransportError};

/// Errors the engine returns to its callers.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No definition of that name (and version) is registered.
    #[error("unknown saga type {0}")]
    UnknownSagaType(String),
    /// No saga with that id.
    #[error("saga {0} not found")]
    NotFound(SagaId),
    /// The saga exists with other parameters: the id was reused for a different request.
    #[error("saga {0} already exists with different parameters")]
    IdReused(SagaId),
    /// The operation does not apply in the saga's current status.
    #[error("saga {id} is {status}: {why}")]
    InvalidState {
        /// The saga.
        id: SagaId,
        /// Its status.
        status: SagaStatus,
        /// What the operation needs.
        why: &'static str,
    },
    /// The saga log failed (after retries).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The parameters could not be written as JSON.
    #[error("invalid parameters for {saga_type}: {source}")]
    InvalidParams {
        /// The saga type.
        saga_type: String,
        /// What serde said.
        #[source]
        source: serde_json::Error,
    },
    /// The log holds something the engine cannot fold.
    #[error(transparent)]
    Replay(#[from] saga::ReplayError),
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The address replies come back to (the orchestrator's reply topic).
    pub reply_to: String,
    /// How often the timer loop looks for due deadlines and retries.
    pub poll_interval: Duration,
    /// How many due sagas one timer pass handles.
    pub tick_batch: u32,
    /// How writes to the log are retried when the database is unavailable. The write is never
    /// skipped: when the budget runs out the caller gets the error, and the message that caused
    /// the write is not acknowledged, so it comes back.
    pub store_retry: RetryPolicy,
    /// How often a command the transport refused is offered again before leaving it to the
    /// step's timeout.
    pub send_retry: RetryPolicy,
    /// How long [`Engine::start`] waits for the transport to take the new saga's first
    /// commands. `start` answers once the saga is in the log: the commands are handed over by a
    /// task of their own, and a transport slower than this (a broker outage, where its own
    /// retries take minutes) is left to finish in the background, with the step's timeout as the
    /// safety net (the command is logged as sent, so the timer retries it). Zero, the default,
    /// never waits; tests that look at the queues right after `start` wait as long as they like.
    pub start_send_wait: Duration,
    /// How far the timer pushes back a saga it cannot drive (its type not registered, its state
    /// unreadable, a transition that panics), by failures in a row; `max_attempts` is not used:
    /// the timer never stops looking, an operator ends it.
    pub failing_saga_backoff: RetryPolicy,
    /// How long a supervised task (timer, recovery, reply consumer) waits before it is started
    /// again after a panic: the backoff grows with the panics in a row, so a task that panics
    /// on every start does not spin. `max_attempts` is not used: a task is always restarted.
    pub task_restart: RetryPolicy,
    /// How many replies `run` applies at once. Replies of different sagas are independent; two
    /// of one saga meet in the log's optimistic version check, and the second is applied to
    /// the state the first wrote. Each holds a log connection while it commits.
    pub reply_concurrency: usize,
    /// How many times a reply for a saga whose type this engine does not know is handed back to
    /// the transport (for another replica that knows it: a rolling deploy) before it is
    /// dead-lettered, where an operator sees it and can redrive it once the type is deployed.
    /// The step's timeout retries the command meanwhile.
    pub unknown_type_redeliveries: u32,
    /// How often [`Engine::wait`] looks at the log again on its own. A transition this engine
    /// commits wakes its waiters at once; this covers a saga another engine on the same log
    /// drives, and bounds how late such a waiter answers.
    pub wait_poll: Duration,
    /// How many running sagas' last written states the engine keeps, so that the next
    /// transition of one starts from it instead of reading the log (the append's version check
    /// still decides: a state another writer has moved past costs one conflict and a read). 0
    /// turns it off.
    pub written_states: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            reply_to: "respuestas".into(),
            // 100 ms: timeouts are seconds long, so this adds at most a tenth of a second to a
            // timeout while costing one indexed query per tick.
            poll_interval: Duration::from_millis(100),
            tick_batch: 256,
            // Measured with the distributed benchmark (orchestrator/benches/distributed.rs):
            // one reply at a time capped the orchestrator at about 60 sagas/s.
            reply_concurrency: 16,
            // With the half-second pause before each redelivery: about ten seconds, longer than
            // a rolling deploy takes to bring up the replica that knows the type.
            unknown_type_redeliveries: 20,
            // A waiter on a saga another replica drives answers at most this late; one indexed
            // read per waiter per period.
            wait_poll: Duration::from_millis(200),
            // A few KB each: tens of MB at most, for a saving of one log read per transition.
            written_states: 10_000,
            store_retry: RetryPolicy {
                max_attempts: 8,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(5),
                multiplier: 2.0,
                jitter: 0.3,
            },
            send_retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(1),
                multiplier: 4.0,
                jitter: 0.3,
            },
            // An HTTP start must not wait on the broker (see the field).
            start_send_wait: Duration::ZERO,
            // Such a saga needs an operator; looking again within a second at first catches a
            // rolling deploy that registers its type, and every 10 minutes at most costs one
            // failed load per saga.
            failing_saga_backoff: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_secs(1),
                max_backoff: Duration::from_secs(600),
                multiplier: 2.0,
                jitter: 0.2,
            },
            // A panic is a bug: restarting at once would spin on it, waiting long leaves sagas
            // without timeouts. 100 ms doubling to 10 s keeps a crash loop cheap and a single
            // panic nearly invisible.
            task_restart: RetryPolicy {
                max_attempts: u32::MAX,
                initial_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(10),
                multiplier: 2.0,
                jitter: 0.3,
            },
        }
    }
}

/// What happened to a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyDisposition {
    /// It answered the command in flight and moved the saga.
    Applied,
    /// It answered nothing in flight; recorded in the log and ignored.
    Ignored,
    /// No such saga in this log (another deployment's reply, or a forged one).
    UnknownSaga,
}

/// The result of `start`.
#[derive(Clone, Debug)]
pub struct Started {
    /// The saga's state after the call.
    pub state: SagaState,
    /// False when the id already existed and nothing was started.
    pub created: bool,
}

/// Something the engine reports as it works, for metrics. Implementations must be cheap.
pub trait EngineObserver: Send + Sync + 'static {
    /// A log transition was written: the state before (`None` for a new saga), the state after,
    /// and the entries written.
    fn on_events(&self, _before: Option<&SagaState>, _after: &SagaState, _entries: &[LogEntry]) {}

    /// A reply that answered nothing in flight was counted for `state`, a saga at rest, without
    /// a log entry (see [`crate::saga::LOGGED_IGNORED_AT_REST`]).
    fn on_reply_counted(&self, _state: &SagaState) {}
}

struct NoObserver;
impl EngineObserver for NoObserver {}

/// The saga engine. Share it with `Arc`.
pub struct Engine {
    store: Arc<dyn SagaStore>,
    registry: Arc<Registry>,
    transport: Arc<dyn Transport>,
    clock: Arc<dyn Clock>,
    config: EngineConfig,
    faults: FaultPlan,
    observer: Arc<dyn EngineObserver>,
    rng: Mutex<SmallRng>,
    board: Board,
    waiters: Waiters,
    written: Written,
}

/// The last state this engine wrote of each saga it is still driving (running or
/// compensating), up to a capacity: a reply to one of them starts from that state instead of a
/// read of the log. It is a guess, never the truth: the append that follows checks the version
/// in the log, so a state another writer has moved past costs a conflict and a read. A
/// transition that starts from it and finds nothing to write (a stale reply, an operator action
/// refused) reads the log and decides again, so no decision not to write rests on it.
///
/// A kept state is shared with the transition that wrote it (`Arc`), not copied: keeping it
/// costs a reference count, and only the next transition, which must change it, copies it.
#[derive(Default)]
struct Written(Mutex<HashMap<SagaId, Arc<SagaState>>>);

impl Written {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Arc<SagaState>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes and returns the state kept of `id`: two transitions of one saga at once do not
    /// both start from it (the second reads the log, as before).
    fn take(&self, id: SagaId) -> Option<Arc<SagaState>> {
        self.lock().remove(&id)
    }

    /// Keeps `state`, just written, if the saga is still driven and no later state is kept (two
    /// transitions of one saga may report in either order), making room when full; forgets the
    /// saga once it rests.
    fn keep(&self, state: &Arc<SagaState>, capacity: usize) {
        let mut map = self.lock();
        if !state.status.is_active() {
            map.remove(&state.id);
            return;
        }
        if capacity == 0 {
            return;
        }
        match map.get_mut(&state.id) {
            Some(held) if held.version >= state.version => {}
            Some(held) => *held = Arc::clone(state),
            None => {
                // Full: one kept state makes room, whichever the map yields first. A saga
                // another replica finished, or one that waits long on a timer, does not hold
                // its place for ever.
                if map.len() >= capacity {
                    if let Some(out) = map.keys().next().copied() {
                        map.remove(&out);
                    }
                }
                map.insert(state.id, Arc::clone(state));
            }
        }
    }
}

/// The sagas someone waits on ([`Engine::wait`]), each with the latest state this engine wrote
/// of it while they wait: a transition hands its waiters the state it wrote, so they need not
/// read the log again to see it. An entry lives while someone waits: a transition of a saga
/// nobody waits on costs one map lookup.
#[derive(Default)]
struct Waiters(Mutex<HashMap<SagaId, Arc<Latest>>>);

/// The latest state of a saga written by this engine since someone began waiting on it.
type Latest = watch::Sender<Option<SagaState>>;

impl Waiters {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SagaId, Arc<Latest>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn watch(&self, id: SagaId) -> Arc<Latest> {
        self.lock().entry(id).or_insert_with(|| Arc::new(watch::Sender::new(None))).clone()
    }

    /// Hands `state`, just written, to the saga's waiters, unless they hold a later one (two
    /// transitions of one saga may report in either order).
    fn wake(&self, state: &SagaState) {
        if let Some(latest) = self.lock().get(&state.id) {
            latest.send_if_modified(|held| {
                if held.as_ref().is_some_and(|h| h.version >= state.version) {
                    return false;
                }
                *held = Some(state.clone());
                true
            });
        }
    }
}

/// One waiter's registration, released when it is dropped: also when the wait is abandoned (an
/// HTTP client that hangs up drops its handler's future), so no entry outlives its waiters.
struct Watching<'a> {
    waiters: &'a Waiters,
    id: SagaId,
    latest: Arc<Latest>,
}

impl<'a> Watching<'a> {
    fn new(waiters: &'a Waiters, id: SagaId) -> Self {
        Self { waiters, id, latest: waiters.watch(id) }
    }
}

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        let mut map = self.waiters.lock();
        // The map's reference and this one: no other waiter on this saga.
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 2) {
            map.remove(&self.id);
        }
    }
}

/// Builds an [`Engine`].
pub struct EngineBuilder {
    engine: Engine,
}

impl EngineBuilder {
    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.engine.clock = clock;
        self
    }

    /// Sets the configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.engine.config = config;
        self
    }

    /// Injects faults (tests only).
    pub fn faults(mut self, faults: FaultPlan) -> Self {
        self.engine.faults = faults;
        self
    }

    /// Reports transitions to `observer`.
    pub fn observer(mut self, observer: Arc<dyn EngineObserver>) -> Self {
        self.engine.observer = observer;
        self
    }

    /// Seeds the jitter source, for reproducible tests.
    pub fn seed(self, seed: u64) -> Self {
        *self.engine.rng.lock().unwrap_or_else(|e| e.into_inner()) = SmallRng::seed_from_u64(seed);
        self
    }

    /// The engine.
    pub fn build(self) -> Arc<Engine> {
        Arc::new(self.engine)
    }
}

impl Engine {
    /// Starts building an engine over a log, a registry of definitions and a transport.
    pub fn builder(store: Arc<dyn SagaStore>, registry: Arc<Registry>, transport: Arc<dyn Transport>) -> EngineBuilder {
        EngineBuilder {
            engine: Engine {
                store,
                registry,
                transport,
                clock: Arc::new(SystemClock),
                config: EngineConfig::default(),
                faults: FaultPlan::none(),
                observer: Arc::new(NoObserver),
                rng: Mutex::new(SmallRng::from_entropy()),
                board: Board::default(),
                waiters: Waiters::default(),
                written: Written::default(),
            },
        }
    }

    /// The log this engine writes.
    pub fn store(&self) -> &Arc<dyn SagaStore> {
        &self.store
    }

    /// The transport this engine sends commands on.
    pub fn transport(&self) -> &Arc<dyn Transport> {
        &self.transport
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether the engine is running ([`Engine::run_on`] in progress, no task in a crash loop),
    /// and how each of its tasks is doing: what a daemon's `/health` reports.
    pub fn health(&self) -> EngineHealth {
        self.board.health()
    }

    /// Starts a saga of the newest version of `saga_type`. Idempotent on `id`: a second call
    /// with the same id and parameters returns the existing saga; with other parameters, an error.
    /// Returns once the saga is in the log; its first commands are handed to the transport in the
    /// background, waiting at most [`EngineConfig::start_send_wait`] for it.
    #[tracing::instrument(skip_all, fields(saga_id = %id, saga_type = saga_type))]
    pub async fn start(&self, saga_type: &str, id: SagaId, params: Value) -> Result<Started, EngineError> {
        let definition =
            self.registry.latest(saga_type).ok_or_else(|| EngineError::UnknownSagaType(saga_type.to_owned()))?;
        let now = self.clock.now();
        let first = LogEntry {
            seq: 1,
            at: now,
            event: SagaEvent::Started {
                saga_type: definition.name.clone(),
                version: definition.version,
                steps: definition.step_names(),
                params: params.clone(),
            },
        };
        let mut state = SagaState::started(id, &first)?;
        let mut entries = vec![first];
        self.drive(&mut state, &mut entries, &definition, now)?;

        let mut backoff = 0;
        // A create that failed with a transient error may have committed: the retry then finds
        // the saga, and the log says whether it is this call's (see `commit`).
        let mut unsure = false;
        let outcome = loop {
            match self.store.create(&state, &entries).await {
                Ok(created) => break created,
                Err(e) if e.is_transient() => {
                    if let Err(give_up) = self.store_backoff(&mut backoff, &e).await {
                        if self.created_here(id, &entries).await.unwrap_or(false) {
                            break Created::New;
                        }
                        return Err(give_up);
                    }
                    unsure = true;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let outcome = match outcome {
            Created::Existing(_) if unsure && self.created_here(id, &entries).await? => {
                info!("a create reported as failed had committed; acting on it");
                Created::New
            }
            other => other,
        };
        match outcome {
            Created::Existing(existing) => {
                if existing.params != params || existing.saga_type != saga_type {
                    return Err(EngineError::IdReused(id));
                }
                Ok(Started { state: *existing, created: false })
            }
            Created::New => {
                info!(status = %state.status, "saga started");
                self.observer.on_events(None, &state, &entries);
                self.waiters.wake(&state);
                let state = Arc::new(state);
                self.written.keep(&state, self.config.written_states);
                let state = match self.settle_within(&state, &entries, Some(self.config.start_send_wait)).await? {
                    Some(later) => later,
                    None => Arc::unwrap_or_clone(state),
                };
                Ok(Started { state, created: true })
            }
        }
    }

    /// True when the log of `id` begins with exactly `entries`: this call created it.
    async fn created_here(&self, id: SagaId, entries: &[LogEntry]) -> Result<bool, StoreError> {
        let history = self.with_store_retry(|| self.store.history(id)).await?;
        Ok(history.get(..entries.len()) == Some(entries))
    }

    /// Starts a saga of type `S` with typed parameters: see [`Engine::start`].
    pub async fn start_saga<S: SagaType>(&self, id: SagaId, params: &S::Params) -> Result<Started, EngineError> {
        let params = serde_json::to_value(params)
            .map_err(|source| EngineError::InvalidParams { saga_type: S::NAME.to_owned(), source })?;
        self.start(S::NAME, id, params).await
    }

    /// Applies a reply. Returns once the reply's effect is in the log: the caller may then
    /// acknowledge the message.
    #[tracing::instrument(skip_all, fields(saga_id = %reply.correlation.saga_id, step = %reply.correlation.step_name,
        kind = %reply.correlation.kind, attempt = reply.correlation.attempt, outcome = reply.outcome.label()))]
    pub async fn handle_reply(&self, reply: &Reply) -> Result<ReplyDisposition, EngineError> {
        let id = reply.correlation.saga_id;
        match self.transition(id, Input::Reply(reply)).await {
            Err(EngineError::NotFound(_)) => {
                warn!("reply for a saga this log does not hold; acknowledged and ignored");
                crate::metrics::engine::reply_unmatched("unknown_saga");
                Ok(ReplyDisposition::UnknownSaga)
            }
            Err(e) => Err(e),
            Ok(None) => Ok(ReplyDisposition::Ignored),
            Ok(Some((_, entries))) => {
                let ignored = entries.iter().any(|e| matches!(e.event, SagaEvent::ReplyIgnored { .. }));
                if ignored {
                    debug!("stale reply recorded and ignored");
                    Ok(ReplyDisposition::Ignored)
                } else {
                    Ok(ReplyDisposition::Applied)
                }
            }
        }
    }

    /// Handles every deadline and retry due now. Returns how many sagas moved. A saga that
    /// cannot be driven (its type not registered, its state unreadable, its transition
    /// panicking) is deferred: its wake-up time is pushed back, further at each failure in a row
    /// ([`EngineConfig::failing_saga_backoff`]), and flagged in the store for an operator
    /// ([`SagaSummary::wake_failures`], `wake_error`), so it does not keep the head of the next
    /// pass's batch from the sagas behind it.
    pub async fn tick(&self) -> Result<usize, EngineError> {
        self.faults.strike(PanicSite::TimerPass);
        let now = self.clock.now();
        let due = self.with_store_retry(|| self.store.due(now, self.config.tick_batch)).await?;
        let mut moved = 0;
        for id in due {
            match CatchUnwind(Box::pin(self.transition(id, Input::Deadline))).await {
                Ok(Ok(Some(_))) => moved += 1,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => match failure_reason(&e) {
                    Some(reason) => self.defer_failing(id, reason, &e.to_string()).await,
                    None => warn!(saga_id = %id, error = %e, "timer pass failed for saga; next pass retries"),
                },
                Err(panic) => self.defer_failing(id, "panic", &format!("its transition panicked: {panic}")).await,
            }
        }
        Ok(moved)
    }

    /// Pushes back the wake-up time of a saga the timer could not drive, and flags it.
    async fn defer_failing(&self, id: SagaId, reason: &'static str, error: &str) {
        crate::metrics::engine::transition_failed("timer", reason);
        let before = match self.store.summary(id).await {
            Ok(Some(summary)) => summary.wake_failures,
            _ => 0,
        };
        let delay = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            self.config.failing_saga_backoff.backoff(before + 2, &mut *rng)
        };
        let until = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        match self.store.defer(id, until, error).await {
            Ok(0) => debug!(saga_id = %id, "saga moved on meanwhile; not deferred"),
            Ok(failures) => error!(saga_id = %id, failures, reason, error, next_look = %until,
                "timer cannot drive saga; it backs off until an operator fixes it"),
            Err(e) => warn!(saga_id = %id, error = %e, "could not defer a failing saga; next pass retries"),
        }
    }

    /// Recovery after a start: drives every active saga on from its log, re-sending commands
    /// that were in flight (same message id; participants deduplicate). Returns how many sagas
    /// it looked at. A saga that cannot be driven (or whose transition panics) is logged and
    /// skipped: its timer deals with it.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        self.faults.strike(PanicSite::RecoveryPass);
        let mut after = None;
        let mut seen = 0;
        loop {
            let batch = self.with_store_retry(|| self.store.active(after, 500)).await?;
            let Some(last) = batch.last().copied() else { break };
            for id in batch {
                seen += 1;
                let error = match CatchUnwind(Box::pin(self.transition(id, Input::Resend))).await {
                    Ok(Ok(_)) => continue,
                    Ok(Err(e)) => {
                        crate::metrics::engine::transition_failed(
                            "recovery",
                            failure_reason(&e).unwrap_or("unavailable"),
                        );
                        e.to_string()
                    }
                    Err(panic) => {
                        crate::metrics::engine::transition_failed("recovery", "panic");
                        format!("its transition panicked: {panic}")
                    }
                };
                error!(saga_id = %id, error, "could not recover saga; its timer will retry");
            }
            after = Some(last);
        }
        info!(sagas = seen, "recovery pass done");
        Ok(seen)
    }

    /// Operator action on a stuck saga: retry its compensation with a fresh attempt budget.
    #[tracing::instrument(skip_all, fields(saga_id = %id))]
    pub async fn retry(&self, id: SagaId, note: &str) -> Result<SagaState, EngineError> {
        self.operator(id, |state| match state.status {
            SagaStatus::Stuck => Ok(vec![SagaEvent::OperatorRetried { note: note.to_owned() }]),
            status => Err(EngineError::InvalidState { id, status, why: "only a stuck saga can be retried" }),
        })
        .await
    }

    /// Operator action: a running saga stops and compensates what it did; a stuck saga is
    /// abandoned (its remaining compensations become the operator's job).
    #[tracing::instrument(skip_all, fields(saga_id = %id))]
    pub async fn abort(&self, id: SagaId, note: &str) -> Result<SagaState, EngineError> {
        self.operator(id, |state| {
            let aborted = SagaEvent::OperatorAborted { note: note.to_owned() };
            match state.status {
                SagaStatus::Running => Ok(vec![
                    aborted,
                    SagaEvent::CompensationStarted {
                        failure: saga::Failure {
                            step: None,
                            code: "aborted".into(),
                            reason: format!("aborted by operator: {note}"),
                        },
                    },
                ]),
                SagaStatus::Stuck => Ok(vec![aborted, SagaEvent::Aborted]),
                status => Err(EngineError::InvalidState {
                    id,
                    status,
                    why: "only a running or stuck saga can be aborted (a compensating one is already unwinding)",
                }),
            }
        })
        .await
    }

    /// The current state of a saga.
    pub async fn get(&self, id: SagaId) -> Result<Option<SagaState>, EngineError> {
        Ok(self.with_store_retry(|| self.store.load(id)).await?)
    }

    /// Waits until the saga rests (final, or stuck) or, with `after_version`, until its log
    /// goes past that version, for at most `limit`; then answers its state as it is (still
    /// running when `limit` ran out), or `None` if the log does not hold it. Clients wait for a
    /// saga's end with one request instead of polling for it. This engine's own transitions wake
    /// the waiter at once; a saga another engine on the same log drives is looked at again every
    /// [`EngineConfig::wait_poll`].
    pub async fn wait(
        &self,
        id: SagaId,
        after_version: Option<i64>,
        limit: Duration,
    ) -> Result<Option<SagaState>, EngineError> {
        let watching = Watching::new(&self.waiters, id);
        // Subscribed before the read, so a transition between the read and the wait still
        // reaches it.
        let mut latest = watching.latest.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        let Some(mut state) = self.get(id).await? else { return Ok(None) };
        loop {
            if let Some(newer) = latest.borrow_and_update().as_ref().filter(|l| l.version > state.version) {
                state = newer.clone();
            }
            let moved = after_version.is_some_and(|v| state.version > v);
            if moved || !state.status.is_active() || tokio::time::Instant::now() >= deadline {
                return Ok(Some(state));
            }
            let look_again = (tokio::time::Instant::now() + self.config.wait_poll).min(deadline);
            tokio::select! {
                // This engine wrote a transition: the loop's top takes its state, no read.
                changed = latest.changed() => {
                    // `watching` holds the sender, so the channel cannot close while we wait.
                    debug_assert!(changed.is_ok());
                }
                // Another engine on the log may have moved it: read it.
                () = tokio::time::sleep_until(look_again) => {
                    let Some(read) = self.get(id).await? else { return Ok(None) };
                    if read.version > state.version {
                        state = read;
                    }
                }
            }
        }
    }

    /// A saga's summary, read without its state: its status, version, next wake-up time and
    /// whether the timer could drive it ([`SagaSummary::wake_failures`]).
    pub async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, EngineError> {
        Ok(self.with_store_retry(|| self.store.summary(id)).await?)
    }

    /// The full log of a saga.
    pub async fn history(&self, id: SagaId) -> Result<Vec<LogEntry>, EngineError> {
        Ok(self.with_store_retry(|| self.store.history(id)).await?)
    }

    /// Sagas, newest first.
    pub async fn list(&self, query: &ListQuery) -> Result<Vec<SagaSummary>, EngineError> {
        Ok(self.with_store_retry(|| self.store.list(query)).await?)
    }

    /// Runs the engine until `shutdown` completes: subscribes to replies (retrying until the
    /// transport lets it), then [`Engine::run_on`].
    pub async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send) -> Result<(), EngineError> {
        let replies = self.subscribe_retrying().await;
        self.run_on(replies, shutdown).await
    }

    /// Subscribes to this engine's replies, once. A daemon calls it before it answers requests,
    /// so no command it sends can have its reply published before the subscription exists.
    pub async fn subscribe(&self) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        self.transport.replies(&self.config.reply_to).await
    }

    /// Runs the engine on `replies` until `shutdown` completes: the recovery pass (retried while
    /// the log is unavailable), the reply consumer and the timer loop, side by side. A reply is
    /// acknowledged only after its effect is in the log; when the log cannot be written it is
    /// negatively acknowledged and comes back. A reply whose handling panics (a bug) is
    /// dead-lettered, so it cannot come back in a loop; its saga's step timeout resends the
    /// command.
    ///
    /// Each of the three runs as a supervised task: a panic is logged, counted
    /// (`saga_engine_task_panics_total{task}`) and the task started again after
    /// [`EngineConfig::task_restart`]'s backoff (the reply consumer on a new subscription; what it
    /// had not acknowledged is redelivered). [`Engine::health`] reports the engine as not running
    /// while a task is in a crash loop. Recovery runs beside the timer and the consumer rather
    /// than before them: a recovery pass that cannot finish must not stop the others, and each
    /// transition is checked against the log's version whoever makes it.
    pub async fn run_on(
        self: Arc<Self>,
        replies: Box<dyn Receiver<Reply>>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), EngineError> {
        let _running = self.board.run();
        let recovery = self.clone().supervise(EngineTask::Recovery, |engine| async move {
            loop {
                match engine.recover().await {
                    Ok(_) => break,
                    Err(e) => {
                        warn!(error = %e, "recovery pass failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        let timer = self.clone().supervise(EngineTask::Timer, |engine| async move {
            let mut interval = tokio::time::interval(engine.config.poll_interval);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                if let Err(e) = engine.tick().await {
                    warn!(error = %e, "timer pass failed");
                }
                engine.board.progress(EngineTask::Timer);
            }
        });
        // The first run consumes the subscription the caller made; a restart after a panic
        // subscribes again.
        let first = Arc::new(Mutex::new(Some(replies)));
        let consumer = self.clone().supervise(EngineTask::Replies, move |engine| {
            let first = first.clone();
            async move {
                let given = first.lock().unwrap_or_else(|e| e.into_inner()).take();
                let replies = match given {
                    Some(r) => r,
                    None => engine.subscribe_retrying().await,
                };
                engine.consume(replies).await
            }
        });
        tokio::select! {
            _ = shutdown => info!("engine shutting down"),
            _ = async { recovery.await; std::future::pending::<()>().await } => {},
            _ = timer => {},
            _ = consumer => info!("reply stream closed"),
        }
        Ok(())
    }

    /// Runs `start`'s task until it ends, starting it again after each panic (see
    /// [`Engine::run_on`]). Dropping the returned future aborts the task.
    async fn supervise<F, Fut>(self: Arc<Self>, task: EngineTask, mut start: F)
    where
        F: FnMut(Arc<Self>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut rng = SmallRng::from_entropy();
        loop {
            self.board.set(task, TaskState::Running);
            let mut handle = AbortOnDrop(tokio::spawn(start(self.clone())));
            match (&mut handle.0).await {
                Ok(()) => {
                    self.board.set(task, TaskState::Done);
                    return;
                }
                Err(e) if e.is_panic() => {
                    let message = panic_message(e.into_panic().as_ref());
                    let in_a_row = self.board.panicked(task, &message);
                    crate::metrics::engine::task_panicked(task.name());
                    let delay = self.config.task_restart.backoff(in_a_row + 1, &mut rng);
                    error!(task = task.name(), panics_in_a_row = in_a_row, panic = %message,
                        restart_in_ms = delay.as_millis() as u64, "engine task panicked; restarting it");
                    tokio::time::sleep(delay).await;
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    }

    /// Subscribes to the replies, retrying until the transport lets it.
    async fn subscribe_retrying(&self) -> Box<dyn Receiver<Reply>> {
        loop {
            match self.transport.replies(&self.config.reply_to).await {
                Ok(r) => return r,
                Err(e) => {
                    warn!(error = %e, "cannot subscribe to replies yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Applies replies from `replies` until the stream closes (see [`Engine::run_on`]).
    async fn consume(self: Arc<Self>, replies: Box<dyn Receiver<Reply>>) {
        let engine = self.clone();
        let max_redeliveries = self.config.unknown_type_redeliveries;
        crate::transport::serve_concurrently(
            replies,
            self.config.reply_concurrency,
            |reply: &Reply| tracing::info_span!("reply", saga_id = %reply.correlation.saga_id),
            move |reply: Reply| {
                let engine = engine.clone();
                async move {
                    let result = engine.handle_reply(&reply).await;
                    engine.board.progress(EngineTask::Replies);
                    result
                }
            },
            move |delivery: crate::transport::Delivery<Reply>, result: Result<ReplyDisposition, EngineError>| async move {
                match result {
                    Ok(_) => delivery.ack().await,
                    Err(EngineError::Store(e)) if e.is_transient() => {
                        warn!(error = %e, "saga log unavailable; reply will be redelivered");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        delivery.nack().await
                    }
                    // A replica without this definition (a rolling deploy): another replica
                    // may have it, and the step's timeout covers the case where none does.
                    // After enough redeliveries it is dead-lettered rather than nacked for ever.
                    Err(e @ EngineError::UnknownSagaType(_)) => {
                        if delivery.redeliveries >= max_redeliveries {
                            error!(error = %e, redeliveries = delivery.redeliveries,
                                "reply for a saga type no engine took; dead-lettering it");
                            crate::metrics::engine::reply_unmatched("unknown_saga_type_dead_lettered");
                            let reason = format!("{e}: redelivered {} times, no engine knows it", delivery.redeliveries);
                            delivery.dead_letter(&reason).await
                        } else {
                            warn!(error = %e, redeliveries = delivery.redeliveries,
                                "reply for a saga type this engine does not know; redelivering");
                            crate::metrics::engine::reply_unmatched("unknown_saga_type");
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            delivery.nack().await
                        }
                    }
                    Err(e) => {
                        error!(error = %e, "reply cannot be applied; dead-lettering it");
                        delivery.dead_letter(&e.to_string()).await
                    }
                }
            },
        )
        .await
    }

    // --- internals -------------------------------------------------------------------------

    /// Appends the events `next_event` decides until the saga rests.
    fn drive(
        &self,
        state: &mut SagaState,
        entries: &mut Vec<LogEntry>,
        definition: &crate::definition::SagaDefinition,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), EngineError> {
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        let mut decide = Decide { definition, now, reply_to: &self.config.reply_to, rng: &mut *rng };
        while let Some(event) = saga::next_event(state, &mut decide) {
            let entry = LogEntry { seq: state.version + 1, at: now, event };
            state.apply(&entry)?;
            entries.push(entry);
        }
        Ok(())
    }

    /// Loads a saga, folds in `input`, drives it to rest, and writes the result; on a version
    /// conflict, starts over from the fresh state. Then acts on what was written.
    async fn transition(
        &self,
        id: SagaId,
        input: Input<'_>,
    ) -> Result<Option<(Arc<SagaState>, Vec<LogEntry>)>, EngineError> {
        self.commit(id, |state, now| Ok(saga::observe(state, &input, now))).await
    }

    /// An operator's action: `decide` says what to record (or refuses); always written.
    async fn operator(
        &self,
        id: SagaId,
        decide: impl Fn(&SagaState) -> Result<Vec<SagaEvent>, EngineError>,
    ) -> Result<SagaState, EngineError> {
        match self.commit(id, |state, _| decide(state)).await? {
            Some((state, _)) => {
                info!(status = %state.status, "operator action written");
                Ok(Arc::unwrap_or_clone(state))
            }
            None => self.get(id).await?.ok_or(EngineError::NotFound(id)),
        }
    }

    /// The one write path: load, record what `observe` returns, drive to rest, append with the
    /// loaded version (reloading on conflict, backing off while the log is unavailable), then
    /// act on the written entries. `None` when there was nothing to write.
    ///
    /// An append that failed with a transient error may still have committed (the connection
    /// dropped after the commit reached the database). Each such attempt is kept as
    /// *unsure* until the log says what became of it: when a reload finds the saga at or past
    /// its version, the log is read back and, if it holds exactly those entries, they are acted
    /// on as if the append had answered (their commands sent now, not at their timeout); an
    /// attempt whose positions another writer took is dropped. Deciding again from a state that
    /// already holds the transition would lose its commands (the reply is now stale).
    async fn commit(
        &self,
        id: SagaId,
        observe: impl Fn(&SagaState, chrono::DateTime<Utc>) -> Result<Vec<SagaEvent>, EngineError>,
    ) -> Result<Option<(Arc<SagaState>, Vec<LogEntry>)>, EngineError> {
        self.faults.strike(PanicSite::Saga(id));
        let mut backoff = 0;
        let mut unsure: Vec<Unsure> = Vec::new();
        // The state this engine last wrote, if it kept it: tried first, in place of a read.
        let mut kept = self.written.take(id);
        loop {
            let guess = kept.take();
            let guessed = guess.is_some();
            let current = match guess {
                Some(state) => state,
                None => {
                    Arc::new(self.with_store_retry(|| self.store.load(id)).await?.ok_or(EngineError::NotFound(id))?)
                }
            };
            for attempt in std::mem::take(&mut unsure) {
                if current.version >= attempt.state.version {
                    if self.landed(id, &attempt).await? {
                        info!(saga_id = %id, version = attempt.state.version,
                            "an append reported as failed had committed; acting on it");
                        return self.acted(Some(&*attempt.before), attempt.state, attempt.entries).await.map(Some);
                    }
                } else if current.version == attempt.before.version {
                    // Not visible yet, and it may still land: the next append will conflict if so.
                    unsure.push(attempt);
                }
            }
            let definition = self.registry.get(&current.saga_type, current.definition_version).ok_or_else(|| {
                EngineError::UnknownSagaType(format!("{} v{}", current.saga_type, current.definition_version))
            })?;
            let now = self.clock.now();
            let observed = match observe(&current, now) {
                Ok(observed) => observed,
                // Refused on a kept state: the log may hold a later one that allows it.
                Err(_) if guessed => continue,
                Err(e) => return Err(e),
            };
            // A kept state may be behind the log: writing nothing is decided on what the log
            // holds, never on it.
            let writes_nothing = only_counted(&current, &observed);
            if writes_nothing && guessed {
                continue;
            }
            if writes_nothing {
                self.with_store_retry(|| self.store.count_ignored_reply(id)).await?;
                self.observer.on_reply_counted(&current);
                debug!(saga_id = %id, status = %current.status, "stale reply to a saga at rest counted, not logged");
                return Ok(None);
            }
            // The one copy of a transition: `current` stays as the state before, for the observer.
            let mut state = SagaState::clone(&current);
            let mut entries = Vec::new();
            for event in observed {
                let entry = LogEntry { seq: state.version + 1, at: now, event };
                state.apply(&entry)?;
                entries.push(entry);
            }
            if let Err(e) = self.drive(&mut state, &mut entries, &definition, now) {
                if guessed {
                    continue;
                }
                return Err(e);
            }
            if entries.is_empty() {
                if guessed {
                    continue;
                }
                return Ok(None);
            }
            match self.store.append(current.version, &state, &entries).await {
                Ok(()) => return self.acted(Some(&*current), state, entries).await.map(Some),
                Err(StoreError::Conflict(_)) => {
                    debug!(saga_id = %id, "version conflict; reloading");
                    continue;
                }
                Err(e) if e.is_transient() => {
                    let attempt = Unsure { before: current, state, entries };
                    if let Err(give_up) = self.store_backoff(&mut backoff, &e).await {
                        // One last look: the write may be in the log although the call failed.
                        if self.landed(id, &attempt).await.unwrap_or(false) {
                            return self.acted(Some(&*attempt.before), attempt.state, attempt.entries).await.map(Some);
                        }
                        return Err(give_up);
                    }
                    unsure.push(attempt);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// True when the log holds exactly `attempt`'s entries where it would have written them.
    async fn landed(&self, id: SagaId, attempt: &Unsure) -> Result<bool, StoreError> {
        let history = self.with_store_retry(|| self.store.history(id)).await?;
        let from = usize::try_from(attempt.before.version).unwrap_or(usize::MAX);
        Ok(history.get(from..from.saturating_add(attempt.entries.len())) == Some(&attempt.entries[..]))
    }

    /// Reports and acts on a transition that is in the log.
    async fn acted(
        &self,
        before: Option<&SagaState>,
        state: SagaState,
        entries: Vec<LogEntry>,
    ) -> Result<(Arc<SagaState>, Vec<LogEntry>), EngineError> {
        self.observer.on_events(before, &state, &entries);
        self.waiters.wake(&state);
        let state = Arc::new(state);
        self.written.keep(&state, self.config.written_states);
        log_transition(&state, &entries);
        let state = match self.settle(&state, &entries).await? {
            Some(later) => Arc::new(later),
            None => state,
        };
        Ok((state, entries))
    }

    /// Acts on entries just written: sends every command they put in flight (several when
    /// parallel steps became ready together), and returns once the transport took them. An
    /// injected fault answers a command instead, through the same path a participant's reply
    /// takes; the saga's state after it is returned then (`None`: the state written is the
    /// latest).
    async fn settle(&self, state: &SagaState, entries: &[LogEntry]) -> Result<Option<SagaState>, EngineError> {
        self.settle_within(state, entries, None).await
    }

    /// [`Engine::settle`]; with `wait`, the commands are handed over by a task of their own,
    /// waited for at most that long (it goes on after).
    async fn settle_within(
        &self,
        state: &SagaState,
        entries: &[LogEntry],
        wait: Option<Duration>,
    ) -> Result<Option<SagaState>, EngineError> {
        let commands: Vec<Command> = entries
            .iter()
            .filter_map(|e| match &e.event {
                SagaEvent::CommandSent { command, .. } => Some(command.correlation.message_id),
                SagaEvent::CommandResent { message_id } => Some(*message_id),
                _ => None,
            })
            .filter_map(|id| state.in_flight.iter().find(|f| f.command.correlation.message_id == id))
            .map(|f| f.command.clone())
            .collect();
        if commands.is_empty() {
            return Ok(None);
        }
        let (injected, sent): (Vec<Command>, Vec<Command>) =
            commands.into_iter().partition(|c| self.faults.fails(&c.correlation.step_name, c.correlation.kind));
        if !sent.is_empty() {
            let copies = if self.faults.duplicate_commands { 2 } else { 1 };
            let sending = send_all(self.transport.clone(), self.config.send_retry.clone(), sent, copies);
            match wait {
                None => sending.await,
                Some(wait) => {
                    let task = tokio::spawn(sending);
                    if tokio::time::timeout(wait, task).await.is_err() {
                        debug!(saga_id = %state.id, "commands handed to the transport in the background");
                    }
                }
            }
        }
        if injected.is_empty() {
            return Ok(None);
        }
        for command in injected {
            let outcome = match command.correlation.kind {
                StepKind::Action => {
                    Outcome::BusinessFailure { code: INJECTED_CODE.into(), reason: "injected failure".into() }
                }
                StepKind::Compensation => Outcome::Transient { reason: "injected compensation failure".into() },
            };
            let reply = Reply { correlation: command.correlation.clone(), outcome };
            // Boxed: settle → handle_reply → transition → settle is recursive.
            Box::pin(self.handle_reply(&reply)).await?;
        }
        Ok(Some(self.get(state.id).await?.unwrap_or_else(|| state.clone())))
    }

    async fn store_backoff(&self, attempt: &mut u32, error: &StoreError) -> Result<(), EngineError> {
        *attempt += 1;
        let policy = &self.config.store_retry;
        if *attempt >= policy.max_attempts {
            error!(attempts = *attempt, error = %error, "saga log write failed; giving the error to the caller");
            return Err(EngineError::Store(StoreError::unavailable(format!("after {} attempts: {error}", *attempt))));
        }
        // The log level rises with the failures: one blip is noise, a run of them is an outage.
        if *attempt < 3 {
            debug!(attempt = *attempt, error = %error, "saga log unavailable; retrying");
        } else {
            warn!(attempt = *attempt, error = %error, "saga log unavailable; retrying");
        }
        let delay = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            policy.backoff(*attempt + 1, &mut *rng)
        };
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn with_store_retry<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Err(e) if e.is_transient() => {
                    if let Err(EngineError::Store(e)) = self.store_backoff(&mut attempt, &e).await {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

/// Hands `commands` to the transport together (`copies` times each): one command's broker
/// acknowledgement does not delay its siblings (measured: sent one after the other, the second of
/// CrearCampaña's parallel steps answered about 11 ms after the first).
async fn send_all(transport: Arc<dyn Transport>, policy: RetryPolicy, commands: Vec<Command>, copies: usize) {
    let (transport, policy) = (&transport, &policy);
    futures_util::future::join_all(commands.iter().map(|command| async move {
        for _ in 0..copies {
            send(transport.as_ref(), policy, command).await;
        }
    }))
    .await;
}

/// Hands a command to the transport, retrying briefly. If it still fails, the step's timeout
/// will treat the attempt as unknown and retry it: nothing is lost.
async fn send(transport: &dyn Transport, policy: &RetryPolicy, command: &Command) {
    // Seeded on the first failure only: a send that succeeds asks the kernel for no entropy.
    let mut rng: Option<SmallRng> = None;
    for attempt in 1..=policy.max_attempts.max(1) {
        match transport.send_command(command).await {
            Ok(()) => return,
            // Encoding it again gives the same error; the step's timeout retries a new attempt,
            // and its retries running out turn the saga to compensation.
            Err(e @ TransportError::Codec(_)) => {
                error!(saga_id = %command.correlation.saga_id, error = %e, "command cannot be encoded; not sent");
                return;
            }
            Err(e) => {
                warn!(saga_id = %command.correlation.saga_id, attempt, error = %e, "command send failed");
                let rng = rng.get_or_insert_with(SmallRng::from_entropy);
                tokio::time::sleep(policy.backoff(attempt + 1, rng)).await;
            }
        }
    }
    error!(saga_id = %command.correlation.saga_id, "command not sent; the step timeout will retry it");
}

/// An append that failed with a transient error and may have committed anyway.
struct Unsure {
    /// The state it was decided against.
    before: Arc<SagaState>,
    /// The state it wrote.
    state: SagaState,
    /// The entries it wrote.
    entries: Vec<LogEntry>,
}

/// True when `events` only record replies ignored by a saga at rest that already logged its
/// first few: they are counted, not logged.
fn only_counted(state: &SagaState, events: &[SagaEvent]) -> bool {
    !state.status.is_active()
        && state.replies_ignored_at_rest >= saga::LOGGED_IGNORED_AT_REST
        && !events.is_empty()
        && events.iter().all(|e| matches!(e, SagaEvent::ReplyIgnored { .. }))
}

/// Why a saga cannot be driven, as a metric label, when retrying at once will not help; `None`
/// for what passes (the log unavailable) or leaves nothing to drive (the saga is gone).
fn failure_reason(e: &EngineError) -> Option<&'static str> {
    match e {
        EngineError::Store(s) if s.is_transient() => None,
        EngineError::NotFound(_) => None,
        EngineError::UnknownSagaType(_) => Some("unknown_saga_type"),
        EngineError::Store(StoreError::Corrupt(_)) | EngineError::Replay(_) => Some("corrupt"),
        _ => Some("other"),
    }
}

fn log_transition(state: &SagaState, entries: &[LogEntry]) {
    for entry in entries {
        match &entry.event {
            SagaEvent::Completed | SagaEvent::Compensated | SagaEvent::Aborted => {
                info!(saga_id = %state.id, status = %state.status, "saga finished")
            }
            SagaEvent::Stuck { reason, .. } => {
                error!(saga_id = %state.id, reason = %reason, "saga stuck: operator needed")
            }
            SagaEvent::CompensationStarted { failure } => {
                info!(saga_id = %state.id, code = %failure.code, reason = %failure.reason, "saga compensating")
            }
            SagaEvent::TimedOut { step, kind, attempt } => {
                warn!(saga_id = %state.id, step, %kind, attempt, "step timed out")
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-step saga `id` as started, then set to `version` and `status`.
    fn state_at(id: SagaId, version: i64, status: SagaStatus) -> SagaState {
        let mut s = SagaState::started(
            id,
            &LogEntry {
                seq: 1,
                at: Utc::now(),
                event: SagaEvent::Started {
                    saga_type: "prueba".into(),
                    version: 1,
                    steps: vec!["uno".into()],
                    params: serde_json::json!({}),
                },
            },
        )
        .expect("started");
        s.version = version;
        s.status = status;
        s
    }

    /// An entry lives exactly as long as its waiters, however they end (a dropped wait included).
    #[test]
    fn a_waited_saga_is_forgotten_with_its_last_waiter() {
        let waiters = Waiters::default();
        let (id, other) = (SagaId::new(), SagaId::new());
        let first = Watching::new(&waiters, id);
        let second = Watching::new(&waiters, id);
        let elsewhere = Watching::new(&waiters, other);
        assert!(Arc::ptr_eq(&first.latest, &second.latest), "one channel per saga");
        drop(first);
        assert!(waiters.lock().contains_key(&id), "the second still waits");
        drop(second);
        assert!(!waiters.lock().contains_key(&id), "no waiter left");
        assert!(waiters.lock().contains_key(&other));
        drop(elsewhere);
        assert!(waiters.lock().is_empty());
    }

    /// A transition hands its waiters the state it wrote; an older one reported late does not
    /// replace a newer one, and a saga nobody waits on is not kept.
    #[test]
    fn waiters_get_the_latest_state_written() {
        let waiters = Waiters::default();
        let id = SagaId::new();
        let state = |version| state_at(id, version, SagaStatus::Running);
        waiters.wake(&state(1));
        assert!(waiters.lock().is_empty(), "nobody waits: nothing kept");
        let watching = Watching::new(&waiters, id);
        let mut latest = watching.latest.subscribe();
        waiters.wake(&state(3));
        waiters.wake(&state(2));
        assert!(latest.has_changed().unwrap_or(false));
        assert_eq!(latest.borrow_and_update().as_ref().map(|s| s.version), Some(3), "the later state stays");
        waiters.wake(&state(3));
        assert!(!latest.has_changed().unwrap_or(true), "the same version again is not news");
    }

    /// The kept states: the later of two versions stays, a saga that rests is forgotten, and a
    /// full map makes room for a new saga instead of growing.
    #[test]
    fn written_keeps_the_latest_state_of_a_driven_saga_within_capacity() {
        let state = |id, version, status| Arc::new(state_at(id, version, status));
        let written = Written::default();
        let (a, b) = (SagaId::new(), SagaId::new());
        written.keep(&state(a, 3, SagaStatus::Running), 1);
        written.keep(&state(a, 2, SagaStatus::Running), 1);
        written.keep(&state(a, 4, SagaStatus::Compensating), 1);
        assert_eq!(written.lock().get(&a).map(|s| s.version), Some(4), "the later state, replaced in place");
        written.keep(&state(b, 1, SagaStatus::Running), 1);
        assert_eq!(written.lock().len(), 1, "full: the new saga takes a place, the map does not grow");
        assert!(written.take(a).is_none(), "made room for the new one");
        assert_eq!(written.take(b).map(|s| s.version), Some(1));
        assert!(written.take(b).is_none(), "taken once");
        written.keep(&state(b, 2, SagaStatus::Running), 1);
        written.keep(&state(b, 3, SagaStatus::Completed), 1);
        assert!(written.lock().is_empty(), "a saga at rest is forgotten");
    }
}
