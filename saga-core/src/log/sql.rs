//! The SQL saga stores: PostgreSQL for deployments, SQLite for the embedded mode. Both run the
//! same statements (both databases accept `$n` parameters, `ON CONFLICT` and `RETURNING`), so one
//! macro writes both implementations and the conformance suite holds them to one contract.
//!
//! Queries are checked at run time, not by `sqlx::query!`: the macros check one database per
//! crate, and this crate speaks two. The conformance suite in `tests/store_conformance.rs` runs
//! every statement against both.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::types::Json;
use sqlx::Row;
use tracing::debug;

use super::group::{log_group, LogGroup, Op, Request, Written};
use super::CommitStats;
use super::{ignored_replies, wake_key, wake_time, Created, ListQuery, SagaStore, SagaSummary, StoreError, StoreStats};
use crate::id::SagaId;
use crate::saga::{LogEntry, SagaEvent, SagaState, SagaStatus};

/// Migrations of the saga log on PostgreSQL (`migrations/saga_log/postgres`).
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/saga_log/postgres");
/// Migrations of the saga log on SQLite (`migrations/saga_log/sqlite`).
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/saga_log/sqlite");

/// Maps a driver error: unique violations are conflicts, connection trouble and other database
/// errors may pass (retry), undecodable rows are corruption (never retried).
pub(crate) fn map_err(id: Option<SagaId>, e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(ref d) if d.is_unique_violation() => match id {
            Some(id) => StoreError::Conflict(id),
            None => StoreError::unavailable_from(e.to_string(), e),
        },
        sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::unavailable_from(other.to_string(), other),
    }
}

fn status_of(s: &str) -> Result<SagaStatus, StoreError> {
    SagaStatus::from_str(s).map_err(StoreError::Corrupt)
}

/// Runs a migrator with `ignore_missing`, so the applications that share the database (the
/// orchestrator's query side, a worker's business tables) keep their own migrations beside ours.
pub async fn migrate<'a, A>(migrator: &Migrator, conn: A) -> Result<(), sqlx::migrate::MigrateError>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let mut migrator = Migrator { migrations: migrator.migrations.clone(), ..Migrator::DEFAULT };
    migrator.set_ignore_missing(true);
    migrator.run(conn).await
}

/// Opens a PostgreSQL pool.
pub async fn pg_pool(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new().max_connections(max_connections).acquire_timeout(Duration::from_secs(10)).connect(url).await
}

/// Longest prefix [`create_database`] takes: with `_` and the 32 hex digits of a UUID, the name
/// fills PostgreSQL's 63-byte identifiers.
pub const MAX_DATABASE_PREFIX: usize = 30;

/// Creates a database with a unique name, `<prefix>_<uuid>`, on the PostgreSQL server of
/// `server_url` (connecting with that URL, so its user needs the `CREATEDB` privilege), and
/// returns the new database's URL: `server_url` with its database name replaced, everything
/// else (user, host, query parameters) kept. For throwaway databases: tests, benchmarks, trials.
///
/// `prefix` is lowercase ASCII letters, digits and `_`, starts with a letter and has at most
/// [`MAX_DATABASE_PREFIX`] bytes; anything else is refused (`sqlx::Error::Configuration`) before
/// connecting, as is a URL that is not `scheme://...`.
pub async fn create_database(server_url: &str, prefix: &str) -> Result<String, sqlx::Error> {
    let valid = prefix.len() <= MAX_DATABASE_PREFIX
        && prefix.starts_with(|c: char| c.is_ascii_lowercase())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        return Err(sqlx::Error::Configuration(
            format!(
                "database prefix {prefix:?} must be lowercase ASCII letters, digits and _, start with a letter \
                 and have at most {MAX_DATABASE_PREFIX} bytes"
            )
            .into(),
        ));
    }
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let url = with_database(server_url, &name)?;
    let pool = pg_pool(server_url, 1).await?;
    let created = sqlx::query(&format!("CREATE DATABASE {name}")).execute(&pool).await;
    pool.close().await;
    created?;
    Ok(url)
}

