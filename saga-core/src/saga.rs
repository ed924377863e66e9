//! The saga state machine, as pure functions: the events written to the saga log, the state they
//! fold into, and the decisions that take a saga from one resting state to the next.
//!
//! The log is the source of truth. [`SagaState`] is a fold of its entries (the current-state row
//! is a cache of that fold, written in the same transaction), so any prefix of a log is a valid
//! state and [`next_event`] can drive it on: that is how recovery works after a crash at any
//! instant.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::definition::{ActionMessage, SagaDefinition, StepContext, StepType};
use crate::id::{MessageId, SagaId, StepKind};
use crate::transport::{Command, Correlation, Outcome};

/// Where a saga is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SagaStatus {
    /// Running its actions forward.
    Running,
    /// A step failed (or an operator aborted): undoing what was done, in reverse order.
    Compensating,
    /// Every action succeeded. Terminal.
    Completed,
    /// Every step that ran or may have run was compensated. Terminal.
    Compensated,
    /// A compensation kept failing: waiting for an operator to `retry` or `abort`.
    Stuck,
    /// An operator abandoned a stuck saga, taking over its repair. Terminal.
    Aborted,
}

impl SagaStatus {
    /// Every status, for metrics and filters.
    pub const ALL: [SagaStatus; 6] = [
        SagaStatus::Running,
        SagaStatus::Compensating,
        SagaStatus::Completed,
        SagaStatus::Compensated,
        SagaStatus::Stuck,
        SagaStatus::Aborted,
    ];

    /// The stable name used in the log, the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            SagaStatus::Running => "running",
            SagaStatus::Compensating => "compensating",
            SagaStatus::Completed => "completed",
            SagaStatus::Compensated => "compensated",
            SagaStatus::Stuck => "stuck",
            SagaStatus::Aborted => "aborted",
        }
    }

    /// True when the engine will never move the saga again.
    pub fn is_final(self) -> bool {
        matches!(self, SagaStatus::Completed | SagaStatus::Compensated | SagaStatus::Aborted)
    }

    /// True when the engine is still driving the saga (not final, not waiting for an operator).
    pub fn is_active(self) -> bool {
        matches!(self, SagaStatus::Running | SagaStatus::Compensating)
    }
}

impl std::fmt::Display for SagaStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SagaStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SagaStatus::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| format!("unknown saga status {s:?}"))
    }
}

/// Why a saga turned to compensation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The step that failed, if one did (none for an operator's abort).
    pub step: Option<String>,
    /// A stable code: the participant's business code, `gave_up`, `build_failed` or `aborted`.
    pub code: String,
    /// A human-readable reason.
    pub reason: String,
}

/// One record of the saga log. Serialized as JSON with a `type` tag; the names are stable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SagaEvent {
    /// The saga was created.
    Started {
        /// Definition name.
        saga_type: String,
        /// Definition version.
        version: u32,
        /// The names of the definition's steps, in order.
        steps: Vec<String>,
        /// The parameters.
        params: Value,
    },
    /// A command was written here, then handed to the transport. It stays in flight until a
    /// matching reply or its deadline.
    CommandSent {
        /// The full command, so recovery resends it unchanged (same message id).
        command: Command,
        /// When the attempt times out.
        deadline: DateTime<Utc>,
    },
    /// The in-flight command was handed to the transport again (recovery after a restart).
    CommandResent {
        /// Its message id.
        message_id: MessageId,
    },
    /// A reply matched the in-flight command and was applied.
    ReplyAccepted {
        /// Step index.
        step: u32,
        /// Action or compensation.
        kind: StepKind,
        /// The attempt it answers.
        attempt: u32,
        /// What the participant said.
        outcome: Outcome,
    },
    /// A reply that answers no command in flight (duplicate, late, or for a step already past):
    /// recorded and ignored.
    ReplyIgnored {
        /// The reply's correlation.
        correlation: Correlation,
        /// The reply's outcome label.
        outcome: String,
        /// Why it was ignored.
        why: String,
    },
    /// No reply came before the deadline: the outcome is unknown, the step may have run.
    TimedOut {
        /// Step index.
        step: u32,
        /// Action or compensation.
        kind: StepKind,
        /// The attempt that timed out.
        attempt: u32,
    },
    /// The command could not be built.
    BuildFailed {
        /// Step index.
        step: u32,
        /// Action or compensation.
        kind: StepKind,
        /// The builder's error.
        error: String,
    },
    /// The next attempt waits for a backoff delay.
    RetryScheduled {
        /// Step index.
        step: u32,
        /// Action or compensation.
        kind: StepKind,
        /// The attempt that will be sent.
        attempt: u32,
        /// When.
        at: DateTime<Utc>,
    },
    /// Attempts ran out without a definite answer.
    GaveUp {
        /// Step index.
        step: u32,
        /// Action or compensation.
        kind: StepKind,
        /// Attempts made.
        attempts: u32,
    },
    /// The saga turned to compensation.
    CompensationStarted {
        /// Why.
        failure: Failure,
    },
    /// Every action succeeded.
    Completed,
    /// Every step that needed it was compensated.
    Compensated,
    /// A compensation gave up; an operator must act.
    Stuck {
        /// The step whose compensation gave up; none when the saga cannot be driven at all (its
        /// definition changed under the same version).
        step: Option<u32>,
        /// Why.
        reason: String,
    },
    /// An operator asked to retry a stuck saga's compensation, with a fresh attempt budget.
    OperatorRetried {
        /// The operator's note.
        note: String,
    },
    /// An operator aborted the saga: a running one turns to compensation, a stuck one is
    /// abandoned.
    OperatorAborted {
        /// The operator's note.
        note: String,
    },
    /// A stuck saga was abandoned by an operator.
    Aborted,
}

