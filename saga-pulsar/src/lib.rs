//! The Apache Pulsar transport for saga-core.
//!
//! - Addresses are topics: `persistent://{tenant}/{namespace}/{address}`.
//! - Payloads are what the [`Codec`] writes (Avro envelopes for CrearCampaña); producers attach
//!   the codec's schema so the broker's registry holds it. The correlation also travels in
//!   message properties (`saga_id`, `saga_type`, `step`, `attempt`, `kind`, `message_id`,
//!   `reply_to`, `message_type`), so a message is traceable even when its payload is not.
//! - No producer batching (acknowledging part of a batch lost messages with this client).
//!   A send returns once the broker has persisted the message; a send that fails or times out
//!   rebuilds the producer and is resent with the same bytes and message id.
//! - Consumers use a Shared subscription. A delivery is acknowledged only when the application
//!   says its effect is durable; a nack or a dropped delivery is redelivered; a payload the codec
//!   cannot read, or a message the application gives up on, is published to the dead-letter
//!   topic `{address}.dlq` with its properties and the reason, then acknowledged.
//! - Publishing and consuming use separate clients, so separate TCP connections: the client
//!   never sets TCP_NODELAY, and an acknowledgement and a publish written back to back on one
//!   connection wait on Nagle's algorithm against the broker's delayed ACK (about 40 ms).
//! - A consumer whose stream ends (an outage longer than the client's retry budget) is rebuilt
//!   with backoff; what it had not acknowledged is redelivered by the broker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use pulsar::consumer::{ConsumerOptions, Message as ConsumerMessage};
use pulsar::message::proto::schema::Type as SchemaType;
use pulsar::message::proto::{MessageIdData, Schema};
use pulsar::producer::{Message, ProducerOptions};
use pulsar::{DeserializeMessage, Payload, Producer, Pulsar, SubType, TokioExecutor};
use saga_core::transport::codec::{Codec, SchemaKind, WireSchema};
use saga_core::transport::{
    Acknowledge, Command, Correlation, Delivery, Receiver, Reply, Transport, TransportError,
};
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

/// Where the broker is and how patient to be with it.
#[derive(Clone, Debug)]
pub struct PulsarConfig {
    /// Service URL, e.g. `pulsar://127.0.0.1:6650`.
    pub url: String,
    /// Tenant.
    pub tenant: String,
    /// Namespace.
    pub namespace: String,
    /// Subscription name of this deployment's consumers (every instance of a service uses the
    /// same one, so they share the messages).
    pub subscription: String,
    /// How long a send may wait for the broker's receipt before it is retried.
    pub send_timeout: Duration,
    /// Sends tried before giving up with `Unavailable`.
    pub send_attempts: u32,
    /// Consume over the publishing client's connection instead of one of their own. Off by
    /// default: kept only to measure what separate connections buy (see the round-trip bench).
    pub shared_connection: bool,
}

impl PulsarConfig {
    /// A configuration with 10 s send timeouts and 6 attempts (about a minute of an outage is
    /// ridden out by a send; beyond that the engine's step timeout takes over).
    pub fn new(url: impl Into<String>, tenant: impl Into<String>, namespace: impl Into<String>, subscription: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            tenant: tenant.into(),
            namespace: namespace.into(),
            subscription: subscription.into(),
            send_timeout: Duration::from_secs(10),
            send_attempts: 6,
            shared_connection: false,
        }
    }

    /// The full topic name of an address.
    pub fn topic(&self, address: &str) -> String {
        format!("persistent://{}/{}/{}", self.tenant, self.namespace, address)
    }
}

/// The raw payload of a message, for consumers that decode with a codec.
struct Raw;

impl DeserializeMessage for Raw {
    type Output = Vec<u8>;
    fn deserialize_message(payload: &Payload) -> Self::Output {
        payload.data.clone()
    }
}

fn unavailable(e: impl std::fmt::Display) -> TransportError {
    TransportError::Unavailable(e.to_string())
}

async fn connect(url: &str) -> Result<Pulsar<TokioExecutor>, TransportError> {
    Pulsar::builder(url, TokioExecutor).build().await.map_err(unavailable)
}

