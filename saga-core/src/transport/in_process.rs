//! The in-process transport: queues in memory, for the embedded mode and for tests.
//!
//! It keeps the broker's contract that matters to the engine: messages on one address are shared
//! among its receivers, a nacked or dropped delivery comes back (at the front of the queue, with
//! its redelivery count raised), and dead-lettered messages are kept aside with their reason.
//! Nothing survives the process: durability in the embedded mode comes from the saga log, which
//! re-sends in-flight commands after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{Acknowledge, Command, Delivery, Receiver, Reply, Transport, TransportError};

/// A message kept aside by `dead_letter`, with the reason given.
#[derive(Clone, Debug)]
pub struct DeadLetter<M> {
    /// The message.
    pub message: M,
    /// Why it was dead-lettered.
    pub reason: String,
}

struct Queue<M> {
    address: String,
    state: Mutex<QueueState<M>>,
    notify: Notify,
}

struct QueueState<M> {
    ready: VecDeque<(M, u32)>,
    dead: Vec<DeadLetter<M>>,
    closed: bool,
}

impl<M> Queue<M> {
    fn new(address: &str) -> Self {
        Self {
            address: address.to_owned(),
            state: Mutex::new(QueueState { ready: VecDeque::new(), dead: Vec::new(), closed: false }),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState<M>> {
        // A panic while holding this lock leaves only a queue of plain values behind; recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push_back(&self, message: M) {
        self.lock().ready.push_back((message, 0));
        crate::metrics::transport::published(TRANSPORT, &self.address);
        self.notify.notify_one();
    }

    fn push_front(&self, message: M, redeliveries: u32) {
        self.lock().ready.push_front((message, redeliveries));
        self.notify.notify_one();
    }
}

/// The `transport` label of this transport's metrics.
const TRANSPORT: &str = "in_process";

type Queues<M> = Mutex<HashMap<String, Arc<Queue<M>>>>;

/// In-memory transport. Cheap to clone; clones share the same queues.
#[derive(Clone, Default)]
pub struct InProcessTransport {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    commands: Queues<Command>,
    replies: Queues<Reply>,
}

fn queue<M>(queues: &Queues<M>, address: &str) -> Arc<Queue<M>> {
    let mut map = queues.lock().unwrap_or_else(|e| e.into_inner());
    map.entry(address.to_owned()).or_insert_with(|| Arc::new(Queue::new(address))).clone()
}

impl InProcessTransport {
    /// A transport with no queues yet; queues appear on first use of an address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands dead-lettered on `participant`'s address.
    pub fn dead_commands(&self, participant: &str) -> Vec<DeadLetter<Command>> {
        queue(&self.inner.commands, participant).lock().dead.clone()
    }

    /// Replies dead-lettered on `address`.
    pub fn dead_replies(&self, address: &str) -> Vec<DeadLetter<Reply>> {
        queue(&self.inner.replies, address).lock().dead.clone()
    }

    /// Commands waiting (not yet delivered, or handed back) on `participant`'s address.
    pub fn pending_commands(&self, participant: &str) -> usize {
        queue(&self.inner.commands, participant).lock().ready.len()
    }

    /// Closes every queue: receivers get `Err(Closed)` once their queue is empty.
    pub fn close(&self) {
        for q in self.inner.commands.lock().unwrap_or_else(|e| e.into_inner()).values() {
            q.lock().closed = true;
            q.notify.notify_waiters();
        }
        for q in self.inner.replies.lock().unwrap_or_else(|e| e.into_inner()).values() {
            q.lock().closed = true;
            q.notify.notify_waiters();
        }
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn send_command(&self, command: &Command) -> Result<(), TransportError> {
        queue(&self.inner.commands, &command.participant).push_back(command.clone());
        Ok(())
    }

    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError> {
        queue(&self.inner.replies, reply_to).push_back(reply.clone());
        Ok(())
    }

    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        Ok(Box::new(QueueReceiver { queue: queue(&self.inner.commands, participant) }))
    }

    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        Ok(Box::new(QueueReceiver { queue: queue(&self.inner.replies, address) }))
    }
}

struct QueueReceiver<M> {
    queue: Arc<Queue<M>>,
}

#[async_trait]
impl<M: Clone + Send + 'static> Receiver<M> for QueueReceiver<M> {
    async fn recv(&mut self) -> Result<Delivery<M>, TransportError> {
        loop {
            // Register interest before looking, so a push between the look and the wait is not missed.
            let notified = self.queue.notify.notified();
            {
                let mut state = self.queue.lock();
                if let Some((message, redeliveries)) = state.ready.pop_front() {
                    crate::metrics::transport::consumed(TRANSPORT, &self.queue.address, redeliveries > 0);
                    let acker = QueueAck { queue: self.queue.clone(), message: Some(message.clone()), redeliveries };
                    return Ok(Delivery::new(message, redeliveries, Box::new(acker)));
                }
                if state.closed {
                    return Err(TransportError::Closed);
                }
            }
            notified.await;
        }
    }
}

/// Settles one delivery. Dropped unsettled, it hands the message back for redelivery.
struct QueueAck<M> {
    queue: Arc<Queue<M>>,
    message: Option<M>,
    redeliveries: u32,
}

#[async_trait]
impl<M: Send + 'static> Acknowledge for QueueAck<M> {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.message = None;
        Ok(())
    }

    async fn nack(mut self: Box<Self>) -> Result<(), TransportError> {
        if let Some(message) = self.message.take() {
            self.queue.push_front(message, self.redeliveries + 1);
        }
        Ok(())
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), TransportError> {
        if let Some(message) = self.message.take() {
            self.queue.lock().dead.push(DeadLetter { message, reason: reason.to_owned() });
            crate::metrics::transport::dead_lettered(TRANSPORT, &self.queue.address);
        }
        Ok(())
    }
}

impl<M> Drop for QueueAck<M> {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.queue.push_front(message, self.redeliveries + 1);
        }
    }
}
