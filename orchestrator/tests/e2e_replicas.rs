//! Two orchestrator replicas on one saga log (PostgreSQL) and one reply subscription (Pulsar,
//! shared), every worker a process: both take requests and consume replies at once, each saga is
//! advanced one transition at a time (shown from the log), and when one replica is killed with
//! `kill -9` the other finishes its sagas. Prints the takeover: from the kill to the last orphaned
//! saga advancing.
//!
//! Needs what `e2e_pulsar.rs` needs (the `pulsar` feature, the worker binary, PostgreSQL, Pulsar).

#![cfg(feature = "pulsar")]
// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;
mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{ejemplo, free_port, wait_for, Daemon, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Starts `n` campaigns, alternating between the replicas `urls`; about a third refused by
/// tracking. Returns (campaign, saga) ids.
async fn start_on(http: &reqwest::Client, urls: &[String], n: usize, offset: usize) -> Vec<(String, String)> {
    let mut started = Vec::new();
    for i in 0..n {
        let mut body = ejemplo(100);
        if (i + offset) % 3 == 2 {
            body["fecha_fin"] = json!("2028-01-01T00:00:00");
        }
        let url = &urls[i % urls.len()];
        let res = http.post(format!("{url}/afiliaciones/campana")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let accepted: Value = res.json().await.unwrap();
        started.push((
            accepted["id_campana"].as_str().unwrap().to_owned(),
            accepted["saga_id"].as_str().unwrap().to_owned(),
        ));
    }
    started
}

/// What a saga's log shows about how it was advanced: its entries are numbered 1..n without a
/// gap or a repeat, each attempt's reply was applied at most once, each attempt's command sent
/// once (resends are `command_resent`), and it ends once. Returns how many replies were
/// ignored (the losing side of a race, or a duplicate).
fn advanced_one_at_a_time(saga: &str, history: &[Value]) -> usize {
    let seqs: Vec<i64> = history.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=history.len() as i64).collect::<Vec<_>>(), "saga {saga}: log positions");
    let mut applied = HashSet::new();
    let mut sent = HashSet::new();
    let mut ends = 0;
    let mut ignored = 0;
    for e in history.iter().map(|e| &e["event"]) {
        match e["type"].as_str().unwrap() {
            "reply_accepted" => {
                let key = (e["step"].clone().to_string(), e["kind"].to_string(), e["attempt"].to_string());
                assert!(applied.insert(key.clone()), "saga {saga}: reply applied twice for {key:?}");
            }
            "command_sent" => {
                let c = &e["command"]["correlation"];
                let key = (c["step_name"].to_string(), c["kind"].to_string(), c["attempt"].to_string());
                assert!(sent.insert(key.clone()), "saga {saga}: command sent twice for {key:?}");
            }
            "completed" | "compensated" => ends += 1,
            "reply_ignored" => ignored += 1,
            _ => {}
        }
    }
    assert_eq!(ends, 1, "saga {saga}: {ends} ends");
    ignored
}

fn at(entry: &Value) -> DateTime<Utc> {
    entry["at"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_log_and_one_finishes_the_sagas_of_the_other_killed() {
    let mut stack = Stack::start().await;
    let port = free_port();
    let mut env = stack.orchestrator.env.clone();
    env.insert("ALPES__HTTP".into(), format!("127.0.0.1:{port}"));
    let dir = stack.orchestrator.log.parent().unwrap().to_owned();
    let mut b = Daemon::new("orchestrator-b", stack.orchestrator.program.clone(), &["distributed"], env, port, &dir);
    b.spawn();
    b.ready().await;
    let urls = [stack.orchestrator.url(), b.url()];

    // Both replicas at work: requests to each, replies to whichever the broker gives them.
    let together = start_on(&stack.http, &urls, 18, 0).await;
    for (id, _) in &together {
        stack.settled(id).await;
    }

    // The kill: tracking frozen so every saga waits mid-way, then replica A killed.
    stack.worker("tracking").signal("STOP");
    let orphans = start_on(&stack.http, &urls, 18, 18).await;
    wait_for(Duration::from_secs(30), "every saga waiting on tracking", || async {
        for (_, saga) in &orphans {
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            if s["saga"]["status"] != "running" {
                return false;
            }
        }
        true
    })
    .await;
    let killed_at = Utc::now();
    stack.orchestrator.kill9();
    stack.worker("tracking").signal("CONT");
    // From here the stack talks to replica B.
    std::mem::swap(&mut stack.orchestrator, &mut b);
    let mut first_advance: HashMap<String, DateTime<Utc>> = HashMap::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while first_advance.len() < orphans.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "replica B advanced {} of {} orphaned sagas",
            first_advance.len(),
            orphans.len()
        );
        for (_, saga) in &orphans {
            if first_advance.contains_key(saga) {
                continue;
            }
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            if let Some(e) = s["historia"].as_array().unwrap().iter().find(|e| at(e) > killed_at) {
                first_advance.insert(saga.clone(), at(e));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut effects = Vec::new();
    for (i, (id, _)) in together.iter().chain(&orphans).enumerate() {
        let c = stack.settled(id).await;
        let expected = if i % 3 == 2 { "rechazada" } else { "activa" };
        assert_eq!(c["estado"], expected, "{c}");
        effects.push((id.clone(), c, 10_000, 2));
    }
    stack.check_effects(&effects).await;

    // From the log: each saga advanced one transition at a time, by whichever replica.
    let mut ignored = 0;
    for (_, saga) in together.iter().chain(&orphans) {
        let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
        ignored += advanced_one_at_a_time(saga, s["historia"].as_array().unwrap());
    }
    let mut delays: Vec<i64> = first_advance.values().map(|t| (*t - killed_at).num_milliseconds()).collect();
    delays.sort_unstable();
    println!(
        "takeover: {} orphaned sagas; kill -9 to the last one advancing: {} ms (first {} ms, median {} ms); \
         {} replies ignored over {} sagas",
        delays.len(),
        delays.last().unwrap(),
        delays.first().unwrap(),
        delays[delays.len() / 2],
        ignored,
        together.len() + orphans.len()
    );
}
