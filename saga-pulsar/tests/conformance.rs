//! One transport contract, two transports: the same tests run against the in-process transport
//! and against Apache Pulsar on a real broker (`SAGA_TEST_PULSAR_URL` and
//! `SAGA_TEST_PULSAR_ADMIN_URL`, exported by scripts/test.sh; without them the Pulsar tests fail,
//! saying so). Then what only a broker does: poison bytes, the schema registry, refusal of an
//! incompatible schema, an unreachable broker.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{address, command, next, nothing, pulsar, read_topic, TinyAvro};
use saga_core::transport::codec::{Codec, JsonCodec};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Outcome, Reply, Transport, TransportError};
use saga_pulsar::{property, PulsarTransport};
use serde_json::{json, Value};

/// A transport under test, and how to see what it dead-lettered.
#[async_trait]
trait Subject: Send + Sync {
    fn transport(&self) -> Arc<dyn Transport>;
    /// The first `count` commands dead-lettered from `participant`, with their reasons.
    async fn dead_commands(&self, participant: &str, count: usize) -> Vec<(Command, String)>;
}

struct InProcess(InProcessTransport);

#[async_trait]
impl Subject for InProcess {
    fn transport(&self) -> Arc<dyn Transport> {
        Arc::new(self.0.clone())
    }
    async fn dead_commands(&self, participant: &str, count: usize) -> Vec<(Command, String)> {
        let dead = self.0.dead_commands(participant);
        assert!(dead.len() >= count, "{} dead letters, expected {count}", dead.len());
        dead.into_iter().take(count).map(|d| (d.message, d.reason)).collect()
    }
}

struct Broker(Arc<PulsarTransport>);

#[async_trait]
impl Subject for Broker {
    fn transport(&self) -> Arc<dyn Transport> {
        self.0.clone()
    }
    async fn dead_commands(&self, participant: &str, count: usize) -> Vec<(Command, String)> {
        read_topic(&format!("{participant}{}", saga_pulsar::DEAD_LETTER_SUFFIX), count)
            .await
            .into_iter()
            .map(|m| {
                let c = JsonCodec.decode_command(participant, &m.payload).unwrap();
                assert_eq!(
                    m.properties[property::SAGA_ID],
                    c.correlation.saga_id.to_string(),
                    "a dead letter is linked to its saga"
                );
                (c, m.properties[property::DEAD_LETTER_REASON].clone())
            })
            .collect()
    }
}

async fn a_command_and_its_reply_round_trip_with_every_field(s: Arc<dyn Subject>) {
    let t = s.transport();
    let addr = address("ida");
    let mut commands = t.commands(&addr).await.unwrap();
    let sent = command(&addr, 3);
    let mut replies = t.replies(&sent.reply_to).await.unwrap();
    t.send_command(&sent).await.unwrap();
    let got = next(&mut commands).await;
    assert_eq!(got.message, sent, "every field of the command arrives intact");
    assert_eq!(got.redeliveries, 0);
    for outcome in [
        Outcome::Success { output: json!({ "id": 7, "ñ": [1, 2] }) },
        Outcome::BusinessFailure { code: "PRESUPUESTO_INSUFICIENTE".into(), reason: "no alcanza".into() },
        Outcome::Transient { reason: "db down".into() },
    ] {
        let reply = Reply { correlation: got.message.correlation.clone(), outcome };
        t.send_reply(&sent.reply_to, &reply).await.unwrap();
        let back = next(&mut replies).await;
        assert_eq!(back.message, reply, "every field of the reply arrives intact");
        back.ack().await.unwrap();
    }
    got.ack().await.unwrap();
    nothing(&mut commands, Duration::from_secs(1)).await;
    nothing(&mut replies, Duration::from_millis(200)).await;
}

