//! Access by bearer token, in the embedded mode (the same layer guards the orchestrator and every
//! worker daemon): off by default; with a token, every route but `/health` and `/metrics` answers
//! `401` with `WWW-Authenticate: Bearer` and a JSON error to a missing or wrong token and starts
//! nothing; the right token passes, and the orchestrator's own call to cliente (the payout saga's
//! partner check) carries it. Neither token appears in any log line (everything is captured at
//! `TRACE`) or any answer.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use daemon::access::Access;
use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use reqwest::StatusCode;
use serde_json::{json, Value};

const TOKEN: &str = "tok-3f9a1c77e2b04d6b-secreto";
const WRONG: &str = "tok-wrong-8d1e55aa90c3-intruso";

/// Every log line of this test process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt().with_env_filter("trace").with_ansi(false).with_writer(move || writer.clone()).init();
        captured
    })
}

async fn start(access: Access) -> Running {
    logs();
    let config = embedded::Config {
        data_dir: std::env::temp_dir().join(format!("alpes-access-{}", uuid::Uuid::new_v4().simple())),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
        access,
    };
    embedded::start(config, None).await.unwrap()
}

fn campana() -> Value {
    json!({
        "nombre": "Campaña de Verano 2024", "descripcion": "Promoción", "tipo": "influencer",
        "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59", "presupuesto": 1500,
        "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
        "influencers": [ { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" } ]
    })
}

fn cliente() -> Value {
    json!({ "id": "partner-acceso", "nombre": "Juan Pérez", "email": "juan.acceso@example.com",
            "cedula": "1234567890", "fecha_nacimiento": "1990-05-15" })
}

fn pago() -> Value {
    json!({ "partner_id": "partner-acceso", "cycle_id": "2025-06", "total_amount": 100.5, "currency": "USD",
            "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234",
            "confirmation_id": "conf-acceso", "processed_at": null, "completed_at": null })
}

/// Every kind of route of every service the embedded server answers: (method, path, body).
fn routes() -> Vec<(reqwest::Method, &'static str, Option<Value>)> {
    use reqwest::Method;
    vec![
        (Method::GET, "/sagas", None),
        (Method::GET, "/sagas/01900000-0000-7000-8000-000000000000", None),
        (Method::POST, "/sagas/01900000-0000-7000-8000-000000000000/retry", Some(json!({}))),
        (Method::POST, "/sagas/01900000-0000-7000-8000-000000000000/abort", Some(json!({}))),
        (Method::POST, "/afiliaciones/campana", Some(campana())),
        (Method::GET, "/afiliaciones/campanas", None),
        (Method::GET, "/afiliaciones/campana/01900000-0000-7000-8000-000000000000", None),
        (Method::POST, "/cliente/registrar", Some(cliente())),
        (Method::GET, "/cliente/partner-acceso", None),
        (Method::POST, "/pagos/pagar", Some(pago())),
        (Method::GET, "/pagos", None),
        (Method::POST, "/tracking/evento", Some(json!({ "id_campana": uuid::Uuid::now_v7(), "tipo_evento": "clic" }))),
        (Method::GET, "/tracking/eventos/01900000-0000-7000-8000-000000000000", None),
        (Method::GET, "/openapi.json", None),
        (Method::GET, "/no/such/route", None),
    ]
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = http.request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(body);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, headers, response.text().await.unwrap())
}

fn assert_no_token_in_logs() {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    assert!(!text.is_empty(), "the logs were captured");
    for secret in [TOKEN, WRONG] {
        assert!(!text.contains(secret), "a token is in the logs:\n{}", {
            let at = text.find(secret).unwrap();
            &text[at.saturating_sub(300)..(at + 100).min(text.len())]
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_token_is_401_and_starts_nothing() {
    let running = start(Access::bearer(TOKEN.into()).unwrap()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    for (method, path, body) in routes() {
        for token in [None, Some(WRONG), Some(""), Some(&TOKEN[..TOKEN.len() - 1])] {
            let (status, headers, text) = call(&http, &base, method.clone(), path, body.as_ref(), token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path} with {token:?}: {text}");
            let challenge = headers.get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            assert!(challenge.as_deref().is_some_and(|c| c.starts_with("Bearer")), "{method} {path}: {challenge:?}");
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: not JSON: {text}"));
            assert!(json["error"].as_str().is_some_and(|e| !e.is_empty()), "{method} {path}: {json}");
            assert!(!text.contains(TOKEN) && !text.contains(WRONG), "{method} {path} echoes a token: {text}");
        }
    }
    // The probes stay open.
    for path in ["/health", "/metrics"] {
        let (status, _, text) = call(&http, &base, reqwest::Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {text}");
    }
    // Nothing was started or recorded by the refused requests.
    let (status, _, text) = call(&http, &base, reqwest::Method::GET, "/sagas", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let sagas: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sagas["sagas"], json!([]), "a refused request started a saga: {sagas}");
    let (status, _, text) =
        call(&http, &base, reqwest::Method::GET, "/cliente/partner-acceso", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused registration was recorded: {text}");
    let (_, _, text) = call(&http, &base, reqwest::Method::GET, "/afiliaciones/campanas", None, Some(TOKEN)).await;
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["total"], 0, "{text}");
    assert_no_token_in_logs();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_token_passes_and_the_orchestrator_sends_it_to_cliente() {
    let running = start(Access::bearer(TOKEN.into()).unwrap()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let post = |path: &'static str, body: Value| {
        let (http, base) = (http.clone(), base.clone());
        async move { call(&http, &base, reqwest::Method::POST, path, Some(&body), Some(TOKEN)).await }
    };
    let (status, _, text) = post("/afiliaciones/campana", campana()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (status, _, text) = post("/cliente/registrar", cliente()).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    // The payout saga asks cliente, over HTTP, whether the partner is registered: without the
    // token on that call cliente answers 401 and the payout is a 503.
    let (status, _, text) = post("/pagos/pagar", pago()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (status, _, text) = call(&http, &base, reqwest::Method::GET, "/sagas", None, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["sagas"].as_array().unwrap().len(), 2, "{text}");
    // The document says so: a bearer scheme on every route but the probes.
    let (_, _, text) = call(&http, &base, reqwest::Method::GET, "/openapi.json", None, Some(TOKEN)).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer", "{}", doc["components"]);
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    assert_eq!(doc["paths"]["/health"]["get"]["security"], json!([{}]));
    assert_eq!(doc["paths"]["/metrics"]["get"]["security"], json!([{}]));
    assert!(doc["paths"]["/sagas"]["get"].get("security").is_none(), "the document's requirement applies");
    // The scheme's case does not matter.
    let response =
        http.get(format!("{base}/sagas")).header("authorization", format!("bearer {TOKEN}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(!text.contains(TOKEN));
    assert_no_token_in_logs();
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_is_open_by_default() {
    let running = start(Access::default()).await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let (status, _, text) = call(&http, &base, reqwest::Method::GET, "/sagas", None, None).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, _, text) =
        call(&http, &base, reqwest::Method::POST, "/afiliaciones/campana", Some(&campana()), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let (_, _, text) = call(&http, &base, reqwest::Method::GET, "/openapi.json", None, None).await;
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert!(doc.get("security").is_none(), "an open API declares no security: {}", doc["security"]);
    running.stop().await;
}
