//! CrearCampaña in the distributed mode, measured: the `orchestrator` and three `worker`
//! processes, each with its own PostgreSQL database, over a real Apache Pulsar (the same stack
//! as the end-to-end tests). `CONCURRENCY` clients (default 16) each start a campaign through
//! the HTTP API and wait for it to end before starting the next, until `SAGAS` (default 400)
//! have run; prints throughput and the start-to-end duration of the sagas as the saga log
//! recorded them. `SHOW_LAST=1` also prints the log of the last two sagas (when each command was
//! sent and each reply applied), to see where a saga's time goes. `WAIT=poll` makes the clients
//! poll the campaign every 2 ms instead of waiting in one request (`GET /sagas/{id}?esperar_ms=`).
//!
//! ```sh
//! scripts/postgres.sh start && scripts/pulsar.sh start
//! cargo build --release -p worker --features pulsar   # the bench starts target/release/worker
//! SAGA_TEST_DATABASE_URL=$(scripts/postgres.sh url) SAGA_TEST_PULSAR_URL=pulsar://127.0.0.1:6650 \
//!   SAGA_TEST_PULSAR_ADMIN_URL=http://127.0.0.1:8080 cargo bench -p orchestrator --features pulsar --bench distributed
//! ```

#![allow(clippy::unwrap_used)]

#[path = "../tests/casos/mod.rs"]
mod casos;
#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use common::{ejemplo, Stack};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// How a client learns that its saga ended (`WAIT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// `poll`: reads the campaign every 2 ms until it leaves `pendiente` (the benchmark's way
    /// until the API could wait; the reads compete with what is measured).
    Poll,
    /// `esperar` (the default): one `GET /sagas/{id}?esperar_ms=10000`, answered when the saga
    /// rests.
    Esperar,
}

async fn wait_settled(stack: &Stack, how: Wait, campana: &str, saga: &str) {
    match how {
        Wait::Poll => loop {
            let (_, c) = stack.get(&format!("/afiliaciones/campana/{campana}")).await;
            if c["estado"] != "pendiente" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        },
        Wait::Esperar => loop {
            let (_, s) = stack.get(&format!("/sagas/{saga}?esperar_ms=10000")).await;
            if !matches!(s["saga"]["status"].as_str(), Some("running" | "compensating")) {
                return;
            }
        },
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sagas = env_or("SAGAS", 400);
    let concurrency = env_or("CONCURRENCY", 16);
    let how = match std::env::var("WAIT").as_deref() {
        Ok("poll") => Wait::Poll,
        Ok("esperar") | Err(_) => Wait::Esperar,
        Ok(other) => panic!("WAIT is poll or esperar, not {other}"),
    };
    let stack = Arc::new(Stack::start().await);
    // Warm-up: producers, consumers and connection pools exist before the clock starts.
    for _ in 0..5 {
        let (_, a) = stack.post(&ejemplo(1), None).await;
        stack.settled(a["id_campana"].as_str().unwrap()).await;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let wall = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (stack, next) = (stack.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < sagas {
                let (status, a) = stack.post(&ejemplo(1), None).await;
                assert!(status.is_success(), "{a}");
                let id = a["id_campana"].as_str().unwrap().to_owned();
                let saga = a["saga_id"].as_str().unwrap().to_owned();
                // Closed loop: each client waits for its saga to end before starting another,
                // so the durations are latencies under `CONCURRENCY` sagas in flight, not a queue.
                wait_settled(&stack, how, &id, &saga).await;
                mine.push((id, saga));
            }
            mine
        }));
    }
    let mut started = Vec::new();
    for c in clients {
        started.extend(c.await.unwrap());
    }
    let elapsed = wall.elapsed();
    let mut durations = Vec::new();
    let (mut first, mut last): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    let mut completed = 0;
    for (_, saga) in &started {
        let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
        let s = &s["saga"];
        completed += usize::from(s["status"] == "completed");
        let created: DateTime<Utc> = s["created_at"].as_str().unwrap().parse().unwrap();
        let updated: DateTime<Utc> = s["updated_at"].as_str().unwrap().parse().unwrap();
        durations.push((updated - created).num_microseconds().unwrap() as f64 / 1000.0);
        first = Some(first.map_or(created, |f| f.min(created)));
        last = Some(last.map_or(updated, |l| l.max(updated)));
    }
    if std::env::var("SHOW_LAST").is_ok() {
        for (_, saga) in started.iter().rev().take(2) {
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            for e in s["historia"].as_array().unwrap() {
                let ev = &e["event"];
                let c = &ev["command"]["correlation"];
                println!("  {} {} {} {}", e["at"], ev["type"], c["step_name"], ev["step"]);
            }
        }
    }
    durations.sort_by(f64::total_cmp);
    let span = (last.unwrap() - first.unwrap()).num_microseconds().unwrap() as f64 / 1e6;
    println!(
        "distributed CrearCampaña: {sagas} sagas, {concurrency} concurrent clients ({how:?}), {completed} completed"
    );
    println!("  wall clock {:.2} s", elapsed.as_secs_f64());
    println!("  first start to last end: {span:.2} s, {:.0} sagas/s", sagas as f64 / span);
    println!(
        "  saga duration (log: start to final state) ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&durations, 0.5),
        percentile(&durations, 0.9),
        percentile(&durations, 0.99),
        durations[durations.len() - 1]
    );
}