async fn two_receivers_on_one_address_share_the_messages(s: Arc<dyn Subject>) {
    let t = s.transport();
    let addr = address("compartida");
    let mut a = t.commands(&addr).await.unwrap();
    let mut b = t.commands(&addr).await.unwrap();
    for n in 0..40 {
        t.send_command(&command(&addr, n)).await.unwrap();
    }
    let mut seen = HashSet::new();
    let (mut from_a, mut from_b) = (0, 0);
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(deadline);
    while seen.len() < 40 {
        // Each receiver takes 5 ms per message, as a participant would take some time.
        tokio::select! {
            d = a.recv() => { let d = d.unwrap(); assert!(seen.insert(d.message.correlation.attempt), "delivered twice"); from_a += 1; tokio::time::sleep(Duration::from_millis(5)).await; d.ack().await.unwrap(); }
            d = b.recv() => { let d = d.unwrap(); assert!(seen.insert(d.message.correlation.attempt), "delivered twice"); from_b += 1; tokio::time::sleep(Duration::from_millis(5)).await; d.ack().await.unwrap(); }
            _ = &mut deadline => panic!("only {} of 40 delivered", seen.len()),
        }
    }
    assert!(from_a > 0 && from_b > 0, "both receivers got messages ({from_a} and {from_b})");
    nothing(&mut a, Duration::from_millis(500)).await;
    nothing(&mut b, Duration::from_millis(500)).await;
}

async fn a_nacked_delivery_comes_back_counted(s: Arc<dyn Subject>) {
    let t = s.transport();
    let addr = address("nack");
    let mut r = t.commands(&addr).await.unwrap();
    let sent = command(&addr, 1);
    t.send_command(&sent).await.unwrap();
    let first = next(&mut r).await;
    assert_eq!(first.redeliveries, 0);
    first.nack().await.unwrap();
    let again = next(&mut r).await;
    assert_eq!(again.message, sent, "a nacked message is redelivered");
    assert_eq!(again.redeliveries, 1);
    again.nack().await.unwrap();
    let third = next(&mut r).await;
    assert_eq!(third.redeliveries, 2);
    third.ack().await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;
}

async fn a_dropped_delivery_comes_back(s: Arc<dyn Subject>) {
    let t = s.transport();
    let addr = address("suelta");
    let mut r = t.commands(&addr).await.unwrap();
    let sent = command(&addr, 2);
    t.send_command(&sent).await.unwrap();
    drop(next(&mut r).await);
    let again = next(&mut r).await;
    assert_eq!(again.message, sent, "a delivery dropped unsettled is redelivered");
    assert_eq!(again.redeliveries, 1);
    again.ack().await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;
}

