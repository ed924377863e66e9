//! Group commit for the SQL stores (the crate's `group_commit` module): the creates and appends of
//! many sagas share one transaction, up to [`MAX_WRITES`] of them. A store has a fixed number of
//! flushers at a time: one for SQLite (one writer anyway), a few for PostgreSQL, so that one
//! batch's round trips overlap another's commit. Each write keeps its own answer: its saga's
//! version is still checked, a conflict refuses that write only, and a create that finds its
//! saga gets the existing state.
//!
//! An answer of [`StoreError::Unavailable`] keeps its meaning (the write may have committed;
//! the engine reads the log back): a batch whose commit failed, or whose flusher was cancelled,
//! answers it to every write it carried.

use super::StoreError;
use crate::group_commit::Group;
use crate::saga::{LogEntry, SagaState};

/// Most writes in one transaction.
pub const MAX_WRITES: usize = 100;

/// What a write does.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    /// Create the saga unless its id exists.
    Create,
    /// Append if the stored version is still this one.
    Append { expected_version: i64 },
}

/// One write, as queued.
#[derive(Debug)]
pub(crate) struct Request {
    pub op: Op,
    pub state: SagaState,
    pub entries: Vec<LogEntry>,
}

/// How a write went.
#[derive(Debug)]
pub(crate) enum Written {
    /// Created, or appended.
    Done,
    /// A create whose id exists: that saga's state.
    Existing(Box<SagaState>),
}

/// A store's queue of writes and its flushers.
pub(crate) type LogGroup = Group<Request, Result<Written, StoreError>>;

/// A store's group commit, flushed by at most `flushers` transactions at a time.
pub(crate) fn log_group(flushers: usize) -> LogGroup {
    Group::new(flushers, MAX_WRITES, "saga_log_writes_per_commit", || {
        Err(StoreError::unavailable("the transaction carrying this write was interrupted"))
    })
}
