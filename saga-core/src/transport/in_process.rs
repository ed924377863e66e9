//! The in-process transport: queues in memory, for the embedded mode and for tests.
//!
//! It keeps the broker's contract that matters to the engine: messages on one address are shared
//! among its receivers, a nacked or dropped delivery comes back (at the front of the queue, with
//! its redelivery count raised), and dead-lettered messages are kept aside with their reason.
//! Each dead letter is also queued, as bytes (the message as JSON) and the properties Pulsar
//! would carry, on the address's dead-letter queue, which [`Transport::dead_letters`] serves and
//! [`Transport::redrive`] publishes back from. Nothing survives the process: durability in the embedded mode comes from the saga log, which
//! re-sends in-flight commands after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::Notify;

use serde::{Deserialize, Serialize};

use super::dead_letter::{self, correlation_properties};
use super::{Acknowledge, Command, Delivery, Receiver, Reply, Transport, TransportError};

/// What a dead-letter queue's name adds to its address, as for Pulsar.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The payload of an in-process dead letter: the message as JSON, tagged with what it is.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Stored {
    Command(Command),
    Reply(Reply),
}

/// What the queues carry: a message that can be turned into a dead letter.
trait Letter: Clone + Send + 'static {
    /// This message as a dead letter of `address`; `None` for a dead letter itself (one that
    /// cannot be handled is acknowledged, not dead-lettered again).
    fn dead(&self, address: &str, reason: &str) -> Option<dead_letter::DeadLetter>;
}

fn dead(address: &str, reason: &str, stored: &Stored) -> dead_letter::DeadLetter {
    let properties = match stored {
        Stored::Command(c) => correlation_properties(&c.correlation, Some(&c.reply_to), &c.message_type),
        Stored::Reply(r) => correlation_properties(&r.correlation, None, r.outcome.label()),
    };
    dead_letter::DeadLetter {
        address: address.to_owned(),
        dead_letter_address: format!("{address}{DEAD_LETTER_SUFFIX}"),
        source_id: uuid::Uuid::new_v4().to_string(),
        reason: reason.to_owned(),
        // Serializing plain values into JSON cannot fail.
        payload: serde_json::to_vec(stored).unwrap_or_default(),
        properties,
        dead_at: chrono::Utc::now(),
    }
}

impl Letter for Command {
    fn dead(&self, address: &str, reason: &str) -> Option<dead_letter::DeadLetter> {
        Some(dead(address, reason, &Stored::Command(self.clone())))
    }
}

impl Letter for Reply {
    fn dead(&self, address: &str, reason: &str) -> Option<dead_letter::DeadLetter> {
        Some(dead(address, reason, &Stored::Reply(self.clone())))
    }
}

impl Letter for dead_letter::DeadLetter {
    fn dead(&self, _address: &str, _reason: &str) -> Option<dead_letter::DeadLetter> {
        None
    }
}

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
    /// Where its dead letters are queued (none for a dead-letter queue).
    dead_letters: Option<Arc<Queue<dead_letter::DeadLetter>>>,
}

struct QueueState<M> {
    ready: VecDeque<(M, u32)>,
    dead: Vec<DeadLetter<M>>,
    closed: bool,
}