/// `url` naming the database `name` instead of its own: the path after the authority is replaced,
/// the query kept. Checked by parsing the result, so a `dbname` query parameter (which would
/// override the path) is refused rather than silently pointing elsewhere.
fn with_database(url: &str, name: &str) -> Result<String, sqlx::Error> {
    let bad = |why: &str| sqlx::Error::Configuration(format!("cannot name a database in the URL: {why}").into());
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected scheme://host/database"))?;
    let (location, query) = match rest.find(['?', '#']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = location.split_once('/').map_or(location, |(authority, _)| authority);
    let new = format!("{scheme}://{authority}/{name}{query}");
    let options = sqlx::postgres::PgConnectOptions::from_str(&new)?;
    if options.get_database() != Some(name) {
        return Err(bad("its query parameters name another database"));
    }
    Ok(new)
}

/// Opens a SQLite pool on a file (created if missing), in WAL mode with `synchronous=FULL` so a
/// committed transition survives a power cut, with one connection. SQLite has one writer: with
/// several connections, two writers that meet (the log's group commit, a view's update, a
/// participant's batch) do not queue but poll, sleeping in SQLite's busy handler for 1, 2, 5,
/// 10… ms between tries, which made the embedded mode's p99 latency two to three times its p50.
/// One connection makes them take turns in the pool's queue instead, without sleeping. See
/// [`sqlite_pool_with`] for more.
pub async fn sqlite_pool(url: &str) -> Result<SqlitePool, sqlx::Error> {
    sqlite_pool_with(url, 1).await
}

/// [`sqlite_pool`] with up to `connections` connections (an in-memory URL always gets one,
/// since each connection would otherwise see its own empty database): readers then run beside
/// the writer, and writers that meet wait in the busy handler, for up to 10 s. The busy timeout
/// also covers other pools and processes on the same file.
pub async fn sqlite_pool_with(url: &str, connections: u32) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true);
    let connections = if in_memory(url) { 1 } else { connections.max(1) };
    SqlitePoolOptions::new().max_connections(connections).connect_with(options).await
}

fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// Log entries per `INSERT` of a group commit (five parameters each, well inside both
/// databases' limits on parameters per statement).
const ENTRIES_PER_INSERT: usize = 1000;

/// Group-commit transactions a PostgreSQL log runs at a time (SQLite runs one: it has one
/// writer). Enough that one batch's statements overlap another's commit, few enough to leave
/// the pool's other connections to reads.
const PG_FLUSHERS: usize = 3;

/// Why a group commit's transaction did not answer its writes.
#[derive(Debug, thiserror::Error)]
enum BatchError {
    /// A statement failed: nothing of the batch is written.
    #[error("{0}")]
    BeforeCommit(sqlx::Error),
    /// The commit failed: the batch may or may not be written.
    #[error("{0}")]
    AtCommit(sqlx::Error),
}

/// The columns a [`SagaSummary`] is read from.
const SUMMARY_COLUMNS: &str =
    "saga_id, saga_type, status, version, created_at, updated_at, wake_at_ms, wake_failures, wake_error, replies_ignored";