fn properties(c: &Correlation, reply_to: Option<&str>, message_type: &str) -> HashMap<String, String> {
    let mut p = HashMap::from([
        ("saga_id".to_owned(), c.saga_id.to_string()),
        ("saga_type".to_owned(), c.saga_type.clone()),
        ("step".to_owned(), c.step_name.clone()),
        ("attempt".to_owned(), c.attempt.to_string()),
        ("kind".to_owned(), c.kind.as_str().to_owned()),
        ("message_id".to_owned(), c.message_id.to_string()),
        ("message_type".to_owned(), message_type.to_owned()),
    ]);
    if let Some(r) = reply_to {
        p.insert("reply_to".to_owned(), r.to_owned());
    }
    p
}

fn pulsar_schema(topic: &str, schema: &WireSchema) -> Schema {
    let r#type = match schema.kind {
        SchemaKind::Avro => SchemaType::Avro,
    };
    Schema { name: topic.to_owned(), schema_data: schema.definition.clone().into_bytes(), r#type: r#type as i32, properties: Vec::new() }
}

/// The publishing side: one client, one cached producer per topic.
struct Publisher {
    config: PulsarConfig,
    client: tokio::sync::Mutex<Option<Pulsar<TokioExecutor>>>,
    producers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Producer<TokioExecutor>>>>>,
}

impl Publisher {
    async fn client(&self) -> Result<Pulsar<TokioExecutor>, TransportError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let c = connect(&self.config.url).await?;
        *guard = Some(c.clone());
        Ok(c)
    }

    async fn producer(&self, topic: &str, schema: Option<&WireSchema>) -> Result<Arc<tokio::sync::Mutex<Producer<TokioExecutor>>>, TransportError> {
        if let Some(p) = self.producers.lock().unwrap_or_else(|e| e.into_inner()).get(topic) {
            return Ok(p.clone());
        }
        let client = self.client().await?;
        // Backpressure instead of SlowDown errors when many sends are pending on a connection.
        let options = ProducerOptions {
            schema: schema.map(|s| pulsar_schema(topic, s)),
            batch_size: None,
            block_queue_if_full: true,
            ..ProducerOptions::default()
        };
        let producer = client.producer().with_topic(topic).with_options(options).build().await.map_err(unavailable)?;
        let producer = Arc::new(tokio::sync::Mutex::new(producer));
        self.producers.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned(), producer.clone());
        Ok(producer)
    }

    fn forget(&self, topic: &str) {
        self.producers.lock().unwrap_or_else(|e| e.into_inner()).remove(topic);
    }

    /// Publishes and waits for the broker's receipt; rebuilds the producer and resends the same
    /// bytes on failure, with backoff.
    async fn publish(&self, topic: &str, schema: Option<&WireSchema>, payload: Vec<u8>, props: HashMap<String, String>) -> Result<(), TransportError> {
        let mut last = String::new();
        for attempt in 0..self.config.send_attempts.max(1) {
            if attempt > 0 {
                let delay = Duration::from_millis(200u64.saturating_mul(1 << attempt.min(6)));
                tokio::time::sleep(delay.min(Duration::from_secs(10))).await;
            }
            let producer = match self.producer(topic, schema).await {
                Ok(p) => p,
                Err(e) => {
                    last = e.to_string();
                    // The client itself may be broken after a long outage: rebuild it too.
                    *self.client.lock().await = None;
                    continue;
                }
            };
            let message = Message { payload: payload.clone(), properties: props.clone(), ..Message::default() };
            let sent = { producer.lock().await.send_non_blocking(message).await };
            let outcome = match sent {
                Ok(receipt) => match tokio::time::timeout(self.config.send_timeout, receipt).await {
                    Ok(Ok(_)) => return Ok(()),
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no receipt within {:?}", self.config.send_timeout),
                },
                Err(e) => e.to_string(),
            };
            warn!(topic, attempt, error = %outcome, "send failed; rebuilding the producer and resending");
            self.forget(topic);
            last = outcome;
        }
        Err(TransportError::Unavailable(format!("{topic}: {last}")))
    }
}

