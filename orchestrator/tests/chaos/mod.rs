//! The chaos run: the distributed stack as separate processes (every worker, two orchestrator
//! replicas on one log, PostgreSQL, Apache Pulsar), clients driving both sagas with business
//! failures at random steps and duplicate requests, and faults injected on a schedule: `kill -9`
//! of each replica (several times) and of each participant, a `SIGSTOP` of a participant longer
//! than its step timeout, a broker restart, a PostgreSQL restart. Afterwards it checks, from the
//! databases, the topics and the HTTP API, that nothing was lost or done twice, prints the
//! figures, and fails on the first broken invariant.
//!
//! Used by `tests/chaos_short.rs` (a few hundred sagas, one fault of each kind, in the test
//! command) and `benches/chaos.rs` (the full run: `SAGAS=10000`).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{self, ejemplo, Daemon, Stack};

/// What to run.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Sagas to start (campaigns and payouts, about half each).
    pub sagas: usize,
    /// Clients at once.
    pub clients: usize,
    /// Share of sagas that meet a business failure.
    pub failures: f64,
    /// Share of requests sent twice.
    pub duplicates: f64,
    /// Pause between faults.
    pub fault_every: Duration,
    /// The random seed (printed, so a run can be repeated).
    pub seed: u64,
    /// Each client's pause between two sagas (spreads a short run over the faults).
    pub pause: Duration,
    /// Clients stop once every fault has run (at most `sagas` still), rather than at `sagas`.
    pub stop_with_faults: bool,
}

impl Plan {
    /// The run of the test command: every fault once, a few hundred sagas.
    pub fn short() -> Plan {
        Plan {
            sagas: 600,
            clients: 4,
            failures: 0.2,
            duplicates: 0.1,
            fault_every: Duration::from_secs(2),
            seed: 7,
            pause: Duration::from_millis(800),
            stop_with_faults: true,
        }
    }
}

/// A saga the clients started: what they expect of it.
#[derive(Clone, Debug)]
struct Started {
    kind: &'static str,
    /// Campaign id, or payout id (`payout-…`).
    id: String,
    /// The business failure it was given, if any.
    refused: bool,
    partner: Option<String>,
}

/// The replicas' base URLs; a request goes to the first that answers.
#[derive(Clone)]
struct Front {
    replicas: Vec<String>,
    http: reqwest::Client,
}

