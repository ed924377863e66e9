//! saga-core: a generic saga orchestration engine.
//!
//! A saga is a named, versioned graph of steps ([`definition`]), written as a type ([`SagaType`],
//! [`StepType`]); each step has an action and a
//! compensation carried out by a participant over a [`transport`]. The [`engine`] drives sagas
//! through the pure state machine of [`saga`], persisting every transition in a [`log`] before
//! acting on it, so that after a crash every saga is driven on to exactly one resting state:
//! completed, compensated, or stuck waiting for an operator. [`participant`] gives any worker
//! exactly-once effects over at-least-once delivery. With the `testing` feature, `testing`
//! runs the same checks on any saga: repeats, a failure at each step, a crash after every log
//! write, a stuck compensation retried by an operator.

pub mod clock;
pub mod dead_letters;
pub mod definition;
pub mod engine;
mod group_commit;
pub mod id;
pub mod inject;
pub mod log;
pub mod metrics;
pub mod participant;
pub mod saga;
pub mod supervision;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transport;

pub use definition::{
    ActionMessage, BuildError, CommandBody, CommandMessage, Message, Registry, RetryPolicy, SagaDefinition, SagaType,
    Step, StepCommands, StepContext, StepCx, StepType,
};
pub use engine::{Engine, EngineConfig, EngineError, ReplyDisposition};
pub use id::{MessageId, SagaId, StepKind};
pub use saga::{LogEntry, SagaEvent, SagaState, SagaStatus};
pub use transport::{Command, Correlation, Outcome, Reply, Transport};