impl SagaEvent {
    /// The event's stable type name, as in the log's `kind` column.
    pub fn name(&self) -> &'static str {
        match self {
            SagaEvent::Started { .. } => "started",
            SagaEvent::CommandSent { .. } => "command_sent",
            SagaEvent::CommandResent { .. } => "command_resent",
            SagaEvent::ReplyAccepted { .. } => "reply_accepted",
            SagaEvent::ReplyIgnored { .. } => "reply_ignored",
            SagaEvent::TimedOut { .. } => "timed_out",
            SagaEvent::BuildFailed { .. } => "build_failed",
            SagaEvent::RetryScheduled { .. } => "retry_scheduled",
            SagaEvent::GaveUp { .. } => "gave_up",
            SagaEvent::CompensationStarted { .. } => "compensation_started",
            SagaEvent::Completed => "completed",
            SagaEvent::Compensated => "compensated",
            SagaEvent::Stuck { .. } => "stuck",
            SagaEvent::OperatorRetried { .. } => "operator_retried",
            SagaEvent::OperatorAborted { .. } => "operator_aborted",
            SagaEvent::Aborted => "aborted",
        }
    }
}

/// One entry of a saga's log: its position, its time, its event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the saga's log, from 1, without gaps.
    pub seq: i64,
    /// When it was written.
    pub at: DateTime<Utc>,
    /// What happened.
    pub event: SagaEvent,
}

/// Where one direction (action or compensation) of a step stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum PhaseStatus {
    /// Never sent.
    #[default]
    NotStarted,
    /// Sent at least once; no definite answer yet.
    InProgress,
    /// Done.
    Succeeded,
    /// Refused by a business rule (actions only: a compensation may not fail for business).
    Failed {
        /// The participant's code.
        code: String,
        /// The participant's reason.
        reason: String,
    },
    /// Attempts ran out without a definite answer.
    GaveUp,
}

/// One direction of a step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// Where it stands.
    pub status: PhaseStatus,
    /// Attempts sent so far (the number of the latest attempt).
    pub attempts: u32,
    /// Attempts that do not count against the retry budget (an operator's retry resets it).
    pub budget_from: u32,
    /// True once an attempt ended without a definite answer (timeout, transient reply): the
    /// effect may have happened.
    pub uncertain: bool,
    /// The latest error reported for it, if any.
    pub last_error: Option<String>,
}

/// One step of a running saga.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    /// The step's name.
    pub name: String,
    /// The forward action.
    pub action: Phase,
    /// The compensation.
    pub compensation: Phase,
}

impl StepState {
    /// True when the action succeeded or may have run, so it must be compensated.
    pub fn needs_compensation(&self) -> bool {
        self.action.status == PhaseStatus::Succeeded || (self.action.attempts > 0 && self.action.uncertain)
    }

    fn phase_mut(&mut self, kind: StepKind) -> &mut Phase {
        match kind {
            StepKind::Action => &mut self.action,
            StepKind::Compensation => &mut self.compensation,
        }
    }

