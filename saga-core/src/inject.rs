//! Fault injection built into the engine, for tests of sagas. A plan names steps whose action or compensation fails without being sent,
//! and asks for every command to be delivered twice, so a saga's tests can prove that each step
//! unwinds cleanly and that participants are idempotent. It can also make the engine's own
//! loops panic (the timer pass, the recovery pass, one saga's transitions), to test that the
//! engine survives its own bugs.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::id::{SagaId, StepKind};

/// Where an injected panic strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PanicSite {
    /// At the start of a timer pass ([`crate::Engine::tick`]), outside any saga.
    TimerPass,
    /// At the start of a recovery pass ([`crate::Engine::recover`]), outside any saga.
    RecoveryPass,
    /// Inside every transition of this saga (a bug that one saga's state triggers).
    Saga(SagaId),
}

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
    /// Panics still to strike, per site. Shared by the plan's clones, so an engine built with a
    /// clone counts down the same budget the test reads.
    pub panics: Arc<Mutex<HashMap<PanicSite, u32>>>,
}

/// The code of an injected business failure.
pub const INJECTED_CODE: &str = "injected";

/// The message of an injected panic.
pub const INJECTED_PANIC: &str = "injected panic";

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

    /// Panics the next `times` times the engine reaches `site` (`u32::MAX`: every time).
    pub fn panic_at(self, site: PanicSite, times: u32) -> Self {
        self.lock_panics().insert(site, times);
        self
    }

    /// Panics still to strike at `site`.
    pub fn panics_left(&self, site: PanicSite) -> u32 {
        self.lock_panics().get(&site).copied().unwrap_or(0)
    }

    /// Stops every injected panic (the bug fixed).
    pub fn stop_panics(&self) {
        self.lock_panics().clear();
    }

    /// Panics if the plan has a panic left for `site` (called by the engine where it may).
    pub(crate) fn strike(&self, site: PanicSite) {
        let strike = {
            let mut panics = self.lock_panics();
            match panics.get_mut(&site) {
                Some(0) | None => false,
                Some(n) => {
                    if *n != u32::MAX {
                        *n -= 1;
                    }
                    true
                }
            }
        };
        if strike {
            panic!("{INJECTED_PANIC} at {site:?}");
        }
    }

    fn lock_panics(&self) -> std::sync::MutexGuard<'_, HashMap<PanicSite, u32>> {
        // A map of counters: a panic elsewhere (an injected one, say) cannot leave it half-made.
        self.panics.lock().unwrap_or_else(|e| e.into_inner())
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
        self.fail_actions.is_empty()
            && self.fail_compensations.is_empty()
            && !self.duplicate_commands
            && self.lock_panics().values().all(|n| *n == 0)
    }
}
