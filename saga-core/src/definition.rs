//! Saga definitions: a named, versioned graph of steps, each with its participant, the steps it
//! depends on, how to build its action and compensation commands, a retry policy and a timeout;
//! and the registry that finds a definition again by name and version after a restart.
//!
//! Sagas are written as types ([`SagaType`], [`StepType`]): a step builds typed messages from the
//! saga's typed parameters and the typed outputs of the steps it depends on, and its participant
//! and message names come from the message types. The engine sees the erased form ([`Step`],
//! [`StepCommands`]): JSON bodies, which is what the log stores and `saga show` prints.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::SagaId;

/// How often and how patiently a step's command is retried after an unknown outcome
/// (a timeout or a transient reply).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. At least 1.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_backoff: Duration,
    /// Upper bound of the delay between attempts.
    pub max_backoff: Duration,
    /// Growth factor of the delay from one attempt to the next.
    pub multiplier: f64,
    /// Fraction of the delay drawn at random and subtracted (0 = none, 1 = "full jitter"), so
    /// sagas that failed together do not retry together.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Five attempts, 200 ms doubling to at most 10 s, half jitter: rides out a participant
    /// restart of a few seconds without keeping a saga waiting for minutes.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// A policy that tries once and never retries.
    pub fn no_retry() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The delay before attempt `next_attempt` (2 for the first retry), jitter included.
    pub fn backoff(&self, next_attempt: u32, rng: &mut impl Rng) -> Duration {
        let exponent = next_attempt.saturating_sub(2).min(32) as i32;
        let base = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        let capped = base.min(self.max_backoff.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 { 1.0 - jitter * rng.gen::<f64>() } else { 1.0 };
        Duration::from_secs_f64((capped * factor).max(0.0))
    }
}

// ---- Typed sagas ------------------------------------------------------------------------------

/// A message a saga sends or receives, with its stable type name (for Avro, the record's name).
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The type name written in the log and on the wire.
    const NAME: &'static str;
}

/// A command, addressed to the participant that carries it out (for Pulsar, its command topic).
pub trait CommandMessage: Message {
    /// The participant's address.
    const PARTICIPANT: &'static str;
}

/// A step's forward action, with the output its success carries.
pub trait ActionMessage: CommandMessage {
    /// What the participant answers when the action succeeds.
    type Output: Message;
}

/// A saga, as a type: its stable name, its version and its parameters. Its steps are
/// [`StepType`]s whose `Saga` is this type, put together by [`SagaDefinition::of`].
pub trait SagaType: Send + Sync + 'static {
    /// Stable name; sagas in the log refer to it.
    const NAME: &'static str;
    /// Bump it when the steps change, and keep the old definition registered until no saga in
    /// the log uses it.
    const VERSION: u32;
    /// What a saga of this type starts with.
    type Params: Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// One step of a saga, as a type: builds its action and its compensation from the saga's
/// parameters and the outputs of the steps it depends on ([`StepCx::output`]). Builders must be
/// deterministic: recovery may rebuild a compensation long after the action ran.
pub trait StepType: Send + Sync + 'static {
    /// The saga this step belongs to.
    type Saga: SagaType;
    /// The forward action.
    type Action: ActionMessage;
    /// The compensation: sent to the same participant as the action.
    type Compensation: CommandMessage;
    /// Stable name, written in the log and in every message.
    const NAME: &'static str;

    /// The action's command.
    fn action(&self, cx: &StepCx<'_, Self::Saga>) -> Result<Self::Action, BuildError>;

    /// The compensation's command. Must be buildable when the action's own output is missing (the
    /// action may have run without its reply arriving): `cx.output::<Self>()` is then `None`.
    fn compensation(&self, cx: &StepCx<'_, Self::Saga>) -> Result<Self::Compensation, BuildError>;
}

/// What a typed step's builders read: the typed parameters, and the outputs of the steps this
/// step depends on (directly or through others), and its own.
pub struct StepCx<'a, S: SagaType> {
    /// The saga.
    pub saga_id: SagaId,
    /// The parameters the saga was started with.
    pub params: &'a S::Params,
    raw: &'a StepContext<'a>,
}

