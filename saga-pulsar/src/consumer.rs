//! The consuming side: one task per receiver owns its Pulsar consumer, hands decoded messages
//! to the receiver, applies the application's settlements, dead-letters what the codec cannot
//! read, and subscribes again when the consumer's stream ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pulsar::consumer::{InitialPosition, Message as ConsumerMessage};
use pulsar::message::proto::MessageIdData;
use pulsar::{Consumer, ConsumerOptions, SubType, TokioExecutor};
use saga_core::transport::{Acknowledge, Delivery, Receiver, TransportError};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, info, warn};

use crate::config::Connections;
use crate::publisher::{connect, Publisher};
use crate::stats::Counters;
use crate::wire::{display_id, position, property, Position, Raw};

/// A message as read from the topic, for [`Decode`].
pub(crate) struct Incoming<'a> {
    pub(crate) payload: &'a [u8],
    pub(crate) properties: &'a HashMap<String, String>,
    pub(crate) id: &'a MessageIdData,
    /// When the broker received it, ms since the epoch.
    pub(crate) publish_time_ms: u64,
}

/// Decodes a message read from this receiver's topic, or says why it cannot.
pub(crate) type Decode<M> = Box<dyn Fn(&Incoming<'_>) -> Result<M, String> + Send + Sync>;

/// Where a receiver reads: the topic, the subscription, and where a new subscription starts.
pub(crate) struct Source {
    pub(crate) topic: String,
    pub(crate) subscription: String,
    pub(crate) initial: InitialPosition,
    /// Where what the codec cannot read goes.
    pub(crate) dead_letter_topic: String,
}

/// The operation timeout of a consumer's client (the crate's default).
const CONSUMER_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors in a row from a consumer's stream after which it is rebuilt.
const MAX_STREAM_ERRORS: u32 = 10;

/// Redelivery counts kept at most; beyond, they are forgotten (a count is a hint for logs and
/// policies, not a guarantee: see README.md).
const MAX_TRACKED_REDELIVERIES: usize = 10_000;

/// How long a receiver that goes away waits for its consumer to close (so the broker hands
/// what it held to the other consumers at once rather than when the connection drops).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the application decided about one delivery, for the task that owns the consumer.
enum Settle {
    Ack(MessageIdData),
    Nack(MessageIdData),
}

/// What every acknowledgement handle of one receiver needs.
struct Context {
    publisher: Arc<Publisher>,
    topic: String,
    subscription: String,
    initial: InitialPosition,
    dead_letter_topic: String,
    ops: mpsc::UnboundedSender<Settle>,
}

impl Context {
    /// Publishes the message, its properties and the reason to the dead-letter topic, then
    /// acknowledges it; if the publish fails, asks for redelivery instead.
    async fn dead_letter(
        &self,
        id: MessageIdData,
        payload: Vec<u8>,
        mut properties: HashMap<String, String>,
        reason: &str,
    ) -> Result<(), TransportError> {
        properties.insert(property::DEAD_LETTER_REASON.to_owned(), reason.to_owned());
        properties.insert(property::DEAD_LETTER_FROM.to_owned(), self.topic.clone());
        properties.insert(property::DEAD_LETTER_MESSAGE_ID.to_owned(), display_id(&id));
        let published = match self.publisher.retain(&self.dead_letter_topic).await {
            Ok(()) => self.publisher.publish(&self.dead_letter_topic, None, payload, properties).await,
            Err(e) => Err(e),
        };
        match published {
            Ok(()) => {
                Counters::bump(&self.publisher.counters.dead_lettered);
                saga_core::metrics::transport::dead_lettered(crate::TRANSPORT, &self.topic);
                self.ops.send(Settle::Ack(id)).map_err(|_| TransportError::Closed)
            }
            Err(e) => {
                let _ = self.ops.send(Settle::Nack(id));
                Err(e)
            }
        }
    }
}

/// Subscribes to `address` with the configured subscription and returns once the subscription
/// exists on the broker (so nothing published afterwards is missed), or `Unavailable` after
/// `subscribe_timeout`.
pub(crate) async fn subscribe<M: Send + 'static>(
    publisher: Arc<Publisher>,
    address: &str,
    decode: Decode<M>,
) -> Result<Box<dyn Receiver<M>>, TransportError> {
    let config = &publisher.config;
    // Latest: see `Worker::build`.
    let source = Source {
        topic: config.topic(address),
        subscription: config.subscription.clone(),
        initial: InitialPosition::Latest,
        dead_letter_topic: config.dead_letter_topic(address),
    };
    subscribe_to(publisher, source, decode).await
}

