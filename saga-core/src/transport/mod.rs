//! How the engine and participants exchange messages: the message types and the transport trait.
//!
//! The trait follows a broker's acknowledgement model (Apache Pulsar's in particular): a receiver
//! hands out [`Delivery`] values that must be acknowledged once their effect is durably recorded,
//! negatively acknowledged to ask for redelivery, or moved to a dead-letter queue. A delivery that
//! is dropped without any of these is redelivered, as a broker does when a consumer goes away.

pub mod codec;
pub mod dead_letter;
pub mod in_process;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::id::{MessageId, SagaId, StepKind};

pub use dead_letter::{property, DeadLetter};

/// Everything that ties a message to the exact saga, step and attempt it belongs to.
///
/// A reply echoes the correlation of its command, so the engine can match it to the attempt it
/// answers and ignore it when that attempt is no longer the one in flight.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Correlation {
    /// The saga the message belongs to.
    pub saga_id: SagaId,
    /// The saga definition's name.
    pub saga_type: String,
    /// The step's stable name (unique within its definition). Names, not positions, travel on
    /// the wire: they survive a new version of a definition that inserts a step.
    pub step_name: String,
    /// Attempt number, from 1, counted separately for the action and the compensation.
    pub attempt: u32,
    /// Action or compensation.
    pub kind: StepKind,
    /// The command's message id; redeliveries and resends after a crash keep it.
    pub message_id: MessageId,
}

/// A command from the engine to a participant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// Which saga, step and attempt this is.
    pub correlation: Correlation,
    /// The participant's address (a topic, for Pulsar).
    pub participant: String,
    /// Where the participant sends its reply.
    pub reply_to: String,
    /// The body's type name (for Avro, the record's name), so a codec can encode it.
    pub message_type: String,
    /// The command's content.
    pub body: Value,
}

/// What a participant answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// The effect was applied; `output` is what later steps may use.
    Success {
        /// The step's output, stored in the saga log.
        output: Value,
    },
    /// A business rule refused the effect; nothing was applied. The saga compensates.
    BusinessFailure {
        /// A stable, machine-readable code (for example `presupuesto_insuficiente`).
        code: String,
        /// A human-readable reason.
        reason: String,
    },
    /// The participant could not decide now (a dependency was down, say). The engine retries
    /// with backoff, and treats the step as possibly run.
    Transient {
        /// A human-readable reason.
        reason: String,
    },
}

impl Outcome {
    /// A short name for logs and metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::BusinessFailure { .. } => "business_failure",
            Outcome::Transient { .. } => "transient",
        }
    }
}

/// A participant's answer to one command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// The correlation of the command this answers, unchanged.
    pub correlation: Correlation,
    /// What happened.
    pub outcome: Outcome,
}

/// Errors a transport reports.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The transport is closed (shut down); no more messages will come.
    #[error("transport closed")]
    Closed,
    /// The broker or channel could not be reached; the caller may retry.
    #[error("transport unavailable: {0}")]
    Unavailable(String),
    /// A message could not be encoded or decoded.
    #[error("codec error: {0}")]
    Codec(String),
}

/// What a receiver does with a delivery once the application has handled it.
#[async_trait]
pub trait Acknowledge: Send {
    /// The message's effect is durably recorded: never deliver it again.
    async fn ack(self: Box<Self>) -> Result<(), TransportError>;
    /// Handling failed for a reason that may pass: deliver it again later.
    async fn nack(self: Box<Self>) -> Result<(), TransportError>;
    /// The message can never be handled: move it to the dead-letter queue with a reason.
    async fn dead_letter(self: Box<Self>, reason: &str) -> Result<(), TransportError>;
}

/// One received message, with the handle that settles it.
pub struct Delivery<M> {
    /// The message.
    pub message: M,
    /// How many times this message was delivered before (0 on the first delivery), where the
    /// transport knows it.
    pub redeliveries: u32,
    acker: Box<dyn Acknowledge>,
}

impl<M> Delivery<M> {
    /// Wraps a message and its acknowledgement handle (for transport implementations).
    pub fn new(message: M, redeliveries: u32, acker: Box<dyn Acknowledge>) -> Self {
        Self { message, redeliveries, acker }
    }

    /// Acknowledge: the message's effect is durably recorded.
    pub async fn ack(self) -> Result<(), TransportError> {
        self.acker.ack().await
    }