    /// One direction of the step.
    pub fn phase(&self, kind: StepKind) -> &Phase {
        match kind {
            StepKind::Action => &self.action,
            StepKind::Compensation => &self.compensation,
        }
    }
}

/// A command a saga waits on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InFlight {
    /// The command, as sent.
    pub command: Command,
    /// When it was written to the log (sent right after).
    pub sent_at: DateTime<Utc>,
    /// When it times out.
    pub deadline: DateTime<Utc>,
}

/// An attempt waiting for its backoff delay.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRetry {
    /// Step index.
    pub step: u32,
    /// Action or compensation.
    pub kind: StepKind,
    /// The attempt to send.
    pub attempt: u32,
    /// When.
    pub at: DateTime<Utc>,
}

/// The current state of a saga: the fold of its log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaState {
    /// The saga.
    pub id: SagaId,
    /// Definition name.
    pub saga_type: String,
    /// Definition version.
    pub definition_version: u32,
    /// Start parameters.
    pub params: Value,
    /// Where it is.
    pub status: SagaStatus,
    /// The seq of the last log entry folded in; the optimistic-concurrency version.
    pub version: i64,
    /// The steps.
    pub steps: Vec<StepState>,
    /// Outputs of succeeded actions, by step name.
    pub outputs: BTreeMap<String, Value>,
    /// The commands awaiting their replies, at most one per step, in step order.
    #[serde(deserialize_with = "one_or_many")]
    pub in_flight: Vec<InFlight>,
    /// Attempts waiting for their backoff delay, at most one per step, in step order.
    #[serde(default, alias = "retry", deserialize_with = "one_or_many")]
    pub retries: Vec<PendingRetry>,
    /// Why it compensates, if it does.
    pub failure: Option<Failure>,
    /// Why it is stuck, if it is.
    pub stuck_reason: Option<String>,
    /// `reply_ignored` entries logged while the saga rested (finished or stuck). Past
    /// [`LOGGED_IGNORED_AT_REST`] the engine only counts such replies (in the store), so a
    /// redelivery storm does not grow a finished saga's log.
    #[serde(default)]
    pub replies_ignored_at_rest: u32,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When its log last recorded a change (a reply ignored by a saga at rest changes nothing).
    pub updated_at: DateTime<Utc>,
}

/// How many stale replies to a saga at rest (finished or stuck) are written to its log, with
/// their correlation and the reason; the ones after are only counted. A few show an operator
/// what arrives (whose reply, which attempt); thousands would only grow the log.
pub const LOGGED_IGNORED_AT_REST: u32 = 3;

/// Reads a list that state rows written before steps ran in parallel hold as one optional value
/// (`null` or an object), so an upgrade reads the current-state rows of sagas in flight.
fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(Option<T>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(v) => v,
        OneOrMany::One(o) => o.into_iter().collect(),
    })
}

/// A log that does not start with `Started`, or an entry out of sequence.
#[derive(Debug, thiserror::Error)]
#[error("invalid saga log for {saga}: {reason}")]
pub struct ReplayError {
    /// The saga.
    pub saga: SagaId,
    /// What is wrong.
    pub reason: String,
}

impl SagaState {
    /// The state right after a `Started` entry.
    pub fn started(id: SagaId, entry: &LogEntry) -> Result<Self, ReplayError> {
        let SagaEvent::Started { saga_type, version, steps, params } = &entry.event else {
            return Err(ReplayError { saga: id, reason: "the first entry is not `started`".into() });
        };
        if entry.seq != 1 {
            return Err(ReplayError { saga: id, reason: format!("`started` has seq {}", entry.seq) });
        }
        Ok(Self {
            id,
            saga_type: saga_type.clone(),
            definition_version: *version,
            params: params.clone(),
            status: SagaStatus::Running,
            version: 1,
            steps: steps
                .iter()
                .map(|name| StepState { name: name.clone(), action: Phase::default(), compensation: Phase::default() })
                .collect(),
            outputs: BTreeMap::new(),
            in_flight: Vec::new(),
            retries: Vec::new(),
            failure: None,
            stuck_reason: None,
            replies_ignored_at_rest: 0,
            created_at: entry.at,
            updated_at: entry.at,
        })
    }

