//! Saga definitions: a named, versioned list of steps, each with its participant, how to build
//! its action and compensation commands, a retry policy and a timeout; and the registry that
//! finds a definition again by name and version after a restart.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
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
    /// The parameters the saga was started with.
    pub params: &'a Value,
    /// Outputs of the steps that succeeded so far, by step name.
    pub outputs: &'a BTreeMap<String, Value>,
}

/// Why a step could not build its command. Treated as a business failure of an action (the
/// step did not run) and as a failing compensation (the saga becomes stuck).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BuildError(pub String);

/// Builds a step's commands. Implementations must be deterministic: recovery may rebuild a
/// compensation long after the action ran.
pub trait StepCommands: Send + Sync {
    /// The forward action's command.
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError>;
    /// The compensation's command. Must be buildable even when the action's output is missing
    /// (the action may have run without its reply arriving).
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError>;
}

/// One step of a saga.
#[derive(Clone)]
pub struct Step {
    /// Stable name, written in the log and in every message.
    pub name: String,
    /// The participant's address (a topic, for Pulsar).
    pub participant: String,
    /// How long to wait for a reply before treating the attempt as an unknown outcome.
    pub timeout: Duration,
    /// Retries of the action.
    pub retry: RetryPolicy,
    /// Retries of the compensation; when they run out the saga becomes stuck.
    pub compensation_retry: RetryPolicy,
    /// The command builders.
    pub commands: Arc<dyn StepCommands>,
}

impl std::fmt::Debug for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("participant", &self.participant)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("compensation_retry", &self.compensation_retry)
            .finish_non_exhaustive()
    }
}

impl Step {
    /// A step with default retry policies and a 30 s timeout.
    pub fn new(name: impl Into<String>, participant: impl Into<String>, commands: impl StepCommands + 'static) -> Self {
        Self {
            name: name.into(),
            participant: participant.into(),
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::default(),
            commands: Arc::new(commands),
        }
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

/// A saga definition: a name, a version and the ordered steps.
#[derive(Clone, Debug)]
pub struct SagaDefinition {
    /// Stable name; sagas in the log refer to it.
    pub name: String,
    /// Version; a changed step list gets a new version so sagas started on the old one finish on it.
    pub version: u32,
    /// The steps, run in order; compensated in reverse order.
    pub steps: Vec<Step>,
}

impl SagaDefinition {
    /// A definition with no steps yet.
    pub fn new(name: impl Into<String>, version: u32) -> Self {
        Self { name: name.into(), version, steps: Vec::new() }
    }

    /// Appends a step.
    pub fn step(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
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
        let mut names = std::collections::HashSet::new();
        for step in &definition.steps {
            if !names.insert(step.name.as_str()) {
                return Err(RegistryError::DuplicateStep {
                    name: definition.name.clone(),
                    version: definition.version,
                    step: step.name.clone(),
                });
            }
        }
        let versions = self.definitions.entry(definition.name.clone()).or_default();
        if versions.contains_key(&definition.version) {
            return Err(RegistryError::Duplicate { name: definition.name, version: definition.version });
        }
        versions.insert(definition.version, Arc::new(definition));
        Ok(())
    }

    /// The definition of `name` at `version`.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<SagaDefinition>> {
        self.definitions.get(name)?.get(&version).cloned()
    }

    /// The newest version of `name`, used to start new sagas.
    pub fn latest(&self, name: &str) -> Option<Arc<SagaDefinition>> {
        self.definitions.get(name)?.values().next_back().cloned()
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