impl<S: SagaType> StepCx<'_, S> {
    /// The output of step `T`, if its action succeeded. `T` must be this step or one it depends on:
    /// a sibling's output may not exist yet, so reading it is a build error, found by the first
    /// test that runs the saga.
    pub fn output<T: StepType<Saga = S>>(&self) -> Result<Option<<T::Action as ActionMessage>::Output>, BuildError> {
        if !self.raw.visible.iter().any(|s| s == T::NAME) {
            return Err(BuildError(format!(
                "step {} reads the output of {}, which it does not depend on",
                self.raw.step,
                T::NAME
            )));
        }
        match self.raw.outputs.get(T::NAME) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                BuildError(format!(
                    "output of {} is not a {}: {e}",
                    T::NAME,
                    <T::Action as ActionMessage>::Output::NAME
                ))
            }),
        }
    }
}

/// Erases a [`StepType`] into the [`StepCommands`] the engine calls.
struct Typed<T>(T);

impl<T: StepType> Typed<T> {
    fn cx<'a>(ctx: &'a StepContext<'a>, params: &'a <T::Saga as SagaType>::Params) -> StepCx<'a, T::Saga> {
        StepCx { saga_id: ctx.saga_id, params, raw: ctx }
    }
}

fn params_of<S: SagaType>(ctx: &StepContext<'_>) -> Result<S::Params, BuildError> {
    serde_json::from_value(ctx.params.clone()).map_err(|e| BuildError(format!("invalid {} parameters: {e}", S::NAME)))
}

fn body_of<M: Message>(message: &M) -> Result<CommandBody, BuildError> {
    serde_json::to_value(message)
        .map(|v| CommandBody::new(M::NAME, v))
        .map_err(|e| BuildError(format!("{}: {e}", M::NAME)))
}

impl<T: StepType> StepCommands for Typed<T> {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let params = params_of::<T::Saga>(ctx)?;
        body_of(&self.0.action(&Self::cx(ctx, &params))?)
    }

    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let params = params_of::<T::Saga>(ctx)?;
        body_of(&self.0.compensation(&Self::cx(ctx, &params))?)
    }
}

// ---- The erased form the engine runs ---------------------------------------------------------

/// A command's type name and content, as built by a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandBody {
    /// The type name a codec uses to encode the body (for Avro, the record's name).
    pub message_type: String,
    /// The content.
    pub body: Value,
}

impl CommandBody {
    /// A body of the given type.
    pub fn new(message_type: impl Into<String>, body: Value) -> Self {
        Self { message_type: message_type.into(), body }
    }
}

/// What a step's builders may read: the saga's parameters and the outputs of earlier steps.
#[derive(Clone, Copy, Debug)]
pub struct StepContext<'a> {
    /// The saga.
    pub saga_id: SagaId,
    /// The step being built.
    pub step: &'a str,
    /// The parameters the saga was started with.
    pub params: &'a Value,
    /// Outputs of the steps that succeeded so far, by step name.
    pub outputs: &'a BTreeMap<String, Value>,
    /// The steps whose outputs this step may read: itself and every step it depends on, directly
    /// or not (the others may still be running).
    pub visible: &'a [String],
}

/// Why a step could not build its command. Treated as a business failure of an action (the
/// step did not run) and as a failing compensation (the saga becomes stuck).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Builds a step's commands from JSON. Implementations must be deterministic: recovery may
/// rebuild a compensation long after the action ran. [`StepType`] is the typed way to write one.
pub trait StepCommands: Send + Sync {
    /// The forward action's command.
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError>;
    /// The compensation's command. Must be buildable even when the action's output is missing
    /// (the action may have run without its reply arriving).
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError>;
}

/// The message types a typed step declares, so a codec can be built from the definitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepMessages {
    /// The action's message type.
    pub action: &'static str,
    /// The record the action's success carries.
    pub output: &'static str,
    /// The compensation's message type.
    pub compensation: &'static str,
    /// The compensation's participant: the action's, or the definition is refused.
    pub compensation_participant: &'static str,
}

