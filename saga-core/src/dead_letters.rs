//! Dead letters an operator can act on: [`collect`] takes the dead letters of the addresses a
//! service watches from its transport ([`Transport::dead_letters`]) into a durable table of its
//! database ([`DeadLetterStore`], in the saga log's migrations), and [`redrive`] publishes one
//! again to its original address ([`Transport::redrive`]) and records that it did.
//!
//! A dead letter is recorded once, keyed by its address and its id there
//! ([`DeadLetter::source_id`]): the transport acknowledges it only once it is recorded, so a
//! crash in between delivers it again and the second insert finds the first. Its saga, step,
//! kind and message type come from its properties when it has them; a garbage message has none.
//!
//! PostgreSQL and SQLite run the same statements (as [`crate::log::sql`]), except the append of
//! an operator's note.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::types::Json;
use sqlx::{PgPool, Row, SqlitePool};
use tracing::{info, warn};
use uuid::Uuid;

use crate::id::SagaId;
use crate::transport::{property, DeadLetter, Transport, TransportError};

/// What the messages of a watched address are, for a dead letter's `kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carries {
    /// A participant's commands: a dead letter's kind is its `kind` property (action or compensation).
    Commands,
    /// Replies to an orchestrator: a dead letter's kind is `reply`.
    Replies,
}

/// An address whose dead letters a service records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The address (`comandos.marca`).
    pub address: String,
    /// What travels on it.
    pub carries: Carries,
}

/// Pending (not redriven yet) or redriven at least once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Estado {
    /// Recorded, not redriven.
    Pending,
    /// Redriven at least once.
    Redriven,
}

impl std::str::FromStr for Estado {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Estado::Pending),
            "redriven" => Ok(Estado::Redriven),
            other => Err(format!("estado debe ser pending o redriven, no {other:?}")),
        }
    }
}

/// One recorded dead letter, as the HTTP API shows it (without its payload and properties).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeadLetterRecord {
    /// Its id in the table.
    pub id: Uuid,
    /// The address it was dead-lettered from.
    pub topic: String,
    /// Where the transport kept it.
    pub dead_letter_topic: String,
    /// The saga message id of its properties (what participants deduplicate on), when it has one.
    pub message_id: Option<String>,
    /// Its saga, when its properties name one.
    pub saga_id: Option<SagaId>,
    /// Its saga type, when known.
    pub saga_type: Option<String>,
    /// Its step, when known.
    pub step: Option<String>,
    /// `action`, `compensation` or `reply`, when known.
    pub kind: Option<String>,
    /// Its message type (a command's body type, a reply's outcome), when known.
    pub message_type: Option<String>,
    /// Why it was dead-lettered.
    pub reason: String,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
    /// When it was last redriven.
    pub redriven_at: Option<DateTime<Utc>>,
    /// How many times it was redriven.
    pub redrives: i64,
    /// Pending or redriven.
    pub estado: Estado,
    /// The operators' notes, oldest first.
    pub notas: Vec<String>,
    /// The message's bytes (not shown).
    #[serde(skip)]
    pub payload: Vec<u8>,
    /// The message's properties (not shown).
    #[serde(skip)]
    pub properties: BTreeMap<String, String>,
    /// Its id on its original address (not shown).
    #[serde(skip)]
    pub source_id: String,
}

impl DeadLetterRecord {
    /// The dead letter again, as the transport redrives it.
    pub fn dead_letter(&self) -> DeadLetter {
        DeadLetter {
            address: self.topic.clone(),
            dead_letter_address: self.dead_letter_topic.clone(),
            source_id: self.source_id.clone(),
            reason: self.reason.clone(),
            payload: self.payload.clone(),
            properties: self.properties.clone(),
            dead_at: self.dead_at,
        }
    }
}