    /// Folds a whole log.
    pub fn replay(id: SagaId, entries: &[LogEntry]) -> Result<Self, ReplayError> {
        let (first, rest) =
            entries.split_first().ok_or_else(|| ReplayError { saga: id, reason: "empty log".into() })?;
        let mut state = Self::started(id, first)?;
        for entry in rest {
            state.apply(entry)?;
        }
        Ok(state)
    }

    /// When the engine must look at this saga again without any message arriving: the earliest
    /// deadline of a command in flight or time of a pending retry.
    pub fn wake_at(&self) -> Option<DateTime<Utc>> {
        if !self.status.is_active() {
            return None;
        }
        self.in_flight.iter().map(|f| f.deadline).chain(self.retries.iter().map(|r| r.at)).min()
    }

    /// The command in flight for step `step`, if any.
    pub fn in_flight_for(&self, step: &str) -> Option<&InFlight> {
        self.in_flight.iter().find(|f| f.command.correlation.step_name == step)
    }

    /// The pending retry of step index `step`, if any.
    pub fn retry_for(&self, step: u32) -> Option<&PendingRetry> {
        self.retries.iter().find(|r| r.step == step)
    }

    fn clear_in_flight(&mut self, step: &str) {
        self.in_flight.retain(|f| f.command.correlation.step_name != step);
    }

    /// The output of typed step `T`, if its action succeeded.
    pub fn output<T: StepType>(&self) -> Result<Option<<T::Action as ActionMessage>::Output>, serde_json::Error> {
        self.outputs.get(T::NAME).map(|v| serde_json::from_value(v.clone())).transpose()
    }

    /// The index of the step named `name`.
    pub fn step_index(&self, name: &str) -> Result<u32, ReplayError> {
        self.steps
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u32)
            .ok_or_else(|| ReplayError { saga: self.id, reason: format!("no step named {name:?}") })
    }

    fn step_mut(&mut self, step: u32) -> Result<&mut StepState, ReplayError> {
        let id = self.id;
        self.steps
            .get_mut(step as usize)
            .ok_or_else(|| ReplayError { saga: id, reason: format!("step {step} out of range") })
    }

    /// Folds one more entry in.
    pub fn apply(&mut self, entry: &LogEntry) -> Result<(), ReplayError> {
        if entry.seq != self.version + 1 {
            return Err(ReplayError {
                saga: self.id,
                reason: format!("entry seq {} after version {}", entry.seq, self.version),
            });
        }
        match &entry.event {
            SagaEvent::Started { .. } => {
                return Err(ReplayError { saga: self.id, reason: "a second `started`".into() })
            }
            SagaEvent::CommandSent { command, deadline } => {
                let c = &command.correlation;
                let step = self.step_index(&c.step_name)?;
                let phase = self.step_mut(step)?.phase_mut(c.kind);
                phase.attempts = c.attempt;
                phase.status = PhaseStatus::InProgress;
                self.clear_in_flight(&c.step_name);
                let at = self
                    .in_flight
                    .partition_point(|f| self.step_index(&f.command.correlation.step_name).unwrap_or(0) < step);
                self.in_flight
                    .insert(at, InFlight { command: command.clone(), sent_at: entry.at, deadline: *deadline });
                self.retries.retain(|r| r.step != step);
            }
            SagaEvent::ReplyIgnored { .. } if !self.status.is_active() => {
                // Nothing changed: a finished saga keeps the time it finished at.
                self.replies_ignored_at_rest += 1;
                self.version = entry.seq;
                return Ok(());
            }
            SagaEvent::CommandResent { .. } | SagaEvent::ReplyIgnored { .. } | SagaEvent::OperatorAborted { .. } => {}
            SagaEvent::ReplyAccepted { step, kind, outcome, .. } => {
                let name = self.step_mut(*step)?.name.clone();
                self.clear_in_flight(&name);
                let phase = self.step_mut(*step)?.phase_mut(*kind);
                match outcome {
                    Outcome::Success { output } => {
                        phase.status = PhaseStatus::Succeeded;
                        if *kind == StepKind::Action {
                            self.outputs.insert(name, output.clone());
                        }
                    }
                    Outcome::BusinessFailure { code, reason } => match kind {
                        StepKind::Action => {
                            phase.status = PhaseStatus::Failed { code: code.clone(), reason: reason.clone() }
                        }
                        // A compensation may not fail for business reasons: such an answer is
                        // treated as an error that retries, and in the end makes the saga stuck.
                        StepKind::Compensation => phase.last_error = Some(format!("{code}: {reason}")),
                    },
                    Outcome::Transient { reason } => {
                        phase.uncertain = true;
                        phase.last_error = Some(reason.clone());
                    }
                }
            }
            SagaEvent::TimedOut { step, kind, .. } => {
                let name = self.step_mut(*step)?.name.clone();
                self.clear_in_flight(&name);
                let phase = self.step_mut(*step)?.phase_mut(*kind);
                phase.uncertain = true;
                phase.last_error = Some("timed out".into());
            }
            SagaEvent::BuildFailed { step, kind, error } => {
                let phase = self.step_mut(*step)?.phase_mut(*kind);
                phase.last_error = Some(error.clone());
                phase.status = match kind {
                    StepKind::Action => PhaseStatus::Failed { code: "build_failed".into(), reason: error.clone() },
                    StepKind::Compensation => PhaseStatus::GaveUp,
                };
            }
            SagaEvent::RetryScheduled { step, kind, attempt, at } => {
                self.step_mut(*step)?;
                self.retries.retain(|r| r.step != *step);
                let i = self.retries.partition_point(|r| r.step < *step);
                self.retries.insert(i, PendingRetry { step: *step, kind: *kind, attempt: *attempt, at: *at });
            }
            SagaEvent::GaveUp { step, kind, .. } => {
                self.step_mut(*step)?.phase_mut(*kind).status = PhaseStatus::GaveUp;
            }
            SagaEvent::CompensationStarted { failure } => {
                self.status = SagaStatus::Compensating;
                self.failure = Some(failure.clone());
                // No action is tried again. An action still waiting for its retry ran at least
                // once without a definite answer: it is uncertain, so it is compensated. Actions
                // in flight stay in flight: their reply (or timeout) says whether to compensate.
                self.retries.retain(|r| r.kind != StepKind::Action);
            }
            SagaEvent::Completed => self.status = SagaStatus::Completed,
            SagaEvent::Compensated => self.status = SagaStatus::Compensated,
            SagaEvent::Stuck { reason, .. } => {
                self.status = SagaStatus::Stuck;
                self.stuck_reason = Some(reason.clone());
            }
            SagaEvent::OperatorRetried { .. } => {
                self.status = SagaStatus::Compensating;
                self.stuck_reason = None;
                for step in &mut self.steps {
                    let comp = &mut step.compensation;
                    if comp.status == PhaseStatus::GaveUp {
                        comp.status = PhaseStatus::InProgress;
                        comp.budget_from = comp.attempts;
                    }
                }
            }
            SagaEvent::Aborted => self.status = SagaStatus::Aborted,
        }
        self.version = entry.seq;
        self.updated_at = entry.at;
        Ok(())
    }
}