impl Front {
    /// POSTs until a replica accepts (a replica killed or restarting, a 503 during an outage
    /// are retried on the other, as a client with an idempotency key would).
    async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut i = rand::random::<usize>();
        loop {
            let url = &self.replicas[i % self.replicas.len()];
            let mut req = self.http.post(format!("{url}{path}")).json(body).timeout(Duration::from_secs(20));
            if let Some(k) = key {
                req = req.header("Idempotency-Key", k);
            }
            if let Ok(res) = req.send().await {
                let status = res.status();
                if !status.is_server_error() {
                    return (status, res.json().await.unwrap_or(Value::Null));
                }
            }
            assert!(Instant::now() < deadline, "no replica accepted POST {path} for 180 s");
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// GETs a view's entry until its `estado` is not `pending`: a view is updated by the
    /// projector after its saga ends, so it may lag the saga log by a moment.
    async fn settled(&self, path: &str, pending: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.get(path).await;
            if v["estado"] != pending || Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn get(&self, path: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        let mut i = 0;
        loop {
            let url = &self.replicas[i % self.replicas.len()];
            if let Ok(res) = self.http.get(format!("{url}{path}")).timeout(Duration::from_secs(20)).send().await {
                if res.status().is_success() {
                    return res.json().await.unwrap();
                }
            }
            assert!(Instant::now() < deadline, "no replica answered GET {path} for 180 s");
            i += 1;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// One client: starts sagas until `plan.sagas` have started.
async fn client(
    front: Front,
    cliente: String,
    partners: Arc<Vec<String>>,
    next: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    plan: Plan,
    seed: u64,
) -> Vec<Started> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let _ = cliente;
    loop {
        if plan.stop_with_faults && stop.load(Ordering::SeqCst) {
            return out;
        }
        let n = next.fetch_add(1, Ordering::SeqCst);
        if n >= plan.sagas {
            return out;
        }
        tokio::time::sleep(plan.pause).await;
        let refused = rng.gen_bool(plan.failures);
        let twice = rng.gen_bool(plan.duplicates);
        if n.is_multiple_of(2) {
            let mut body = ejemplo(1);
            if refused {
                // A refusal at a random step: marca, influencer or tracking.
                match rng.gen_range(0..3) {
                    0 => body["marca"]["id_marca"] = json!("999e4567-e89b-12d3-a456-426614174000"),
                    1 => body["influencers"][1]["seguidores"] = json!(10),
                    _ => body["fecha_fin"] = json!("2028-01-01T00:00:00"),
                }
            }
            let key = Uuid::new_v4().to_string();
            let (status, a) = front.post("/afiliaciones/campana", &body, Some(&key)).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{a}");
            let id = a["id_campana"].as_str().unwrap().to_owned();
            if twice {
                let (status, b) = front.post("/afiliaciones/campana", &body, Some(&key)).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{b}");
                assert_eq!(b["id_campana"].as_str(), Some(id.as_str()), "the same key answers the same campaign");
            }
            out.push(Started { kind: "crear_campana", id, refused, partner: None });
        } else {
            let partner = partners[rng.gen_range(0..partners.len())].clone();
            let mut body = json!({
                "partner_id": partner, "cycle_id": format!("c-{}", Uuid::new_v4().simple()),
                "total_amount": 150.25, "currency": "USD",
                "payment_method_type": "CARD", "payment_method_mask": "****1234" });
            if refused {
                // A refusal at a random step: pagos (a cycle already paid is not random enough,
                // so the provider's two refusals and its limit).
                match rng.gen_range(0..2) {
                    0 => body["payment_method_mask"] = json!("****0002"),
                    _ => body["total_amount"] = json!(200_000.0),
                }
            } else if rng.gen_bool(0.1) {
                // A transient answer, retried: not a failure.
                body["payment_method_mask"] = json!("****0119");
            }
            let (status, a) = front.post("/pagos/pagar", &body, None).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{a}");
            let id = a["id"].as_str().unwrap().to_owned();
            if twice {
                let (status, b) = front.post("/pagos/pagar", &body, None).await;
                assert_eq!(status, StatusCode::ACCEPTED, "{b}");
                assert_eq!(b["id"].as_str(), Some(id.as_str()), "the same payout request answers the same payout");
            }
            out.push(Started { kind: "procesar_pago", id, refused, partner: Some(partner) });
        }
    }
}

/// A fault, as injected.
#[derive(Debug)]
struct Fault {
    what: String,
    at_ms: u128,
    took_ms: u128,
}

fn script(name: &str, cmd: &str) {
    let path = format!("{}/../scripts/{name}", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(&path).arg(cmd).output().unwrap();
    assert!(out.status.success(), "{path} {cmd}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Injects every fault of the schedule in turn, `every` apart: each replica killed twice, each
/// worker once, two participants stopped past their step timeout, the broker and PostgreSQL
/// restarted once.
async fn faults(stack: &mut Stack, b: &mut Daemon, every: Duration) -> Vec<Fault> {
    let t0 = Instant::now();
    let mut out = Vec::new();
    let names: Vec<String> = stack.workers.iter().map(|w| w.name.clone()).collect();
    let mut schedule: Vec<String> = vec!["kill -9 orchestrator A".into(), "SIGSTOP tracking 5 s".into()];
    schedule.extend(names.iter().map(|n| format!("kill -9 {n}")));
    schedule.extend(["kill -9 orchestrator B".into(), "restart broker".into(), "kill -9 orchestrator A".into()]);
    schedule.extend(["restart postgres".into(), "SIGSTOP proveedor 5 s".into(), "kill -9 orchestrator B".into()]);
    for what in schedule {
        tokio::time::sleep(every).await;
        let started = Instant::now();
        let at_ms = t0.elapsed().as_millis();
        match what.as_str() {
            "kill -9 orchestrator A" => {
                stack.orchestrator.kill9();
                tokio::time::sleep(Duration::from_secs(1)).await;
                stack.orchestrator.spawn();
                stack.orchestrator.ready().await;
            }
            "kill -9 orchestrator B" => {
                b.kill9();
                tokio::time::sleep(Duration::from_secs(1)).await;
                b.spawn();
                b.ready().await;
            }
            "restart broker" => {
                script("pulsar.sh", "stop");
                script("pulsar.sh", "start");
            }
            "restart postgres" => {
                script("postgres.sh", "stop");
                script("postgres.sh", "start");
            }
            s if s.starts_with("SIGSTOP ") => {
                let name = s.split(' ').nth(1).unwrap();
                stack.worker(name).signal("STOP");
                tokio::time::sleep(Duration::from_secs(5)).await;
                stack.worker(name).signal("CONT");
            }
            s => {
                let name = s.trim_start_matches("kill -9 ");
                let w = stack.worker_mut(name);
                w.kill9();
                w.spawn();
                w.ready().await;
            }
        }
        out.push(Fault { what, at_ms, took_ms: started.elapsed().as_millis() });
    }
    out
}

/// The figures and the invariants' results.
pub struct Report {
    /// Lines to print.
    pub lines: Vec<String>,
    /// Invariants that did not hold.
    pub broken: Vec<String>,
}

/// Runs `plan` on a fresh stack and checks it.
pub async fn run(plan: Plan) -> Report {
    let t0 = Instant::now();
    let mut stack = Stack::start().await;
    let port = common::free_port();
    let mut env = stack.orchestrator.env.clone();
    env.insert("ALPES__HTTP".into(), format!("127.0.0.1:{port}"));
    let dir = stack.orchestrator.log.parent().unwrap().to_owned();
    let mut b = Daemon::new("orchestrator-b", stack.orchestrator.program.clone(), &["distributed"], env, port, &dir);
    b.spawn();
    b.ready().await;
    let front = Front { replicas: vec![stack.orchestrator.url(), b.url()], http: stack.http.clone() };
    let cliente = stack.worker("cliente").url();
    let mut partners = Vec::new();
    for i in 0..20 {
        let id = format!("partner-caos-{i}");
        let body = json!({ "id": id, "nombre": format!("Socio {i}"), "email": format!("{id}@caos.example.com"),
                           "cedula": "1234567890", "fecha_nacimiento": "1990-05-15" });
        let res = stack.http.post(format!("{cliente}/cliente/registrar")).json(&body).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        partners.push(id);
    }
    let partners = Arc::new(partners);
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..plan.clients)
        .map(|i| {
            tokio::spawn(client(
                front.clone(),
                cliente.clone(),
                partners.clone(),
                next.clone(),
                stop.clone(),
                plan.clone(),
                plan.seed * 1000 + i as u64,
            ))
        })
        .collect();
    let injected = faults(&mut stack, &mut b, plan.fault_every).await;
    stop.store(true, Ordering::SeqCst);
    let mut started = Vec::new();
    for c in clients {
        started.extend(c.await.unwrap());
    }
    let driven = t0.elapsed();

    // Every saga ends.
    let mut broken = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    let counts = loop {
        let l = front.get("/sagas?limite=1").await;
        let c = l["por_estado"].clone();
        let open = ["running", "compensating"].iter().map(|s| c[*s].as_i64().unwrap_or(0)).sum::<i64>();
        if open == 0 || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let settled = t0.elapsed();
    let total: i64 = counts.as_object().unwrap().values().map(|v| v.as_i64().unwrap_or(0)).sum();
    for s in ["running", "compensating", "stuck", "aborted"] {
        if counts[s].as_i64().unwrap_or(0) > 0 {
            broken.push(format!("{} sagas {s} at the end", counts[s]));
        }
    }
    if total as usize != started.len() {
        broken.push(format!("{} sagas in the log, {} started", total, started.len()));
    }

    // Each saga's outcome as expected, its effects exactly once, compensations in reverse.
    let mut campaigns = Vec::new();
    let mut completed_per_partner: HashMap<String, i64> = HashMap::new();
    let mut outcomes: HashMap<(&str, bool), usize> = HashMap::new();
    let mut by_saga: HashMap<Uuid, String> = HashMap::new();
    // Sagas not meant to fail that gave up on a step during a fault and were compensated: allowed
    // (an unknown outcome after the retries is a failure), counted.
    let mut gave_up = 0;
    for s in &started {
        if s.kind == "crear_campana" {
            let c = front.settled(&format!("/afiliaciones/campana/{}", s.id), "pendiente").await;
            let ok = c["estado"] == "activa";
            if !ok && !s.refused && c["codigo"] == "gave_up" {
                gave_up += 1;
            } else if ok == s.refused {
                broken.push(format!("campaign {} is {} (refused: {}): {c}", s.id, c["estado"], s.refused));
            }
            *outcomes.entry((s.kind, ok)).or_default() += 1;
            by_saga.insert(
                c["saga_id"].as_str().unwrap().parse().unwrap(),
                if ok { "CampanaCreada" } else { "CampanaRechazada" }.into(),
            );
            check_reverse(&front, c["saga_id"].as_str().unwrap(), &mut broken).await;
            campaigns.push((s.id.clone(), c, 100, 2));
        } else {
            let p = front.settled(&format!("/pagos/{}", s.id), "PENDIENTE").await;
            let ok = p["estado"] == "COMPLETADO";
            if !ok && !s.refused && p["codigo"] == "gave_up" {
                gave_up += 1;
            } else if ok == s.refused || !(ok || p["estado"] == "FALLIDO") {
                broken.push(format!("payout {} is {} (refused: {}): {}", s.id, p["estado"], s.refused, p["codigo"]));
            }
            if ok {
                *completed_per_partner.entry(s.partner.clone().unwrap()).or_default() += 1;
            }
            *outcomes.entry((s.kind, ok)).or_default() += 1;
            by_saga.insert(
                p["saga_id"].as_str().unwrap().parse().unwrap(),
                if ok { "PagoCompletado" } else { "PagoFallido" }.into(),
            );
            check_reverse(&front, p["saga_id"].as_str().unwrap(), &mut broken).await;
        }
    }
    // Payout effects: each partner credited once per completed payout; pagos and the provider agree.
    let cliente_db = stack.db("cliente").await;
    let pagos_db = stack.db("pagos").await;
    let proveedor_db = stack.db("proveedor").await;
    for partner in partners.iter() {
        let want = completed_per_partner.get(partner).copied().unwrap_or(0);
        let credited: i64 = sqlx::query_scalar("SELECT total_pagos FROM cliente WHERE id = $1")
            .bind(partner)
            .fetch_one(&cliente_db)
            .await
            .unwrap();
        let paid: i64 = sqlx::query_scalar("SELECT count(*) FROM pago WHERE id_partner = $1 AND estado = 'COMPLETADO'")
            .bind(partner)
            .fetch_one(&pagos_db)
            .await
            .unwrap();
        let charged: i64 =
            sqlx::query_scalar("SELECT count(*) FROM operacion WHERE id_partner = $1 AND estado = 'AUTORIZADA'")
                .bind(partner)
                .fetch_one(&proveedor_db)
                .await
                .unwrap();
        if (credited, paid, charged) != (want, want, want) {
            broken.push(format!(
                "partner {partner}: {want} payouts completed, credited {credited}, paid {paid}, charged {charged}"
            ));
        }
    }
    // One integration event per saga, matching its outcome (at least once on the wire: the
    // copies of one event share its id).
    let mut events: HashMap<Uuid, (HashSet<Uuid>, String)> = HashMap::new();
    for e in stack.events::<schemas::EventoCampana>().await {
        let entry = events.entry(e.saga_id).or_insert_with(|| (HashSet::new(), e.message_type.clone()));
        entry.0.insert(e.id_evento);
    }
    for e in stack.events::<schemas::EventoPago>().await {
        let entry = events.entry(e.saga_id).or_insert_with(|| (HashSet::new(), e.message_type.clone()));
        entry.0.insert(e.id_evento);
    }
    for (saga, want) in &by_saga {
        match events.get(saga) {
            None => broken.push(format!("saga {saga}: no integration event")),
            Some((ids, kind)) if ids.len() != 1 || kind != want => {
                broken.push(format!("saga {saga}: {} distinct events, {kind}, expected one {want}", ids.len()))
            }
            Some(_) => {}
        }
    }
    // Nothing unacknowledged, and what was dead-lettered.
    let (backlog, dead) = stack.topics().await;
    for (topic, n) in &backlog {
        if *n > 0 {
            broken.push(format!("{topic}: {n} messages unacknowledged"));
        }
    }
    let dead_total: i64 = dead.values().sum();

    let mut lines = vec![
        format!("chaos run: {} sagas by {} clients, {} replicas, seed {}", started.len(), plan.clients, 2, plan.seed),
        format!(
            "  driven in {:.1} s, every saga final after {:.1} s ({:.1} sagas/s under faults)",
            driven.as_secs_f64(),
            settled.as_secs_f64(),
            started.len() as f64 / settled.as_secs_f64()
        ),
        format!("  final: {counts}"),
    ];
    for ((kind, ok), n) in outcomes {
        lines.push(format!("  {kind}: {n} {}", if ok { "succeeded" } else { "refused and compensated" }));
    }
    lines.push(format!("  gave up on a step under faults, compensated: {gave_up}"));
    for f in &injected {
        lines.push(format!("  fault at {:>6} ms: {} ({} ms until back)", f.at_ms, f.what, f.took_ms));
    }
    lines.push(format!("  dead letters: {dead_total} ({dead:?})"));
    lines.push(format!(
        "  invariants: {}",
        if broken.is_empty() { "all hold".to_owned() } else { format!("{} broken", broken.len()) }
    ));
    for line in &lines {
        println!("{line}");
    }
    for b in &broken {
        println!("  BROKEN: {b}");
    }
    // Last, the campaigns' effects in marca, influencer and tracking (budgets exact): this check
    // stops at the first difference, with it.
    stack.check_effects(&campaigns).await;
    println!("  campaign effects: each active campaign's budget, bookings and context held once, the rest released; Nike's budget exact");
    drop(b);
    Report { lines, broken }
}

/// A compensated saga's compensations ran in reverse: the first step's compensation is sent last,
/// after every other compensation's reply.
async fn check_reverse(front: &Front, saga: &str, broken: &mut Vec<String>) {
    let s = front.get(&format!("/sagas/{saga}")).await;
    let history = s["historia"].as_array().unwrap();
    let steps: Vec<String> =
        history[0]["event"]["steps"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    let sent: Vec<(usize, usize)> = history
        .iter()
        .enumerate()
        .filter(|(_, e)| {
            e["event"]["type"] == "command_sent" && e["event"]["command"]["correlation"]["kind"] == "compensation"
        })
        .map(|(i, e)| (i, steps.iter().position(|n| *n == e["event"]["command"]["correlation"]["step_name"]).unwrap()))
        .collect();
    let first_step_sent = sent.iter().filter(|(_, step)| *step == 0).map(|(i, _)| *i).min();
    if let Some(first) = first_step_sent {
        if sent.iter().any(|(i, step)| *step > 0 && *i > first) {
            broken.push(format!("saga {saga}: a later step compensated after the first step's compensation"));
        }
    }
}
