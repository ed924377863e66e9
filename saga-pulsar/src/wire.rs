//! What travels beside the payload: message properties (the correlation, readable without the
//! codec) and the schema a producer attaches.

use std::collections::HashMap;

use pulsar::message::proto::schema::Type as SchemaType;
use pulsar::message::proto::{MessageIdData, Schema};
use pulsar::{DeserializeMessage, Payload};
use saga_core::transport::codec::{SchemaKind, WireSchema};
use saga_core::transport::{Correlation, DeadLetter};

use crate::config::DEAD_LETTER_SUFFIX;

/// Message property names: saga-core's, which both transports write.
pub use saga_core::transport::property;

/// The properties of a command (with `reply_to`) or a reply (without).
pub(crate) fn properties(c: &Correlation, reply_to: Option<&str>, message_type: &str) -> HashMap<String, String> {
    saga_core::transport::dead_letter::correlation_properties(c, reply_to, message_type).into_iter().collect()
}

/// A message read from `dlq`, the dead-letter topic of `address`, as a dead letter: its own
/// properties apart from the `dead_letter_*` ones the transport added. Its source id is the
/// original message's id (`dead_letter_message_id`); a message someone published to the
/// dead-letter topic directly, without one, is known by its id in `dlq` instead.
pub(crate) fn dead_letter(address: &str, dlq: &str, m: &crate::consumer::Incoming<'_>) -> DeadLetter {
    let (own, dead) = DeadLetter::split_properties(m.properties.clone());
    let source_id = dead
        .get(property::DEAD_LETTER_MESSAGE_ID)
        .cloned()
        .unwrap_or_else(|| format!("{DEAD_LETTER_SUFFIX}:{}", display_id(m.id)));
    let dead_at = i64::try_from(m.publish_time_ms)
        .ok()
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
        .unwrap_or_else(chrono::Utc::now);
    DeadLetter {
        address: address.to_owned(),
        dead_letter_address: dlq.to_owned(),
        source_id,
        reason: dead.get(property::DEAD_LETTER_REASON).cloned().unwrap_or_else(|| "(no reason given)".to_owned()),
        payload: m.payload.to_vec(),
        properties: own,
        dead_at,
    }
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
