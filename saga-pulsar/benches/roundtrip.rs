//! Command → reply round trips over a real Apache Pulsar, as the engine and a participant do
//! them (publish and wait for the receipt, consume, reply, acknowledge), with one shared
//! connection per side and with separate publishing and consuming connections; then one-way
//! publishing throughput with producer batching off and on, and of the transport's own sends.
//!
//! ```text
//! scripts/pulsar.sh start
//! SAGA_TEST_PULSAR_URL=pulsar://127.0.0.1:6650 cargo bench -p saga-pulsar --bench roundtrip
//! ```
//!
//! `ROUND_TRIPS` (default 2000, after 100 warm-up ones) and `MESSAGES` (default 5000) size the
//! runs. The client never sets TCP_NODELAY; on a shared connection the participant's reply and
//! its acknowledgement are written back to back, and the second waits on Nagle's algorithm for
//! the broker's (delayed) TCP ACK of the first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use saga_core::transport::codec::JsonCodec;
use saga_core::transport::{Command, Correlation, Outcome, Reply, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{Connections, PulsarConfig, PulsarTransport};
use serde_json::json;

const WARM_UP: usize = 100;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn transport(url: &str, subscription: &str, connections: Connections) -> Arc<PulsarTransport> {
    let mut config = PulsarConfig::new(url, "alpes", "afiliaciones", subscription);
    config.connections = connections;
    Arc::new(PulsarTransport::new(config, Arc::new(JsonCodec)))
}

fn command(participant: &str, reply_to: &str, i: usize) -> Command {
    Command {
        correlation: Correlation {
            saga_id: SagaId::new(),
            saga_type: "bench".into(),
            step_name: "uno".into(),
            attempt: 1,
            kind: StepKind::Action,
            message_id: MessageId::new(),
        },
        participant: participant.to_owned(),
        reply_to: reply_to.to_owned(),
        message_type: "Hacer".into(),
        body: json!({ "i": i }),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}.{}", uuid::Uuid::new_v4().simple())
}

/// Round-trip times, sorted.
async fn round_trips(url: &str, connections: Connections, n: usize) -> Vec<Duration> {
    let commands_topic = unique("bench.comandos");
    let replies_topic = unique("bench.respuestas");
    let participant = transport(url, "bench-participant", connections);
    let orchestrator = transport(url, "bench-orchestrator", connections);
    let mut commands = participant.commands(&commands_topic).await.expect("subscribe to commands");
    let mut replies = orchestrator.replies(&replies_topic).await.expect("subscribe to replies");
    let echo = tokio::spawn(async move {
        while let Ok(d) = commands.recv().await {
            let reply =
                Reply { correlation: d.message.correlation.clone(), outcome: Outcome::Success { output: json!({}) } };
            participant.send_reply(&d.message.reply_to, &reply).await.expect("reply");
            d.ack().await.expect("ack");
        }
    });
    let mut times = Vec::with_capacity(n);
    for i in 0..n + WARM_UP {
        let c = command(&commands_topic, &replies_topic, i);
        let started = Instant::now();
        orchestrator.send_command(&c).await.expect("send");
        let reply = tokio::time::timeout(Duration::from_secs(30), replies.recv())
            .await
            .expect("a reply within 30 s")
            .expect("reply");
        assert_eq!(reply.message.correlation, c.correlation, "the reply answers the command just sent");
        reply.ack().await.expect("ack");
        if i >= WARM_UP {
            times.push(started.elapsed());
        }
    }
    echo.abort();
    times.sort();
    times
}

/// Messages per second of a raw producer, `send_non_blocking` for all, then every receipt.
async fn raw_throughput(url: &str, batching: bool, n: usize) -> f64 {
    let client = pulsar::Pulsar::builder(url, pulsar::TokioExecutor).build().await.expect("connect");
    let options = pulsar::ProducerOptions {
        batch_size: batching.then_some(1000),
        batch_timeout: batching.then_some(Duration::from_millis(5)),
        // Wait for room in the client's queue rather than fail with SlowDown.
        block_queue_if_full: true,
        ..pulsar::ProducerOptions::default()
    };
    let topic = format!("persistent://alpes/afiliaciones/{}", unique("bench.oneway"));
    let mut producer = client.producer().with_topic(topic).with_options(options).build().await.expect("producer");
    let payload = vec![7u8; 256];
    let started = Instant::now();
    let mut receipts = Vec::with_capacity(n);
    for _ in 0..n {
        let message = pulsar::producer::Message { payload: payload.clone(), ..Default::default() };
        receipts.push(producer.send_non_blocking(message).await.expect("send"));
    }
    for r in receipts {
        r.await.expect("receipt");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Messages per second of `send_command` with `concurrency` senders (each send waits for the
/// broker's receipt, as the engine's do).
async fn transport_throughput(url: &str, concurrency: usize, n: usize) -> f64 {
    let t = transport(url, "bench-unused", Connections::Separate);
    let topic = unique("bench.oneway");
    t.send_command(&command(&topic, "x", 0)).await.expect("warm up");
    let started = Instant::now();
    let per_task = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let t = t.clone();
            let topic = topic.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    t.send_command(&command(&topic, "x", i)).await.expect("send");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender");
    }
    (per_task * concurrency) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let url = std::env::var("SAGA_TEST_PULSAR_URL")
        .expect("SAGA_TEST_PULSAR_URL is not set: start a broker (scripts/pulsar.sh start) and point this at it");
    let n = env_usize("ROUND_TRIPS", 2000);
    let m = env_usize("MESSAGES", 5000);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!("broker {url}");
        println!("command -> reply round trips (publish + receipt, deliver, reply + receipt, ack, deliver, ack): {n} after {WARM_UP} warm-up");
        println!("{:<34} {:>8} {:>8} {:>8} {:>8} {:>8}", "connections", "p50 ms", "p90 ms", "p99 ms", "max ms", "rt/s");
        for (label, connections) in [("one shared per side", Connections::Shared), ("separate publish/consume (default)", Connections::Separate)] {
            let started = Instant::now();
            let t = round_trips(&url, connections, n).await;
            let rate = (n + WARM_UP) as f64 / started.elapsed().as_secs_f64();
            let p = |q: f64| t[((t.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
            println!("{label:<34} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.0}", p(0.5), p(0.9), p(0.99), p(1.0), rate);
        }
        println!();
        println!("one-way publishing, {m} messages of 256 bytes (raw producer: all sent, then every receipt awaited)");
        println!("{:<34} {:>10}", "producer", "msg/s");
        for (label, batching) in [("raw, batching off", false), ("raw, batching on (1000, 5 ms)", true)] {
            println!("{label:<34} {:>10.0}", raw_throughput(&url, batching, m).await);
        }
        for concurrency in [1, 32] {
            let label = format!("transport send_command x{concurrency}");
            println!("{label:<34} {:>10.0}", transport_throughput(&url, concurrency, m.min(2000 * concurrency)).await);
        }
    });
}
