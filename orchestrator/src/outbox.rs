//! Publishing integration events from a saga's outbox. A saga's view writes each event in the
//! same transaction as the saga's final state (so an event exists exactly when the outcome is
//! recorded, one per saga); a relay task reads what is unpublished and hands it to a
//! [`Publisher`]: at least once, consumers deduplicate on the event id.
//!
//! An event that cannot be published stays in the outbox, is counted
//! (`outbox_publish_failures_total`), and is retried on the next pass; the events after it are
//! still published, so one bad event never holds back the others.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use schemas::{Envelope, ParsedSchema, SchemaError};
use tracing::{info, warn};
use uuid::Uuid;

use crate::app::EventSink;

/// An integration event as the outbox holds it, encoded for its topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingEvent {
    /// The event's id; consumers deduplicate on it.
    pub id_evento: Uuid,
    /// The saga that produced it.
    pub saga_id: Uuid,
    /// The event record's simple name, e.g. `PagoCompletado`.
    pub message_type: String,
    /// Its topic.
    pub topic: &'static str,
    /// The Avro datum of the topic's envelope.
    pub payload: Vec<u8>,
    /// The envelope's self-contained Avro schema (JSON), attached when published.
    pub schema: &'static str,
}

impl OutgoingEvent {
    /// `envelope`, Avro-encoded for its topic.
    pub fn encode<E: Envelope>(
        envelope: &E,
        id_evento: Uuid,
        saga_id: Uuid,
        message_type: &str,
    ) -> Result<Self, SchemaError> {
        Ok(Self {
            id_evento,
            saga_id,
            message_type: message_type.to_owned(),
            topic: E::TOPIC,
            payload: schemas::encode(envelope)?,
            schema: ParsedSchema::of::<E>().json(),
        })
    }
}

/// A saga's outbox.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Events not yet published, oldest first. An event whose stored form cannot be encoded
    /// any more is returned as `Err` with its id, so the relay counts it and goes on.
    async fn unpublished(&self, limit: u32) -> Result<Vec<Result<OutgoingEvent, (Uuid, String)>>, String>;
    /// Marks an event published.
    async fn mark_published(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), String>;
}

/// Where events go.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one event; `Err` leaves it in the outbox for the next pass.
    async fn publish(&self, event: &OutgoingEvent) -> Result<(), String>;
}

/// The publisher of an [`EventSink`].
pub fn publisher(sink: &EventSink) -> Arc<dyn Publisher> {
    match sink {
        EventSink::Log => Arc::new(LogPublisher),
        #[cfg(feature = "pulsar")]
        EventSink::Broker(transport) => Arc::new(BrokerPublisher(transport.clone())),
    }
}

/// The embedded mode's publisher: there is no broker, so the event (already checked against its
/// Avro schema when it was encoded) is written to the log; the outbox keeps it, with its
/// publication time.
pub struct LogPublisher;

#[async_trait]
impl Publisher for LogPublisher {
    async fn publish(&self, e: &OutgoingEvent) -> Result<(), String> {
        info!(topic = e.topic, id_evento = %e.id_evento, tipo = %e.message_type, "integration event published to the log");
        Ok(())
    }
}

/// The distributed mode's publisher: the Avro datum on the broker, with the envelope's schema
/// attached (so the registry holds it and consumers can read it by it) and `id_evento`,
/// `saga_id` and `message_type` in the message properties.
#[cfg(feature = "pulsar")]
pub struct BrokerPublisher(pub saga_pulsar::PulsarTransport);

#[cfg(feature = "pulsar")]
#[async_trait]
impl Publisher for BrokerPublisher {
    async fn publish(&self, e: &OutgoingEvent) -> Result<(), String> {
        use saga_core::transport::codec::{SchemaKind, WireSchema};
        let schema = WireSchema { kind: SchemaKind::Avro, definition: e.schema.to_owned() };
        let properties = std::collections::HashMap::from([
            ("id_evento".to_owned(), e.id_evento.to_string()),
            (saga_pulsar::property::SAGA_ID.to_owned(), e.saga_id.to_string()),
            (saga_pulsar::property::MESSAGE_TYPE.to_owned(), e.message_type.clone()),
        ]);
        self.0.publish(e.topic, Some(&schema), e.payload.clone(), properties).await.map_err(|e| e.to_string())?;
        info!(topic = e.topic, id_evento = %e.id_evento, tipo = %e.message_type, "integration event published");
        Ok(())
    }
}

/// How often a relay looks at its outbox.
pub const RELAY_INTERVAL: Duration = Duration::from_millis(500);

/// One relay pass: publishes what the outbox holds unpublished, oldest first; returns how many
/// were published.
pub async fn relay_once(outbox: &dyn Outbox, publisher: &dyn Publisher) -> usize {
    let unpublished = match outbox.unpublished(100).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "outbox unreadable; next pass retries");
            return 0;
        }
    };
    let mut published = 0;
    for event in unpublished {
        let event = match event {
            Ok(event) => event,
            Err((id_evento, error)) => {
                metrics::counter!("outbox_publish_failures_total", "reason" => "encode").increment(1);
                warn!(%id_evento, %error, "outbox event cannot be encoded; it stays in the outbox");
                continue;
            }
        };
        match publisher.publish(&event).await {
            Ok(()) => match outbox.mark_published(event.id_evento, Utc::now()).await {
                Ok(()) => published += 1,
                Err(e) => warn!(error = %e, "event published but not marked; it will be published again"),
            },
            Err(e) => {
                metrics::counter!("outbox_publish_failures_total", "reason" => "publish").increment(1);
                warn!(id_evento = %event.id_evento, error = %e, "event not published; next pass retries");
            }
        }
    }
    published
}

/// Runs a relay forever.
pub async fn run(outbox: Arc<dyn Outbox>, publisher: Arc<dyn Publisher>) {
    let mut tick = tokio::time::interval(RELAY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        relay_once(outbox.as_ref(), publisher.as_ref()).await;
    }
}
