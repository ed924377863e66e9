//! Fault injection built into the engine, for tests of sagas. A plan names steps whose action or compensation fails without being sent,
//! and asks for every command to be delivered twice, so a saga's tests can prove that each step
//! unwinds cleanly and that participants are idempotent.

use std::collections::HashSet;

use crate::id::StepKind;

/// Faults the engine injects. Empty by default; production engines never set one.
#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Steps whose action is answered, without sending it, with a business failure.
    pub fail_actions: HashSet<String>,
    /// Steps whose compensation is answered, without sending it, with a failure (so it retries
    /// and the saga ends stuck).
    pub fail_compensations: HashSet<String>,
    /// Send every command twice with the same message id (a duplicate delivery).
    pub duplicate_commands: bool,
}

/// The code of an injected business failure.
pub const INJECTED_CODE: &str = "injected";

impl FaultPlan {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Fails the action of `step` with a business failure.
    pub fn fail_action(mut self, step: impl Into<String>) -> Self {
        self.fail_actions.insert(step.into());
        self
    }

    /// Fails every attempt of the compensation of `step`.
    pub fn fail_compensation(mut self, step: impl Into<String>) -> Self {
        self.fail_compensations.insert(step.into());
        self
    }

    /// Delivers every command twice.
    pub fn duplicate_commands(mut self) -> Self {
        self.duplicate_commands = true;
        self
    }

    /// True when this step's command of this kind is to fail without being sent.
    pub fn fails(&self, step: &str, kind: StepKind) -> bool {
        match kind {
            StepKind::Action => self.fail_actions.contains(step),
            StepKind::Compensation => self.fail_compensations.contains(step),
        }
    }

    /// True when the plan injects nothing.
    pub fn is_empty(&self) -> bool {
        self.fail_actions.is_empty() && self.fail_compensations.is_empty() && !self.duplicate_commands
    }
}
