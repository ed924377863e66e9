//! The payout saga end to end as it is deployed: the orchestrator and every worker as separate
//! processes (the `orchestrator` and `worker` binaries), each with its own PostgreSQL database,
//! over a real Apache Pulsar broker, in a namespace of their own. The same cases as CrearCampaña's
//! (`e2e_pulsar.rs`): completion with its event on the topic, each failure compensating in
//! reverse, `kill -9` of the orchestrator and of a participant mid-saga, a duplicate request.
//!
//! Needs what `e2e_pulsar.rs` needs (the `pulsar` feature, a current `worker` binary, PostgreSQL
//! and Pulsar); without them the tests fail, saying so.

#![cfg(feature = "pulsar")]
// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{wait_for, Stack};
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

async fn registrar_cliente(stack: &Stack) -> String {
    let (id, body) = casos::cliente();
    let (status, c) = stack.post_to("cliente", "/cliente/registrar", &body).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    id
}

async fn pagar(stack: &Stack, body: &Value) -> (String, String) {
    let (status, accepted) = stack.post_to("orchestrator", "/pagos/pagar", body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    (accepted["id"].as_str().unwrap().to_owned(), accepted["saga_id"].as_str().unwrap().to_owned())
}

/// Polls a payout until it leaves `PENDIENTE`.
async fn settled(stack: &Stack, id: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (status, p) = stack.get(&format!("/pagos/{id}")).await;
        if status == StatusCode::OK && p["estado"] != "PENDIENTE" {
            return p;
        }
        assert!(std::time::Instant::now() < deadline, "payout {id} still pending after 90 s: {p}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn uuid_of(id: &str) -> Uuid {
    id.strip_prefix("payout-").unwrap().parse().unwrap()
}

/// Checks every service's records of `payouts` (id, completed?) of one partner: a completed
/// payout recorded once with its commission, sent once, credited once; a failed one marked
/// failed, its credit reverted, nothing left authorised at the provider.
async fn check_effects(stack: &Stack, partner: &str, payouts: &[(String, bool)]) {
    let pagos = stack.db("pagos").await;
    let proveedor = stack.db("proveedor").await;
    let cliente = stack.db("cliente").await;
    for (id, completed) in payouts {
        let id = uuid_of(id);
        let ledger: Vec<(String, i64)> = sqlx::query_as("SELECT estado, valor_menor FROM pago WHERE id_pago = $1")
            .bind(id)
            .fetch_all(&pagos)
            .await
            .unwrap();
        let commissions: Vec<(String, i64)> =
            sqlx::query_as("SELECT tipo, valor_menor FROM transaccion_pago WHERE id_pago = $1")
                .bind(id)
                .fetch_all(&pagos)
                .await
                .unwrap();
        let operations: Vec<(String,)> = sqlx::query_as("SELECT estado FROM operacion WHERE id_pago = $1")
            .bind(id)
            .fetch_all(&proveedor)
            .await
            .unwrap();
        let credits: (i64,) = sqlx::query_as("SELECT count(*) FROM pago_cliente WHERE id_pago = $1")
            .bind(id)
            .fetch_one(&cliente)
            .await
            .unwrap();
        if *completed {
            assert_eq!(ledger, vec![("COMPLETADO".to_owned(), 150_050)], "payout {id}");
            assert_eq!(commissions, vec![("COMISION".to_owned(), 15_005)], "payout {id}");
            assert_eq!(operations, vec![("AUTORIZADA".to_owned(),)], "payout {id}");
            assert_eq!(credits.0, 1, "payout {id}");
        } else {
            assert!(ledger.iter().all(|(e, _)| e == "FALLIDO") && ledger.len() <= 1, "payout {id}: {ledger:?}");
            assert!(operations.iter().all(|(e,)| e != "AUTORIZADA"), "payout {id}: {operations:?}");
            assert_eq!(credits.0, 0, "payout {id}");
        }
    }
    let completed = payouts.iter().filter(|(_, c)| *c).count() as i64;
    let (total,): (i64,) = sqlx::query_as("SELECT total_pagos FROM cliente WHERE id = $1")
        .bind(partner)
        .fetch_one(&cliente)
        .await
        .unwrap();
    assert_eq!(total, completed, "the client's count is its completed payouts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_completes_across_processes_and_pago_completado_is_on_the_topic() {
    let stack = Stack::start().await;
    let partner = registrar_cliente(&stack).await;
    let (id, saga) = pagar(&stack, &casos::pago(&partner)).await;
    let p = settled(&stack, &id).await;
    assert_eq!(p["estado"], "COMPLETADO", "{p}");
    assert!(casos::pasos_pago_completo(&stack.commands(&saga).await), "{p}");
    check_effects(&stack, &partner, &[(id.clone(), true)]).await;
    let evento = stack.event_of::<schemas::EventoPago>(&saga).await;
    let schemas::EventoDePago::PagoCompletado(completado) = evento.evento else { panic!("expected PagoCompletado") };
    assert_eq!(completado.id_pago, uuid_of(&id));
    assert_eq!(completado.solicitud.monto.valor_menor, 150_050);
    assert_eq!(completado.transacciones.len(), 1);
    assert_eq!(completado.total_pagos_cliente, 1);
    let metrics = reqwest::get(format!("{}/metrics", stack.orchestrator.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("saga_finished_total{saga=\"procesar_pago\",outcome=\"completed\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_refusal_compensates_the_steps_done_in_reverse() {
    let stack = Stack::start().await;
    let partner = registrar_cliente(&stack).await;
    let mut payouts = Vec::new();
    for casos::Fallo { solicitud, paso, codigo, compensaciones } in casos::fallos_pago(|| casos::pago(&partner)) {
        let (id, saga) = pagar(&stack, &solicitud).await;
        let p = settled(&stack, &id).await;
        assert_eq!(p["estado"], "FALLIDO", "{p}");
        assert_eq!((p["paso_fallido"].as_str(), p["codigo"].as_str()), (Some(paso), Some(codigo)), "{p}");
        let undone: Vec<_> = stack.commands(&saga).await.into_iter().filter(|(_, k)| k == "compensation").collect();
        assert_eq!(undone, compensaciones, "{codigo}");
        let evento = stack.event_of::<schemas::EventoPago>(&saga).await;
        let schemas::EventoDePago::PagoFallido(fallido) = evento.evento else { panic!("expected PagoFallido") };
        assert_eq!((fallido.paso_fallido.as_str(), fallido.codigo.as_str()), (paso, codigo));
        payouts.push((id, false));
    }
    // An unregistered partner starts nothing.
    let (status, answer) = stack.post_to("orchestrator", "/pagos/pagar", &casos::pago("nadie-registrado")).await;
    assert_eq!((status, answer["error"].as_str()), (StatusCode::BAD_REQUEST, Some("Partner no encontrado")));
    let (_, sagas) = stack.get("/sagas?limite=100").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), payouts.len());
    check_effects(&stack, &partner, &payouts).await;
}

/// Starts `n` payouts for `partner`, each for a cycle of its own.
async fn start_many(stack: &Stack, partner: &str, n: usize) -> Vec<(String, String)> {
    let mut started = Vec::new();
    for _ in 0..n {
        started.push(pagar(stack, &casos::pago(partner)).await);
    }
    started
}

async fn settle_all(stack: &Stack, started: &[(String, String)]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    for (id, _) in started {
        let p = settled(stack, id).await;
        assert_eq!(p["estado"], "COMPLETADO", "{p}");
        out.push((id.clone(), true));
    }
    out
}

/// True when saga `saga` has a command for `participant` in flight.
async fn waits_on(stack: &Stack, saga: &str, participant: &str) -> bool {
    let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
    s["saga"]["in_flight"].as_array().is_some_and(|f| f.iter().any(|f| f["command"]["participant"] == participant))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_payouts_and_restarted_ends_every_saga() {
    let mut stack = Stack::start().await;
    let partner = registrar_cliente(&stack).await;
    // The provider is frozen: every payout stops with its sending in flight (the client's credit,
    // its sibling, answers meanwhile).
    stack.worker("proveedor").signal("STOP");
    let started = start_many(&stack, &partner, 12).await;
    wait_for(Duration::from_secs(30), "every payout waiting on the provider", || async {
        for (_, saga) in &started {
            if !waits_on(&stack, saga, "comandos.proveedor").await {
                return false;
            }
        }
        true
    })
    .await;
    stack.orchestrator.kill9();
    stack.worker("proveedor").signal("CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.orchestrator.spawn();
    stack.orchestrator.ready().await;
    let payouts = settle_all(&stack, &started).await;
    check_effects(&stack, &partner, &payouts).await;
    for (_, saga) in &started {
        stack.event_of::<schemas::EventoPago>(saga).await;
    }
    let ids: HashSet<Uuid> = stack.events::<schemas::EventoPago>().await.iter().map(|e| e.id_evento).collect();
    assert_eq!(ids.len(), started.len(), "one distinct event per saga");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_killed_mid_payouts_applies_no_effect_twice() {
    let mut stack = Stack::start().await;
    let partner = registrar_cliente(&stack).await;
    let first = start_many(&stack, &partner, 6).await;
    // pagos is frozen while commands stream in, then killed: what it held unacknowledged comes
    // back to the new process.
    stack.worker("pagos").signal("STOP");
    let second = start_many(&stack, &partner, 6).await;
    wait_for(Duration::from_secs(30), "payouts waiting on pagos", || async {
        for (_, saga) in &second {
            if !waits_on(&stack, saga, "comandos.pagos").await {
                return false;
            }
        }
        true
    })
    .await;
    stack.worker_mut("pagos").kill9();
    let third = start_many(&stack, &partner, 4).await;
    stack.worker_mut("pagos").spawn();
    stack.worker_mut("pagos").ready().await;
    let started: Vec<_> = first.into_iter().chain(second).chain(third).collect();
    let payouts = settle_all(&stack, &started).await;
    check_effects(&stack, &partner, &payouts).await;
    let pagos = stack.db("pagos").await;
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM transaccion_pago").fetch_one(&pagos).await.unwrap();
    assert_eq!(rows as usize, started.len(), "one commission per payout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_payout_requested_twice_is_paid_once() {
    let stack = Stack::start().await;
    let partner = registrar_cliente(&stack).await;
    let body = casos::pago(&partner);
    let (first, saga) = pagar(&stack, &body).await;
    let (status, again) = stack.post_to("orchestrator", "/pagos/pagar", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!((again["id"].as_str(), again["existente"].as_bool()), (Some(first.as_str()), Some(true)));
    assert_eq!(again["saga_id"].as_str(), Some(saga.as_str()));
    settled(&stack, &first).await;
    let (_, sagas) = stack.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
    check_effects(&stack, &partner, &[(first, true)]).await;
}
