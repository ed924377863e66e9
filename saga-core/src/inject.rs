//! Fault injection built into the engine, for tests of sagas. A plan names steps whose action or compensation fails without being sent,
//! and asks for every command to be delivered twice, so a saga's tests can prove that each step
//! unwinds cleanly and that participants are idempotent. It can also make the engine's own
//! loops panic (the timer pass, the recovery pass, one saga's transitions), to test that the
//! engine survives its own bugs. And it can make a participant dead-letter one attempt of a
//! step's action instead of handling it ([`FaultPlan::dead_letter_command`], through
//! [`FaultPlan::participant_transport`]), to produce a dead letter linked to its saga.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::id::{MessageId, SagaId, StepKind};
use crate::transport::{Command, DeadLetter, Delivery, Receiver, Reply, Transport, TransportError};

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
    /// Actions (step, attempt) a participant dead-letters instead of handling, once per message
    /// id: the step times out and its next attempt is handled; a redrive of the dead letter
    /// (the same message id) is handled too.
    pub dead_letter_commands: HashSet<(String, u32)>,
    /// The message ids already dead-lettered by `dead_letter_commands` (shared by clones).
    pub dead_lettered: Arc<Mutex<HashSet<MessageId>>>,
}

/// The code of an injected business failure.
pub const INJECTED_CODE: &str = "injected";

/// The message of an injected panic.
pub const INJECTED_PANIC: &str = "injected panic";

/// The reason of an injected dead letter.
pub const INJECTED_DEAD_LETTER: &str = "injected dead letter";

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

    /// Makes the participant dead-letter attempt `attempt` of `step`'s action, once per message
    /// id, instead of handling it (wired by [`Self::participant_transport`]).
    pub fn dead_letter_command(mut self, step: impl Into<String>, attempt: u32) -> Self {
        self.dead_letter_commands.insert((step.into(), attempt));
        self
    }

    /// `transport` as participants should use it: when the plan dead-letters commands, a
    /// transport whose command receivers do so; otherwise `transport` itself.
    pub fn participant_transport(&self, transport: Arc<dyn Transport>) -> Arc<dyn Transport> {
        if self.dead_letter_commands.is_empty() {
            return transport;
        }
        Arc::new(DeadLettering { inner: transport, plan: self.clone() })
    }

    /// True (once per message id) when `command` is to be dead-lettered by its participant.
    fn dead_letters(&self, command: &Command) -> bool {
        let c = &command.correlation;
        c.kind == StepKind::Action
            && self.dead_letter_commands.contains(&(c.step_name.clone(), c.attempt))
            && self.dead_lettered.lock().unwrap_or_else(|e| e.into_inner()).insert(c.message_id)
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
            && self.dead_letter_commands.is_empty()
            && self.lock_panics().values().all(|n| *n == 0)
    }
}

/// A transport whose command receivers dead-letter what the plan says, as a participant would
/// a poison message; everything else goes to `inner` unchanged.
struct DeadLettering {
    inner: Arc<dyn Transport>,
    plan: FaultPlan,
}

#[async_trait]
impl Transport for DeadLettering {
    async fn send_command(&self, command: &Command) -> Result<(), TransportError> {
        self.inner.send_command(command).await
    }

    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError> {
        self.inner.send_reply(reply_to, reply).await
    }

    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        let inner = self.inner.commands(participant).await?;
        Ok(Box::new(DeadLetteringReceiver { inner, plan: self.plan.clone() }))
    }

    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        self.inner.replies(address).await
    }

    async fn ready(&self) -> Result<(), TransportError> {
        self.inner.ready().await
    }

    async fn dead_letters(&self, address: &str) -> Result<Box<dyn Receiver<DeadLetter>>, TransportError> {
        self.inner.dead_letters(address).await
    }

    async fn redrive(&self, dead: &DeadLetter) -> Result<(), TransportError> {
        self.inner.redrive(dead).await
    }
}

struct DeadLetteringReceiver {
    inner: Box<dyn Receiver<Command>>,
    plan: FaultPlan,
}

#[async_trait]
impl Receiver<Command> for DeadLetteringReceiver {
    async fn recv(&mut self) -> Result<Delivery<Command>, TransportError> {
        loop {
            let delivery = self.inner.recv().await?;
            if !self.plan.dead_letters(&delivery.message) {
                return Ok(delivery);
            }
            let c = &delivery.message.correlation;
            tracing::warn!(saga_id = %c.saga_id, step = %c.step_name, attempt = c.attempt, "injected: dead-lettering a command");
            delivery.dead_letter(INJECTED_DEAD_LETTER).await?;
        }
    }
}