/// One step of a saga.
#[derive(Clone)]
pub struct Step {
    /// Stable name, written in the log and in every message.
    pub name: String,
    /// The participant's address (a topic, for Pulsar).
    pub participant: String,
    /// The steps whose actions must succeed before this one is sent. Each must be declared
    /// before this step in the definition, so a definition is a graph without cycles, and its
    /// declaration order is one topological order.
    pub depends_on: Vec<String>,
    /// How long to wait for a reply before treating the attempt as an unknown outcome.
    pub timeout: Duration,
    /// Retries of the action.
    pub retry: RetryPolicy,
    /// Retries of the compensation; when they run out the saga becomes stuck.
    pub compensation_retry: RetryPolicy,
    /// The message types, when the step is typed.
    pub messages: Option<StepMessages>,
    /// The command builders.
    pub commands: Arc<dyn StepCommands>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("participant", &self.participant)
            .field("depends_on", &self.depends_on)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("compensation_retry", &self.compensation_retry)
            .field("messages", &self.messages)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// An untyped step with no dependencies, default retry policies and a 30 s timeout.
    pub fn new(name: impl Into<String>, participant: impl Into<String>, commands: impl StepCommands + 'static) -> Self {
        Self {
            name: name.into(),
            participant: participant.into(),
            depends_on: Vec::new(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::default(),
            messages: None,
            commands: Arc::new(commands),
        }
    }

    /// A typed step: its name, participant and message types come from `T`.
    pub fn of<T: StepType>(step: T) -> Self {
        let mut s = Self::new(T::NAME, <T::Action as CommandMessage>::PARTICIPANT, Typed(step));
        s.messages = Some(StepMessages {
            action: <T::Action as Message>::NAME,
            output: <<T::Action as ActionMessage>::Output as Message>::NAME,
            compensation: <T::Compensation as Message>::NAME,
            compensation_participant: <T::Compensation as CommandMessage>::PARTICIPANT,
        });
        s
    }

    /// Runs this step only after step `name`'s action succeeded.
    pub fn after(mut self, name: impl Into<String>) -> Self {
        self.depends_on.push(name.into());
        self
    }

    /// Runs this step only after step `T`'s action succeeded.
    pub fn after_step<T: StepType>(self) -> Self {
        self.after(T::NAME)
    }

    /// Sets the reply timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the action's retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the compensation's retry policy.
    pub fn compensation_retry(mut self, retry: RetryPolicy) -> Self {
        self.compensation_retry = retry;
        self
    }
}

/// A saga definition: a name, a version and a graph of steps.
#[derive(Clone, Debug)]
pub struct SagaDefinition {
    /// Stable name; sagas in the log refer to it.
    pub name: String,
    /// Version; a changed step list gets a new version so sagas started on the old one finish on it.
    pub version: u32,
    /// The steps, in declaration order (a topological order of the graph). Every step whose
    /// dependencies succeeded is sent at once; compensations run in reverse dependency order.
    pub steps: Vec<Step>,
    /// For each step (by index), the names of the steps it depends on directly or not, and its
    /// own: the outputs its builders may read. Filled by [`SagaDefinition::step`].
    visible: Vec<Vec<String>>,
    /// For each step (by index), the indexes of the steps it depends on directly.
    deps: Vec<Vec<usize>>,
    /// Problems found while adding steps, reported by [`Registry::register`].
    errors: Vec<String>,
}

impl SagaDefinition {
    /// An untyped definition with no steps yet.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self {
            name: name.into(),
            version,
            steps: Vec::new(),
            visible: Vec::new(),
            deps: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The definition of saga type `S`, with no steps yet.
    pub fn of<S: SagaType>() -> Self {
        Self::new(S::NAME, S::VERSION)
    }

    /// Appends a step. Its dependencies must already be in the definition.
    pub fn step(mut self, step: Step) -> Self {
        if let Some(m) = step.messages.as_ref().filter(|m| m.compensation_participant != step.participant) {
            self.errors.push(format!(
                "step {}: the action goes to {} but the compensation {} to {}",
                step.name, step.participant, m.compensation, m.compensation_participant
            ));
        }
        let mut visible: Vec<String> = vec![step.name.clone()];
        let mut deps = Vec::new();
        for dep in &step.depends_on {
            match self.steps.iter().position(|s| &s.name == dep) {
                Some(i) => {
                    deps.push(i);
                    for name in &self.visible[i] {
                        if !visible.contains(name) {
                            visible.push(name.clone());
                        }
                    }
                }
                None => {
                    self.errors.push(format!("step {} depends on {dep:?}, which is not declared before it", step.name))
                }
            }
        }
        self.visible.push(visible);
        self.deps.push(deps);
        self.steps.push(step);
        self
    }