/// Subscribes to `source`, as [`subscribe`].
pub(crate) async fn subscribe_to<M: Send + 'static>(
    publisher: Arc<Publisher>,
    source: Source,
    decode: Decode<M>,
) -> Result<Box<dyn Receiver<M>>, TransportError> {
    let config = &publisher.config;
    let topic = source.topic.clone();
    let subscribe_timeout = config.subscribe_timeout;
    let subscription = source.subscription.clone();
    // One slot: the prefetch lives in the client's queue, where the broker's flow control sees it.
    let (deliveries, rx) = mpsc::channel(1);
    let (ops, ops_rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = oneshot::channel();
    let context = Arc::new(Context {
        dead_letter_topic: source.dead_letter_topic,
        topic: topic.clone(),
        subscription: source.subscription,
        initial: source.initial,
        publisher,
        ops,
    });
    let worker = Worker { context, decode, deliveries, ops_rx, redeliveries: HashMap::new() };
    tokio::spawn(worker.run(ready_tx));
    match tokio::time::timeout(subscribe_timeout, ready_rx).await {
        Ok(Ok(())) => Ok(Box::new(PulsarReceiver { rx })),
        Ok(Err(_)) => Err(TransportError::Closed),
        // Dropping `rx` stops the worker.
        Err(_) => Err(TransportError::Unavailable(format!(
            "could not subscribe to {topic} as {subscription} within {subscribe_timeout:?}"
        ))),
    }
}

struct PulsarReceiver<M> {
    rx: mpsc::Receiver<Delivery<M>>,
}

#[async_trait]
impl<M: Send + 'static> Receiver<M> for PulsarReceiver<M> {
    /// Waits through broker outages: the worker subscribes again and deliveries resume.
    async fn recv(&mut self) -> Result<Delivery<M>, TransportError> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }
}

/// Settles one delivery. Acknowledgements and negative acknowledgements go to the worker that
/// owns the consumer; the crate sends them without waiting for the broker (fire and forget),
/// so `Ok` means "handed to the client", and a lost acknowledgement means a redelivery.
struct PulsarAck {
    id: MessageIdData,
    payload: Vec<u8>,
    properties: HashMap<String, String>,
    context: Arc<Context>,
    settled: bool,
}

#[async_trait]
impl Acknowledge for PulsarAck {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.context.ops.send(Settle::Ack(self.id.clone())).map_err(|_| TransportError::Closed)
    }

    /// Redelivered at once (the crate has no negative-acknowledgement delay): pacing retries is
    /// the caller's business.
    async fn nack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.context.ops.send(Settle::Nack(self.id.clone())).map_err(|_| TransportError::Closed)
    }

    /// Returns once the message is persisted in the dead-letter topic (and its acknowledgement
    /// handed to the client); on failure the message is redelivered and the error returned.
    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), TransportError> {
        self.settled = true;
        let payload = std::mem::take(&mut self.payload);
        let properties = std::mem::take(&mut self.properties);
        self.context.dead_letter(self.id.clone(), payload, properties, reason).await
    }
}

impl Drop for PulsarAck {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.context.ops.send(Settle::Nack(self.id.clone()));
        }
    }
}

/// What woke a serving worker.
enum Event<M> {
    Settle(Settle),
    Room(mpsc::OwnedPermit<Delivery<M>>),
    Message(Box<ConsumerMessage<Raw>>),
    Error(pulsar::Error),
}