/// A filter and a page of dead letters, newest first.
#[derive(Clone, Debug, Default)]
pub struct DeadLetterQuery {
    /// Only this address.
    pub topic: Option<String>,
    /// Only this saga's.
    pub saga_id: Option<SagaId>,
    /// Only pending or only redriven ones.
    pub estado: Option<Estado>,
    /// At most this many.
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// The dead-letter table, in PostgreSQL or SQLite (the saga log's database: its migrations
/// create it).
#[derive(Clone, Debug)]
pub enum DeadLetterStore {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

const COLUMNS: &str = "id, topic, dead_letter_topic, source_id, message_id, saga_id, saga_type, step, kind, \
    message_type, reason, payload, properties, dead_at, redriven_at, redrives, notas";

/// `(topic, saga, pending)` filters, `$1` to `$3`.
const FILTER: &str = "($1 IS NULL OR topic = $1) AND ($2 IS NULL OR saga_id = $2) \
    AND ($3 IS NULL OR (redriven_at IS NULL) = $3)";

/// Runs `$body` with `$pool` bound to the store's pool, whichever database it is: the same
/// statements compile once per driver.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match $store {
            DeadLetterStore::Postgres($pool) => $body,
            DeadLetterStore::Sqlite($pool) => $body,
        }
    };
}

macro_rules! record_of {
    ($row:expr) => {{
        let row = $row;
        let redriven_at: Option<DateTime<Utc>> = row.try_get("redriven_at")?;
        let Json(properties): Json<BTreeMap<String, String>> = row.try_get("properties")?;
        let Json(notas): Json<Vec<String>> = row.try_get("notas")?;
        let saga_id: Option<Uuid> = row.try_get("saga_id")?;
        let redrives: i32 = row.try_get("redrives")?;
        Ok::<_, sqlx::Error>(DeadLetterRecord {
            id: row.try_get("id")?,
            topic: row.try_get("topic")?,
            dead_letter_topic: row.try_get("dead_letter_topic")?,
            message_id: row.try_get("message_id")?,
            saga_id: saga_id.map(SagaId),
            saga_type: row.try_get("saga_type")?,
            step: row.try_get("step")?,
            kind: row.try_get("kind")?,
            message_type: row.try_get("message_type")?,
            reason: row.try_get("reason")?,
            dead_at: row.try_get("dead_at")?,
            estado: if redriven_at.is_some() { Estado::Redriven } else { Estado::Pending },
            redriven_at,
            redrives: i64::from(redrives),
            notas,
            payload: row.try_get("payload")?,
            properties,
            source_id: row.try_get("source_id")?,
        })
    }};
}