async fn a_dead_lettered_delivery_is_kept_aside_with_its_reason(s: Arc<dyn Subject>) {
    let t = s.transport();
    let addr = address("muerta");
    let mut r = t.commands(&addr).await.unwrap();
    let poison = command(&addr, 1);
    let good = command(&addr, 2);
    t.send_command(&poison).await.unwrap();
    t.send_command(&good).await.unwrap();
    let d = next(&mut r).await;
    assert_eq!(d.message, poison);
    d.dead_letter("importe negativo").await.unwrap();
    let d = next(&mut r).await;
    assert_eq!(d.message, good, "the receiver goes on with the next message");
    d.ack().await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;
    let dead = s.dead_commands(&addr, 1).await;
    assert_eq!(dead, vec![(poison, "importe negativo".to_owned())]);
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            fn subject() -> Arc<dyn Subject> {
                Arc::new($make)
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_command_and_its_reply_round_trip_with_every_field() {
                super::a_command_and_its_reply_round_trip_with_every_field(subject()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_receivers_on_one_address_share_the_messages() {
                super::two_receivers_on_one_address_share_the_messages(subject()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_nacked_delivery_comes_back_counted() {
                super::a_nacked_delivery_comes_back_counted(subject()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dropped_delivery_comes_back() {
                super::a_dropped_delivery_comes_back(subject()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_dead_lettered_delivery_is_kept_aside_with_its_reason() {
                super::a_dead_lettered_delivery_is_kept_aside_with_its_reason(subject()).await
            }
        }
    };
}

conformance!(in_process, InProcess(InProcessTransport::new()));
conformance!(apache_pulsar, Broker(pulsar("conformance")));

// --- What only a broker does -----------------------------------------------------------------

/// Garbage bytes and a payload of the wrong shape, published raw on a command topic, never reach
/// the application: they land in the dead-letter topic, byte for byte, with their properties
/// and the reason; the good message after them is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_the_receiver_goes_on() {
    let addr = address("veneno");
    let t = pulsar("veneno");
    let mut r = t.commands(&addr).await.unwrap();
    let raw = pulsar::Pulsar::builder(common::pulsar_url(), pulsar::TokioExecutor).build().await.unwrap();
    let mut producer = raw.producer().with_topic(t.config().topic(&addr)).build().await.unwrap();
    let garbage = b"\x00\x01garbage".to_vec();
    let wrong_shape = serde_json::to_vec(&json!({ "not": "a command" })).unwrap();
    for (i, payload) in [garbage.clone(), wrong_shape.clone()].into_iter().enumerate() {
        let properties = std::collections::HashMap::from([(
            property::SAGA_ID.to_owned(),
            format!("00000000-0000-0000-0000-00000000000{i}"),
        )]);
        let message = pulsar::producer::Message { payload, properties, ..Default::default() };
        producer.send_non_blocking(message).await.unwrap().await.unwrap();
    }
    let good = command(&addr, 9);
    t.send_command(&good).await.unwrap();
    let got = next(&mut r).await;
    assert_eq!(got.message, good, "the receiver goes on after poison");
    got.ack().await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;

    // Dead-lettering runs beside the consumer: the two may land in either order.
    let mut dead = read_topic(&format!("{addr}.dlq"), 2).await;
    dead.sort_by_key(|m| m.properties[property::SAGA_ID].clone());
    let payloads: Vec<&[u8]> = dead.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(payloads, [garbage.as_slice(), wrong_shape.as_slice()], "the raw payloads, byte for byte");
    for (i, m) in dead.iter().enumerate() {
        assert_eq!(m.properties[property::SAGA_ID], format!("00000000-0000-0000-0000-00000000000{i}"));
        assert!(m.properties[property::DEAD_LETTER_REASON].starts_with("undecodable: "), "{:?}", m.properties);
        assert_eq!(m.properties[property::DEAD_LETTER_FROM], t.config().topic(&addr));
    }
    let stats = t.stats();
    assert_eq!((stats.undecodable, stats.dead_lettered), (2, 2));
}

/// Commands and replies carry their codec's Avro schema: the registry holds it for both topics
/// (read back through the admin REST API), and what was sent is read back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_codec_schema_is_in_the_registry() {
    let codec = Arc::new(TinyAvro { extra_field: false });
    let t = PulsarTransport::new(common::config("esquema"), codec.clone());
    let addr = address("avro");
    let mut commands = t.commands(&addr).await.unwrap();
    let sent = command(&addr, 4);
    let mut replies = t.replies(&sent.reply_to).await.unwrap();
    t.send_command(&sent).await.unwrap();
    let got = next(&mut commands).await;
    assert_eq!(got.message, sent);
    let reply =
        Reply { correlation: sent.correlation.clone(), outcome: Outcome::Success { output: json!({ "ok": true }) } };
    t.send_reply(&sent.reply_to, &reply).await.unwrap();
    got.ack().await.unwrap();
    let back = next(&mut replies).await;
    assert_eq!(back.message, reply);
    back.ack().await.unwrap();

    let http = reqwest::Client::new();
    for (topic, name) in [(&addr, "ComandoPrueba"), (&sent.reply_to, "RespuestaPrueba")] {
        let url =
            format!("{}/admin/v2/schemas/{}/{}/{topic}/schema", common::admin_url(), common::TENANT, common::NAMESPACE);
        let res = http.get(&url).send().await.unwrap();
        assert!(res.status().is_success(), "GET {url}: {}", res.status());
        let schema: Value = res.json().await.unwrap();
        assert_eq!(schema["type"], "AVRO", "{schema}");
        let registered: Value = serde_json::from_str(schema["data"].as_str().unwrap()).unwrap();
        let ours: Value = serde_json::from_str(&codec.schema(name)).unwrap();
        assert_eq!(registered, ours, "the registry holds the codec's schema for {topic}");
    }
    // The payload on the wire is the codec's Avro, not JSON.
    let raw = read_topic(&addr, 1).await;
    assert_ne!(raw[0].payload.first(), Some(&b'{'));
    assert_eq!(raw[0].properties[property::MESSAGE_ID], sent.correlation.message_id.to_string());
    assert_eq!(raw[0].properties[property::REPLY_TO], sent.reply_to);
}

/// The registry refuses a schema that breaks BACKWARD_TRANSITIVE compatibility: the send fails
/// at once as a codec error, without resending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incompatible_schema_is_refused_without_retrying() {
    let addr = address("incompatible");
    let v1 = PulsarTransport::new(common::config("v1"), Arc::new(TinyAvro { extra_field: false }));
    v1.send_command(&command(&addr, 1)).await.unwrap();
    let v2 = PulsarTransport::new(common::config("v2"), Arc::new(TinyAvro { extra_field: true }));
    let started = Instant::now();
    let refused = v2.send_command(&command(&addr, 2)).await;
    assert!(matches!(refused, Err(TransportError::Codec(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "refused in {:?}", started.elapsed());
    assert_eq!(v2.stats().send_retries, 0);
}

/// No broker behind the URL: a send gives up with `Unavailable` after its bounded attempts,
/// and a subscription after `subscribe_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_broker_is_unavailable_within_the_budget() {
    // A port nothing listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut config = common::config("nadie");
    config.url = format!("pulsar://127.0.0.1:{port}");
    config.send_timeout = Duration::from_secs(1);
    config.send_attempts = 3;
    config.initial_backoff = Duration::from_millis(100);
    config.subscribe_timeout = Duration::from_secs(2);
    let t = PulsarTransport::new(config, Arc::new(JsonCodec));
    let started = Instant::now();
    let sent = t.send_command(&command("nadie", 1)).await;
    assert!(matches!(sent, Err(TransportError::Unavailable(_))), "{sent:?}");
    // 3 attempts of at most 1 s, 0.1 + 0.2 s of pauses.
    assert!(started.elapsed() < Duration::from_secs(5), "gave up after {:?}", started.elapsed());
    assert_eq!(t.stats().send_retries, 2);
    let started = Instant::now();
    let subscribed = t.commands("nadie").await;
    assert!(matches!(subscribed, Err(TransportError::Unavailable(_))), "{:?}", subscribed.err());
    assert!(started.elapsed() < Duration::from_secs(4), "gave up after {:?}", started.elapsed());
    // The readiness probe says so too, within its 3 s budget; against the real broker it is ready.
    let started = Instant::now();
    let ready = t.ready().await;
    assert!(matches!(ready, Err(TransportError::Unavailable(_))), "{ready:?}");
    assert!(started.elapsed() < Duration::from_secs(4), "answered after {:?}", started.elapsed());
    pulsar("listo").ready().await.expect("the test broker is ready");
    let mut elsewhere = common::config("listo");
    elsewhere.namespace = "no-existe".into();
    let missing = PulsarTransport::new(elsewhere, Arc::new(JsonCodec)).ready().await;
    assert!(missing.is_err(), "a namespace that does not exist is not ready: {missing:?}");
}

/// A subscription made for the first time starts at the end of its topic, even when the
/// namespace retains older messages: a new deployment must not replay (and apply) the commands
/// of another deployment's sagas. What comes after the subscription is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_subscription_does_not_replay_what_the_topic_retains() {
    // Retention on the test namespace (scripts/pulsar.sh sets the same), so the old message is
    // still held by the broker when the subscription comes.
    let url = format!("{}/admin/v2/namespaces/{}/{}/retention", common::admin_url(), common::TENANT, common::NAMESPACE);
    let res = reqwest::Client::new()
        .post(url)
        .json(&json!({ "retentionTimeInMinutes": 60, "retentionSizeInMB": 512 }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "setting retention: {}", res.status());
    let addr = address("reciente");
    let t = pulsar("antigua");
    t.send_command(&command(&addr, 1)).await.unwrap();
    // Another deployment subscribes afterwards.
    let nueva = pulsar("nueva");
    let mut r = nueva.commands(&addr).await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;
    let after = command(&addr, 2);
    t.send_command(&after).await.unwrap();
    let got = next(&mut r).await;
    assert_eq!(got.message, after);
    got.ack().await.unwrap();
}
