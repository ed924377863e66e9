//! Group commit for the SQL stores: the creates and appends of many sagas share one transaction.
//!
//! A write is queued, then its caller waits for its turn to flush. A flusher takes everything
//! queued (up to [`MAX_WRITES`]) and writes it in one transaction; the writes that arrived while
//! it was committing are carried by the next one. A store has a fixed number of flushers at a
//! time: one for SQLite (one writer anyway), a few for PostgreSQL, so that one batch's round
//! trips overlap another's commit. So under load one commit (one fsync) serves
//! many transitions, and a write alone is flushed at once, as it would have been without the
//! queue. Each write keeps its own answer: its saga's version is still checked, a conflict
//! refuses that write only, and a create that finds its saga gets the existing state.
//!
//! An answer of [`StoreError::Unavailable`] keeps its meaning (the write may have committed;
//! the engine reads the log back): a batch whose commit failed, or whose flusher was cancelled,
//! answers it to every write it carried.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

use super::StoreError;
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

/// A queued write and where its answer goes.
type Queued = (Request, oneshot::Sender<Result<Written, StoreError>>);

/// How many writes a store's group commit has flushed, in how many batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Creates and appends flushed.
    pub writes: u64,
    /// Batches they were flushed in: one transaction each, unless a batch was refused and its
    /// writes were tried alone.
    pub batches: u64,
}

/// A store's queue of writes and its flushers.
#[derive(Debug)]
pub(crate) struct Group {
    queue: Mutex<Vec<Queued>>,
    flushers: tokio::sync::Semaphore,
    writes: AtomicU64,
    batches: AtomicU64,
}

impl Group {
    /// A queue flushed by at most `flushers` transactions at a time.
    pub(crate) fn new(flushers: usize) -> Self {
        Self {
            queue: Mutex::default(),
            flushers: tokio::sync::Semaphore::new(flushers.max(1)),
            writes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        }
    }

    /// Queues `request` and returns its answer, flushing the queue with `flush` when this caller's
    /// turn comes before another flusher has carried its write. `flush` answers every request of
    /// the batch it is given, in order.
    pub(crate) async fn submit<F, Fut>(&self, request: Request, flush: F) -> Result<Written, StoreError>
    where
        F: Fn(Vec<Request>) -> Fut,
        Fut: Future<Output = Vec<Result<Written, StoreError>>>,
    {
        let (done, mut answer) = oneshot::channel();
        self.lock_queue().push((request, done));
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => {
                    return answered.unwrap_or_else(|_| {
                        Err(StoreError::unavailable("the transaction carrying this write was interrupted"))
                    });
                }
                // The semaphore is never closed, so a permit always comes.
                Ok(turn) = self.flushers.acquire() => {
                    let batch: Vec<_> = {
                        let mut queue = self.lock_queue();
                        let n = queue.len().min(MAX_WRITES);
                        queue.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // This write was queued before the turn came, so another flusher
                        // carries it: wait for its answer (taking turns again would spin).
                        drop(turn);
                        return answer.await.unwrap_or_else(|_| {
                            Err(StoreError::unavailable("the transaction carrying this write was interrupted"))
                        });
                    }
                    let (requests, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    metrics::histogram!("saga_log_writes_per_commit").record(requests.len() as f64);
                    self.writes.fetch_add(requests.len() as u64, Ordering::Relaxed);
                    self.batches.fetch_add(1, Ordering::Relaxed);
                    let results = flush(requests).await;
                    for (answer, result) in answers.into_iter().zip(results) {
                        // A caller that gave up does not need its answer.
                        let _ = answer.send(result);
                    }
                }
            }
        }
    }

    /// What has been flushed so far.
    pub(crate) fn stats(&self) -> CommitStats {
        CommitStats { writes: self.writes.load(Ordering::Relaxed), batches: self.batches.load(Ordering::Relaxed) }
    }

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
