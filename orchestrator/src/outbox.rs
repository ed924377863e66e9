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

/// An integration event envelope an outbox table holds (as JSON, encoded when published).
pub trait OutboxEvent: Envelope + Clone + Send + Sync + Unpin + 'static {
    /// The event's id.
    fn id_evento(&self) -> Uuid;
    /// The saga that produced it.
    fn saga_id(&self) -> Uuid;
    /// The event record's simple name.
    fn message_type(&self) -> &str;
}

macro_rules! outbox_event {
    ($($t:ty),+) => {$(
        impl OutboxEvent for $t {
            fn id_evento(&self) -> Uuid {
                self.id_evento
            }
            fn saga_id(&self) -> Uuid {
                self.saga_id
            }
            fn message_type(&self) -> &str {
                &self.message_type
            }
        }
    )+};
}

outbox_event!(schemas::EventoCampana, schemas::EventoPago);

/// A failed outbox statement.
pub type SqlError = sqlx::Error;

/// An outbox table in a saga view's database, with this shape (each saga's migrations create
/// theirs): `id_evento` (key), `saga_id` (unique: one event per saga), `topico`, `tipo`, `carga`
/// (the envelope as JSON), `creado_en`, `publicado_en` (null until published).
macro_rules! sql_outbox {
    ($(#[$meta:meta])* $name:ident, $db:ty, $pool:ty) => {
        $(#[$meta])*
        pub struct $name<E> {
            pool: $pool,
            table: &'static str,
            _event: std::marker::PhantomData<fn() -> E>,
        }

        impl<E> Clone for $name<E> {
            fn clone(&self) -> Self {
                Self { pool: self.pool.clone(), table: self.table, _event: std::marker::PhantomData }
            }
        }

        impl<E: OutboxEvent + serde::Serialize + serde::de::DeserializeOwned> $name<E> {
            /// The outbox `table` in `pool`'s database.
            pub fn new(pool: $pool, table: &'static str) -> Self {
                Self { pool, table, _event: std::marker::PhantomData }
            }

            /// Writes `event` inside `tx`, the transaction that records the saga's end; a saga
            /// that has its event already keeps it.
            pub async fn insert(
                &self,
                tx: &mut sqlx::Transaction<'_, $db>,
                event: &E,
                at: DateTime<Utc>,
            ) -> Result<(), SqlError> {
                sqlx::query(&format!(
                    "INSERT INTO {} (id_evento, saga_id, topico, tipo, carga, creado_en) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (saga_id) DO NOTHING",
                    self.table
                ))
                .bind(event.id_evento())
                .bind(event.saga_id())
                .bind(E::TOPIC)
                .bind(event.message_type())
                .bind(sqlx::types::Json(event))
                .bind(at)
                .execute(&mut **tx)
                .await?;
                Ok(())
            }

            /// Events not yet published, oldest first.
            pub async fn pending(&self, limit: u32) -> Result<Vec<E>, SqlError> {
                let rows: Vec<(sqlx::types::Json<E>,)> = sqlx::query_as(&format!(
                    "SELECT carga FROM {} WHERE publicado_en IS NULL ORDER BY creado_en LIMIT $1",
                    self.table
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(sqlx::types::Json(e),)| e).collect())
            }

            /// Marks an event published at `at`.
            pub async fn mark(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), SqlError> {
                sqlx::query(&format!("UPDATE {} SET publicado_en = $2 WHERE id_evento = $1", self.table))
                    .bind(id_evento)
                    .bind(at)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            /// The event of a saga, with its publication time.
            pub async fn of_saga(&self, saga_id: Uuid) -> Result<Option<(E, Option<DateTime<Utc>>)>, SqlError> {
                let row: Option<(sqlx::types::Json<E>, Option<DateTime<Utc>>)> =
                    sqlx::query_as(&format!("SELECT carga, publicado_en FROM {} WHERE saga_id = $1", self.table))
                        .bind(saga_id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(sqlx::types::Json(e), at)| (e, at)))
            }
        }

        #[async_trait]
        impl<E: OutboxEvent + serde::Serialize + serde::de::DeserializeOwned> Outbox for $name<E> {
            async fn unpublished(&self, limit: u32) -> Result<Vec<Result<OutgoingEvent, (Uuid, String)>>, String> {
                let events = self.pending(limit).await.map_err(|e| e.to_string())?;
                Ok(events
                    .iter()
                    .map(|e| {
                        OutgoingEvent::encode(e, e.id_evento(), e.saga_id(), e.message_type())
                            .map_err(|err| (e.id_evento(), err.to_string()))
                    })
                    .collect())
            }

            async fn mark_published(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), String> {
                self.mark(id_evento, at).await.map_err(|e| e.to_string())
            }
        }
    };
}

sql_outbox!(
    /// An outbox table in PostgreSQL.
    PgOutbox,
    sqlx::Postgres,
    sqlx::PgPool
);

sql_outbox!(
    /// An outbox table in SQLite (the embedded mode).
    SqliteOutbox,
    sqlx::Sqlite,
    sqlx::SqlitePool
);

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Three events, the second of which cannot be encoded; records what was marked.
    struct Three(Mutex<Vec<Uuid>>);

    fn event(n: u128) -> OutgoingEvent {
        OutgoingEvent {
            id_evento: Uuid::from_u128(n),
            saga_id: Uuid::from_u128(n),
            message_type: "PagoFallido".into(),
            topic: "eventos.pagos",
            payload: vec![],
            schema: "{}",
        }
    }

    #[async_trait]
    impl Outbox for Three {
        async fn unpublished(&self, _: u32) -> Result<Vec<Result<OutgoingEvent, (Uuid, String)>>, String> {
            Ok(vec![Ok(event(1)), Err((Uuid::from_u128(2), "no encoding".into())), Ok(event(3)), Ok(event(4))])
        }
        async fn mark_published(&self, id: Uuid, _: DateTime<Utc>) -> Result<(), String> {
            self.0.lock().map_err(|e| e.to_string())?.push(id);
            Ok(())
        }
    }

    /// Refuses event 3.
    struct RefusesThree;

    #[async_trait]
    impl Publisher for RefusesThree {
        async fn publish(&self, e: &OutgoingEvent) -> Result<(), String> {
            if e.id_evento == Uuid::from_u128(3) {
                Err("broker said no".into())
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn an_event_that_fails_never_holds_back_the_others() {
        let outbox = Three(Mutex::new(Vec::new()));
        assert_eq!(relay_once(&outbox, &RefusesThree).await, 2);
        let marked = outbox.0.lock().map(|m| m.clone()).unwrap_or_default();
        assert_eq!(marked, [Uuid::from_u128(1), Uuid::from_u128(4)], "the ones after a failure are published too");
    }
}
