//! `kill -9` of the broker in the middle of a stream, then a restart, on a real Apache Pulsar run
//! by scripts/pulsar.sh (with the environment of the test command, so the script acts on the
//! broker SAGA_TEST_PULSAR_URL names; checked before anything is killed).
//!
//! A sender publishes every 10 ms; an application deduplicating by message id (as participants
//! do) handles each delivery in 25 ms and acknowledges it, so a backlog of unacknowledged
//! messages exists when the broker dies. After the restart every message whose send returned
//! `Ok` is delivered, the application handles each exactly once, and the sends made while the
//! broker was down went through.
//!
//! Its own test binary: cargo runs test binaries one at a time, so nothing else runs while the
//! broker is down.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{address, command, pulsar, pulsar_sh, RestartOnDrop};
use saga_core::transport::Transport;
use saga_core::MessageId;

#[derive(Default)]
struct App {
    handled: HashSet<MessageId>,
    duplicates: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_mid_stream_loses_nothing_sent_and_unacknowledged() {
    let t = pulsar("reinicio");
    let addr = address("reinicio");
    let mut r = t.commands(&addr).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let persisted = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (t, addr, stop, persisted) = (t.clone(), addr.clone(), stop.clone(), persisted.clone());
        tokio::spawn(async move {
            let (mut sent, mut failed) = (Vec::new(), 0);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let c = command(&addr, n);
                match t.send_command(&c).await {
                    Ok(()) => {
                        sent.push(c.correlation.message_id);
                        persisted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        eprintln!("send {n} failed: {e}");
                        failed += 1;
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (sent, failed)
        })
    };
    let app = Arc::new(Mutex::new(App::default()));
    let consumer = {
        let app = app.clone();
        tokio::spawn(async move {
            while let Ok(d) = r.recv().await {
                let id = d.message.correlation.message_id;
                let first = app.lock().unwrap().handled.insert(id);
                if first {
                    tokio::time::sleep(Duration::from_millis(25)).await; // the work
                } else {
                    app.lock().unwrap().duplicates += 1;
                }
                d.ack().await.unwrap();
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(3)).await;
    let handled_before = app.lock().unwrap().handled.len();
    let sent_before = persisted.load(Ordering::Relaxed);
    assert!(handled_before > 20, "the stream is flowing before the kill ({handled_before} handled)");
    assert!(
        sent_before > handled_before + 20,
        "a backlog of unacknowledged messages exists at the kill ({sent_before} sent, {handled_before} handled)"
    );
    let mut guard = RestartOnDrop { armed: true };
    tokio::task::spawn_blocking(|| pulsar_sh("kill")).await.unwrap();
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::spawn_blocking(|| pulsar_sh("start")).await.unwrap();
    guard.armed = false;
    let down_for = killed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failed) = sender.await.unwrap();

    let sent: HashSet<MessageId> = sent.into_iter().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let missing = sent.difference(&app.lock().unwrap().handled).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{missing} of {} messages sent were never delivered after the restart",
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consumer.abort();
    let app = app.lock().unwrap();
    println!(
        "kill -9: broker down {down_for:?}; {} sent ({sent_before} before the kill, {handled_before} of them handled), {} sends failed, {} redeliveries of handled messages filtered by message id; stats {:?}",
        sent.len(),
        failed,
        app.duplicates,
        t.stats()
    );
    assert_eq!(failed, 0, "sends made while the broker was down went through once it was back");
    assert!(app.handled.is_subset(&sent), "nothing delivered that was not sent");
}