/// What an operator asked for, or what the engine noticed, that is folded in before the saga
/// is driven on.
#[derive(Clone, Debug)]
pub enum Input<'a> {
    /// Nothing new: drive the saga on from where it is (recovery, or a timer).
    Nothing,
    /// A reply arrived.
    Reply(&'a crate::transport::Reply),
    /// Check the in-flight command's deadline.
    Deadline,
    /// Recovery after a restart: resend the in-flight command, if any.
    Resend,
}

/// The events that record `input` against `state`. Pure: no I/O, no clock but `now`.
pub fn observe(state: &SagaState, input: &Input<'_>, now: DateTime<Utc>) -> Vec<SagaEvent> {
    match input {
        Input::Nothing => Vec::new(),
        Input::Resend if state.status.is_active() => state
            .in_flight
            .iter()
            .map(|f| SagaEvent::CommandResent { message_id: f.command.correlation.message_id })
            .collect(),
        Input::Resend => Vec::new(),
        Input::Deadline if state.status.is_active() => state
            .in_flight
            .iter()
            .filter(|f| f.deadline <= now)
            .filter_map(|f| {
                let c = &f.command.correlation;
                let step = state.step_index(&c.step_name).ok()?;
                Some(SagaEvent::TimedOut { step, kind: c.kind, attempt: c.attempt })
            })
            .collect(),
        Input::Deadline => Vec::new(),
        Input::Reply(reply) => {
            let c = &reply.correlation;
            let matches = state.status.is_active() && state.in_flight.iter().any(|f| f.command.correlation == *c);
            let step = state.step_index(&c.step_name);
            if let (true, Ok(step)) = (matches, step) {
                vec![SagaEvent::ReplyAccepted {
                    step,
                    kind: c.kind,
                    attempt: c.attempt,
                    outcome: reply.outcome.clone(),
                }]
            } else {
                let why = if state.status.is_active() {
                    let waiting: Vec<String> = state
                        .in_flight
                        .iter()
                        .map(|f| {
                            let w = &f.command.correlation;
                            format!("step {} {} attempt {}", w.step_name, w.kind, w.attempt)
                        })
                        .collect();
                    if waiting.is_empty() {
                        "no command in flight".to_owned()
                    } else {
                        format!("waiting for {}", waiting.join(", "))
                    }
                } else {
                    format!("saga is {}", state.status)
                };
                vec![SagaEvent::ReplyIgnored { correlation: c.clone(), outcome: reply.outcome.label().to_owned(), why }]
            }
        }
    }
}

