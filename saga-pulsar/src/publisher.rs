//! The publishing side: one client, one cached producer per topic, and a send that waits for
//! the broker's receipt and, when it does not come, rebuilds and resends.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pulsar::consumer::InitialPosition;
use pulsar::producer::Message;
use pulsar::{ConsumerOptions, OperationRetryOptions, Producer, ProducerOptions, Pulsar, SubType, TokioExecutor};
use saga_core::metrics::transport as transport_metrics;
use saga_core::transport::codec::WireSchema;
use saga_core::transport::TransportError;
use tracing::{debug, warn};

use crate::config::PulsarConfig;
use crate::config::DEAD_LETTER_SUBSCRIPTION;
use crate::stats::Counters;
use crate::wire::{pulsar_schema, Raw};
use crate::TRANSPORT;

type Client = Pulsar<TokioExecutor>;
type Slot = Arc<CachedProducer>;

/// A producer and the generation of the client it was built on.
struct CachedProducer {
    generation: u64,
    producer: tokio::sync::Mutex<Producer<TokioExecutor>>,
}

/// Pause between the client's own retries of an operation the broker answered "not ready"
/// (a broker still loading its topics after a restart). The crate's 5 s default would
/// outlast a whole send attempt.
const NOT_READY_RETRY_DELAY: Duration = Duration::from_millis(500);

/// A new client (a new TCP connection to the broker). The crate connects eagerly, retrying for
/// about 40 s when the broker is down: callers bound it with their own timeout.
pub(crate) async fn connect(config: &PulsarConfig, operation_timeout: Duration) -> Result<Client, TransportError> {
    let retries = OperationRetryOptions { operation_timeout, retry_delay: NOT_READY_RETRY_DELAY, max_retries: None };
    Pulsar::builder(&config.url, TokioExecutor)
        .with_operation_retry_options(retries)
        .build()
        .await
        .map_err(|e| TransportError::Unavailable(format!("cannot connect to {}: {e}", config.url)))
}

struct CachedClient {
    generation: u64,
    client: Client,
}

/// What one attempt used, so a failed attempt discards exactly that and nothing a concurrent
/// sender built since.
#[derive(Default)]
struct Used {
    client: Option<u64>,
    producer: Option<Slot>,
}

enum AttemptError {
    /// Worth another attempt on a fresh producer.
    Retry(String),
    /// Another attempt would get the same answer.
    Permanent(TransportError),
}

fn classify(e: pulsar::Error) -> AttemptError {
    // The crate nests the broker's error code at several depths depending on where it was
    // raised (producer creation, send); its Debug form names the code wherever it sits.
    let debug = format!("{e:?}");
    if debug.contains("IncompatibleSchema") {
        AttemptError::Permanent(TransportError::Codec(format!("the broker refused the schema: {e}")))
    } else {
        AttemptError::Retry(e.to_string())
    }
}

pub(crate) struct Publisher {
    pub(crate) config: PulsarConfig,
    pub(crate) counters: Arc<Counters>,
    client: tokio::sync::Mutex<Option<CachedClient>>,
    generations: AtomicU64,
    producers: Mutex<HashMap<String, Slot>>,
    /// Dead-letter topics known to have their retaining subscription.
    retained: Mutex<HashSet<String>>,
}

impl Publisher {
    pub(crate) fn new(config: PulsarConfig, counters: Arc<Counters>) -> Self {
        Self {
            config,
            counters,
            client: tokio::sync::Mutex::new(None),
            generations: AtomicU64::new(0),
            producers: Mutex::new(HashMap::new()),
            retained: Mutex::new(HashSet::new()),
        }
    }

    /// The publishing client, connecting if there is none.
    pub(crate) async fn client(&self) -> Result<Client, TransportError> {
        Ok(self.cached_client().await?.1)
    }