macro_rules! sql_store {
    ($(#[$meta:meta])* $name:ident, $pool:ty, $db:ty, $row:ty, $migrator:ident, $flushers:expr) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            /// Where writes go (and migrations).
            pool: $pool,
            /// Where reads go: the same pool, except for a SQLite store opened with
            /// [`SqliteStore::connect`], whose reads run beside its single writer.
            reader: $pool,
            group: Arc<LogGroup>,
        }

        impl $name {
            /// A store on an open pool; call [`Self::migrate`] once before use.
            pub fn new(pool: $pool) -> Self {
                Self { reader: pool.clone(), pool, group: Arc::new(log_group($flushers)) }
            }

            /// Applies the saga log's migrations.
            pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
                migrate(&$migrator, &self.pool).await
            }

            /// The pool, for callers that keep other tables in the same database.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// The group commit's counts: creates and appends written, and in how many batches.
            pub fn commit_stats(&self) -> CommitStats {
                self.group.stats()
            }

            /// Writes a batch of the group commit (see [`group`](super::group)): in one
            /// transaction, each write answered on its own. A statement
            /// that fails before the commit leaves nothing written, so each write is then tried
            /// in a transaction of its own and gets its own answer; a failed commit may have
            /// landed, so every write of the batch is answered unavailable.
            async fn write_batch(&self, batch: Vec<Request>) -> Vec<Result<Written, StoreError>> {
                if let [one] = &batch[..] {
                    return vec![self.write_alone(one).await];
                }
                match self.write_together(&batch).await {
                    Ok(answers) => answers,
                    Err(BatchError::BeforeCommit(error)) => {
                        debug!(writes = batch.len(), %error, "group commit refused; writing each alone");
                        let mut answers = Vec::with_capacity(batch.len());
                        for request in &batch {
                            answers.push(self.write_alone(request).await);
                        }
                        answers
                    }
                    Err(BatchError::AtCommit(error)) => batch
                        .iter()
                        .map(|r| Err(StoreError::unavailable(format!(
                            "the commit of {} writes carrying saga {}'s failed: {error}", batch.len(), r.state.id
                        ))))
                        .collect(),
                }
            }

            /// One write in a transaction of its own: a refused statement is that write's
            /// error (a log position taken is a conflict).
            async fn write_alone(&self, request: &Request) -> Result<Written, StoreError> {
                let id = request.state.id;
                match self.write_together(std::slice::from_ref(request)).await {
                    Ok(mut answers) => answers.pop().unwrap_or_else(|| Err(StoreError::unavailable(format!("saga {id}: no answer")))),
                    Err(BatchError::BeforeCommit(e) | BatchError::AtCommit(e)) => Err(map_err(Some(id), e)),
                }
            }

            /// The writes of `batch` in one transaction, every saga's version checked.
            async fn write_together(&self, batch: &[Request]) -> Result<Vec<Result<Written, StoreError>>, BatchError> {
                let before = BatchError::BeforeCommit;
                let mut tx = self.pool.begin().await.map_err(before)?;
                // Per write: `Some` when answered, `None` for a create whose saga exists (read after the
                // commit).
                let mut answers: Vec<Option<Result<Written, StoreError>>> = batch.iter().map(|_| None).collect();
                let mut rows: Vec<(SagaId, &LogEntry)> = Vec::new();
                // Rows are locked in saga id order (the same saga's writes keep theirs), so two
                // batches at once wait for each other instead of deadlocking.
                let mut order: Vec<usize> = (0..batch.len()).collect();
                order.sort_by_key(|&i| batch[i].state.id.0);
                for i in order {
                    let request = &batch[i];
                    let state = &request.state;
                    let written = match request.op {
                        Op::Create => sqlx::query(
                            "INSERT INTO saga (saga_id, saga_type, saga_version, status, version, wake_at_ms, state, created_at, updated_at) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (saga_id) DO NOTHING",
                        )
                        .bind(state.id.0)
                        .bind(&state.saga_type)
                        .bind(state.definition_version as i32)
                        .bind(state.status.as_str())
                        .bind(state.version)
                        .bind(wake_key(state))
                        .bind(Json(state))
                        .bind(state.created_at)
                        .bind(state.updated_at)
                        .execute(&mut *tx)
                        .await,
                        Op::Append { expected_version } => sqlx::query(
                            "UPDATE saga SET status = $2, version = $3, wake_at_ms = $4, state = $5, updated_at = $6, \
                             wake_failures = 0, wake_error = NULL, replies_ignored = replies_ignored + $8 \
                             WHERE saga_id = $1 AND version = $7",
                        )
                        .bind(state.id.0)
                        .bind(state.status.as_str())
                        .bind(state.version)
                        .bind(wake_key(state))
                        .bind(Json(state))
                        .bind(state.updated_at)
                        .bind(expected_version)
                        .bind(ignored_replies(&request.entries))
                        .execute(&mut *tx)
                        .await,
                    }
                    .map_err(before)?
                    .rows_affected();
                    answers[i] = if written == 1 {
                        rows.extend(request.entries.iter().map(|e| (state.id, e)));
                        Some(Ok(Written::Done))
                    } else {
                        match request.op {
                            Op::Create => None,
                            Op::Append { .. } => Some(Err(StoreError::Conflict(state.id))),
                        }
                    };
                }
                for chunk in rows.chunks(ENTRIES_PER_INSERT) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new("INSERT INTO saga_log (saga_id, seq, at, kind, event) ");
                    insert.push_values(chunk, |mut row, (id, entry)| {
                        row.push_bind(id.0)
                            .push_bind(entry.seq)
                            .push_bind(entry.at)
                            .push_bind(entry.event.name())
                            .push_bind(Json(&entry.event));
                    });
                    insert.build().execute(&mut *tx).await.map_err(before)?;
                }
                tx.commit().await.map_err(BatchError::AtCommit)?;
                let mut out = Vec::with_capacity(batch.len());
                for (request, answer) in batch.iter().zip(answers) {
                    out.push(match answer {
                        Some(answer) => answer,
                        None => match self.load(request.state.id).await {
                            Ok(Some(existing)) => Ok(Written::Existing(Box::new(existing))),
                            Ok(None) => Err(StoreError::unavailable(format!("saga {} vanished during create", request.state.id))),
                            Err(e) => Err(e),
                        },
                    });
                }
                Ok(out)
            }

            /// A summary from a row of [`SUMMARY_COLUMNS`].
            fn summary_of(row: &$row) -> Result<SagaSummary, StoreError> {
                let status: String = row.try_get("status").map_err(|e| map_err(None, e))?;
                let failures: i32 = row.try_get("wake_failures").map_err(|e| map_err(None, e))?;
                Ok(SagaSummary {
                    id: SagaId(row.try_get("saga_id").map_err(|e| map_err(None, e))?),
                    saga_type: row.try_get("saga_type").map_err(|e| map_err(None, e))?,
                    status: status_of(&status)?,
                    version: row.try_get("version").map_err(|e| map_err(None, e))?,
                    created_at: row.try_get("created_at").map_err(|e| map_err(None, e))?,
                    updated_at: row.try_get("updated_at").map_err(|e| map_err(None, e))?,
                    wake_at: wake_time(row.try_get("wake_at_ms").map_err(|e| map_err(None, e))?),
                    wake_failures: u32::try_from(failures).unwrap_or(0),
                    wake_error: row.try_get("wake_error").map_err(|e| map_err(None, e))?,
                    replies_ignored: u64::try_from(row.try_get::<i64, _>("replies_ignored").map_err(|e| map_err(None, e))?)
                        .unwrap_or(0),
                })
            }
        }

        #[async_trait]
        impl SagaStore for $name {
            async fn create(&self, state: &SagaState, entries: &[LogEntry]) -> Result<Created, StoreError> {
                let request = Request { op: Op::Create, state: state.clone(), entries: entries.to_vec() };
                match self.group.submit(request, |batch| self.write_batch(batch)).await? {
                    Written::Done => Ok(Created::New),
                    Written::Existing(state) => Ok(Created::Existing(state)),
                }
            }

            async fn append(&self, expected_version: i64, state: &SagaState, entries: &[LogEntry]) -> Result<(), StoreError> {
                let request = Request { op: Op::Append { expected_version }, state: state.clone(), entries: entries.to_vec() };
                self.group.submit(request, |batch| self.write_batch(batch)).await.map(|_| ())
            }

            async fn load(&self, id: SagaId) -> Result<Option<SagaState>, StoreError> {
                let row: Option<(Json<SagaState>,)> = sqlx::query_as("SELECT state FROM saga WHERE saga_id = $1")
                    .bind(id.0)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(|e| map_err(Some(id), e))?;
                Ok(row.map(|(Json(s),)| s))
            }

            async fn history(&self, id: SagaId) -> Result<Vec<LogEntry>, StoreError> {
                let rows: Vec<(i64, DateTime<Utc>, Json<SagaEvent>)> =
                    sqlx::query_as("SELECT seq, at, event FROM saga_log WHERE saga_id = $1 ORDER BY seq")
                        .bind(id.0)
                        .fetch_all(&self.reader)
                        .await
                        .map_err(|e| map_err(Some(id), e))?;
                Ok(rows.into_iter().map(|(seq, at, Json(event))| LogEntry { seq, at, event }).collect())
            }

            async fn defer(&self, id: SagaId, until: DateTime<Utc>, error: &str) -> Result<u32, StoreError> {
                let row: Option<(i32,)> = sqlx::query_as(
                    "UPDATE saga SET wake_at_ms = $2, wake_failures = wake_failures + 1, wake_error = $3 \
                     WHERE saga_id = $1 AND wake_at_ms < $2 RETURNING wake_failures",
                )
                .bind(id.0)
                .bind(until.timestamp_millis())
                .bind(error)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| map_err(None, e))?;
                Ok(row.map_or(0, |(n,)| u32::try_from(n).unwrap_or(0)))
            }

            async fn count_ignored_reply(&self, id: SagaId) -> Result<(), StoreError> {
                sqlx::query("UPDATE saga SET replies_ignored = replies_ignored + 1 WHERE saga_id = $1")
                    .bind(id.0)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| map_err(None, e))?;
                Ok(())
            }

            async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, StoreError> {
                let row = sqlx::query(&format!("SELECT {SUMMARY_COLUMNS} FROM saga WHERE saga_id = $1"))
                    .bind(id.0)
                    .fetch_optional(&self.reader)
                    .await
                    .map_err(|e| map_err(None, e))?;
                row.as_ref().map(Self::summary_of).transpose()
            }

            async fn list(&self, query: &ListQuery) -> Result<Vec<SagaSummary>, StoreError> {
                let rows = sqlx::query(&format!(
                    "SELECT {SUMMARY_COLUMNS} FROM saga \
                     WHERE ($1 IS NULL OR status = $1) AND ($2 IS NULL OR saga_type = $2) \
                     AND ($5 IS NULL OR created_at <= $5) \
                     ORDER BY created_at DESC, saga_id DESC LIMIT $3 OFFSET $4",
                ))
                .bind(query.status.map(|s| s.as_str()))
                .bind(query.saga_type.as_deref())
                .bind(i64::from(query.limit.clamp(1, 1000)))
                .bind(i64::from(query.offset))
                .bind(query.created_before)
                .fetch_all(&self.reader)
                .await
                .map_err(|e| map_err(None, e))?;
                rows.iter().map(Self::summary_of).collect()
            }

            async fn active(&self, after: Option<SagaId>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
                let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
                    "SELECT saga_id FROM saga WHERE status IN ('running', 'compensating') \
                     AND ($1 IS NULL OR saga_id > $1) ORDER BY saga_id LIMIT $2",
                )
                .bind(after.map(|a| a.0))
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(|e| map_err(None, e))?;
                Ok(rows.into_iter().map(|(id,)| SagaId(id)).collect())
            }

            async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
                let rows: Vec<(uuid::Uuid,)> = sqlx::query_as(
                    "SELECT saga_id FROM saga WHERE wake_at_ms IS NOT NULL AND wake_at_ms <= $1 \
                     ORDER BY wake_at_ms LIMIT $2",
                )
                .bind(now.timestamp_millis())
                .bind(i64::from(limit))
                .fetch_all(&self.reader)
                .await
                .map_err(|e| map_err(None, e))?;
                Ok(rows.into_iter().map(|(id,)| SagaId(id)).collect())
            }

            async fn stats(&self) -> Result<StoreStats, StoreError> {
                let counts: Vec<(String, i64)> = sqlx::query_as("SELECT status, COUNT(*) FROM saga GROUP BY status")
                    .fetch_all(&self.reader)
                    .await
                    .map_err(|e| map_err(None, e))?;
                let oldest: Option<(DateTime<Utc>,)> = sqlx::query_as(
                    "SELECT created_at FROM saga WHERE status NOT IN ('completed', 'compensated', 'aborted') \
                     ORDER BY created_at LIMIT 1",
                )
                .fetch_optional(&self.reader)
                .await
                .map_err(|e| map_err(None, e))?;
                let (failing,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM saga WHERE wake_failures > 0")
                    .fetch_one(&self.reader)
                    .await
                    .map_err(|e| map_err(None, e))?;
                let mut by_status = Vec::new();
                for status in SagaStatus::ALL {
                    let n = counts.iter().find(|(s, _)| s == status.as_str()).map_or(0, |(_, n)| *n);
                    by_status.push((status, n));
                }
                Ok(StoreStats { by_status, oldest_unfinished: oldest.map(|(t,)| t), failing })
            }
        }
    };
}