/// What the engine needs to decide the next event, beyond the state.
pub struct Decide<'a, R: Rng> {
    /// The saga's definition.
    pub definition: &'a SagaDefinition,
    /// Now.
    pub now: DateTime<Utc>,
    /// Where replies go.
    pub reply_to: &'a str,
    /// Jitter source.
    pub rng: &'a mut R,
}

/// Why a logged saga cannot be driven by `definition`: its `started` entry names other steps.
/// A definition changed without a new version would otherwise send the wrong commands, or none.
pub fn definition_mismatch(state: &SagaState, definition: &SagaDefinition) -> Option<String> {
    let logged: Vec<&str> = state.steps.iter().map(|s| s.name.as_str()).collect();
    let defined: Vec<&str> = definition.steps.iter().map(|s| s.name.as_str()).collect();
    (logged != defined).then(|| {
        format!(
            "definition {} v{} changed under the same version: the saga started with steps {logged:?}, \
             the registered definition has {defined:?}; register the old definition again, or abort",
            definition.name, definition.version
        )
    })
}

/// The next event that moves `state` on, or `None` when it rests (waiting for replies, timers,
/// an operator, or finished). Apply it and call again until `None`: one call may put one
/// command in flight, the next call another (every step whose dependencies succeeded is sent).
pub fn next_event<R: Rng>(state: &SagaState, d: &mut Decide<'_, R>) -> Option<SagaEvent> {
    if !state.status.is_active() {
        return None;
    }
    if let Some(reason) = definition_mismatch(state, d.definition) {
        return Some(SagaEvent::Stuck { step: None, reason });
    }
    match state.status {
        SagaStatus::Running => next_forward(state, d),
        SagaStatus::Compensating => next_backward(state, d),
        _ => None,
    }
}

/// Where a step's action is while the saga runs forward.
fn waiting(state: &SagaState, i: u32, kind: StepKind) -> bool {
    let step = &state.steps[i as usize];
    state.in_flight_for(&step.name).is_some_and(|f| f.command.correlation.kind == kind)
        || state.retry_for(i).is_some_and(|r| r.kind == kind)
}

fn next_forward<R: Rng>(state: &SagaState, d: &mut Decide<'_, R>) -> Option<SagaEvent> {
    // A definite failure anywhere turns the saga around, whatever else is in flight.
    for step in &state.steps {
        let failure = match &step.action.status {
            PhaseStatus::Failed { code, reason } => {
                Failure { step: Some(step.name.clone()), code: code.clone(), reason: reason.clone() }
            }
            PhaseStatus::GaveUp => Failure {
                step: Some(step.name.clone()),
                code: "gave_up".into(),
                reason: format!(
                    "no definite answer after {} attempts ({})",
                    step.action.attempts,
                    step.action.last_error.as_deref().unwrap_or("unknown")
                ),
            },
            _ => continue,
        };
        return Some(SagaEvent::CompensationStarted { failure });
    }
    if let Some(retry) = state.retries.iter().find(|r| r.kind == StepKind::Action && r.at <= d.now) {
        return Some(send(state, d, retry.step, StepKind::Action, retry.attempt));
    }
    for (i, step) in state.steps.iter().enumerate() {
        let i = i as u32;
        match step.action.status {
            PhaseStatus::NotStarted => {
                let ready = d
                    .definition
                    .deps(i as usize)
                    .iter()
                    .all(|&dep| state.steps.get(dep).is_some_and(|s| s.action.status == PhaseStatus::Succeeded));
                if ready {
                    return Some(send(state, d, i, StepKind::Action, 1));
                }
            }
            // An attempt ended without a definite answer (a timeout, a transient reply).
            PhaseStatus::InProgress if !waiting(state, i, StepKind::Action) => {
                return Some(retry_or_give_up(state, d, i, StepKind::Action));
            }
            _ => {}
        }
    }
    state.steps.iter().all(|s| s.action.status == PhaseStatus::Succeeded).then_some(SagaEvent::Completed)
}