enum Ended {
    ReceiverGone,
    StreamEnded,
}

/// Owns one receiver's consumer (the crate's consumer is not shareable across tasks).
struct Worker<M> {
    context: Arc<Context>,
    decode: Decode<M>,
    deliveries: mpsc::Sender<Delivery<M>>,
    ops_rx: mpsc::UnboundedReceiver<Settle>,
    /// Negative acknowledgements (and dropped deliveries) seen by this receiver, by position.
    redeliveries: HashMap<Position, u32>,
}

impl<M: Send + 'static> Worker<M> {
    async fn run(mut self, ready: oneshot::Sender<()>) {
        let config = self.context.publisher.config.clone();
        let topic = self.context.topic.clone();
        let mut ready = Some(ready);
        let mut backoff = config.initial_backoff;
        loop {
            let built = tokio::select! {
                _ = self.deliveries.closed() => return,
                built = tokio::time::timeout(config.subscribe_timeout, self.build()) => built,
            };
            let consumer = match built {
                Ok(Ok(c)) => Some(c),
                Ok(Err(e)) => {
                    warn!(topic, error = %e, ?backoff, "cannot subscribe; retrying");
                    None
                }
                Err(_) => {
                    warn!(topic, ?backoff, "subscribing timed out; retrying");
                    None
                }
            };
            if let Some(mut consumer) = consumer {
                backoff = config.initial_backoff;
                match ready.take() {
                    Some(r) => {
                        info!(topic, subscription = %self.context.subscription, "subscribed");
                        let _ = r.send(());
                    }
                    None => {
                        Counters::bump(&self.context.publisher.counters.consumers_rebuilt);
                        info!(topic, subscription = %self.context.subscription, "subscribed again");
                    }
                }
                match self.serve(&mut consumer).await {
                    Ended::ReceiverGone => {
                        let _ = tokio::time::timeout(CLOSE_TIMEOUT, consumer.close()).await;
                        return;
                    }
                    Ended::StreamEnded => warn!(topic, "consumer stream ended (an outage longer than the client's reconnection budget); subscribing again"),
                }
            }
            tokio::select! {
                _ = self.deliveries.closed() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(config.max_backoff);
        }
    }

    async fn build(&self) -> Result<Consumer<Raw, TokioExecutor>, TransportError> {
        let publisher = &self.context.publisher;
        let config = &publisher.config;
        let client = match config.connections {
            Connections::Separate => connect(config, CONSUMER_OPERATION_TIMEOUT).await?,
            Connections::Shared => publisher.client().await?,
        };
        // Latest: a subscription made for the first time starts at the end of the topic. With
        // Earliest, a new deployment (fresh databases) on a namespace with retention replays the
        // commands of sagas it has never heard of and applies their effects, which nothing then
        // compensates (seen here). A command sent before its worker first subscribed is resent
        // by the orchestrator's step timeout instead. An existing subscription resumes where it
        // left off either way. (Dead-letter receivers start at the earliest: every dead letter is
        // for an operator, and `Publisher::retain` made their subscription before the first.)
        let options = ConsumerOptions::default()
            .with_initial_position(self.context.initial.clone())
            .with_receiver_queue_size(config.prefetch.max(1));
        client
            .consumer()
            .with_topic(&self.context.topic)
            .with_subscription(&self.context.subscription)
            .with_subscription_type(SubType::Shared)
            .with_batch_size(config.prefetch.max(1))
            .with_options(options)
            .build::<Raw>()
            .await
            .map_err(|e| TransportError::Unavailable(format!("cannot subscribe to {}: {e}", self.context.topic)))
    }

    /// Serves one consumer until its stream ends or the receiver goes away. A decoded message
    /// waits in `pending` until the receiver has room, while settlements keep being applied.
    async fn serve(&mut self, consumer: &mut Consumer<Raw, TokioExecutor>) -> Ended {
        let topic = self.context.topic.clone();
        let mut pending: Option<Delivery<M>> = None;
        let mut errors = 0;
        loop {
            let event = tokio::select! {
                biased;
                _ = self.deliveries.closed() => return Ended::ReceiverGone,
                Some(op) = self.ops_rx.recv() => Event::Settle(op),
                permit = self.deliveries.clone().reserve_owned(), if pending.is_some() => match permit {
                    Ok(permit) => Event::Room(permit),
                    Err(_) => return Ended::ReceiverGone,
                },
                next = consumer.next(), if pending.is_none() => match next {
                    Some(Ok(message)) => Event::Message(Box::new(message)),
                    Some(Err(e)) => Event::Error(e),
                    // A pending delivery dropped here comes back from the broker.
                    None => return Ended::StreamEnded,
                },
            };
            match event {
                Event::Settle(op) => self.settle(consumer, op).await,
                Event::Room(permit) => {
                    if let Some(delivery) = pending.take() {
                        permit.send(delivery);
                    }
                }
                Event::Message(message) => {
                    errors = 0;
                    pending = self.accept(*message);
                }
                Event::Error(e) => {
                    errors += 1;
                    warn!(topic, error = %e, errors, "consumer error");
                    if errors >= MAX_STREAM_ERRORS {
                        return Ended::StreamEnded;
                    }
                }
            }
        }
    }

    /// Decodes a message into a delivery, or dead-letters it (in the background, so the next
    /// message is not held up) when the codec cannot read it.
    fn accept(&mut self, message: ConsumerMessage<Raw>) -> Option<Delivery<M>> {
        let id = message.message_id().clone();
        let properties: HashMap<String, String> =
            message.metadata().properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        let publish_time_ms = message.metadata().publish_time;
        let payload = message.payload.data;
        let incoming = Incoming { payload: &payload, properties: &properties, id: &id, publish_time_ms };
        match (self.decode)(&incoming) {
            Ok(decoded) => {
                let redeliveries = self.redeliveries.get(&position(&id)).copied().unwrap_or(0);
                saga_core::metrics::transport::consumed(crate::TRANSPORT, &self.context.topic, redeliveries > 0);
                let acker = PulsarAck { id, payload, properties, context: self.context.clone(), settled: false };
                Some(Delivery::new(decoded, redeliveries, Box::new(acker)))
            }
            Err(reason) => {
                let get = |k: &str| properties.get(k).cloned().unwrap_or_else(|| "?".to_owned());
                error!(topic = %self.context.topic, saga_id = %get(property::SAGA_ID), message_id = %get(property::MESSAGE_ID),
                    pulsar_id = %display_id(&id), reason = %reason, "undecodable message: dead-lettering it");
                Counters::bump(&self.context.publisher.counters.undecodable);
                let context = self.context.clone();
                tokio::spawn(async move {
                    let reason = format!("undecodable: {reason}");
                    if let Err(e) = context.dead_letter(id, payload, properties, &reason).await {
                        warn!(topic = %context.topic, error = %e, "could not dead-letter an undecodable message; it will be redelivered");
                    }
                });
                None
            }
        }
    }

    async fn settle(&mut self, consumer: &mut Consumer<Raw, TokioExecutor>, op: Settle) {
        let topic = &self.context.topic;
        let result = match op {
            Settle::Ack(id) => {
                self.redeliveries.remove(&position(&id));
                consumer.ack_with_id(topic, id).await
            }
            Settle::Nack(id) => {
                if self.redeliveries.len() >= MAX_TRACKED_REDELIVERIES {
                    self.redeliveries.clear();
                }
                *self.redeliveries.entry(position(&id)).or_default() += 1;
                consumer.nack_with_id(topic, id).await
            }
        };
        if let Err(e) = result {
            // The broker redelivers what it did not hear acknowledged.
            debug!(topic, error = %e, "settlement not handed to the client");
        }
    }
}
