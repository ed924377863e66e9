//! Command → reply round trips over a real Apache Pulsar, as the engine and a participant do
//! them (publish, consume, reply, acknowledge), and one-way throughput of the client with
//! producer batching on and off.
//!
//!     scripts/pulsar.sh start
//!     SAGA_TEST_PULSAR_URL=pulsar://127.0.0.1:6650 cargo bench -p saga-pulsar --bench roundtrip
//!
//! `ROUND_TRIPS` (default 2000) and `MESSAGES` (default 5000) size the runs. Two round-trip
//! configurations: each side publishing and consuming over separate connections (the
//! transport's default), and over one shared connection (where Nagle's algorithm meets the
//! broker's delayed ACK, since the client does not set TCP_NODELAY).

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_core::transport::codec::JsonCodec;
use saga_core::transport::{Command, Correlation, Outcome, Reply, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::json;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn transport(url: &str, subscription: &str, shared: bool) -> Arc<dyn Transport> {
    let mut config = PulsarConfig::new(url, "alpes", "afiliaciones", subscription);
    config.shared_connection = shared;
    Arc::new(PulsarTransport::new(config, Arc::new(JsonCodec)))
}

async fn round_trips(url: &str, shared: bool, n: usize) -> Vec<Duration> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let commands_topic = format!("bench.comandos.{id}");
    let replies_topic = format!("bench.respuestas.{id}");
    let participant = transport(url, "bench-participant", shared);
    let orchestrator = transport(url, "bench-orchestrator", shared);
    let mut commands = participant.commands(&commands_topic).await.expect("subscribe");
    let mut replies = orchestrator.replies(&replies_topic).await.expect("subscribe");
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::spawn(async move {
        while let Ok(d) = commands.recv().await {
            let reply = Reply { correlation: d.message.correlation.clone(), outcome: Outcome::Success { output: json!({}) } };
            participant.send_reply(&d.message.reply_to, &reply).await.expect("reply");
            d.ack().await.expect("ack");
        }
    });
    let mut times = Vec::with_capacity(n);
    for i in 0..n + 50 {
        let command = Command {
            correlation: Correlation {
                saga_id: SagaId::new(),
                saga_type: "bench".into(),
                step_name: "uno".into(),
                attempt: 1,
                kind: StepKind::Action,
                message_id: MessageId::new(),
            },
            participant: commands_topic.clone(),
            reply_to: replies_topic.clone(),
            message_type: "Hacer".into(),
            body: json!({ "i": i }),
        };
        let started = Instant::now();
        orchestrator.send_command(&command).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.recv()).await.expect("reply in time").expect("reply");
        reply.ack().await.expect("ack");
        if i >= 50 {
            times.push(started.elapsed()); // the first 50 warm up
        }
    }
    times.sort();
    times
}

async fn throughput(url: &str, batching: bool, n: usize) -> f64 {
    let client = pulsar::Pulsar::builder(url, pulsar::TokioExecutor).build().await.expect("connect");
    let options = pulsar::ProducerOptions {
        batch_size: batching.then_some(100),
        batch_timeout: batching.then_some(Duration::from_millis(5)),
        block_queue_if_full: true,
        ..pulsar::ProducerOptions::default()
    };
    let topic = format!("persistent://alpes/afiliaciones/bench.oneway.{}", uuid::Uuid::new_v4().simple());
    let mut producer = client.producer().with_topic(topic).with_options(options).build().await.expect("producer");
    let payload = vec![7u8; 256];
    let started = Instant::now();
    // At most 500 receipts awaited at once; the producer blocks when its queue is full.
    let mut receipts = std::collections::VecDeque::with_capacity(500);
    for _ in 0..n {
        if receipts.len() == 500 {
            let r: pulsar::producer::SendFuture = receipts.pop_front().expect("pending");
            r.await.expect("receipt");
        }
        let message = pulsar::producer::Message { payload: payload.clone(), ..Default::default() };
        receipts.push_back(producer.send_non_blocking(message).await.expect("send"));
    }
    for r in receipts {
        r.await.expect("receipt");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let url = std::env::var("SAGA_TEST_PULSAR_URL").unwrap_or_else(|_| "pulsar://127.0.0.1:6650".into());
    let n = env_usize("ROUND_TRIPS", 2000);
    let m = env_usize("MESSAGES", 5000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("round trips (command -> reply, acks included), {n} after 50 warm-up");
        println!("{:<24} {:>9} {:>9} {:>9} {:>9}", "connections", "p50 ms", "p90 ms", "p99 ms", "max ms");
        for (label, shared) in [("separate (default)", false), ("one shared", true)] {
            let t = round_trips(&url, shared, n).await;
            let p = |q: f64| t[((t.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
            println!("{label:<24} {:>9.2} {:>9.2} {:>9.2} {:>9.2}", p(0.5), p(0.9), p(0.99), p(1.0));
        }
        println!("one-way throughput, {m} messages of 256 bytes");
        for (label, batching) in [("batching off", false), ("batching on (100, 5 ms)", true)] {
            println!("{label:<24} {:>9.0} msg/s", throughput(&url, batching, m).await);
        }
    });
}
