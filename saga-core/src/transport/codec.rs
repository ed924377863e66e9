//! How commands and replies are written as bytes on a broker: a codec per deployment (Avro
//! records for CrearCampaña, JSON for anything else), kept apart from the transport that moves
//! the bytes.

use super::{Command, Reply};

/// The schema a producer attaches to a topic, so the broker's registry knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WireSchema {
    /// The schema language.
    pub kind: SchemaKind,
    /// The schema definition (for Avro, the schema's JSON, self-contained).
    pub definition: String,
}

/// Schema languages a codec may declare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    /// Apache Avro.
    Avro,
}

/// A payload that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

/// Encodes and decodes saga messages. Decoding must reject what it cannot read rather than
/// guess: the transport dead-letters such messages.
pub trait Codec: Send + Sync + 'static {
    /// The schema of the command topic `participant`, if the codec declares one.
    fn command_schema(&self, participant: &str) -> Option<WireSchema>;
    /// The schema of the reply topic `address`, if the codec declares one.
    fn reply_schema(&self, address: &str) -> Option<WireSchema>;
    /// A command's payload.
    fn encode_command(&self, command: &Command) -> Result<Vec<u8>, CodecError>;
    /// A command read from `participant`'s topic.
    fn decode_command(&self, participant: &str, payload: &[u8]) -> Result<Command, CodecError>;
    /// A reply's payload, for the topic `address`.
    fn encode_reply(&self, address: &str, reply: &Reply) -> Result<Vec<u8>, CodecError>;
    /// A reply read from the topic `address`.
    fn decode_reply(&self, address: &str, payload: &[u8]) -> Result<Reply, CodecError>;
}

/// JSON of the engine's own types, with no registered schema: for deployments that have no
/// schemas of their own, and for tests of a transport.
#[derive(Clone, Copy, Debug, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn command_schema(&self, _participant: &str) -> Option<WireSchema> {
        None
    }

    fn reply_schema(&self, _address: &str) -> Option<WireSchema> {
        None
    }

    fn encode_command(&self, command: &Command) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(command).map_err(|e| CodecError(e.to_string()))
    }

    fn decode_command(&self, participant: &str, payload: &[u8]) -> Result<Command, CodecError> {
        let command: Command =
            serde_json::from_slice(payload).map_err(|e| CodecError(format!("not a command: {e}")))?;
        if command.participant != participant {
            return Err(CodecError(format!("command for {} read from {participant}", command.participant)));
        }
        Ok(command)
    }

    fn encode_reply(&self, _address: &str, reply: &Reply) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(reply).map_err(|e| CodecError(e.to_string()))
    }

    fn decode_reply(&self, _address: &str, payload: &[u8]) -> Result<Reply, CodecError> {
        serde_json::from_slice(payload).map_err(|e| CodecError(format!("not a reply: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MessageId, SagaId, StepKind};
    use crate::transport::{Correlation, Outcome};

    fn command() -> Command {
        Command {
            correlation: Correlation {
                saga_id: SagaId::new(),
                saga_type: "t".into(),
                step_name: "uno".into(),
                attempt: 2,
                kind: StepKind::Compensation,
                message_id: MessageId::new(),
            },
            participant: "comandos.uno".into(),
            reply_to: "respuestas".into(),
            message_type: "Deshacer".into(),
            body: serde_json::json!({ "n": 1 }),
        }
    }

    #[test]
    fn json_round_trips_and_rejects_garbage_and_misrouted_commands() {
        let codec = JsonCodec;
        let c = command();
        let bytes = codec.encode_command(&c).unwrap_or_default();
        assert_eq!(codec.decode_command("comandos.uno", &bytes).ok(), Some(c.clone()));
        assert!(codec.decode_command("comandos.dos", &bytes).is_err());
        assert!(codec.decode_command("comandos.uno", b"\x00garbage").is_err());
        let reply = Reply { correlation: c.correlation, outcome: Outcome::Transient { reason: "x".into() } };
        let bytes = codec.encode_reply("respuestas", &reply).unwrap_or_default();
        assert_eq!(codec.decode_reply("respuestas", &bytes).ok(), Some(reply));
        assert!(codec.decode_reply("respuestas", b"{}").is_err());
    }
}
