//! An in-memory saga store: the same contract as the SQL stores, for unit and property tests
//! where thousands of sagas must run in milliseconds.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{ignored_replies, wake_key, wake_time, Created, ListQuery, SagaStore, SagaSummary, StoreError, StoreStats};
use crate::id::SagaId;
use crate::saga::{LogEntry, SagaState};

/// An in-memory store. Writes can be made to fail after a given count, to simulate a crash.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sagas: BTreeMap<SagaId, Stored>,
    writes: u64,
    write_limit: Option<u64>,
}

/// One saga: what the SQL stores keep in its row and its log.
struct Stored {
    state: SagaState,
    log: Vec<LogEntry>,
    wake_at_ms: Option<i64>,
    wake_failures: u32,
    wake_error: Option<String>,
    replies_ignored: u64,
}

impl Stored {
    fn new(state: SagaState, log: Vec<LogEntry>) -> Self {
        Self { wake_at_ms: wake_key(&state), state, log, wake_failures: 0, wake_error: None, replies_ignored: 0 }
    }

    fn summary(&self) -> SagaSummary {
        let s = &self.state;
        SagaSummary {
            id: s.id,
            saga_type: s.saga_type.clone(),
            status: s.status,
            version: s.version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            wake_at: wake_time(self.wake_at_ms),
            wake_failures: self.wake_failures,
            wake_error: self.wake_error.clone(),
            replies_ignored: self.replies_ignored,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A store holding one saga whose log is `entries` (its state is their fold): a log cut
    /// after any prefix, to test recovery.
    pub fn with_log(id: SagaId, entries: &[LogEntry]) -> Result<Self, crate::saga::ReplayError> {
        let state = SagaState::replay(id, entries)?;
        let store = Self::new();
        store.lock().sagas.insert(id, Stored::new(state, entries.to_vec()));
        Ok(store)
    }

    /// Successful writes (creates and appends) so far.
    pub fn writes(&self) -> u64 {
        self.lock().writes
    }

    /// After `limit` more successful writes, every write fails as if the database were gone.
    pub fn fail_writes_after(&self, limit: u64) {
        let mut inner = self.lock();
        inner.write_limit = Some(inner.writes + limit);
    }

    fn check_write(inner: &Inner) -> Result<(), StoreError> {
        match inner.write_limit {
            Some(limit) if inner.writes >= limit => Err(StoreError::unavailable("injected crash")),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl SagaStore for MemoryStore {
    // Copies are made before the lock is taken, and the state replaced is dropped after it is
    // released: the lock, which every saga shares, is held only to check and swap.
    async fn create(&self, state: &SagaState, entries: &[LogEntry]) -> Result<Created, StoreError> {
        let new = Stored::new(state.clone(), entries.to_vec());
        let mut inner = self.lock();
        Self::check_write(&inner)?;
        if let Some(existing) = inner.sagas.get(&state.id) {
            return Ok(Created::Existing(Box::new(existing.state.clone())));
        }
        inner.sagas.insert(state.id, new);
        inner.writes += 1;
        Ok(Created::New)
    }

    async fn append(&self, expected_version: i64, state: &SagaState, entries: &[LogEntry]) -> Result<(), StoreError> {
        let mut new = state.clone();
        let added = entries.to_vec();
        let mut inner = self.lock();
        Self::check_write(&inner)?;
        let stored = inner
            .sagas
            .get_mut(&state.id)
            .ok_or_else(|| StoreError::Corrupt(format!("append to unknown saga {}", state.id)))?;
        if stored.state.version != expected_version {
            return Err(StoreError::Conflict(state.id));
        }
        std::mem::swap(&mut stored.state, &mut new);
        stored.log.extend(added);
        stored.wake_at_ms = wake_key(state);
        stored.wake_failures = 0;
        stored.wake_error = None;
        stored.replies_ignored += ignored_replies(entries) as u64;
        inner.writes += 1;
        Ok(())
    }

    async fn defer(&self, id: SagaId, until: DateTime<Utc>, error: &str) -> Result<u32, StoreError> {
        let mut inner = self.lock();
        let Some(stored) = inner.sagas.get_mut(&id) else { return Ok(0) };
        let until = until.timestamp_millis();
        if stored.wake_at_ms.is_none_or(|w| w >= until) {
            return Ok(0);
        }
        stored.wake_at_ms = Some(until);
        stored.wake_failures += 1;
        stored.wake_error = Some(error.to_owned());
        Ok(stored.wake_failures)
    }

    async fn count_ignored_reply(&self, id: SagaId) -> Result<(), StoreError> {
        if let Some(stored) = self.lock().sagas.get_mut(&id) {
            stored.replies_ignored += 1;
        }
        Ok(())
    }

    async fn summary(&self, id: SagaId) -> Result<Option<SagaSummary>, StoreError> {
        Ok(self.lock().sagas.get(&id).map(Stored::summary))
    }

    async fn load(&self, id: SagaId) -> Result<Option<SagaState>, StoreError> {
        Ok(self.lock().sagas.get(&id).map(|s| s.state.clone()))
    }

    async fn history(&self, id: SagaId) -> Result<Vec<LogEntry>, StoreError> {
        Ok(self.lock().sagas.get(&id).map(|s| s.log.clone()).unwrap_or_default())
    }

    async fn list(&self, query: &ListQuery) -> Result<Vec<SagaSummary>, StoreError> {
        let inner = self.lock();
        let mut all: Vec<SagaSummary> = inner
            .sagas
            .values()
            .filter(|s| query.status.is_none_or(|st| st == s.state.status))
            .filter(|s| query.saga_type.as_ref().is_none_or(|t| *t == s.state.saga_type))
            .map(Stored::summary)
            .filter(|s| query.created_before.is_none_or(|t| s.created_at <= t))
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.id)));
        let limit = query.limit.clamp(1, 1000) as usize;
        Ok(all.into_iter().skip(query.offset as usize).take(limit).collect())
    }

    async fn active(&self, after: Option<SagaId>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .sagas
            .iter()
            .filter(|(id, s)| s.state.status.is_active() && after.is_none_or(|a| **id > a))
            .map(|(id, _)| *id)
            .take(limit as usize)
            .collect())
    }

    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        let inner = self.lock();
        let now = now.timestamp_millis();
        let mut due: Vec<(i64, SagaId)> =
            inner.sagas.iter().filter_map(|(id, s)| s.wake_at_ms.filter(|w| *w <= now).map(|w| (w, *id))).collect();
        // Earliest first, as the SQL stores' index gives them.
        due.sort_unstable();
        Ok(due.into_iter().map(|(_, id)| id).take(limit as usize).collect())
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let inner = self.lock();
        let mut stats = StoreStats::default();
        for status in crate::saga::SagaStatus::ALL {
            let n = inner.sagas.values().filter(|s| s.state.status == status).count() as i64;
            stats.by_status.push((status, n));
        }
        stats.oldest_unfinished =
            inner.sagas.values().filter(|s| !s.state.status.is_final()).map(|s| s.state.created_at).min();
        stats.failing = inner.sagas.values().filter(|s| s.wake_failures > 0).count() as i64;
        Ok(stats)
    }
}
