//! The transport across broker failures, on a real Apache Pulsar run by scripts/pulsar.sh (with
//! the environment scripts/test.sh exported, so the script acts on the same broker):
//! - `kill -9` of the broker mid-stream, then a restart: every message sent and not acknowledged
//!   before the kill is delivered after it, and an application that deduplicates by message id
//!   (as participants do) sees each once; sends made while the broker is down go through when it
//!   is back;
//! - an outage of 95 s (longer than the client's own retry budget, after which its consumer
//!   stream ends): consumers and producers are rebuilt and messages flow again.
//!
//! One test function, so nothing else runs while the broker is down.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use saga_core::transport::codec::JsonCodec;
use saga_core::transport::{Command, Correlation, Receiver, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::json;

fn pulsar_sh(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pulsar.sh");
    let status = std::process::Command::new(script).arg(cmd).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success(), "scripts/pulsar.sh {cmd} failed");
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
        reply_to: "respuestas".into(),
        message_type: "Hacer".into(),
        body: json!({ "n": n }),
    }
}

/// Receives until every id in `expected` was seen (deduplicating), acking each; returns how
/// many duplicates were filtered.
async fn drain(r: &mut Box<dyn Receiver<Command>>, expected: &HashSet<MessageId>, seen: &mut HashSet<MessageId>, within: Duration) -> usize {
    let mut duplicates = 0;
    let deadline = tokio::time::Instant::now() + within;
    while !expected.is_subset(seen) {
        let d = tokio::time::timeout_at(deadline, r.recv())
            .await
            .unwrap_or_else(|_| panic!("{} of {} delivered before the deadline", expected.intersection(seen).count(), expected.len()))
            .unwrap();
        if !seen.insert(d.message.correlation.message_id) {
            duplicates += 1;
        }
        d.ack().await.unwrap();
    }
    duplicates
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_survive_a_kill_and_an_outage_longer_than_the_client_retries() {
    let url = std::env::var("SAGA_TEST_PULSAR_URL").expect("SAGA_TEST_PULSAR_URL is not set: run scripts/test.sh");
    let t: Arc<dyn Transport> = Arc::new(PulsarTransport::new(PulsarConfig::new(url, "alpes", "afiliaciones", "restart"), Arc::new(JsonCodec)));
    let addr = format!("test.restart.{}", uuid::Uuid::new_v4().simple());
    let mut r = t.commands(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;

    // 30 sent; 10 consumed and acknowledged; then kill -9.
    let mut all = HashSet::new();
    let mut first = Vec::new();
    for n in 0..30 {
        let c = command(&addr, n);
        all.insert(c.correlation.message_id);
        first.push(c.correlation.message_id);
        t.send_command(&c).await.unwrap();
    }
    let mut seen = HashSet::new();
    let ten: HashSet<MessageId> = first[..10].iter().copied().collect();
    drain(&mut r, &ten, &mut seen, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // acks are asynchronous
    pulsar_sh("kill");
    // Sent while the broker is down: the transport retries until it is back.
    let sender = {
        let t = t.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 100..105 {
                let c = command(&addr, n);
                ids.push(c.correlation.message_id);
                t.send_command(&c).await.unwrap();
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    pulsar_sh("start");
    let during: Vec<MessageId> = sender.await.unwrap();
    all.extend(during);
    let duplicates = drain(&mut r, &all, &mut seen, Duration::from_secs(120)).await;
    assert_eq!(seen, all, "every message delivered after the restart");
    println!("kill -9: {} messages, {duplicates} redelivered after being seen (filtered by message id)", all.len());

    // An outage longer than the client's retry budget.
    pulsar_sh("stop");
    tokio::time::sleep(Duration::from_secs(95)).await;
    pulsar_sh("start");
    let mut after = HashSet::new();
    for n in 200..205 {
        let c = command(&addr, n);
        after.insert(c.correlation.message_id);
        t.send_command(&c).await.unwrap();
    }
    drain(&mut r, &after, &mut seen, Duration::from_secs(120)).await;
}