/// Commands and replies over Apache Pulsar.
#[derive(Clone)]
pub struct PulsarTransport {
    publisher: Arc<Publisher>,
    codec: Arc<dyn Codec>,
}

impl PulsarTransport {
    /// A transport; connections are opened on first use (and reopened when lost).
    pub fn new(config: PulsarConfig, codec: Arc<dyn Codec>) -> Self {
        Self {
            publisher: Arc::new(Publisher {
                config,
                client: tokio::sync::Mutex::new(None),
                producers: Mutex::new(HashMap::new()),
            }),
            codec,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PulsarConfig {
        &self.publisher.config
    }

    fn subscribe<M: Send + 'static>(
        &self,
        address: &str,
        decode: impl Fn(&[u8]) -> Result<M, String> + Send + Sync + 'static,
    ) -> Box<dyn Receiver<M>> {
        let (tx, rx) = mpsc::channel(64);
        let worker = ConsumerWorker {
            config: self.publisher.config.clone(),
            address: address.to_owned(),
            publisher: self.publisher.clone(),
            decode: Box::new(decode),
            deliveries: tx,
        };
        tokio::spawn(worker.run());
        Box::new(PulsarReceiver { rx })
    }
}

#[async_trait]
impl Transport for PulsarTransport {
    async fn send_command(&self, command: &Command) -> Result<(), TransportError> {
        let payload = self.codec.encode_command(command).map_err(|e| TransportError::Codec(e.0))?;
        let schema = self.codec.command_schema(&command.participant);
        let props = properties(&command.correlation, Some(&command.reply_to), &command.message_type);
        let topic = self.publisher.config.topic(&command.participant);
        self.publisher.publish(&topic, schema.as_ref(), payload, props).await
    }

    async fn send_reply(&self, reply_to: &str, reply: &Reply) -> Result<(), TransportError> {
        let payload = self.codec.encode_reply(reply_to, reply).map_err(|e| TransportError::Codec(e.0))?;
        let schema = self.codec.reply_schema(reply_to);
        let props = properties(&reply.correlation, None, reply.outcome.label());
        let topic = self.publisher.config.topic(reply_to);
        self.publisher.publish(&topic, schema.as_ref(), payload, props).await
    }

    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        let codec = self.codec.clone();
        let address = participant.to_owned();
        Ok(self.subscribe(participant, move |bytes| codec.decode_command(&address, bytes).map_err(|e| e.0)))
    }

    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        let codec = self.codec.clone();
        let a = address.to_owned();
        Ok(self.subscribe(address, move |bytes| codec.decode_reply(&a, bytes).map_err(|e| e.0)))
    }
}

struct PulsarReceiver<M> {
    rx: mpsc::Receiver<Delivery<M>>,
}

#[async_trait]
impl<M: Send + 'static> Receiver<M> for PulsarReceiver<M> {
    async fn recv(&mut self) -> Result<Delivery<M>, TransportError> {
        self.rx.recv().await.ok_or(TransportError::Closed)
    }
}

/// What the application decided about one delivery.
enum Settle {
    Ack(MessageIdData),
    Nack(MessageIdData),
    DeadLetter { id: MessageIdData, payload: Vec<u8>, props: HashMap<String, String>, reason: String },
}

struct PulsarAck {
    id: MessageIdData,
    payload: Vec<u8>,
    props: HashMap<String, String>,
    ops: mpsc::UnboundedSender<Settle>,
    settled: bool,
}

#[async_trait]
impl Acknowledge for PulsarAck {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.ops.send(Settle::Ack(self.id.clone())).map_err(|_| TransportError::Closed)
    }

    async fn nack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settled = true;
        self.ops.send(Settle::Nack(self.id.clone())).map_err(|_| TransportError::Closed)
    }

    async fn dead_letter(mut self: Box<Self>, reason: &str) -> Result<(), TransportError> {
        self.settled = true;
        let op = Settle::DeadLetter {
            id: self.id.clone(),
            payload: std::mem::take(&mut self.payload),
            props: std::mem::take(&mut self.props),
            reason: reason.to_owned(),
        };
        self.ops.send(op).map_err(|_| TransportError::Closed)
    }
}

