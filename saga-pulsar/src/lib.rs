//! The Apache Pulsar transport for saga-core: commands and replies on Pulsar topics, encoded by
//! a [`Codec`] (Avro envelopes for CrearCampaña), with the correlation in message properties.
//!
//! - An address is a topic: `persistent://{tenant}/{namespace}/{address}`. Commands go to
//!   `command.participant`, replies to the address the command names.
//! - Producers attach the codec's schema, so the broker's registry holds it; one producer per
//!   topic, cached, without batching. A send returns once the broker has persisted the message;
//!   an attempt that fails or outlasts `send_timeout` is resent with the same bytes and message
//!   id on a new producer, with backoff, a bounded number of times.
//! - Receivers are consumers on a Shared subscription: receivers of one subscription share the
//!   messages. `ack` acknowledges, `nack` asks for redelivery (at once), a dropped delivery is
//!   negatively acknowledged, `dead_letter` publishes the message to `{address}.dlq` with its
//!   properties and the reason and then acknowledges it. A payload the codec cannot read never
//!   reaches the application: the transport dead-letters it.
//! - A consumer whose stream ends (an outage longer than the client's own reconnection budget)
//!   is subscribed again with backoff; the broker redelivers what was not acknowledged.
//! - Publishing and consuming use separate connections (see [`Connections`]).
//!
//! README.md has the details, the measurements and what does not work yet.

mod config;
mod consumer;
mod publisher;
mod stats;
mod wire;

use std::sync::Arc;

use async_trait::async_trait;
use std::collections::HashMap;

use saga_core::transport::codec::{Codec, WireSchema};
use saga_core::transport::{Command, DeadLetter, Receiver, Reply, Transport, TransportError};

pub use config::{Connections, PulsarConfig, DEAD_LETTER_SUBSCRIPTION, DEAD_LETTER_SUFFIX};
pub use stats::TransportStats;
pub use wire::property;

use publisher::Publisher;
use stats::Counters;

/// The `transport` label of this transport's metrics (saga_core::metrics::transport).
pub(crate) const TRANSPORT: &str = "pulsar";

/// How long [`Transport::ready`] waits for the broker's answer.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Commands and replies over Apache Pulsar. Cheap to clone; clones share producers and counters.
#[derive(Clone)]
pub struct PulsarTransport {
    publisher: Arc<Publisher>,
    codec: Arc<dyn Codec>,
}

impl PulsarTransport {
    /// A transport. Nothing connects yet: the publishing connection opens on the first send
    /// (and again whenever a send fails), each receiver's when it subscribes.
    pub fn new(config: PulsarConfig, codec: Arc<dyn Codec>) -> Self {
        Self { publisher: Arc::new(Publisher::new(config, Arc::new(Counters::default()))), codec }
    }

    /// The configuration.
    pub fn config(&self) -> &PulsarConfig {
        &self.publisher.config
    }

    /// What the transport did so far to stay up (resends, rebuilt producers and consumers,
    /// dead letters).
    pub fn stats(&self) -> TransportStats {
        self.publisher.counters.snapshot()
    }

    /// Publishes a message that is neither a command nor a reply (an integration event) to
    /// `address`, with `schema` attached when given, and the same guarantees as a command: it
    /// returns once the broker has persisted it, resending the same bytes on failure.
    pub async fn publish(
        &self,
        address: &str,
        schema: Option<&WireSchema>,
        payload: Vec<u8>,
        properties: HashMap<String, String>,
    ) -> Result<(), TransportError> {
        self.publisher.publish(&self.config().topic(address), schema, payload, properties).await
    }
}

#[async_trait]
impl Transport for PulsarTransport {
    async fn send_command(&self, command: &Command) -> Result<(), TransportError> {
        let payload = self.codec.encode_command(command).map_err(|e| TransportError::Codec(e.0))?;
        let schema = self.codec.command_schema(&command.participant);
        let properties = wire::properties(&command.correlation, Some(&command.reply_to), &command.message_type);
        let topic = self.config().topic(&command.participant);
        self.publisher.publish(&topic, schema.as_ref(), payload, properties).await
    }

    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError> {
        let payload = self.codec.encode_reply(reply_to, reply).map_err(|e| TransportError::Codec(e.0))?;
        let schema = self.codec.reply_schema(reply_to);
        let properties = wire::properties(&reply.correlation, None, reply.outcome.label());
        let topic = self.config().topic(reply_to);
        self.publisher.publish(&topic, schema.as_ref(), payload, properties).await
    }

    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        let codec = self.codec.clone();
        let address = participant.to_owned();
        let decode =
            Box::new(move |m: &consumer::Incoming<'_>| codec.decode_command(&address, m.payload).map_err(|e| e.0));
        consumer::subscribe(self.publisher.clone(), participant, decode).await
    }

    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        let codec = self.codec.clone();
        let own = address.to_owned();
        let decode = Box::new(move |m: &consumer::Incoming<'_>| codec.decode_reply(&own, m.payload).map_err(|e| e.0));
        consumer::subscribe(self.publisher.clone(), address, decode).await
    }

    /// Reads `{address}.dlq` on the durable [`DEAD_LETTER_SUBSCRIPTION`] (the one the transport
    /// creates before the first dead letter, from the earliest), so acknowledging a dead letter
    /// here is what lets the broker drop it. Any payload is a dead letter: nothing is refused.
    async fn dead_letters(&self, address: &str) -> Result<Box<dyn Receiver<DeadLetter>>, TransportError> {
        let config = self.config();
        let dlq = config.dead_letter_topic(address);
        let source = consumer::Source {
            topic: dlq.clone(),
            subscription: DEAD_LETTER_SUBSCRIPTION.to_owned(),
            initial: pulsar::consumer::InitialPosition::Earliest,
            dead_letter_topic: config.dead_letter_topic(&format!("{address}{DEAD_LETTER_SUFFIX}")),
        };
        let address = address.to_owned();
        let decode = Box::new(move |m: &consumer::Incoming<'_>| Ok(wire::dead_letter(&address, &dlq, m)));
        consumer::subscribe_to(self.publisher.clone(), source, decode).await
    }

    /// Publishes the payload and properties to `dead.address`, with the codec's schema for that
    /// topic attached when it has one; returns once the broker has persisted it.
    async fn redrive(&self, dead: &DeadLetter) -> Result<(), TransportError> {
        let schema = self.codec.command_schema(&dead.address).or_else(|| self.codec.reply_schema(&dead.address));
        let properties: HashMap<String, String> = dead.properties.clone().into_iter().collect();
        self.publisher
            .publish(&self.config().topic(&dead.address), schema.as_ref(), dead.payload.clone(), properties)
            .await
    }

    /// Asks the broker which broker serves a topic of the configured namespace (a lookup; it
    /// creates nothing): it answers only if it is up and the namespace exists.
    async fn ready(&self) -> Result<(), TransportError> {
        let topic = self.config().topic("health");
        let ask = async {
            let client = self.publisher.client().await?;
            client
                .lookup_topic(topic.clone())
                .await
                .map_err(|e| TransportError::Unavailable(format!("looking up {topic}: {e}")))
        };
        match tokio::time::timeout(READY_TIMEOUT, ask).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TransportError::Unavailable(format!(
                "no answer from {} within {READY_TIMEOUT:?}",
                self.config().url
            ))),
        }
    }
}