    /// The names of the steps, in order: what a saga's `started` entry records.
    pub fn step_names(&self) -> Vec<String> {
        self.steps.iter().map(|s| s.name.clone()).collect()
    }

    /// The steps whose outputs step `index` may read.
    pub fn visible(&self, index: usize) -> &[String] {
        self.visible.get(index).map_or(&[], Vec::as_slice)
    }

    /// The indexes of the steps step `index` depends on directly.
    pub fn deps(&self, index: usize) -> &[usize] {
        self.deps.get(index).map_or(&[], Vec::as_slice)
    }

    /// The indexes of the steps that depend directly on step `index`.
    pub fn dependents(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        self.deps.iter().enumerate().filter(move |(_, d)| d.contains(&index)).map(|(i, _)| i)
    }
}

/// Errors of [`Registry::register`].
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The same name and version was registered twice.
    #[error("saga definition {name} v{version} is already registered")]
    Duplicate {
        /// The name.
        name: String,
        /// The version.
        version: u32,
    },
    /// Two steps share a name, so log entries and replies could not tell them apart.
    #[error("saga definition {name} v{version} has two steps named {step}")]
    DuplicateStep {
        /// The definition.
        name: String,
        /// The version.
        version: u32,
        /// The repeated step name.
        step: String,
    },
    /// The graph is not valid: a dependency that is not declared before the step, or a typed
    /// step whose compensation goes to another participant than its action.
    #[error("saga definition {name} v{version}: {problem}")]
    InvalidGraph {
        /// The definition.
        name: String,
        /// The version.
        version: u32,
        /// What is wrong.
        problem: String,
    },
}

/// Definitions by name and version, so recovery can rebuild any saga in the log.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    definitions: HashMap<String, BTreeMap<u32, Arc<SagaDefinition>>>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a definition. Old versions stay registered as long as sagas in the log may use them.
    pub fn register(&mut self, definition: SagaDefinition) -> Result<(), RegistryError> {
        let mut names = HashSet::new();
        for step in &definition.steps {
            if !names.insert(step.name.as_str()) {
                return Err(RegistryError::DuplicateStep {
                    name: definition.name.clone(),
                    version: definition.version,
                    step: step.name.clone(),
                });
            }
        }
        if let Some(problem) = definition.errors.first() {
            return Err(RegistryError::InvalidGraph {
                name: definition.name.clone(),
                version: definition.version,
                problem: problem.clone(),
            });
        }
        let versions = self.definitions.entry(definition.name.clone()).or_default();
        if versions.contains_key(&definition.version) {
            return Err(RegistryError::Duplicate { name: definition.name, version: definition.version });
        }
        versions.insert(definition.version, Arc::new(definition));
        Ok(())
    }

    /// Registers saga type `S`'s definition.
    pub fn register_saga<S: SagaType>(&mut self, definition: SagaDefinition) -> Result<(), RegistryError> {
        if definition.name != S::NAME || definition.version != S::VERSION {
            return Err(RegistryError::InvalidGraph {
                name: definition.name,
                version: definition.version,
                problem: format!("registered as {} v{}", S::NAME, S::VERSION),
            });
        }
        self.register(definition)
    }

    /// The definition of `name` at `version`.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<SagaDefinition>> {
        self.definitions.get(name)?.get(&version).cloned()
    }

    /// The newest version of `name`, used to start new sagas.
    pub fn latest(&self, name: &str) -> Option<Arc<SagaDefinition>> {
        self.definitions.get(name)?.values().next_back().cloned()
    }

    /// Every registered definition, every version.
    pub fn definitions(&self) -> impl Iterator<Item = &Arc<SagaDefinition>> {
        self.definitions.values().flat_map(|v| v.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn backoff_grows_and_is_capped() {
        let policy = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        assert_eq!(policy.backoff(2, &mut rng), Duration::from_millis(200));
        assert_eq!(policy.backoff(3, &mut rng), Duration::from_millis(400));
        assert_eq!(policy.backoff(40, &mut rng), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let policy = RetryPolicy { jitter: 0.5, ..RetryPolicy::default() };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let delays: Vec<Duration> = (0..200).map(|_| policy.backoff(3, &mut rng)).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_millis(400) && *d >= Duration::from_millis(200)));
        assert!(delays.iter().any(|d| *d < Duration::from_millis(390)), "jitter never applied");
    }
}
