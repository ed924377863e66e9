//! Group commit: many callers' writes share one transaction. Used by the SQL saga stores (the
//! creates and appends of many sagas) and by the SQL participants (many commands' dedup records
//! and effects).
//!
//! A write is queued, then its caller waits for its turn to flush. A flusher takes everything
//! queued (up to the group's limit) and writes it in one transaction; the writes that arrived
//! while it was committing are carried by the next one. A group has a fixed number of flushers
//! at a time, so under load one commit (one fsync) serves many writes, and a write alone is
//! flushed at once, as it would have been without the queue. Each write keeps its own answer.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::oneshot;

/// How many writes a group commit has flushed, in how many batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Writes flushed.
    pub writes: u64,
    /// Batches they were flushed in: one transaction each, unless a batch was refused and its
    /// writes were tried alone.
    pub batches: u64,
}

/// A queue of writes of type `Q`, each answered with an `A`, and its flushers.
pub(crate) struct Group<Q, A> {
    queue: Mutex<Vec<(Q, oneshot::Sender<A>)>>,
    flushers: tokio::sync::Semaphore,
    max_batch: usize,
    /// The answer of a write whose flusher was cancelled before answering it.
    interrupted: fn() -> A,
    /// The histogram of batch sizes.
    metric: &'static str,
    writes: AtomicU64,
    batches: AtomicU64,
}

impl<Q, A> std::fmt::Debug for Group<Q, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group").field("max_batch", &self.max_batch).field("stats", &self.stats()).finish()
    }
}

impl<Q, A> Group<Q, A> {
    /// A queue flushed by at most `flushers` transactions at a time, each carrying at most
    /// `max_batch` writes; batch sizes are recorded in the histogram `metric`.
    pub(crate) fn new(flushers: usize, max_batch: usize, metric: &'static str, interrupted: fn() -> A) -> Self {
        Self {
            queue: Mutex::default(),
            flushers: tokio::sync::Semaphore::new(flushers.max(1)),
            max_batch: max_batch.max(1),
            interrupted,
            metric,
            writes: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        }
    }

    /// Queues `request` and returns its answer, flushing the queue with `flush` when this caller's
    /// turn comes before another flusher has carried its write. `flush` answers every request of
    /// the batch it is given, in order.
    pub(crate) async fn submit<F, Fut>(&self, request: Q, flush: F) -> A
    where
        F: Fn(Vec<Q>) -> Fut,
        Fut: Future<Output = Vec<A>>,
    {
        let (done, mut answer) = oneshot::channel();
        self.lock_queue().push((request, done));
        loop {
            tokio::select! {
                biased;
                answered = &mut answer => return answered.unwrap_or_else(|_| (self.interrupted)()),
                // The semaphore is never closed, so a permit always comes.
                Ok(turn) = self.flushers.acquire() => {
                    let batch: Vec<_> = {
                        let mut queue = self.lock_queue();
                        let n = queue.len().min(self.max_batch);
                        queue.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // This write was queued before the turn came, so another flusher
                        // carries it: wait for its answer (taking turns again would spin).
                        drop(turn);
                        return answer.await.unwrap_or_else(|_| (self.interrupted)());
                    }
                    let (requests, answers): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    metrics::histogram!(self.metric).record(requests.len() as f64);
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

    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<(Q, oneshot::Sender<A>)>> {
        // Nothing panics while holding it; a poisoned lock still holds a consistent queue.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}
