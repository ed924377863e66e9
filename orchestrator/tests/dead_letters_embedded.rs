//! Dead letters in the embedded mode, over HTTP: marca dead-letters the first attempt of its
//! action (`FaultPlan::dead_letter_command`), the step times out and its retry completes the
//! saga; the dead letter is listed by `GET /dead-letters` and in `GET /sagas/{id}`; redriving it
//! twice reaches marca twice, which answers with its stored reply: the budget is reserved once.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use orchestrator::sagas::StepSettings;
use reqwest::StatusCode;
use saga_core::definition::RetryPolicy;
use saga_core::inject::FaultPlan;
use serde_json::{json, Value};

const NIKE: &str = "123e4567-e89b-12d3-a456-426614174000";

async fn start(dir: &std::path::Path, faults: FaultPlan) -> Running {
    let retry = RetryPolicy { initial_backoff: Duration::from_millis(50), ..RetryPolicy::default() };
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: StepSettings { timeout: Duration::from_millis(800), retry: retry.clone(), compensation_retry: retry },
        access: Default::default(),
        faults,
    };
    embedded::start(config, None).await.unwrap()
}

fn campana(n: u32) -> Value {
    json!({ "nombre": format!("Campaña DLQ {n}"), "descripcion": "", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100, "marca": { "id_marca": NIKE, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" } ] })
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Starts a campaign and waits until its saga ends; the saga id.
    async fn completed_saga(&self, n: u32) -> String {
        let (status, accepted) = self.post("/afiliaciones/campana", Some(campana(n))).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let saga = accepted["saga_id"].as_str().unwrap().to_owned();
        self.until(&format!("/sagas/{saga}"), |s| s["saga"]["status"] != "running").await;
        let (_, s) = self.get(&format!("/sagas/{saga}")).await;
        assert_eq!(s["saga"]["status"], "completed", "{s}");
        saga
    }

    /// Polls `path` until `done` holds (10 s at most); the last answer.
    async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let (status, v) = self.get(path).await;
            assert_eq!(status, StatusCode::OK, "{path}: {v}");
            if done(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} never got there");
    }
}

/// Reservations of Nike's budget in marca's own database, and what is left of it.
async fn marca(dir: &std::path::Path) -> (i64, i64) {
    let pool =
        saga_core::log::sql::sqlite_pool(&format!("sqlite://{}", dir.join("marca.sqlite").display())).await.unwrap();
    let id = uuid::Uuid::parse_str(NIKE).unwrap();
    let reservas: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reserva_presupuesto WHERE id_marca = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let disponible: i64 = sqlx::query_scalar("SELECT presupuesto_disponible_centavos FROM marca WHERE id_marca = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    (reservas, disponible)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_listed_with_its_saga_and_redriving_it_twice_changes_nothing() {
    let dir = std::env::temp_dir().join(format!("alpes-dlq-{}", uuid::Uuid::new_v4().simple()));
    let running = start(&dir, FaultPlan::none().dead_letter_command("reservar_presupuesto", 1)).await;
    let api = Api { base: format!("http://{}", running.addr), http: reqwest::Client::new() };
    let (_, before) = marca(&dir).await;

    let saga = api.completed_saga(1).await;
    let (reservas, disponible) = marca(&dir).await;
    assert_eq!((reservas, disponible), (1, before - 10_000), "the retry reserved the budget once");

    let listed = api.until("/dead-letters", |v| v["total"] == 1).await;
    assert_eq!((listed["limite"].clone(), listed["desde"].clone()), (json!(50), json!(0)));
    let dl = listed["dead_letters"][0].clone();
    assert_eq!(dl["topic"], "comandos.marca");
    assert_eq!(dl["dead_letter_topic"], "comandos.marca.dlq");
    assert_eq!(dl["saga_id"], saga.as_str());
    assert_eq!(dl["saga_type"], "crear_campana");
    assert_eq!(dl["step"], "reservar_presupuesto");
    assert_eq!(dl["kind"], "action");
    assert_eq!(dl["message_type"], "ReservarPresupuesto");
    assert_eq!(dl["reason"], saga_core::inject::INJECTED_DEAD_LETTER);
    assert_eq!(
        (dl["estado"].clone(), dl["redrives"].clone(), dl["redriven_at"].clone()),
        (json!("pending"), json!(0), Value::Null)
    );
    assert_eq!(dl["notas"], json!([]));
    assert!(dl["dead_at"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok());
    let id = dl["id"].as_str().unwrap().to_owned();

    // The saga's own view shows it, and the attempt it belonged to.
    let (_, s) = api.get(&format!("/sagas/{saga}")).await;
    assert_eq!(s["dead_letters"], json!([dl.clone()]));
    let sent = s["historia"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["event"]["type"] == "command_sent"
                && e["event"]["command"]["correlation"]["attempt"] == 1
                && e["event"]["command"]["correlation"]["step_name"] == "reservar_presupuesto"
        })
        .unwrap()
        .clone();
    assert_eq!(dl["message_id"], sent["event"]["command"]["correlation"]["message_id"], "the first attempt's message");
    let (status, shown) = api.get(&format!("/dead-letters/{id}")).await;
    assert_eq!((status, shown), (StatusCode::OK, json!({ "dead_letter": dl.clone() })));

    // Redriven twice: marca answers each with its stored reply, which the saga ignores.
    let ignored = s["resumen"]["replies_ignored"].as_u64().unwrap();
    let (status, r) =
        api.post(&format!("/dead-letters/{id}/redrive"), Some(json!({ "nota": "marca arreglada" }))).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["dead_letter"]["redrives"].clone(), r["dead_letter"]["estado"].clone()),
        (json!(1), json!("redriven"))
    );
    assert_eq!(r["dead_letter"]["notas"], json!(["marca arreglada"]));
    assert!(r["dead_letter"]["redriven_at"].is_string());
    let (status, r) = api.post(&format!("/dead-letters/{id}/redrive"), None).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(
        (r["dead_letter"]["redrives"].clone(), r["dead_letter"]["notas"].clone()),
        (json!(2), json!(["marca arreglada"]))
    );
    let s = api
        .until(&format!("/sagas/{saga}"), |s| s["resumen"]["replies_ignored"].as_u64().unwrap() >= ignored + 2)
        .await;
    assert_eq!(s["saga"]["status"], "completed");
    assert_eq!(marca(&dir).await, (reservas, disponible), "effects exactly once");
    assert_eq!(s["dead_letters"][0]["estado"], "redriven");
    let (_, pending) = api.get("/dead-letters?estado=pending").await;
    assert_eq!(pending["total"], 0);
    let (_, redriven) = api.get(&format!("/dead-letters?estado=redriven&topic=comandos.marca&saga_id={saga}")).await;
    assert_eq!(redriven["total"], 1);
    let (_, other) = api.get("/dead-letters?topic=comandos.tracking").await;
    assert_eq!((other["total"].clone(), other["dead_letters"].clone()), (json!(0), json!([])));

    // A second saga, a second dead letter: redriven with every pending one of its topic.
    let second = api.completed_saga(2).await;
    let listed = api.until("/dead-letters?estado=pending", |v| v["total"] == 1).await;
    assert_eq!(listed["dead_letters"][0]["saga_id"], second.as_str());
    let (status, n) = api.post("/dead-letters/redrive?topic=comandos.marca", Some(json!({ "nota": "todas" }))).await;
    assert_eq!((status, n), (StatusCode::OK, json!({ "redriven": 1 })));
    let (_, n) = api.post("/dead-letters/redrive?topic=comandos.marca", None).await;
    assert_eq!(n, json!({ "redriven": 0 }), "nothing pending any more");
    let (_, all) = api.get("/dead-letters?limite=1").await;
    assert_eq!((all["total"].clone(), all["dead_letters"].as_array().unwrap().len()), (json!(2), 1));
    assert_eq!(all["dead_letters"][0]["saga_id"], second.as_str(), "newest first");
    assert_eq!(all["dead_letters"][0]["notas"], json!(["todas"]));
    api.until(&format!("/sagas/{second}"), |s| s["resumen"]["replies_ignored"].as_u64().unwrap() >= 1).await;
    assert_eq!(marca(&dir).await, (2, before - 20_000), "each campaign's budget reserved once");

    // The metrics.
    let text = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap().text().await.unwrap();
    for needle in [
        "saga_dead_letter_redrives_total{topic=\"comandos.marca\"} 3",
        "saga_dead_letters_recorded_total{topic=\"comandos.marca\"} 2",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}");
    }
    // How marca handled the redriven commands: the first of each message by its step's stored
    // reply (another attempt had applied it), the repeat by the message's own.
    let handled = |disposition: &str| {
        text.lines()
            .find(|l| {
                l.starts_with("participant_commands_total{")
                    && l.contains("participant=\"comandos.marca\"")
                    && l.contains(&format!("disposition=\"{disposition}\""))
                    && l.contains("outcome=\"success\"")
            })
            .and_then(|l| l.rsplit(' ').next())
            .map(str::to_owned)
    };
    assert_eq!(handled("duplicatestep").as_deref(), Some("2"), "{text}");
    assert_eq!(handled("duplicatemessage").as_deref(), Some("1"), "{text}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dead_letter_requests_get_a_json_4xx() {
    let dir = std::env::temp_dir().join(format!("alpes-dlq-{}", uuid::Uuid::new_v4().simple()));
    let running = start(&dir, FaultPlan::none()).await;
    let api = Api { base: format!("http://{}", running.addr), http: reqwest::Client::new() };
    for path in
        ["/dead-letters?estado=perdido", "/dead-letters?saga_id=nope", "/dead-letters?limite=abc", "/dead-letters/nope"]
    {
        let (status, body) = api.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    let unknown = uuid::Uuid::new_v4();
    let (status, body) = api.get(&format!("/dead-letters/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"].as_str().unwrap().contains(&unknown.to_string()));
    let (status, body) = api.post(&format!("/dead-letters/{unknown}/redrive"), None).await;
    assert_eq!((status, body["error"].is_string()), (StatusCode::NOT_FOUND, true));
    let (status, body) = api.post("/dead-letters/redrive", None).await;
    assert_eq!((status, body["error"].is_string()), (StatusCode::BAD_REQUEST, true));
    let res =
        api.http.post(format!("{}/dead-letters/{unknown}/redrive", api.base)).body("not json").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (status, empty) = api.get("/dead-letters").await;
    assert_eq!((status, empty), (StatusCode::OK, json!({ "dead_letters": [], "total": 0, "limite": 50, "desde": 0 })));
    running.stop().await;
}

/// `GET /sagas/{id}?esperar_ms=` answers a client waiting for a saga's end in one request: here
/// across the 800 ms timeout of a dead-lettered first attempt (tracking's: the metrics of the
/// test above count marca's, and tests share the process's recorder). With `despues_de`, it
/// answers at the saga's next entry; with `solo_saga=true`, with the state alone. Bad waits are
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_waits_for_a_sagas_end_in_one_request() {
    let dir = std::env::temp_dir().join(format!("alpes-dlq-{}", uuid::Uuid::new_v4().simple()));
    let running = start(&dir, FaultPlan::none().dead_letter_command("abrir_tracking", 1)).await;
    let api = Api { base: format!("http://{}", running.addr), http: reqwest::Client::new() };
    let (status, accepted) = api.post("/afiliaciones/campana", Some(campana(1))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let saga = accepted["saga_id"].as_str().unwrap().to_owned();
    let (_, now) = api.get(&format!("/sagas/{saga}")).await;
    assert_eq!(now["saga"]["status"], "running", "tracking's first attempt waits for its timeout: {now}");
    let version = now["saga"]["version"].as_i64().unwrap();

    let (status, next) = api.get(&format!("/sagas/{saga}?esperar_ms=10000&despues_de={version}")).await;
    assert_eq!(status, StatusCode::OK, "{next}");
    assert!(next["saga"]["version"].as_i64().unwrap() > version, "{next}");
    let (status, end) = api.get(&format!("/sagas/{saga}?esperar_ms=10000")).await;
    assert_eq!(status, StatusCode::OK, "{end}");
    assert_eq!(end["saga"]["status"], "completed", "answered at the end, not before: {end}");
    assert!(end["historia"].as_array().is_some_and(|h| !h.is_empty()), "the full answer has the history: {end}");
    // A client that only waits for the end asks for the state alone.
    let (status, alone) = api.get(&format!("/sagas/{saga}?esperar_ms=10000&solo_saga=true")).await;
    assert_eq!(status, StatusCode::OK, "{alone}");
    assert_eq!(alone, json!({ "saga": end["saga"] }), "the state alone");

    for (query, status) in [
        ("?esperar_ms=10001", StatusCode::BAD_REQUEST),
        ("?esperar_ms=pronto", StatusCode::BAD_REQUEST),
        ("?despues_de=3", StatusCode::BAD_REQUEST),
        ("?esperar_ms=10&solo_saga=quizas", StatusCode::BAD_REQUEST),
    ] {
        let (got, v) = api.get(&format!("/sagas/{saga}{query}")).await;
        assert_eq!(got, status, "{query}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{query}: {v}");
    }
    let (got, _) = api.get("/sagas/01900000-0000-7000-8000-000000000000?esperar_ms=100").await;
    assert_eq!(got, StatusCode::NOT_FOUND);
    running.stop().await;
}
