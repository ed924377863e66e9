//! The transport's Prometheus metrics on a real broker, by topic: published, consumed,
//! redelivered and dead-lettered move by exactly what happened. Its own test binary: the metrics
//! recorder is process-wide.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{address, command, next, pulsar};
use metrics_exporter_prometheus::PrometheusBuilder;
use saga_core::transport::Transport;

/// The value of the sample `name{…topic="topic"…}`, 0 when absent.
fn sample(text: &str, name: &str, topic: &str) -> f64 {
    let want = format!("topic=\"{topic}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&want) && l.contains("transport=\"pulsar\""))
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_by_topic_move_by_exactly_what_happened() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    let addr = address("metricas");
    let t = pulsar("metricas");
    let topic = t.config().topic(&addr);
    let mut r = t.commands(&addr).await.unwrap();
    for n in 0..3 {
        t.send_command(&command(&addr, n)).await.unwrap();
    }
    // First: ack. Second: nack, then ack its redelivery. Third: dead-letter.
    next(&mut r).await.ack().await.unwrap();
    next(&mut r).await.nack().await.unwrap();
    next_and_settle(&mut r).await;
    let text = handle.render();
    assert_eq!(sample(&text, "transport_messages_published_total", &topic), 3.0, "{text}");
    assert_eq!(sample(&text, "transport_messages_consumed_total", &topic), 4.0, "{text}");
    assert_eq!(sample(&text, "transport_messages_redelivered_total", &topic), 1.0, "{text}");
    assert_eq!(sample(&text, "transport_messages_dead_lettered_total", &topic), 1.0, "{text}");
    // The dead letter itself was published on the dead-letter topic.
    let dlq = t.config().dead_letter_topic(&addr);
    assert_eq!(sample(&text, "transport_messages_published_total", &dlq), 1.0, "{text}");
}

/// The next two deliveries are the nacked message again and the third one, in either order:
/// acknowledges the redelivered one, dead-letters the other.
async fn next_and_settle(r: &mut Box<dyn saga_core::transport::Receiver<saga_core::transport::Command>>) {
    for _ in 0..2 {
        let d = next(r).await;
        if d.redeliveries > 0 {
            d.ack().await.unwrap();
        } else {
            d.dead_letter("a test dead letter").await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}