sql_store!(
    /// The saga log in PostgreSQL: `saga` (current state) and `saga_log` (history).
    PgStore,
    PgPool,
    sqlx::Postgres,
    sqlx::postgres::PgRow,
    PG_MIGRATOR,
    PG_FLUSHERS
);

sql_store!(
    /// The saga log in a SQLite file: the embedded mode's default.
    SqliteStore,
    SqlitePool,
    sqlx::Sqlite,
    sqlx::sqlite::SqliteRow,
    SQLITE_MIGRATOR,
    1
);

impl PgStore {
    /// Connects to `url` and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = Self::new(pg_pool(url, 10).await.map_err(|e| map_err(None, e))?);
        store.migrate().await.map_err(|e| StoreError::unavailable_from("migrating the saga log", e))?;
        Ok(store)
    }
}

/// Connections a SQLite store opened with [`SqliteStore::connect`] reads on.
pub const SQLITE_READERS: u32 = 4;

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` and applies migrations. Writes go
    /// through one connection (see [`sqlite_pool`]; [`Self::pool`] is that one, for the other
    /// writers of the same file); reads through up to [`SQLITE_READERS`] more, so that loading
    /// a saga never waits for a group commit's fsync.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let pool = sqlite_pool(url).await.map_err(|e| map_err(None, e))?;
        let mut store = Self::new(pool);
        store.migrate().await.map_err(|e| StoreError::unavailable_from("migrating the saga log", e))?;
        // After the writer has created the file and set WAL mode. An in-memory database has
        // only the one connection: another would open another, empty, database.
        if !in_memory(url) {
            store.reader = sqlite_pool_with(url, SQLITE_READERS).await.map_err(|e| map_err(None, e))?;
        }
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_name_replaces_the_urls_own() {
        let with = |url| with_database(url, "saga_test_x").expect("valid URL");
        assert_eq!(
            with("postgres://postgres@127.0.0.1:55432/postgres"),
            "postgres://postgres@127.0.0.1:55432/saga_test_x"
        );
        assert_eq!(with("postgres://u:p@db:5432"), "postgres://u:p@db:5432/saga_test_x");
        assert_eq!(with("postgres://u@db/"), "postgres://u@db/saga_test_x");
        assert_eq!(with("postgresql://u@db/app?sslmode=disable"), "postgresql://u@db/saga_test_x?sslmode=disable");
        assert_eq!(
            with("postgres:///app?host=/var/run/postgresql"),
            "postgres:///saga_test_x?host=/var/run/postgresql"
        );
        assert!(with_database("127.0.0.1:5432/app", "saga_test_x").is_err());
        assert!(with_database("postgres://u@db/app?dbname=other", "saga_test_x").is_err());
    }

    #[tokio::test]
    async fn only_plain_prefixes_are_taken() {
        let long = "a".repeat(MAX_DATABASE_PREFIX + 1);
        for prefix in ["", "Saga_test", "saga-test", "1saga", "saga;drop", "saga test", "sagä", long.as_str()] {
            // Refused before connecting: the URL points nowhere.
            let e = create_database("postgres://nobody@invalid.invalid/x", prefix).await.expect_err(prefix);
            assert!(matches!(e, sqlx::Error::Configuration(_)), "{prefix:?}: {e}");
        }
    }
}