    async fn cached_client(&self) -> Result<(u64, Client), TransportError> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok((c.generation, c.client.clone()));
        }
        let client = connect(&self.config, self.config.send_timeout).await?;
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        *guard = Some(CachedClient { generation, client: client.clone() });
        Ok((generation, client))
    }

    fn lock_producers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // Only a map of handles is behind this lock: a panic elsewhere cannot leave it half-made.
        self.producers.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn producer(&self, topic: &str, schema: Option<&WireSchema>, used: &mut Used) -> Result<Slot, AttemptError> {
        if let Some(p) = self.lock_producers().get(topic) {
            used.client = Some(p.generation);
            used.producer = Some(p.clone());
            return Ok(p.clone());
        }
        let (generation, client) = self.cached_client().await.map_err(|e| AttemptError::Retry(e.to_string()))?;
        used.client = Some(generation);
        // No batching: commands and replies are sent one at a time and each waits for its
        // receipt anyway, and acknowledging part of a batch has lost messages with this crate.
        let options = ProducerOptions {
            schema: schema.map(|s| pulsar_schema(topic, s)),
            batch_size: None,
            ..ProducerOptions::default()
        };
        let producer = client.producer().with_topic(topic).with_options(options).build().await.map_err(classify)?;
        debug!(topic, "producer ready");
        let built = Arc::new(CachedProducer { generation, producer: tokio::sync::Mutex::new(producer) });
        let slot = self.lock_producers().entry(topic.to_owned()).or_insert(built).clone();
        used.producer = Some(slot.clone());
        Ok(slot)
    }

    async fn attempt(
        &self,
        topic: &str,
        schema: Option<&WireSchema>,
        message: Message,
        used: &mut Used,
    ) -> Result<(), AttemptError> {
        let producer = self.producer(topic, schema, used).await?;
        let receipt = { producer.producer.lock().await.send_non_blocking(message).await.map_err(classify)? };
        receipt.await.map_err(classify)?;
        Ok(())
    }

    /// Drops what a failed attempt used: its producer (the crate's own reconnection did not
    /// save it) and its client (a connection may be half-open, or the crate may be waiting on
    /// a connection attempt we cancelled).
    async fn discard(&self, topic: &str, used: Used) {
        if let Some(p) = used.producer {
            let mut producers = self.lock_producers();
            if producers.get(topic).is_some_and(|cached| Arc::ptr_eq(cached, &p)) {
                producers.remove(topic);
                Counters::bump(&self.counters.producers_rebuilt);
            }
        }
        let mut client = self.client.lock().await;
        if client.as_ref().is_some_and(|c| Some(c.generation) == used.client) {
            *client = None;
        }
    }

    /// Makes sure `topic` has the durable subscription [`DEAD_LETTER_SUBSCRIPTION`], once per
    /// topic and process: without a subscription the broker does not keep a topic's messages
    /// (unless the namespace sets a retention policy), and dead letters are kept for an operator.
    pub(crate) async fn retain(&self, topic: &str) -> Result<(), TransportError> {
        if self.retained.lock().unwrap_or_else(|e| e.into_inner()).contains(topic) {
            return Ok(());
        }
        let subscribe = async {
            let client = self.client().await?;
            let mut consumer = client
                .consumer()
                .with_topic(topic)
                .with_subscription(DEAD_LETTER_SUBSCRIPTION)
                .with_subscription_type(SubType::Shared)
                .with_options(
                    ConsumerOptions::default()
                        .with_initial_position(InitialPosition::Earliest)
                        .with_receiver_queue_size(1),
                )
                .with_batch_size(1)
                .build::<Raw>()
                .await
                .map_err(|e| {
                    TransportError::Unavailable(format!("cannot subscribe {DEAD_LETTER_SUBSCRIPTION} to {topic}: {e}"))
                })?;
            // Closing a consumer keeps its durable subscription.
            let _ = consumer.close().await;
            Ok::<(), TransportError>(())
        };
        tokio::time::timeout(self.config.send_timeout, subscribe).await.map_err(|_| {
            TransportError::Unavailable(format!("cannot subscribe {DEAD_LETTER_SUBSCRIPTION} to {topic} in time"))
        })??;
        self.retained.lock().unwrap_or_else(|e| e.into_inner()).insert(topic.to_owned());
        Ok(())
    }

    /// Publishes and waits until the broker has persisted the message. An attempt that fails
    /// or outlasts `send_timeout` is retried with backoff on a new producer (and client), with
    /// the same bytes and properties (so the same `message_id`), up to `send_attempts` times.
    pub(crate) async fn publish(
        &self,
        topic: &str,
        schema: Option<&WireSchema>,
        payload: Vec<u8>,
        properties: HashMap<String, String>,
    ) -> Result<(), TransportError> {
        let attempts = self.config.send_attempts.max(1);
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                Counters::bump(&self.counters.send_retries);
                transport_metrics::send_retried(TRANSPORT, topic);
                tokio::time::sleep(self.config.backoff(attempt)).await;
            }
            let message = Message { payload: payload.clone(), properties: properties.clone(), ..Message::default() };
            let mut used = Used::default();
            let outcome =
                tokio::time::timeout(self.config.send_timeout, self.attempt(topic, schema, message, &mut used)).await;
            let error = match outcome {
                Ok(Ok(())) => {
                    Counters::bump(&self.counters.published);
                    transport_metrics::published(TRANSPORT, topic);
                    return Ok(());
                }
                Ok(Err(AttemptError::Permanent(e))) => {
                    Counters::bump(&self.counters.send_failures);
                    transport_metrics::send_failed(TRANSPORT, topic);
                    return Err(e);
                }
                Ok(Err(AttemptError::Retry(e))) => e,
                Err(_) => format!("no receipt within {:?}", self.config.send_timeout),
            };
            warn!(topic, attempt = attempt + 1, of = attempts, error = %error, "send failed; resending on a new producer");
            self.discard(topic, used).await;
            last = error;
        }
        Counters::bump(&self.counters.send_failures);
        transport_metrics::send_failed(TRANSPORT, topic);
        Err(TransportError::Unavailable(format!("{topic}: not sent after {attempts} attempts: {last}")))
    }
}
