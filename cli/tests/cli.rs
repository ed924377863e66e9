//! The `alpes` binary against a running orchestrator (embedded mode, in this test process):
//! output and exit codes of every command, the error paths, and an operator's drill from a
//! stuck saga to a retried, compensated one; and dead letters listed, shown and redriven.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use saga_core::inject::FaultPlan;
use serde_json::{json, Value};

async fn start(dir: &Path, faults: FaultPlan) -> Running {
    start_with(dir, faults, Default::default()).await
}

async fn start_with(dir: &Path, faults: FaultPlan, steps: orchestrator::sagas::StepSettings) -> Running {
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps,
        faults,
        access: Default::default(),
    };
    embedded::start(config, None).await.unwrap()
}

/// Runs `alpes` with `args` against `url`.
async fn alpes(url: &str, args: &[&str]) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_alpes"));
    cmd.arg("--url").arg(url).args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn body_file(dir: &Path, name: &str, body: &Value) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, body.to_string()).unwrap();
    path
}

fn ejemplo(seguidores: u32) -> Value {
    json!({ "nombre": "Campaña CLI", "descripcion": "", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100, "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "Instagram", "seguidores": seguidores, "categoria": "Fitness" } ] })
}

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("alpes-cli-{}", uuid::Uuid::new_v4().simple()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_watch_show_list_and_campaigns() {
    let d = dir();
    let running = start(&d.join("data"), FaultPlan::none()).await;
    let url = format!("http://{}", running.addr);
    let file = body_file(&d, "ok.json", &ejemplo(150_000));

    let o = alpes(&url, &["--output", "json", "saga", "start", "--file", file.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let started: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let saga = started["saga_id"].as_str().unwrap().to_owned();
    let campana = started["id_campana"].as_str().unwrap().to_owned();

    let o = alpes(&url, &["saga", "watch", &saga, "--timeout", "20"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("saga {saga} is completed")));

    let o = alpes(&url, &["saga", "show", &saga]).await;
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(text.starts_with(&format!("saga {saga}  crear_campana  completed")), "{text}");
    for needle in
        ["SEQ", "command_sent", "reservar_presupuesto", "abrir_tracking", "reply_accepted", "success", "completed"]
    {
        assert!(text.contains(needle), "timeline lacks {needle}: {text}");
    }
    let o = alpes(&url, &["-o", "json", "saga", "show", &saga]).await;
    let shown: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(shown["saga"]["status"], "completed");

    let o = alpes(&url, &["saga", "list", "--state", "completed"]).await;
    assert!(o.status.success());
    assert!(stdout(&o).contains(&saga));
    let o = alpes(&url, &["saga", "list", "--state", "stuck"]).await;
    assert!(!stdout(&o).contains(&saga));

    let o = alpes(&url, &["campana", "list"]).await;
    assert!(stdout(&o).contains(&campana) && stdout(&o).contains("activa") && stdout(&o).contains("Campaña CLI"));
    assert!(stdout(&o).contains("1 of 1"), "{}", stdout(&o));
    let o = alpes(&url, &["campana", "show", &campana]).await;
    assert!(o.status.success());
    let text = stdout(&o);
    for needle in ["Campaña CLI", "Nike", "presupuesto  100", "2025-01-01T00:00:00 – 2025-02-01T00:00:00", &campana]
    {
        assert!(text.contains(needle), "campana show lacks {needle:?}: {text}");
    }

    let o = alpes(&url, &["completions", "bash"]).await;
    assert!(o.status.success() && stdout(&o).contains("alpes"));
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths_have_exit_codes_and_one_line_reasons() {
    let d = dir();
    let running = start(&d.join("data"), FaultPlan::none()).await;
    let url = format!("http://{}", running.addr);
    let one_line = |o: &Output| {
        let e = stderr(o);
        assert_eq!(e.trim_end().lines().count(), 1, "one line on stderr: {e:?}");
        e
    };

    let o = alpes(&url, &["saga", "show", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(o.status.code(), Some(3));
    assert!(one_line(&o).contains("404"));

    let bad = body_file(&d, "bad.json", &json!({ "nombre": "" }));
    let o = alpes(&url, &["saga", "start", "--file", bad.to_str().unwrap()]).await;
    assert_eq!(o.status.code(), Some(4));
    assert!(one_line(&o).contains("nombre"));

    let o = alpes(&url, &["saga", "start", "--file", "/no/such/file.json"]).await;
    assert_eq!(o.status.code(), Some(4));
    one_line(&o);

    let o = alpes(&url, &["saga", "list", "--state", "perdida"]).await;
    assert_eq!(o.status.code(), Some(4));

    let file = body_file(&d, "ok.json", &ejemplo(150_000));
    let o = alpes(&url, &["-o", "json", "saga", "start", "--file", file.to_str().unwrap()]).await;
    let saga = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["saga_id"].as_str().unwrap().to_owned();
    alpes(&url, &["saga", "watch", &saga]).await;
    let o = alpes(&url, &["saga", "retry", &saga]).await;
    assert_eq!(o.status.code(), Some(5));
    assert!(one_line(&o).contains("stuck"));

    let o = alpes("http://127.0.0.1:9", &["saga", "list"]).await;
    assert_eq!(o.status.code(), Some(6));
    assert!(one_line(&o).contains("cannot reach"));

    let o = alpes(&url, &["saga", "frobnicate"]).await;
    assert_eq!(o.status.code(), Some(2), "usage errors are clap's");
    running.stop().await;
}

/// The operator's drill README_SAGA describes: a compensation keeps failing, the saga gets
/// stuck; the cause is fixed (restart without the fault); `alpes saga retry` finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_saga_is_found_retried_and_compensated() {
    let d = dir();
    let data = d.join("data");
    let running = start(&data, FaultPlan::none().fail_compensation("reservar_presupuesto")).await;
    let url = format!("http://{}", running.addr);
    // Too small an audience: influencer refuses, marca must be compensated, and that fails.
    let file = body_file(&d, "refused.json", &ejemplo(10));
    let o = alpes(&url, &["-o", "json", "saga", "start", "--file", file.to_str().unwrap()]).await;
    let saga = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["saga_id"].as_str().unwrap().to_owned();
    let o = alpes(&url, &["saga", "watch", &saga, "--timeout", "60"]).await;
    assert_eq!(o.status.code(), Some(7), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("is stuck"));
    let o = alpes(&url, &["saga", "list", "--state", "stuck"]).await;
    assert!(stdout(&o).contains(&saga));
    running.stop().await;

    let running = start(&data, FaultPlan::none()).await;
    let url = format!("http://{}", running.addr);
    let o = alpes(&url, &["saga", "retry", &saga, "--note", "marca fixed"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut status = String::new();
    for _ in 0..100 {
        let o = alpes(&url, &["-o", "json", "saga", "show", &saga]).await;
        status = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["saga"]["status"].as_str().unwrap().to_owned();
        if status != "compensating" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, "compensated");
    let o = alpes(&url, &["saga", "show", &saga]).await;
    let text = stdout(&o);
    assert!(text.contains("operator_retried") && text.contains("marca fixed"), "{text}");
    let o = alpes(&url, &["campana", "list", "--state", "rechazada"]).await;
    assert!(o.status.success());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payout_starts_and_is_watched_like_any_saga() {
    let d = dir();
    let running = start(&d.join("data"), FaultPlan::none()).await;
    let url = format!("http://{}", running.addr);
    let cliente = json!({ "id": "partner-cli", "nombre": "Juan Pérez", "email": "juan.cli@example.com",
        "cedula": "1234567890", "fecha_nacimiento": "1990-05-15" });
    let res = reqwest::Client::new().post(format!("{url}/cliente/registrar")).json(&cliente).send().await.unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::CREATED);
    let pago = json!({ "partner_id": "partner-cli", "cycle_id": "2025-06", "total_amount": 1500.5, "currency": "USD",
        "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234" });
    let file = body_file(&d, "pago.json", &pago);

    let o = alpes(&url, &["saga", "start", "--saga", "procesar_pago", "--file", file.to_str().unwrap()]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("payout-") && text.contains("PENDIENTE"), "{text}");
    let o = alpes(&url, &["-o", "json", "saga", "list"]).await;
    let list: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let saga = list["sagas"][0]["id"].as_str().unwrap().to_owned();
    let o = alpes(&url, &["saga", "watch", &saga, "--timeout", "20"]).await;
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = alpes(&url, &["saga", "show", &saga]).await;
    let text = stdout(&o);
    assert!(text.starts_with(&format!("saga {saga}  procesar_pago  completed")), "{text}");
    for step in ["registrar_pago", "enviar_pago", "registrar_pago_cliente", "confirmar_pago"] {
        assert!(text.contains(step), "timeline lacks {step}: {text}");
    }
    let o = alpes(&url, &["saga", "start", "--saga", "nada", "--file", file.to_str().unwrap()]).await;
    assert!(!o.status.success());
    running.stop().await;
}

/// With a token required, `alpes` without it exits 4 naming `--token`, and with it (flag or
/// `ALPES_TOKEN`) works; the token is never printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_sent_when_given() {
    let token = "cli-token-5b2c9e";
    let config = embedded::Config {
        data_dir: dir(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: FaultPlan::none(),
        access: daemon::access::Access::bearer(token.into()).unwrap(),
    };
    let running = embedded::start(config, None).await.unwrap();
    let url = format!("http://{}", running.addr);
    let refused = alpes(&url, &["saga", "list"]).await;
    assert_eq!(refused.status.code(), Some(4), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("401") && stderr(&refused).contains("--token"), "{}", stderr(&refused));
    let wrong = alpes(&url, &["--token", "not-it", "saga", "list"]).await;
    assert_eq!(wrong.status.code(), Some(4), "{}", stderr(&wrong));
    let ok = alpes(&url, &["--token", token, "saga", "list"]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_alpes"));
    cmd.arg("--url").arg(&url).args(["saga", "list"]).env("ALPES_TOKEN", token);
    let by_env = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
    assert_eq!(by_env.status.code(), Some(0), "{}", stderr(&by_env));
    for o in [&refused, &wrong, &ok, &by_env] {
        assert!(!stdout(o).contains(token) && !stderr(o).contains(token));
    }
    running.stop().await;
}

/// The dead-letter drill: marca dead-letters a saga's first attempt (the retry completes it);
/// the operator lists it, shows it, sees it in `saga show`, and redrives it, twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_and_redriven() {
    let d = dir();
    let steps = orchestrator::sagas::StepSettings { timeout: Duration::from_millis(800), ..Default::default() };
    let running =
        start_with(&d.join("data"), FaultPlan::none().dead_letter_command("reservar_presupuesto", 1), steps).await;
    let url = format!("http://{}", running.addr);
    let file = body_file(&d, "ok.json", &ejemplo(150_000));
    let o = alpes(&url, &["-o", "json", "saga", "start", "--file", file.to_str().unwrap()]).await;
    let saga = serde_json::from_str::<Value>(&stdout(&o)).unwrap()["saga_id"].as_str().unwrap().to_owned();
    let o = alpes(&url, &["saga", "watch", &saga, "--timeout", "30"]).await;
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let o = alpes(&url, &["-o", "json", "dead-letters", "list"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(listed["total"], 1, "{listed}");
    let id = listed["dead_letters"][0]["id"].as_str().unwrap().to_owned();
    let o = alpes(&url, &["dead-letters", "list", "--topic", "comandos.marca", "--state", "pending"]).await;
    let text = stdout(&o);
    for needle in ["ID", "TOPIC", &id, &saga, "comandos.marca", "reservar_presupuesto", "action", "pending", "1 of 1"] {
        assert!(text.contains(needle), "dead-letters list lacks {needle:?}: {text}");
    }
    let o = alpes(&url, &["dead-letters", "list", "--state", "redriven"]).await;
    assert!(stdout(&o).contains("0 of 0") && !stdout(&o).contains(&id), "{}", stdout(&o));
    let o = alpes(&url, &["dead-letters", "list", "--topic", "comandos.tracking"]).await;
    assert!(!stdout(&o).contains(&id));

    let o = alpes(&url, &["dead-letters", "show", &id]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for needle in ["CAMPO", &id, &saga, "comandos.marca.dlq", "ReservarPresupuesto", "injected dead letter", "pending"]
    {
        assert!(text.contains(needle), "dead-letters show lacks {needle:?}: {text}");
    }
    let o = alpes(&url, &["saga", "show", &saga]).await;
    let text = stdout(&o);
    assert!(text.contains("dead letters: 1") && text.contains(&id), "saga show lists its dead letters: {text}");

    let o = alpes(&url, &["dead-letters", "redrive", &id, "--note", "marca arreglada"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(&format!("dead letter {id} redriven to comandos.marca (1 redrives)")),
        "{}",
        stdout(&o)
    );
    let o = alpes(&url, &["-o", "json", "dead-letters", "redrive", &id]).await;
    let again: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (again["dead_letter"]["redrives"].clone(), again["dead_letter"]["notas"].clone()),
        (json!(2), json!(["marca arreglada"]))
    );
    let o = alpes(&url, &["dead-letters", "show", &id]).await;
    assert!(stdout(&o).contains("redriven") && stdout(&o).contains("marca arreglada"), "{}", stdout(&o));
    let o = alpes(&url, &["dead-letters", "redrive", "--topic", "comandos.marca", "--note", "todas"]).await;
    assert!(stdout(&o).contains("0 dead letters of comandos.marca redriven"), "{}", stdout(&o));
    let o = alpes(&url, &["-o", "json", "saga", "show", &saga]).await;
    let shown: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (shown["saga"]["status"].clone(), shown["dead_letters"][0]["estado"].clone()),
        (json!("completed"), json!("redriven"))
    );

    let o = alpes(&url, &["dead-letters", "redrive"]).await;
    assert_eq!(o.status.code(), Some(2), "an id or --topic: {}", stderr(&o));
    let o = alpes(&url, &["dead-letters", "redrive", &id, "--topic", "comandos.marca"]).await;
    assert_eq!(o.status.code(), Some(2));
    let o = alpes(&url, &["dead-letters", "show", "nope"]).await;
    assert_eq!(o.status.code(), Some(4));
    let o = alpes(&url, &["dead-letters", "redrive", &uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(o.status.code(), Some(3));
    let o = alpes(&url, &["dead-letters", "list", "--state", "perdido"]).await;
    assert_eq!(o.status.code(), Some(4));
    running.stop().await;
}
