//! The saga log: an append-only history of events per saga, plus a current-state row, written
//! together in one transaction. The trait lives here; the stores are in [`memory`] (tests) and
//! [`sql`] (PostgreSQL and SQLite).
//!
//! Concurrency is optimistic: every append names the version (the last `seq`) it was decided
//! against, and fails with [`StoreError::Conflict`] when another writer got there first. The
//! engine then reloads and decides again. The same rule works on PostgreSQL and SQLite, and lets
//! several engines share one PostgreSQL log without leases.

mod group;
pub mod memory;
pub mod sql;

pub use crate::group_commit::CommitStats;
pub use group::MAX_WRITES as MAX_WRITES_PER_COMMIT;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::SagaId;
use crate::saga::{LogEntry, SagaState, SagaStatus};

/// Errors of a saga store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended first; reload and decide again.
    #[error("version conflict on saga {0}")]
    Conflict(SagaId),
    /// The database could not be reached or was busy; retry with backoff.
    #[error("saga log unavailable: {message}")]
    Unavailable {
        /// What failed.
        message: String,
        /// The driver's error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// Stored data could not be read back (a bug or a hand edit); never retried.
    #[error("saga log corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }

    /// Unavailable, with no underlying error to keep.
    pub fn unavailable(message: impl Into<String>) -> Self {
        StoreError::Unavailable { message: message.into(), source: None }
    }

    /// Unavailable because of `source`, which is kept.
    pub fn unavailable_from(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable { message: message.into(), source: Some(Box::new(source)) }
    }
}

/// What `create` found.
#[derive(Debug)]
pub enum Created {
    /// The saga was created.
    New,
    /// A saga with this id already exists; here is its state.
    Existing(Box<SagaState>),
}

/// A saga as listed, without its history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SagaSummary {
    /// The saga.
    pub id: SagaId,
    /// Definition name.
    pub saga_type: String,
    /// Where it is.
    pub status: SagaStatus,
    /// Log entries so far.
    pub version: i64,
    /// When it started.
    pub created_at: DateTime<Utc>,
    /// When its log was last written.
    pub updated_at: DateTime<Utc>,
    /// When the engine looks at it next without a message arriving (a deadline, a retry, or the
    /// backoff of a saga that cannot be driven), to the millisecond.
    pub wake_at: Option<DateTime<Utc>>,
    /// Timer passes in a row that could not drive it (its type not registered, its state
    /// unreadable, a transition that panicked); 0 when its last transition succeeded. A saga
    /// above 0 needs an operator: its wake-up time backs off while the failures go on.
    pub wake_failures: u32,
    /// The latest of those failures.
    pub wake_error: Option<String>,
    /// Replies that answered no command in flight (stale, duplicate, late), whether logged as
    /// `reply_ignored` or, to a saga at rest past its first few, only counted.
    pub replies_ignored: u64,
}

/// Which sagas `list` returns, newest first.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only sagas in this status.
    pub status: Option<SagaStatus>,
    /// Only sagas of this definition.
    pub saga_type: Option<String>,
    /// Only sagas started at or before this (older than an age).
    pub created_before: Option<DateTime<Utc>>,
    /// At most this many (the store caps it at 1000).
    pub limit: u32,
    /// Skip this many.
    pub offset: u32,
}

/// Counts of sagas per status, and the age of the oldest unfinished one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreStats {
    /// Sagas per status.
    pub by_status: Vec<(SagaStatus, i64)>,
    /// Creation time of the oldest saga not in a final state (stuck ones included).
    pub oldest_unfinished: Option<DateTime<Utc>>,
    /// Sagas the timer could not drive at its last look (`wake_failures > 0`).
    pub failing: i64,
}

/// A persisted saga log.
#[async_trait]
pub trait SagaStore: Send + Sync + 'static {
    /// Creates a saga: its current-state row and its first entries, in one transaction.
    /// If the id exists, changes nothing and returns the existing state.
    async fn create(&self, state: &SagaState, entries: &[LogEntry]) -> Result<Created, StoreError>;

    /// Appends entries and replaces the current-state row, in one transaction, if the stored
    /// version is still `expected_version`; otherwise `Conflict`. Clears the saga's wake
    /// failures (see [`SagaStore::defer`]): it was driven. Adds the `reply_ignored` entries to
    /// the saga's count of ignored replies.
    async fn append(&self, expected_version: i64, state: &SagaState, entries: &[LogEntry]) -> Result<(), StoreError>;

    /// Records that the saga could not be driven (`error`) and that the timer must not look at
    /// it again before `until`, without touching its state or its log: counts one more wake
    /// failure and returns the count. So a saga whose every transition fails leaves the head of
    /// the timer's batch to the others. Only a saga whose wake-up time is still before `until`
    /// is deferred: one that another engine finished or moved on meanwhile is left alone (0).
    async fn defer(&self, id: SagaId, until: DateTime<Utc>, error: &str) -> Result<u32, StoreError>;

    /// Counts one ignored reply that is not logged (a stale reply to a saga at rest, past the
    /// first few), without touching its state, version, `updated_at` or log.
    async fn count_ignored_reply(&self, id: SagaId) -> Result<(), StoreError>;

    /// A saga's summary, read without its state (so a saga whose state cannot be read has one).
    async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, StoreError>;

    /// The current state of a saga.
    async fn load(&self, id: SagaId) -> Result<Option<SagaState>, StoreError>;

    /// The whole log of a saga, in order.
    async fn history(&self, id: SagaId) -> Result<Vec<LogEntry>, StoreError>;

    /// Sagas, newest first.
    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaSummary>, StoreError>;

    /// Sagas the engine still drives (running or compensating), oldest first, after `after`
    /// (exclusive) in id order, at most `limit`.
    async fn active(&self, after: Option<SagaId>, limit: u32) -> Result<Vec<SagaId>, StoreError>;

    /// Active sagas whose wake-up time is at or before `now`, earliest first, at most `limit`.
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SagaId>, StoreError>;

    /// Counts for metrics.
    async fn stats(&self) -> Result<StoreStats, StoreError>;
}

/// The `wake_at` index key stored with a state: milliseconds since the epoch.
pub(crate) fn wake_key(state: &SagaState) -> Option<i64> {
    state.wake_at().map(|t| t.timestamp_millis())
}

/// How many of `entries` record an ignored reply.
pub(crate) fn ignored_replies(entries: &[LogEntry]) -> i64 {
    entries.iter().filter(|e| matches!(e.event, crate::saga::SagaEvent::ReplyIgnored { .. })).count() as i64
}

/// The time of a `wake_at` index key.
pub(crate) fn wake_time(key: Option<i64>) -> Option<DateTime<Utc>> {
    key.and_then(DateTime::from_timestamp_millis)
}
