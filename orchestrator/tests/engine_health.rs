//! `/health` tells the truth about the engine: in the embedded mode, a timer that panics on
//! every pass (a bug, injected) makes `/health` answer 503 with `engine: down`; once the panics
//! stop, the engine's supervisor has restarted the timer, `/health` is 200 again and a campaign
//! completes.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator::embedded::{self, MARCAS_POR_DEFECTO};
use reqwest::StatusCode;
use saga_core::inject::{FaultPlan, PanicSite};
use serde_json::{json, Value};

async fn health(base: &str) -> (StatusCode, Value) {
    let res = reqwest::get(format!("{base}/health")).await.unwrap();
    (res.status(), res.json().await.unwrap_or(Value::Null))
}

/// Polls `/health` (at most 20 s) until it answers `want`.
async fn health_becomes(base: &str, want: StatusCode) -> Value {
    let mut last = (StatusCode::OK, Value::Null);
    for _ in 0..400 {
        last = health(base).await;
        if last.0 == want {
            return last.1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/health never answered {want}; last: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_while_the_engine_timer_keeps_panicking_and_200_once_it_recovers() {
    let faults = FaultPlan::none().panic_at(PanicSite::TimerPass, u32::MAX);
    let dir = std::env::temp_dir().join(format!("alpes-health-{}", uuid::Uuid::new_v4().simple()));
    let config = embedded::Config {
        data_dir: dir,
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: faults.clone(),
        access: Default::default(),
    };
    let running = embedded::start(config, None).await.unwrap();
    let base = format!("http://{}", running.addr);

    let body = health_becomes(&base, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["engine"], "down", "{body}");
    assert_eq!(body["database"], "ok", "{body}");

    faults.stop_panics();
    let body = health_becomes(&base, StatusCode::OK).await;
    assert_eq!(body["engine"], "ok", "{body}");

    let request = json!({ "nombre": "Campaña", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
        "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100,
        "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
        "influencers": [ { "nombre": "Ana", "plataforma": "Instagram", "seguidores": 150000, "categoria": "x" } ] });
    let http = reqwest::Client::new();
    let res = http.post(format!("{base}/afiliaciones/campana")).json(&request).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    let id = accepted["id_campana"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        let c: Value =
            http.get(format!("{base}/afiliaciones/campana/{id}")).send().await.unwrap().json().await.unwrap();
        if c["estado"] != "pendiente" {
            assert_eq!(c["estado"], "activa", "{c}");
            running.stop().await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the campaign did not settle after the engine recovered");
}