impl DeadLetterStore {
    /// Records `dead` from an address carrying `carries`; `true` when it is new, `false` when
    /// this dead letter (same address and source id) was recorded before.
    pub async fn record(&self, dead: &DeadLetter, carries: Carries) -> Result<bool, sqlx::Error> {
        let kind = match carries {
            Carries::Replies => Some("reply".to_owned()),
            Carries::Commands => {
                dead.property(property::KIND).filter(|k| matches!(*k, "action" | "compensation")).map(str::to_owned)
            }
        };
        let own = |name: &str| dead.property(name).map(str::to_owned);
        let statement = format!(
            "INSERT INTO dead_letter ({COLUMNS}, recorded_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, NULL, 0, $15, $16) \
             ON CONFLICT (topic, source_id) DO NOTHING"
        );
        let notas: Vec<String> = Vec::new();
        let done = on_pool!(self, pool => sqlx::query(&statement)
            .bind(Uuid::now_v7())
            .bind(&dead.address)
            .bind(&dead.dead_letter_address)
            .bind(&dead.source_id)
            .bind(own(property::MESSAGE_ID))
            .bind(dead.saga_id().map(|s| s.0))
            .bind(own(property::SAGA_TYPE))
            .bind(own(property::STEP))
            .bind(kind)
            .bind(own(property::MESSAGE_TYPE))
            .bind(&dead.reason)
            .bind(&dead.payload)
            .bind(Json(&dead.properties))
            .bind(dead.dead_at)
            .bind(Json(&notas))
            .bind(Utc::now())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// A page of dead letters, newest first, and how many match the filter in all.
    pub async fn list(&self, q: &DeadLetterQuery) -> Result<(Vec<DeadLetterRecord>, u64), sqlx::Error> {
        let pending = q.estado.map(|e| e == Estado::Pending);
        let saga = q.saga_id.map(|s| s.0);
        let select = format!(
            "SELECT {COLUMNS} FROM dead_letter WHERE {FILTER} ORDER BY dead_at DESC, id DESC LIMIT $4 OFFSET $5"
        );
        let count = format!("SELECT COUNT(*) AS n FROM dead_letter WHERE {FILTER}");
        on_pool!(self, pool => {
            let rows = sqlx::query(&select)
                .bind(&q.topic)
                .bind(saga)
                .bind(pending)
                .bind(i64::from(q.limit))
                .bind(i64::from(q.offset))
                .fetch_all(pool)
                .await?;
            let records = rows.iter().map(|r| record_of!(r)).collect::<Result<Vec<_>, _>>()?;
            let n: i64 = sqlx::query(&count).bind(&q.topic).bind(saga).bind(pending).fetch_one(pool).await?.try_get("n")?;
            Ok((records, u64::try_from(n).unwrap_or(0)))
        })
    }

    /// One dead letter.
    pub async fn get(&self, id: Uuid) -> Result<Option<DeadLetterRecord>, sqlx::Error> {
        let select = format!("SELECT {COLUMNS} FROM dead_letter WHERE id = $1");
        on_pool!(self, pool => match sqlx::query(&select).bind(id).fetch_optional(pool).await? {
            Some(row) => Ok(Some(record_of!(&row)?)),
            None => Ok(None),
        })
    }

    /// Records a redrive of `id` done now, with the operator's note if any; the record after it.
    pub async fn mark_redriven(&self, id: Uuid, nota: Option<&str>) -> Result<Option<DeadLetterRecord>, sqlx::Error> {
        let append = match self {
            DeadLetterStore::Postgres(_) => "notas || jsonb_build_array($3::text)",
            DeadLetterStore::Sqlite(_) => "json_insert(notas, '$[#]', $3)",
        };
        let update = format!(
            "UPDATE dead_letter SET redriven_at = $2, redrives = redrives + 1, \
             notas = CASE WHEN $3 IS NULL THEN notas ELSE {append} END WHERE id = $1"
        );
        on_pool!(self, pool => sqlx::query(&update).bind(id).bind(Utc::now()).bind(nota).execute(pool).await?.rows_affected());
        self.get(id).await
    }

    /// Pending dead letters by address (addresses with none are absent).
    pub async fn pending_by_topic(&self) -> Result<BTreeMap<String, u64>, sqlx::Error> {
        let select = "SELECT topic, COUNT(*) AS n FROM dead_letter WHERE redriven_at IS NULL GROUP BY topic";
        on_pool!(self, pool => {
            let rows = sqlx::query(select).fetch_all(pool).await?;
            rows.iter()
                .map(|r| Ok((r.try_get::<String, _>("topic")?, u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0))))
                .collect()
        })
    }
}

/// Why a redrive did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    /// No dead letter has that id.
    #[error("no dead letter {0}")]
    NotFound(Uuid),
    /// The transport could not publish it (the broker is down, say): nothing was recorded.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The table could not be read or written. A redrive published but not recorded is only
    /// under-counted: the participant deduplicates the message when it is redriven again.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Publishes dead letter `id` again to its original address, then records the redrive (and the
/// operator's note); the record after it. Safe to repeat: the message keeps its message id, so
/// a participant that handled it (or another attempt of its step) answers with its stored reply.
pub async fn redrive(
    store: &DeadLetterStore,
    transport: &dyn Transport,
    id: Uuid,
    nota: Option<&str>,
) -> Result<DeadLetterRecord, RedriveError> {
    let record = store.get(id).await?.ok_or(RedriveError::NotFound(id))?;
    transport.redrive(&record.dead_letter()).await?;
    crate::metrics::dead_letters::redriven(&record.topic);
    info!(dead_letter = %id, topic = %record.topic, saga_id = ?record.saga_id, "dead letter redriven");
    store.mark_redriven(id, nota).await?.ok_or(RedriveError::NotFound(id))
}

/// Redrives every pending dead letter of `topic`, oldest first; how many. Stops at the first
/// failure (the ones before it stay redriven).
pub async fn redrive_topic(
    store: &DeadLetterStore,
    transport: &dyn Transport,
    topic: &str,
    nota: Option<&str>,
) -> Result<u64, RedriveError> {
    let mut ids = Vec::new();
    let page = 500;
    loop {
        let q = DeadLetterQuery {
            topic: Some(topic.to_owned()),
            estado: Some(Estado::Pending),
            limit: page,
            offset: u32::try_from(ids.len()).unwrap_or(u32::MAX),
            saga_id: None,
        };
        let (records, _) = store.list(&q).await?;
        let last = records.len() < page as usize;
        ids.extend(records.into_iter().map(|r| r.id));
        if last {
            break;
        }
    }
    let mut n = 0;
    for id in ids.into_iter().rev() {
        redrive(store, transport, id, nota).await?;
        n += 1;
    }
    Ok(n)
}

/// How long the collector waits before trying again after a failure.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// Records the dead letters of every watched address until the future is dropped: one
/// subscription per address, each dead letter recorded and then acknowledged (a database
/// failure leaves it unacknowledged, to come back). Also keeps the pending gauge
/// (`saga_dead_letters_pending{topic}`) up to date, every `gauge_every` and after each new one.
pub async fn collect(
    store: DeadLetterStore,
    transport: Arc<dyn Transport>,
    watched: Vec<Watched>,
    gauge_every: Duration,
) {
    let topics: Vec<String> = watched.iter().map(|w| w.address.clone()).collect();
    let gauges = {
        let store = store.clone();
        let topics = topics.clone();
        async move {
            let mut tick = tokio::time::interval(gauge_every);
            loop {
                tick.tick().await;
                update_gauges(&store, &topics).await;
            }
        }
    };
    let collectors = watched.into_iter().map(|w| collect_one(store.clone(), transport.clone(), w, topics.clone()));
    tokio::join!(gauges, futures_util::future::join_all(collectors));
}

async fn update_gauges(store: &DeadLetterStore, topics: &[String]) {
    match store.pending_by_topic().await {
        Ok(pending) => {
            for topic in topics.iter().chain(pending.keys().filter(|t| !topics.contains(t))) {
                crate::metrics::dead_letters::pending(topic, pending.get(topic).copied().unwrap_or(0));
            }
        }
        Err(e) => warn!(error = %e, "dead-letter gauges not updated"),
    }
}

async fn collect_one(store: DeadLetterStore, transport: Arc<dyn Transport>, watched: Watched, topics: Vec<String>) {
    let address = watched.address.as_str();
    let mut receiver = loop {
        match transport.dead_letters(address).await {
            Ok(r) => break r,
            Err(e) => {
                warn!(address, error = %e, "cannot subscribe to dead letters yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    info!(address, "collecting dead letters");
    loop {
        let delivery = match receiver.recv().await {
            Ok(d) => d,
            Err(TransportError::Closed) => return,
            Err(e) => {
                warn!(address, error = %e, "receiving dead letters failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let dead = &delivery.message;
        match store.record(dead, watched.carries).await {
            Ok(new) => {
                if new {
                    crate::metrics::dead_letters::recorded(address);
                    warn!(address, saga_id = ?dead.saga_id(), reason = %dead.reason, "dead letter recorded");
                    update_gauges(&store, &topics).await;
                }
                if let Err(e) = delivery.ack().await {
                    warn!(address, error = %e, "recorded dead letter not acknowledged; it will come again");
                }
            }
            Err(e) => {
                warn!(address, error = %e, "cannot record a dead letter; it will come again");
                tokio::time::sleep(RETRY_PAUSE).await;
                let _ = delivery.nack().await;
            }
        }
    }
}
