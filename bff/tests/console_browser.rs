//! The operators' console in a real headless browser (Debian's `chromium`, driven through
//! `chromedriver` by `console_browser.py`): the saga list, a compensated saga's timeline with its
//! compensations in reverse order, a stuck saga retried from the keyboard until it finishes, a
//! saga's dead letter redriven.
//!
//! This test prepares the sagas in the embedded mode: a compensation that keeps failing leaves a
//! saga stuck; the services restart without the fault (the cause fixed); a second refused
//! campaign compensates; a third completes after marca dead-lettered its first command. Then the BFF serves the console over them and the browser acts.
//! Screenshots land in `target/console-screenshots/`.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use saga_core::inject::FaultPlan;
use serde_json::{json, Value};

async fn services(dir: &Path, faults: FaultPlan) -> Running {
    // Short step timeouts: a dead-lettered command's step is retried within a second.
    let retry = saga_core::definition::RetryPolicy { initial_backoff: Duration::from_millis(50), ..Default::default() };
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: orchestrator::sagas::StepSettings {
            timeout: Duration::from_millis(800),
            retry: retry.clone(),
            compensation_retry: retry,
        },
        access: Default::default(),
        faults,
    };
    embedded::start(config, None).await.unwrap()
}

/// A campaign whose second influencer is below the minimum audience: influencer refuses, so
/// tracking (run beside it) and marca are compensated, in that order.
fn refused() -> Value {
    let mut c = accepted();
    c["influencers"][1]["seguidores"] = json!(10);
    c
}

/// A campaign every participant accepts.
fn accepted() -> Value {
    json!({ "nombre": "Campaña consola", "descripcion": "", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100,
      "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
      "influencers": [
        { "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
        { "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "TikTok", "seguidores": 300000, "categoria": "Fitness" } ] })
}

/// Starts campaign `body` on `running` and waits until its saga rests in `status`.
async fn saga_resting_in(running: &Running, body: Value, status: &str) -> String {
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let res = http.post(format!("{base}/afiliaciones/campana")).json(&body).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::ACCEPTED);
    let started: Value = res.json().await.unwrap();
    let saga = started["saga_id"].as_str().unwrap().to_owned();
    for _ in 0..600 {
        let s: Value = http.get(format!("{base}/sagas/{saga}")).send().await.unwrap().json().await.unwrap();
        if s["saga"]["status"] == status {
            return saga;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("saga {saga} never {status}");
}

fn screenshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_a_timeline_and_retries_a_stuck_saga_in_a_browser() {
    let dir = std::env::temp_dir().join(format!("alpes-consola-{}", uuid::Uuid::new_v4().simple()));
    let broken = services(&dir, FaultPlan::none().fail_compensation("reservar_presupuesto")).await;
    let stuck = saga_resting_in(&broken, refused(), "stuck").await;
    broken.stop().await;

    // The cause fixed; marca now dead-letters each saga's first budget command once (its retry
    // goes through), so a completed saga has a dead letter to redrive.
    let svc = services(&dir, FaultPlan::none().dead_letter_command("reservar_presupuesto", 1)).await;
    let compensated = saga_resting_in(&svc, refused(), "compensated").await;
    let with_dead_letter = saga_resting_in(&svc, accepted(), "completed").await;
    let http = reqwest::Client::new();
    for _ in 0..100 {
        let s: Value = http
            .get(format!("http://{}/sagas/{with_dead_letter}", svc.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["dead_letters"].as_array().is_some_and(|d| !d.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("http://{}", svc.addr);
    let mut config = bff::Config::with_backends(&url, &url);
    config.http = "127.0.0.1:0".parse().unwrap();
    let bff = bff::start(&config).await.unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser.py");
    let args = vec![
        script.display().to_string(),
        "--url".into(),
        format!("http://{}", bff.addr),
        "--stuck".into(),
        stuck,
        "--compensated".into(),
        compensated,
        "--steps".into(),
        "reservar_presupuesto,reservar_influencers,abrir_tracking".into(),
        "--shots".into(),
        screenshots().display().to_string(),
        "--dead-letter-saga".into(),
        with_dead_letter,
    ];
    let output = tokio::process::Command::new("python3").args(&args).output().await.unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{out}");
    assert!(
        output.status.success(),
        "the browser test failed (needs Debian's chromium and chromium-driver, and the PyPI \
         package selenium: scripts/test.sh installs them):\n{out}\n{err}"
    );
    assert!(out.contains("console: every check passed"), "{out}");
    bff.stop().await;
    svc.stop().await;
}