    /// Ask for redelivery.
    pub async fn nack(self) -> Result<(), TransportError> {
        self.acker.nack().await
    }

    /// Move to the dead-letter queue.
    pub async fn dead_letter(self, reason: &str) -> Result<(), TransportError> {
        self.acker.dead_letter(reason).await
    }
}

impl<M: std::fmt::Debug> std::fmt::Debug for Delivery<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("message", &self.message)
            .field("redeliveries", &self.redeliveries)
            .finish_non_exhaustive()
    }
}

/// A stream of deliveries from one address (a topic and subscription, for Pulsar). Several
/// receivers on the same address share its messages, as a Shared subscription does.
#[async_trait]
pub trait Receiver<M>: Send {
    /// The next delivery; waits until one arrives. `Err(Closed)` once the transport is shut down.
    async fn recv(&mut self) -> Result<Delivery<M>, TransportError>;
}

/// Carries commands to participants and replies back to the orchestrator.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// Publishes a command to `command.participant`. Returns once the transport has accepted it
    /// (for a broker: persisted it).
    async fn send_command(&self, command: &Command) -> Result<(), TransportError>;
    /// Publishes a reply to `reply_to`.
    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError>;
    /// Subscribes to the commands addressed to `participant`.
    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError>;
    /// Subscribes to the replies sent to `address`.
    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError>;
    /// Whether the transport can reach its broker now (for a readiness probe). An in-process
    /// transport always can.
    async fn ready(&self) -> Result<(), TransportError> {
        Ok(())
    }
    /// Subscribes to the dead letters of `address`: what its receivers dead-lettered, oldest
    /// first, whatever the message (a garbage payload too). Acknowledging one removes it from
    /// the transport's dead-letter queue, so record it durably first. A transport that keeps no
    /// dead letters answers `Unavailable` (the default).
    async fn dead_letters(&self, address: &str) -> Result<Box<dyn Receiver<DeadLetter>>, TransportError> {
        Err(TransportError::Unavailable(format!("this transport keeps no dead letters of {address}")))
    }
    /// Publishes a dead letter's payload and properties again, as a new message, to the
    /// address it was dead-lettered from. Receivers see an ordinary message; participants
    /// deduplicate it by its message id like any redelivery.
    async fn redrive(&self, dead: &DeadLetter) -> Result<(), TransportError> {
        Err(TransportError::Unavailable(format!("this transport cannot redrive to {}", dead.address)))
    }
}

/// Serves `receiver` until it closes, up to `concurrency` deliveries at once: for each, `work`
/// computes a result from the message, then `settle` acknowledges, nacks or dead-letters the delivery from it. A `work` that panics (a
/// bug) has its delivery dead-lettered with the panic as the reason, so it cannot come back in a
/// loop. Each delivery is one task, inside `span(message)`. A delivery is taken only when a slot is free (the transport's own prefetch holds a few
/// more). Dropping the returned future (at shutdown) abandons the deliveries in progress
/// unsettled: the transport redelivers them.
pub async fn serve_concurrently<M, T, W, WF, S, SF>(
    mut receiver: Box<dyn Receiver<M>>,
    concurrency: usize,
    span: impl Fn(&M) -> tracing::Span,
    work: W,
    settle: S,
) where
    M: Clone + Send + 'static,
    T: Send + 'static,
    W: Fn(M) -> WF,
    WF: std::future::Future<Output = T> + Send + 'static,
    S: Fn(Delivery<M>, T) -> SF + Clone + Send + 'static,
    SF: std::future::Future<Output = Result<(), TransportError>> + Send + 'static,
{
    use tracing::Instrument;

    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut running = tokio::task::JoinSet::new();
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        while running.try_join_next().is_some() {}
        let delivery = match receiver.recv().await {
            Ok(d) => d,
            Err(TransportError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "receiving failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                continue;
            }
        };
        let span = span(&delivery.message);
        // The work runs inside the settling task: one task per delivery, not two.
        let computed = crate::supervision::CatchUnwind(Box::pin(work(delivery.message.clone())));
        let settle = settle.clone();
        let settled = async move {
            let result = match computed.await {
                Ok(value) => settle(delivery, value).await,
                Err(e) => {
                    tracing::error!(error = %e, "handling a message panicked; dead-lettering it");
                    delivery.dead_letter(&format!("handling it panicked: {e}")).await
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not settle a delivery");
            }
            drop(permit);
        };
        running.spawn(settled.instrument(span));
    }
}
