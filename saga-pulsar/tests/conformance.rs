//! One transport contract, two transports: the same tests run against the in-process
//! transport and against Apache Pulsar (a real broker: `SAGA_TEST_PULSAR_URL` and
//! `SAGA_TEST_PULSAR_ADMIN_URL`, set by scripts/test.sh; without them the tests fail, saying
//! so). Then what only a broker does: poison messages to the dead-letter topic, the schema in the
//! registry, and a message our producer wrote read by an independent Avro implementation.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use saga_core::transport::codec::JsonCodec;
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Correlation, Delivery, Outcome, Receiver, Reply, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::json;

fn pulsar_url() -> String {
    std::env::var("SAGA_TEST_PULSAR_URL").expect(
        "SAGA_TEST_PULSAR_URL is not set: the Pulsar tests need a real broker. Run scripts/test.sh (it starts one with scripts/pulsar.sh)",
    )
}

fn admin_url() -> String {
    std::env::var("SAGA_TEST_PULSAR_ADMIN_URL").expect("SAGA_TEST_PULSAR_ADMIN_URL is not set: run scripts/test.sh")
}

fn pulsar(subscription: &str) -> Arc<dyn Transport> {
    Arc::new(PulsarTransport::new(PulsarConfig::new(pulsar_url(), "alpes", "afiliaciones", subscription), Arc::new(JsonCodec)))
}

/// A unique address per test, so tests never see each other's messages.
fn address(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::new_v4().simple())
}

fn command(participant: &str, n: u32) -> Command {
    Command {
        correlation: Correlation {
            saga_id: SagaId::new(),
            saga_type: "prueba".into(),
            step_name: "uno".into(),
            attempt: n,
            kind: StepKind::Action,
            message_id: MessageId::new(),
        },
        participant: participant.to_owned(),
        reply_to: format!("{participant}.respuestas"),
        message_type: "Hacer".into(),
        body: json!({ "n": n, "texto": "campaña ñ" }),
    }
}

async fn next<M: Send>(r: &mut Box<dyn Receiver<M>>) -> Delivery<M> {
    tokio::time::timeout(Duration::from_secs(30), r.recv()).await.expect("a message within 30 s").unwrap()
}

async fn nothing<M: Send + std::fmt::Debug>(r: &mut Box<dyn Receiver<M>>, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, r.recv()).await {
        panic!("expected nothing, got {:?}", d.map(|d| d.message));
    }
}

/// Subscriptions start at the end of a topic: give a new consumer time to attach.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(700)).await;
}

async fn a_command_and_its_reply_round_trip_with_every_field(t: Arc<dyn Transport>) {
    let addr = address("ida");
    let mut commands = t.commands(&addr).await.unwrap();
    let sent = command(&addr, 3);
    let mut replies = t.replies(&sent.reply_to).await.unwrap();
    settle().await;
    t.send_command(&sent).await.unwrap();
    let got = next(&mut commands).await;
    assert_eq!(got.message, sent);
    let reply = Reply { correlation: got.message.correlation.clone(), outcome: Outcome::Success { output: json!({ "id": 7 }) } };
    t.send_reply(&sent.reply_to, &reply).await.unwrap();
    got.ack().await.unwrap();
    let back = next(&mut replies).await;
    assert_eq!(back.message, reply);
    back.ack().await.unwrap();
}

async fn two_receivers_on_one_address_share_the_messages(t: Arc<dyn Transport>) {
    let addr = address("compartida");
    let mut a = t.commands(&addr).await.unwrap();
    let mut b = t.commands(&addr).await.unwrap();
    settle().await;
    for n in 0..40 {
        t.send_command(&command(&addr, n)).await.unwrap();
    }
    let mut seen = HashSet::new();
    let (mut from_a, mut from_b) = (0, 0);
    while seen.len() < 40 {
        tokio::select! {
            d = a.recv() => { let d = d.unwrap(); assert!(seen.insert(d.message.correlation.attempt), "delivered twice"); from_a += 1; tokio::time::sleep(Duration::from_millis(5)).await; d.ack().await.unwrap(); }
            d = b.recv() => { let d = d.unwrap(); assert!(seen.insert(d.message.correlation.attempt), "delivered twice"); from_b += 1; tokio::time::sleep(Duration::from_millis(5)).await; d.ack().await.unwrap(); }
            _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("only {} of 40 delivered", seen.len()),
        }
    }
    assert!(from_a > 0 && from_b > 0, "both receivers got messages ({from_a} and {from_b})");
}

async fn a_nacked_or_dropped_delivery_comes_back(t: Arc<dyn Transport>) {
    let addr = address("nack");
    let mut r = t.commands(&addr).await.unwrap();
    settle().await;
    let sent = command(&addr, 1);
    t.send_command(&sent).await.unwrap();
    let first = next(&mut r).await;
    first.nack().await.unwrap();
    let again = next(&mut r).await;
    assert_eq!(again.message, sent, "a nacked message is redelivered");
    drop(again);
    let third = next(&mut r).await;
    assert_eq!(third.message, sent, "a dropped delivery is redelivered");
    third.ack().await.unwrap();
    nothing(&mut r, Duration::from_secs(2)).await;
}

macro_rules! conformance {
    ($name:ident, $make:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_command_and_its_reply_round_trip_with_every_field() {
                super::a_command_and_its_reply_round_trip_with_every_field($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_receivers_on_one_address_share_the_messages() {
                super::two_receivers_on_one_address_share_the_messages($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_nacked_or_dropped_delivery_comes_back() {
                super::a_nacked_or_dropped_delivery_comes_back($make).await
            }
        }
    };
}

conformance!(in_process, Arc::new(InProcessTransport::new()) as Arc<dyn Transport>);
conformance!(apache_pulsar, pulsar("conformance"));

/// Garbage bytes and a payload of the wrong shape, published raw on a command topic, land in
/// the dead-letter topic; the good message after them is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_goes_to_the_dead_letter_topic_and_the_consumer_goes_on() {
    let addr = address("veneno");
    let t = pulsar("veneno");
    let mut r = t.commands(&addr).await.unwrap();
    settle().await;
    let raw = pulsar::Pulsar::builder(pulsar_url(), pulsar::TokioExecutor).build().await.unwrap();
    let mut producer = raw.producer().with_topic(format!("persistent://alpes/afiliaciones/{addr}")).build().await.unwrap();
    let props = std::collections::HashMap::from([("saga_id".to_owned(), "00000000-0000-0000-0000-00000000beef".to_owned())]);
    for payload in [b"\x00\x01garbage".to_vec(), serde_json::to_vec(&json!({ "not": "a command" })).unwrap()] {
        let message = pulsar::producer::Message { payload, properties: props.clone(), ..Default::default() };
        producer.send_non_blocking(message).await.unwrap().await.unwrap();
    }
    let good = command(&addr, 9);
    t.send_command(&good).await.unwrap();
    let got = next(&mut r).await;
    assert_eq!(got.message, good, "the consumer goes on after poison");
    got.ack().await.unwrap();
    let http = reqwest::Client::new();
    let stats_url = format!("{}/admin/v2/persistent/alpes/afiliaciones/{addr}.dlq/stats", admin_url());
    let mut published = 0;
    for _ in 0..50 {
        if let Ok(res) = http.get(&stats_url).send().await {
            if res.status().is_success() {
                let stats: serde_json::Value = res.json().await.unwrap();
                published = stats["msgInCounter"].as_i64().unwrap_or(0);
                if published >= 2 {
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(published, 2, "two poison messages in {addr}.dlq");
    nothing(&mut r, Duration::from_secs(2)).await;
}