/// True when step `i` needs nothing more before the steps it depends on are compensated: its
/// action is not in flight, and it either needs no compensation or its compensation succeeded.
fn settled_backward(state: &SagaState, i: usize) -> bool {
    let step = &state.steps[i];
    let action_in_flight =
        state.in_flight_for(&step.name).is_some_and(|f| f.command.correlation.kind == StepKind::Action);
    !action_in_flight && (!step.needs_compensation() || step.compensation.status == PhaseStatus::Succeeded)
}

fn next_backward<R: Rng>(state: &SagaState, d: &mut Decide<'_, R>) -> Option<SagaEvent> {
    if let Some(retry) = state.retries.iter().find(|r| r.kind == StepKind::Compensation && r.at <= d.now) {
        return Some(send(state, d, retry.step, StepKind::Compensation, retry.attempt));
    }
    let mut gave_up = None;
    // Reverse declaration order is a reverse topological order; a step is compensated only once
    // every step that depends on it is settled.
    for (i, step) in state.steps.iter().enumerate().rev() {
        if settled_backward(state, i) || !step.needs_compensation() {
            continue;
        }
        let action_in_flight =
            state.in_flight_for(&step.name).is_some_and(|f| f.command.correlation.kind == StepKind::Action);
        let blocked = action_in_flight || d.definition.dependents(i).any(|j| !settled_backward(state, j));
        if blocked {
            continue;
        }
        let i = i as u32;
        match &step.compensation.status {
            PhaseStatus::NotStarted => return Some(send(state, d, i, StepKind::Compensation, 1)),
            PhaseStatus::InProgress | PhaseStatus::Failed { .. } if !waiting(state, i, StepKind::Compensation) => {
                return Some(retry_or_give_up(state, d, i, StepKind::Compensation));
            }
            PhaseStatus::GaveUp => gave_up = gave_up.or(Some((i, step))),
            _ => {}
        }
    }
    if state.in_flight.is_empty() && state.retries.is_empty() {
        if let Some((i, step)) = gave_up {
            return Some(SagaEvent::Stuck {
                step: Some(i),
                reason: format!(
                    "compensation of {} failed after {} attempts: {}",
                    step.name,
                    step.compensation.attempts,
                    step.compensation.last_error.as_deref().unwrap_or("unknown")
                ),
            });
        }
        if (0..state.steps.len()).all(|i| settled_backward(state, i)) {
            return Some(SagaEvent::Compensated);
        }
    }
    None
}

fn retry_or_give_up<R: Rng>(state: &SagaState, d: &mut Decide<'_, R>, step: u32, kind: StepKind) -> SagaEvent {
    let Some(def) = d.definition.steps.get(step as usize) else {
        return SagaEvent::Stuck { step: Some(step), reason: format!("step {step} is not in the definition") };
    };
    let policy = match kind {
        StepKind::Action => &def.retry,
        StepKind::Compensation => &def.compensation_retry,
    };
    let phase = state.steps[step as usize].phase(kind);
    let used = phase.attempts - phase.budget_from;
    if used < policy.max_attempts.max(1) {
        let attempt = phase.attempts + 1;
        let delay = policy.backoff(used + 1, d.rng);
        let at = d.now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        SagaEvent::RetryScheduled { step, kind, attempt, at }
    } else {
        SagaEvent::GaveUp { step, kind, attempts: phase.attempts }
    }
}

