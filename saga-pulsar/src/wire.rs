//! What travels beside the payload: message properties (the correlation, readable without the
//! codec) and the schema a producer attaches.

use std::collections::HashMap;

use pulsar::message::proto::schema::Type as SchemaType;
use pulsar::message::proto::{MessageIdData, Schema};
use pulsar::{DeserializeMessage, Payload};
use saga_core::transport::codec::{SchemaKind, WireSchema};
use saga_core::transport::Correlation;

/// Message property names. Commands carry all but the dead-letter ones; replies all but
/// `reply_to`; dead-lettered messages keep the original's and add the `dead_letter_*` ones.
pub mod property {
    /// The saga's id (UUID).
    pub const SAGA_ID: &str = "saga_id";
    /// The saga definition's name.
    pub const SAGA_TYPE: &str = "saga_type";
    /// The step's name.
    pub const STEP: &str = "step";
    /// The attempt number, from 1.
    pub const ATTEMPT: &str = "attempt";
    /// `action` or `compensation`.
    pub const KIND: &str = "kind";
    /// The command's message id (UUID); a reply carries its command's.
    pub const MESSAGE_ID: &str = "message_id";
    /// Where the participant replies (an address, not a full topic name). Commands only.
    pub const REPLY_TO: &str = "reply_to";
    /// A command's body type (e.g. `ReservarPresupuesto`); a reply's outcome
    /// (`success`, `business_failure`, `transient`).
    pub const MESSAGE_TYPE: &str = "message_type";
    /// Why the message was dead-lettered.
    pub const DEAD_LETTER_REASON: &str = "dead_letter_reason";
    /// The full topic it was read from.
    pub const DEAD_LETTER_FROM: &str = "dead_letter_from";
    /// Its Pulsar message id there, `ledger:entry:partition`.
    pub const DEAD_LETTER_MESSAGE_ID: &str = "dead_letter_message_id";
}

/// The properties of a command (with `reply_to`) or a reply (without).
pub(crate) fn properties(c: &Correlation, reply_to: Option<&str>, message_type: &str) -> HashMap<String, String> {
    let mut p = HashMap::from([
        (property::SAGA_ID.to_owned(), c.saga_id.to_string()),
        (property::SAGA_TYPE.to_owned(), c.saga_type.clone()),
        (property::STEP.to_owned(), c.step_name.clone()),
        (property::ATTEMPT.to_owned(), c.attempt.to_string()),
        (property::KIND.to_owned(), c.kind.as_str().to_owned()),
        (property::MESSAGE_ID.to_owned(), c.message_id.to_string()),
        (property::MESSAGE_TYPE.to_owned(), message_type.to_owned()),
    ]);
    if let Some(r) = reply_to {
        p.insert(property::REPLY_TO.to_owned(), r.to_owned());
    }
    p
}

/// The codec's schema as Pulsar's registry takes it (for Avro, the schema's JSON).
pub(crate) fn pulsar_schema(topic: &str, schema: &WireSchema) -> Schema {
    let r#type = match schema.kind {
        SchemaKind::Avro => SchemaType::Avro,
    };
    Schema {
        name: topic.to_owned(),
        schema_data: schema.definition.clone().into_bytes(),
        r#type: r#type as i32,
        properties: Vec::new(),
    }
}

/// Consumers read bytes; the codec decodes them, so a payload it cannot read is ours to
/// dead-letter rather than an error inside the client.
pub(crate) struct Raw;

impl DeserializeMessage for Raw {
    type Output = Vec<u8>;
    fn deserialize_message(payload: &Payload) -> Self::Output {
        payload.data.clone()
    }
}

/// A message's position, stable across redeliveries (the rest of `MessageIdData` is not
/// guaranteed to be).
pub(crate) type Position = (u64, u64, i32);

pub(crate) fn position(id: &MessageIdData) -> Position {
    (id.ledger_id, id.entry_id, id.batch_index.unwrap_or(-1))
}

pub(crate) fn display_id(id: &MessageIdData) -> String {
    format!("{}:{}:{}", id.ledger_id, id.entry_id, id.partition.unwrap_or(-1))
}
