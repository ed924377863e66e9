//! CrearCampaña end to end as it is deployed: the orchestrator and every worker as separate
//! processes (the `orchestrator` and `worker` binaries), each with its own PostgreSQL database,
//! talking over a real Apache Pulsar broker. Each test gets its own Pulsar namespace and its own
//! databases, so tests never see each other's messages or rows.
//!
//! Needs the `pulsar` feature (scripts/test.sh runs `cargo test --workspace --all-features`), a
//! current build of the `worker` package's binary (that command builds it first; see
//! `common::worker_bin`), PostgreSQL (`SAGA_TEST_DATABASE_URL`) and Pulsar (`SAGA_TEST_PULSAR_URL`,
//! `SAGA_TEST_PULSAR_ADMIN_URL`); without them the tests fail, saying so.

#![cfg(feature = "pulsar")]
// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use casos::pair;
use common::{ejemplo, env, wait_for, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_across_processes_and_campana_creada_is_on_the_topic() {
    let stack = Stack::start().await;
    let (status, accepted) = stack.post(&ejemplo(15000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id_campana"].as_str().unwrap().to_owned();
    let saga = accepted["saga_id"].as_str().unwrap().to_owned();
    let c = stack.settled(&id).await;
    assert_eq!(c["estado"], "activa", "{c}");
    assert_eq!(
        stack.commands(&saga).await,
        vec![
            pair("reservar_presupuesto", "action"),
            pair("reservar_influencers", "action"),
            pair("abrir_tracking", "action")
        ]
    );
    stack.check_effects(&[(id.clone(), c, 1_500_000, 2)]).await;

    let evento = stack.event_of::<schemas::EventoCampana>(&saga).await;
    assert_eq!(evento.message_type, "CampanaCreada");
    let schemas::Evento::CampanaCreada(creada) = evento.evento else { panic!("expected CampanaCreada") };
    assert_eq!(creada.id_campana.to_string(), id);
    assert_eq!(creada.presupuesto_centavos, schemas::Centavos(1_500_000));
    assert_eq!(creada.influencers.len(), 2);
    assert!(creada.influencers.iter().all(|i| !i.codigo_tracking.is_empty()));

    // The saga's ids crossed the process boundary in the message properties: each worker's
    // span for the command carries the saga id, its step and its attempt.
    for (worker, step) in [
        (stack.worker("marca"), "reservar_presupuesto"),
        (stack.worker("influencer"), "reservar_influencers"),
        (stack.worker("tracking"), "abrir_tracking"),
    ] {
        let logs = worker.logs();
        let line = logs
            .lines()
            .find(|l| l.contains(&saga) && l.contains(step))
            .unwrap_or_else(|| panic!("{}: no log line with saga {saga} and step {step}:\n{logs}", worker.name));
        let v: Value = serde_json::from_str(line).unwrap();
        let span = v["span"].clone();
        assert_eq!(span["saga_id"], json!(saga), "{line}");
        assert_eq!(span["step"], json!(step), "{line}");
        assert_eq!(span["attempt"], json!(1), "{line}");
    }

    // Metrics moved on both sides of the broker.
    let scrape =
        |url: String| async move { reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap() };
    let orchestrator = scrape(stack.orchestrator.url()).await;
    assert!(
        orchestrator.contains("saga_finished_total{saga=\"crear_campana\",outcome=\"completed\"} 1"),
        "{orchestrator}"
    );
    assert!(orchestrator.contains("transport_messages_published_total{transport=\"pulsar\""), "{orchestrator}");
    let marca = scrape(stack.worker("marca").url()).await;
    assert!(marca.contains("participant_commands_total{participant=\"comandos.marca\",kind=\"action\",disposition=\"applied\",outcome=\"success\"} 1"), "{marca}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_business_failure_compensates_exactly_the_steps_done_in_reverse() {
    let stack = Stack::start().await;
    let mut effects = Vec::new();
    for casos::Fallo { solicitud, paso: step, codigo: code, compensaciones: compensations } in
        casos::fallos(|| ejemplo(15000))
    {
        let (status, accepted) = stack.post(&solicitud, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = accepted["id_campana"].as_str().unwrap().to_owned();
        let saga = accepted["saga_id"].as_str().unwrap().to_owned();
        let c = stack.settled(&id).await;
        assert_eq!(c["estado"], "rechazada", "{c}");
        assert_eq!((c["paso_fallido"].as_str(), c["codigo"].as_str()), (Some(step), Some(code)), "{c}");
        let sent: Vec<_> = stack.commands(&saga).await.into_iter().filter(|(_, k)| k == "compensation").collect();
        assert_eq!(sent, compensations, "failure at {step}");
        let evento = stack.event_of::<schemas::EventoCampana>(&saga).await;
        let schemas::Evento::CampanaRechazada(rechazada) = evento.evento else { panic!("expected CampanaRechazada") };
        assert_eq!((rechazada.paso_fallido.as_str(), rechazada.codigo.as_str()), (step, code));
        effects.push((id, c, 1_500_000, 2));
    }
    // Nothing is held anywhere: every reservation made was released.
    stack.check_effects(&effects).await;
}

/// Starts `n` campaigns of 100.00 each, about a third of them refused by tracking.
async fn start_many(stack: &Stack, n: usize) -> Vec<(String, String)> {
    let mut started = Vec::new();
    for i in 0..n {
        let mut body = ejemplo(100);
        if i % 3 == 2 {
            body["fecha_fin"] = json!("2028-01-01T00:00:00");
        }
        let (status, accepted) = stack.post(&body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        started.push((
            accepted["id_campana"].as_str().unwrap().to_owned(),
            accepted["saga_id"].as_str().unwrap().to_owned(),
        ));
    }
    started
}

async fn settle_all(stack: &Stack, started: &[(String, String)]) -> Vec<(String, Value, i64, usize)> {
    let mut out = Vec::new();
    for (i, (id, _)) in started.iter().enumerate() {
        let c = stack.settled(id).await;
        let expected = if i % 3 == 2 { "rechazada" } else { "activa" };
        assert_eq!(c["estado"], expected, "{c}");
        out.push((id.clone(), c, 10_000, 2));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_sagas_and_restarted_ends_every_saga() {
    let mut stack = Stack::start().await;
    // tracking is frozen, so every saga stops mid-way with its tracking step in flight (its
    // sibling, influencer, answers meanwhile).
    stack.worker("tracking").signal("STOP");
    let started = start_many(&stack, 24).await;
    wait_for(Duration::from_secs(30), "every saga waiting on tracking", || async {
        for (_, saga) in &started {
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            let s = &s["saga"];
            if s["status"] != "running" || !waits_on(s, "comandos.tracking") {
                return false;
            }
        }
        true
    })
    .await;
    stack.orchestrator.kill9();
    // tracking wakes up and answers while the orchestrator is dead: the replies wait on the
    // orchestrator's durable subscription.
    stack.worker("tracking").signal("CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.orchestrator.spawn();
    stack.orchestrator.ready().await;
    let effects = settle_all(&stack, &started).await;
    stack.check_effects(&effects).await;
    // Every saga is final in the log too, and each has exactly one event on the topic.
    let (_, sagas) = stack.get("/sagas?limite=100").await;
    let sagas = sagas["sagas"].as_array().unwrap();
    assert_eq!(sagas.len(), started.len());
    assert!(sagas.iter().all(|s| s["status"] == "completed" || s["status"] == "compensated"), "{sagas:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = stack.events::<schemas::EventoCampana>().await;
        let mut per_saga: HashMap<Uuid, usize> = HashMap::new();
        for e in &events {
            *per_saga.entry(e.saga_id).or_default() += 1;
        }
        if per_saga.len() == started.len() {
            // At least once: a relay killed between publishing and marking publishes again,
            // with the same id_evento (consumers deduplicate on it).
            let distinct: std::collections::HashSet<Uuid> = events.iter().map(|e| e.id_evento).collect();
            assert_eq!(distinct.len(), started.len());
            break;
        }
        assert!(Instant::now() < deadline, "{} of {} sagas have their event", per_saga.len(), started.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_and_restarted_applies_no_effect_twice() {
    let mut stack = Stack::start().await;
    // marca is frozen while it works through a stream of commands (maybe inside a transaction,
    // maybe between its commit and its reply), then killed: what it held unacknowledged comes
    // back to the new process.
    let first = start_many(&stack, 12).await;
    stack.worker("marca").signal("STOP");
    let second = start_many(&stack, 6).await;
    // The second batch's first step is marca's: those sagas wait on it, so commands were sent to
    // marca and not answered when it dies.
    wait_for(Duration::from_secs(30), "sagas waiting on marca", || async {
        for (_, saga) in &second {
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            if !waits_on(&s["saga"], "comandos.marca") {
                return false;
            }
        }
        true
    })
    .await;
    stack.worker_mut("marca").kill9();
    let third = start_many(&stack, 6).await;
    stack.worker_mut("marca").spawn();
    stack.worker_mut("marca").ready().await;
    let started: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    let effects = settle_all(&stack, &started).await;
    // One reservation per campaign and the brand's budget moved once per active campaign.
    stack.check_effects(&effects).await;
    let marca = stack.db("marca").await;
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM reserva_presupuesto").fetch_one(&marca).await.unwrap();
    assert_eq!(rows as usize, started.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_post_with_the_same_idempotency_key_starts_one_saga() {
    let stack = Stack::start().await;
    let body = ejemplo(15000);
    let (first_status, first) = stack.post(&body, Some("crear-verano-2024")).await;
    let (second_status, second) = stack.post(&body, Some("crear-verano-2024")).await;
    assert_eq!((first_status, second_status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(
        (&first["id_campana"], &first["saga_id"]),
        (&second["id_campana"], &second["saga_id"]),
        "{first} {second}"
    );
    stack.settled(first["id_campana"].as_str().unwrap()).await;
    let (_, sagas) = stack.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
    // The same key with another body is a client error, not a second saga.
    let (status, answer) = stack.post(&ejemplo(20000), Some("crear-verano-2024")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (_, sagas) = stack.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_a_command_topic_is_dead_lettered_and_the_worker_goes_on() {
    let stack = Stack::start().await;
    let config = saga_pulsar::PulsarConfig::new(env("SAGA_TEST_PULSAR_URL"), "alpes", &stack.namespace, "e2e");
    let raw = saga_pulsar::PulsarTransport::new(config, std::sync::Arc::new(orchestrator::sagas::codec()));
    let properties = HashMap::from([("saga_id".to_owned(), "00000000-0000-0000-0000-000000000042".to_owned())]);
    raw.publish("comandos.marca", None, b"\x00\x01not avro".to_vec(), properties).await.unwrap();

    // marca keeps serving: a campaign completes after the poison.
    let (_, accepted) = stack.post(&ejemplo(15000), None).await;
    let c = stack.settled(accepted["id_campana"].as_str().unwrap()).await;
    assert_eq!(c["estado"], "activa", "{c}");

    // The poison is on comandos.marca.dlq, byte for byte, with the reason.
    let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
    let url = format!(
        "{admin}/admin/v2/persistent/alpes/{}/comandos.marca.dlq/examinemessage?initialPosition=earliest&messagePosition=1",
        stack.namespace
    );
    let res = stack.http.get(url).send().await.unwrap();
    assert!(res.status().is_success(), "nothing on comandos.marca.dlq: {}", res.status());
    let reason = res.headers()["X-Pulsar-PROPERTY-dead_letter_reason"].to_str().unwrap().to_owned();
    assert!(reason.starts_with("undecodable"), "{reason}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"\x00\x01not avro");
    let metrics = reqwest::get(format!("{}/metrics", stack.worker("marca").url())).await.unwrap().text().await.unwrap();
    let topic = format!("persistent://alpes/{}/comandos.marca", stack.namespace);
    assert!(
        metrics
            .contains(&format!("transport_messages_dead_lettered_total{{transport=\"pulsar\",topic=\"{topic}\"}} 1")),
        "{metrics}"
    );
}

/// True when the saga state `s` has a command for `participant` in flight.
fn waits_on(s: &serde_json::Value, participant: &str) -> bool {
    s["in_flight"].as_array().is_some_and(|f| f.iter().any(|f| f["command"]["participant"] == participant))
}