fn send<R: Rng>(state: &SagaState, d: &mut Decide<'_, R>, step: u32, kind: StepKind, attempt: u32) -> SagaEvent {
    let Some(def) = d.definition.steps.get(step as usize) else {
        return SagaEvent::Stuck { step: Some(step), reason: format!("step {step} is not in the definition") };
    };
    let ctx = StepContext {
        saga_id: state.id,
        step: &def.name,
        params: &state.params,
        outputs: &state.outputs,
        visible: d.definition.visible(step as usize),
    };
    let built = match kind {
        StepKind::Action => def.commands.action(&ctx),
        StepKind::Compensation => def.commands.compensation(&ctx),
    };
    match built {
        Err(e) => SagaEvent::BuildFailed { step, kind, error: e.0 },
        Ok(body) => SagaEvent::CommandSent {
            command: Command {
                correlation: Correlation {
                    saga_id: state.id,
                    saga_type: state.saga_type.clone(),
                    step_name: def.name.clone(),
                    attempt,
                    kind,
                    message_id: MessageId::new(),
                },
                participant: def.participant.clone(),
                reply_to: d.reply_to.to_owned(),
                message_type: body.message_type,
                body: body.body,
            },
            deadline: d.now + chrono::Duration::from_std(def.timeout).unwrap_or(chrono::Duration::MAX),
        },
    }
}

/// Where a saga's log breaks reverse dependency order, if it does: a step's compensation first
/// sent before the compensation of a step depending on it (both compensated) succeeded. Entries
/// are named by their position in `history`. The engine's tests and the per-saga harness check
/// every log they produce with it.
pub fn compensation_order_violation(history: &[LogEntry], definition: &SagaDefinition) -> Option<String> {
    let first_sent = |step: &str| {
        history.iter().position(|e| {
            matches!(&e.event, SagaEvent::CommandSent { command, .. }
                if command.correlation.step_name == step && command.correlation.kind == StepKind::Compensation)
        })
    };
    let succeeded = |index: usize| {
        history.iter().position(|e| {
            matches!(&e.event, SagaEvent::ReplyAccepted { step, kind: StepKind::Compensation, outcome: Outcome::Success { .. }, .. }
                if *step as usize == index)
        })
    };
    for (i, step) in definition.steps.iter().enumerate() {
        for &j in definition.deps(i) {
            let dependency = &definition.steps[j].name;
            if let (Some(_), Some(dep_sent)) = (first_sent(&step.name), first_sent(dependency)) {
                let Some(done) = succeeded(i) else {
                    return Some(format!(
                        "{dependency} compensated (entry {dep_sent}) although the compensation of {}, which depends \
                         on it, never succeeded",
                        step.name
                    ));
                };
                if done > dep_sent {
                    return Some(format!(
                        "{dependency} compensated (entry {dep_sent}) before its dependent {} finished (entry {done})",
                        step.name
                    ));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with_one_in_flight() -> SagaState {
        let id = SagaId::new();
        let at = Utc::now();
        let started = LogEntry {
            seq: 1,
            at,
            event: SagaEvent::Started {
                saga_type: "prueba".into(),
                version: 1,
                steps: vec!["uno".into()],
                params: serde_json::json!({}),
            },
        };
        let mut state = SagaState::started(id, &started).expect("started");
        let command = Command {
            correlation: Correlation {
                saga_id: id,
                saga_type: "prueba".into(),
                step_name: "uno".into(),
                attempt: 1,
                kind: StepKind::Action,
                message_id: MessageId::new(),
            },
            participant: "comandos.uno".into(),
            reply_to: "respuestas".into(),
            message_type: "Hacer".into(),
            body: serde_json::json!({}),
        };
        state.apply(&LogEntry { seq: 2, at, event: SagaEvent::CommandSent { command, deadline: at } }).expect("apply");
        state
    }

    /// A current-state row written before steps ran in parallel held `in_flight` as one optional
    /// command and `retry` as one optional retry: it still reads, as lists.
    #[test]
    fn a_state_row_of_the_sequential_engine_still_reads() {
        let state = state_with_one_in_flight();
        let mut old = serde_json::to_value(&state).expect("json");
        let one = old["in_flight"][0].clone();
        old["in_flight"] = one;
        let retries = old.as_object_mut().expect("object").remove("retries");
        assert_eq!(retries, Some(serde_json::json!([])));
        old["retry"] = serde_json::Value::Null;
        let read: SagaState = serde_json::from_value(old.clone()).expect("old shape reads");
        assert_eq!(read, state);

        old["in_flight"] = serde_json::Value::Null;
        let read: SagaState = serde_json::from_value(old).expect("null reads");
        assert!(read.in_flight.is_empty() && read.retries.is_empty());
    }
}
