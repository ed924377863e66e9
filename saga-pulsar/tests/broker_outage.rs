//! SLOW (about two minutes, by design): an outage of 95 s, longer than the pulsar client's own
//! reconnection budget (about 40 s, after which a consumer's stream ends), on a real Apache
//! Pulsar run by scripts/pulsar.sh with the environment of the test command.
//!
//! Proves that the transport's consumers subscribe again and its producers are rebuilt by
//! themselves: what was sent before the outage and not acknowledged is delivered after it, a
//! send during the outage gives up with `Unavailable` within its budget (the engine resends
//! it, with the same message id), and new sends go through on the same transport.
//!
//! Its own test binary: cargo runs test binaries one at a time, so nothing else runs while the
//! broker is down.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{address, command, next, pulsar, pulsar_sh, RestartOnDrop};
use saga_core::transport::{Transport, TransportError};
use saga_core::MessageId;

const OUTAGE: Duration = Duration::from_secs(95);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_an_outage_of_95_s_is_survived_by_consumers_and_producers() {
    let t = pulsar("corte");
    let addr = address("corte");
    let mut r = t.commands(&addr).await.unwrap();

    // 20 sent, 5 handled and acknowledged: 15 wait on the broker.
    let mut waiting = HashSet::new();
    for n in 0..20 {
        let c = command(&addr, n);
        t.send_command(&c).await.unwrap();
        waiting.insert(c.correlation.message_id);
    }
    let mut handled: HashSet<MessageId> = HashSet::new();
    for _ in 0..5 {
        let d = next(&mut r).await;
        handled.insert(d.message.correlation.message_id);
        d.ack().await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await; // acknowledgements are not confirmed

    let mut guard = RestartOnDrop { armed: true };
    tokio::task::spawn_blocking(|| pulsar_sh("stop")).await.unwrap();
    let stopped_at = Instant::now();

    // A send during the outage gives up within its budget: 5 attempts of at most 10 s, with
    // 0.25 + 0.5 + 1 + 2 s of pauses.
    let during = command(&addr, 100);
    let started = Instant::now();
    let refused = t.send_command(&during).await;
    assert!(matches!(refused, Err(TransportError::Unavailable(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(60), "gave up after {:?}", started.elapsed());
    println!(
        "a send during the outage gave up after {:?}: {}",
        started.elapsed(),
        refused.err().map(|e| e.to_string()).unwrap_or_default()
    );

    tokio::time::sleep(OUTAGE.saturating_sub(stopped_at.elapsed())).await;
    let restart = Instant::now();
    tokio::task::spawn_blocking(|| pulsar_sh("start")).await.unwrap();
    guard.armed = false;
    println!("broker down {:?}, restarted in {:?}", stopped_at.elapsed(), restart.elapsed());

    // The engine resends what it could not send, with the same message id; and goes on.
    let back = Instant::now();
    t.send_command(&during).await.unwrap();
    waiting.insert(during.correlation.message_id);
    for n in 200..205 {
        let c = command(&addr, n);
        t.send_command(&c).await.unwrap();
        waiting.insert(c.correlation.message_id);
    }
    println!("sends went through {:?} after the restart", back.elapsed());

    let deadline = Instant::now() + Duration::from_secs(120);
    let mut duplicates = 0;
    while !waiting.is_subset(&handled) {
        let d = tokio::time::timeout_at(deadline.into(), r.recv())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} of {} messages never delivered after the outage",
                    waiting.difference(&handled).count(),
                    waiting.len()
                )
            })
            .unwrap();
        if !handled.insert(d.message.correlation.message_id) {
            duplicates += 1;
        }
        d.ack().await.unwrap();
    }
    let stats = t.stats();
    println!(
        "all delivered {:?} after the restart ({duplicates} duplicates filtered); stats {stats:?}",
        back.elapsed()
    );
    assert!(
        stats.consumers_rebuilt >= 1,
        "the consumer's stream ended during the outage and it subscribed again: {stats:?}"
    );
    assert!(stats.producers_rebuilt >= 1, "{stats:?}");
}
