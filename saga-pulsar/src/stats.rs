//! Counters of what the transport did to stay up, for logs, metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the transport's counters since it was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages published and persisted by the broker (commands, replies, dead letters).
    pub published: u64,
    /// Send attempts after a first one failed or timed out.
    pub send_retries: u64,
    /// Sends that gave up with `Unavailable`.
    pub send_failures: u64,
    /// Producers dropped to be built again after a failed or timed-out send.
    pub producers_rebuilt: u64,
    /// Consumers subscribed again after their stream ended (an outage longer than the client's
    /// own reconnection budget) or kept failing.
    pub consumers_rebuilt: u64,
    /// Messages moved to a dead-letter topic (by the application, or as undecodable).
    pub dead_lettered: u64,
    /// Of those, messages the codec could not decode (they never reached the application).
    pub undecodable: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub send_retries: AtomicU64,
    pub send_failures: AtomicU64,
    pub producers_rebuilt: AtomicU64,
    pub consumers_rebuilt: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub undecodable: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> TransportStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TransportStats {
            published: get(&self.published),
            send_retries: get(&self.send_retries),
            send_failures: get(&self.send_failures),
            producers_rebuilt: get(&self.producers_rebuilt),
            consumers_rebuilt: get(&self.consumers_rebuilt),
            dead_lettered: get(&self.dead_lettered),
            undecodable: get(&self.undecodable),
        }
    }
}