impl<M> Queue<M> {
    fn new(address: &str, dead_letters: Option<Arc<Queue<dead_letter::DeadLetter>>>) -> Self {
        Self {
            address: address.to_owned(),
            state: Mutex::new(QueueState { ready: VecDeque::new(), dead: Vec::new(), closed: false }),
            notify: Notify::new(),
            dead_letters,
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
    /// By original address: commands and replies dead-lettered there.
    dead: Queues<dead_letter::DeadLetter>,
}

fn lock<M>(queues: &Queues<M>) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Queue<M>>>> {
    queues.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn dead_letters(&self, address: &str) -> Arc<Queue<dead_letter::DeadLetter>> {
        let dlq = format!("{address}{DEAD_LETTER_SUFFIX}");
        lock(&self.dead).entry(address.to_owned()).or_insert_with(|| Arc::new(Queue::new(&dlq, None))).clone()
    }

    fn commands(&self, address: &str) -> Arc<Queue<Command>> {
        if let Some(q) = lock(&self.commands).get(address) {
            return q.clone();
        }
        let dead = self.dead_letters(address);
        lock(&self.commands)
            .entry(address.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(address, Some(dead))))
            .clone()
    }

    fn replies(&self, address: &str) -> Arc<Queue<Reply>> {
        if let Some(q) = lock(&self.replies).get(address) {
            return q.clone();
        }
        let dead = self.dead_letters(address);
        lock(&self.replies)
            .entry(address.to_owned())
            .or_insert_with(|| Arc::new(Queue::new(address, Some(dead))))
            .clone()
    }
}

impl InProcessTransport {
    /// A transport with no queues yet; queues appear on first use of an address.
    pub fn new() -> Self {
        Self::default()
    }

    /// Commands dead-lettered on `participant`'s address.
    pub fn dead_commands(&self, participant: &str) -> Vec<DeadLetter<Command>> {
        self.inner.commands(participant).lock().dead.clone()
    }

    /// Replies dead-lettered on `address`.
    pub fn dead_replies(&self, address: &str) -> Vec<DeadLetter<Reply>> {
        self.inner.replies(address).lock().dead.clone()
    }

    /// Commands waiting (not yet delivered, or handed back) on `participant`'s address.
    pub fn pending_commands(&self, participant: &str) -> usize {
        self.inner.commands(participant).lock().ready.len()
    }

    /// Dead letters of `address` not yet taken from its dead-letter queue.
    pub fn pending_dead_letters(&self, address: &str) -> usize {
        self.inner.dead_letters(address).lock().ready.len()
    }

    /// Closes every queue: receivers get `Err(Closed)` once their queue is empty.
    pub fn close(&self) {
        fn close_all<M>(queues: &Queues<M>) {
            for q in lock(queues).values() {
                q.lock().closed = true;
                q.notify.notify_waiters();
            }
        }
        close_all(&self.inner.commands);
        close_all(&self.inner.replies);
        close_all(&self.inner.dead);
    }
}

#[async_trait]
impl Transport for InProcessTransport {
    async fn send_command(&self, command: &Command) -> Result<(), TransportError> {
        self.inner.commands(&command.participant).push_back(command.clone());
        Ok(())
    }

    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError> {
        self.inner.replies(reply_to).push_back(reply.clone());
        Ok(())
    }

    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        Ok(Box::new(QueueReceiver { queue: self.inner.commands(participant) }))
    }

    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        Ok(Box::new(QueueReceiver { queue: self.inner.replies(address) }))
    }

    async fn dead_letters(&self, address: &str) -> Result<Box<dyn Receiver<dead_letter::DeadLetter>>, TransportError> {
        Ok(Box::new(QueueReceiver { queue: self.inner.dead_letters(address) }))
    }

    /// Decodes the stored message and queues it again on its address, commands with commands
    /// and replies with replies.
    async fn redrive(&self, dead: &dead_letter::DeadLetter) -> Result<(), TransportError> {
        let stored: Stored = serde_json::from_slice(&dead.payload)
            .map_err(|e| TransportError::Codec(format!("not an in-process message: {e}")))?;
        match stored {
            Stored::Command(c) => self.inner.commands(&dead.address).push_back(c),
            Stored::Reply(r) => self.inner.replies(&dead.address).push_back(r),
        }
        Ok(())
    }
}

struct QueueReceiver<M> {
    queue: Arc<Queue<M>>,
}

#[async_trait]
impl<M: Letter> Receiver<M> for QueueReceiver<M> {
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
impl<M: Letter> Acknowledge for QueueAck<M> {
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
            let queued = message.dead(&self.queue.address, reason);
            self.queue.lock().dead.push(DeadLetter { message, reason: reason.to_owned() });
            if let (Some(dlq), Some(dead)) = (&self.queue.dead_letters, queued) {
                dlq.push_back(dead);
            }
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