impl Drop for PulsarAck {
    fn drop(&mut self) {
        if !self.settled {
            let _ = self.ops.send(Settle::Nack(self.id.clone()));
        }
    }
}

type Decode<M> = Box<dyn Fn(&[u8]) -> Result<M, String> + Send + Sync>;

/// Owns one consumer (on its own client), feeds deliveries to the receiver, applies their
/// settlements, and rebuilds the consumer when its stream ends.
struct ConsumerWorker<M> {
    config: PulsarConfig,
    address: String,
    publisher: Arc<Publisher>,
    decode: Decode<M>,
    deliveries: mpsc::Sender<Delivery<M>>,
}

impl<M: Send + 'static> ConsumerWorker<M> {
    async fn run(self) {
        let topic = self.config.topic(&self.address);
        let dlq = self.config.topic(&format!("{}.dlq", self.address));
        let (ops_tx, mut ops_rx) = mpsc::unbounded_channel::<Settle>();
        let mut backoff = Duration::from_millis(200);
        loop {
            if self.deliveries.is_closed() {
                return;
            }
            let consumer = async {
                let client = if self.config.shared_connection { self.publisher.client().await? } else { connect(&self.config.url).await? };
                client
                    .consumer()
                    .with_topic(&topic)
                    .with_subscription(&self.config.subscription)
                    .with_subscription_type(SubType::Shared)
                    .with_options(ConsumerOptions::default())
                    .build::<Raw>()
                    .await
                    .map_err(unavailable)
            }
            .await;
            let mut consumer = match consumer {
                Ok(c) => {
                    info!(topic, subscription = %self.config.subscription, "consumer ready");
                    backoff = Duration::from_millis(200);
                    c
                }
                Err(e) => {
                    warn!(topic, error = %e, ?backoff, "cannot subscribe yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            loop {
                tokio::select! {
                    next = consumer.next() => {
                        let msg: ConsumerMessage<Raw> = match next {
                            Some(Ok(m)) => m,
                            Some(Err(e)) => {
                                warn!(topic, error = %e, "consumer error");
                                continue;
                            }
                            None => {
                                warn!(topic, "consumer stream ended; rebuilding it");
                                break;
                            }
                        };
                        let id = msg.message_id().clone();
                        let props: HashMap<String, String> =
                            msg.metadata().properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
                        let payload = msg.payload.data.clone();
                        match (self.decode)(&payload) {
                            Ok(message) => {
                                let acker = PulsarAck { id, payload, props, ops: ops_tx.clone(), settled: false };
                                if self.deliveries.send(Delivery::new(message, 0, Box::new(acker))).await.is_err() {
                                    return; // the receiver is gone
                                }
                            }
                            Err(reason) => {
                                error!(topic, saga_id = props.get("saga_id").map_or("?", String::as_str),
                                    message_id = props.get("message_id").map_or("?", String::as_str),
                                    reason = %reason, "undecodable message: dead-lettering it");
                                let _ = ops_tx.send(Settle::DeadLetter { id, payload, props, reason });
                            }
                        }
                    }
                    Some(op) = ops_rx.recv() => {
                        let result = match op {
                            Settle::Ack(id) => consumer.ack_with_id(&topic, id).await.map_err(|e| e.to_string()),
                            Settle::Nack(id) => consumer.nack_with_id(&topic, id).await.map_err(|e| e.to_string()),
                            Settle::DeadLetter { id, payload, mut props, reason } => {
                                props.insert("dead_letter_reason".to_owned(), reason);
                                props.insert("dead_letter_from".to_owned(), topic.clone());
                                match self.publisher.publish(&dlq, None, payload, props).await {
                                    Ok(()) => consumer.ack_with_id(&topic, id).await.map_err(|e| e.to_string()),
                                    Err(e) => {
                                        // Not dead-lettered: leave it for redelivery.
                                        let _ = consumer.nack_with_id(&topic, id).await;
                                        Err(format!("dead-letter publish failed: {e}"))
                                    }
                                }
                            }
                        };
                        if let Err(e) = result {
                            debug!(topic, error = %e, "settlement failed; the broker will redeliver");
                        }
                    }
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }
}
