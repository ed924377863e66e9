//! Dead letters as a transport hands them back: the message as it travelled (payload bytes and
//! properties), where it came from and why it was set aside, so an operator can see it and a
//! transport can publish it again to its original address ([`super::Transport::redrive`]).
//!
//! The message properties are the transport-neutral half of the wire: the correlation, readable
//! without the codec. Both transports write the same names, so a dead letter is linked to its
//! saga whichever transport carried it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::Correlation;
use crate::id::SagaId;

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
    /// Where it was read from (for Pulsar, the full topic name).
    pub const DEAD_LETTER_FROM: &str = "dead_letter_from";
    /// Its id where it was read from (for Pulsar, `ledger:entry:partition`).
    pub const DEAD_LETTER_MESSAGE_ID: &str = "dead_letter_message_id";
    /// The prefix of the properties a transport adds when it dead-letters a message; a redrive
    /// publishes the message without them.
    pub const DEAD_LETTER_PREFIX: &str = "dead_letter_";
}

/// The properties of a command (with `reply_to`) or a reply (without).
pub fn correlation_properties(c: &Correlation, reply_to: Option<&str>, message_type: &str) -> BTreeMap<String, String> {
    let mut p = BTreeMap::from([
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

/// A message a receiver dead-lettered, read back from the transport's dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The address it was dead-lettered from, where a redrive publishes it (`comandos.marca`).
    pub address: String,
    /// Where the transport keeps it (for Pulsar, the full name of `{address}.dlq`).
    pub dead_letter_address: String,
    /// Its identity: the same on every redelivery of this dead letter, different for the same
    /// message dead-lettered again after a redrive. For Pulsar the original message's id on
    /// `address` (`ledger:entry:partition`); for the in-process transport a UUID given when it
    /// was dead-lettered. With `address`, what a durable record is keyed on.
    pub source_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The message's bytes, as they travelled.
    pub payload: Vec<u8>,
    /// The message's own properties (the correlation, when it had one), without the
    /// `dead_letter_*` ones.
    pub properties: BTreeMap<String, String>,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
}

impl DeadLetter {
    /// A property of the original message.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// The saga it belongs to, when its properties name one (a garbage message has none).
    pub fn saga_id(&self) -> Option<SagaId> {
        self.property(property::SAGA_ID).and_then(|s| s.parse::<uuid::Uuid>().ok()).map(SagaId)
    }

    /// The saga message id (what participants deduplicate on), when its properties carry one.
    pub fn message_id(&self) -> Option<&str> {
        self.property(property::MESSAGE_ID)
    }

    /// Splits a dead-lettered message's properties into its own and the `dead_letter_*` ones.
    pub fn split_properties(
        all: impl IntoIterator<Item = (String, String)>,
    ) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
        all.into_iter().partition(|(k, _)| !k.starts_with(property::DEAD_LETTER_PREFIX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::{MessageId, StepKind};

    #[test]
    fn a_dead_letter_names_its_saga_only_when_its_properties_do() {
        let c = Correlation {
            saga_id: SagaId::new(),
            saga_type: "s".into(),
            step_name: "a".into(),
            attempt: 2,
            kind: StepKind::Compensation,
            message_id: MessageId::new(),
        };
        let mut all = correlation_properties(&c, Some("r"), "T");
        all.insert(property::DEAD_LETTER_REASON.into(), "why".into());
        let (own, dead) = DeadLetter::split_properties(all);
        assert_eq!(dead.len(), 1);
        assert_eq!(own.get(property::REPLY_TO).map(String::as_str), Some("r"));
        let mut d = DeadLetter {
            address: "a".into(),
            dead_letter_address: "a.dlq".into(),
            source_id: "1".into(),
            reason: "why".into(),
            payload: vec![1],
            properties: own,
            dead_at: Utc::now(),
        };
        assert_eq!(d.saga_id(), Some(c.saga_id));
        assert_eq!(d.message_id(), Some(c.message_id.to_string().as_str()));
        d.properties.insert(property::SAGA_ID.into(), "not a uuid".into());
        assert_eq!(d.saga_id(), None);
        d.properties.clear();
        assert_eq!((d.saga_id(), d.message_id()), (None, None));
    }
}
