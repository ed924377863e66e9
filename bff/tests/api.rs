//! The BFF's `/api/v1` against the running services: the embedded mode (the orchestrator and
//! every participant, with their SQLite files, over HTTP) and the BFF beside it, both in this
//! process but talking HTTP. Every route's shape and pagination; search; the cache counted;
//! and a backend that is down: its parts unavailable, the rest answered, never a 500.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn services(dir: &std::path::Path) -> Running {
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        access: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
    };
    embedded::start(config, None).await.unwrap()
}

async fn bff(orquestador: &str, cliente: &str, cache_ttl_ms: u64) -> daemon::Running {
    let mut config = bff::Config::with_backends(orquestador, cliente);
    config.http = "127.0.0.1:0".parse().unwrap();
    config.cache_ttl_ms = cache_ttl_ms;
    config.timeout_ms = 2000;
    bff::start(&config).await.unwrap()
}

fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("alpes-bff-{}", uuid::Uuid::new_v4().simple()))
}

/// A port nothing listens on: a backend that is down.
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

struct Http {
    base: String,
    http: reqwest::Client,
}

impl Http {
    fn new(addr: std::net::SocketAddr) -> Self {
        Self { base: format!("http://{addr}"), http: reqwest::Client::new() }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.http.post(format!("{}{path}", self.base)).json(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

fn cliente(id: &str, nombre: &str) -> Value {
    json!({ "id": id, "nombre": nombre, "email": format!("{id}@example.com"), "cedula": "1234567890",
            "fecha_nacimiento": "1990-05-15" })
}

fn pago(partner: &str, ciclo: &str, monto: f64) -> Value {
    json!({ "partner_id": partner, "cycle_id": ciclo, "total_amount": monto, "currency": "USD",
            "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234" })
}

fn campana(nombre: &str, influencer: &str) -> Value {
    json!({ "nombre": nombre, "descripcion": "", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100,
      "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
      "influencers": [ { "nombre": influencer, "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" } ] })
}

/// Waits until `path` of `api` answers something `done` accepts.
async fn until(api: &Http, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..400 {
        let (status, v) = api.get(path).await;
        if status == StatusCode::OK && done(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{path} never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_its_documented_shape_from_the_services() {
    let dir = data_dir();
    let svc = services(&dir).await;
    let url = format!("http://{}", svc.addr);
    let direct = Http::new(svc.addr);
    let running = bff(&url, &url, 0).await;
    let api = Http::new(running.addr);

    // Clients through the BFF: created, then refused as cliente refuses them.
    for (i, nombre) in ["Ana García", "Bruno Díaz", "Carla Ruiz"].iter().enumerate() {
        let (status, c) = api.post("/api/v1/clientes", &cliente(&format!("partner-bff-{i}"), nombre)).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        assert_eq!(c["nombre"], *nombre);
    }
    let (status, e) = api.post("/api/v1/clientes", &cliente("partner-bff-x", "Otro")).await;
    assert_eq!(status, StatusCode::CREATED, "{e}");
    let mut dup = cliente("partner-bff-y", "Otro más");
    dup["email"] = json!("partner-bff-x@example.com");
    let (status, e) = api.post("/api/v1/clientes", &dup).await;
    assert_eq!((status, e["error"].as_str()), (StatusCode::BAD_REQUEST, Some("Email ya existe en el sistema")));
    let (status, e) = api.post("/api/v1/clientes", &json!({ "id": "partner-bff-z" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");

    // Payouts and a campaign booking Ana, straight to the services.
    for (ciclo, monto) in [("2025-01", 100.0), ("2025-02", 2500.5), ("2025-03", 40.0)] {
        let (status, p) = direct.post("/pagos/pagar", &pago("partner-bff-0", ciclo, monto)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    }
    let (status, p) = direct.post("/afiliaciones/campana", &campana("Verano BFF", "Ana García")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    let (status, p) = direct.post("/afiliaciones/campana", &campana("Otoño BFF", "Nadie Conocido")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    until(&direct, "/pagos?estado=COMPLETADO", |v| v["total"] == 3).await;
    until(&direct, "/afiliaciones/campanas?estado=activa", |v| v["total"] == 2).await;

    // The dashboard: totals, recent items, nothing unavailable.
    let (status, d) = api.get("/api/v1/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(
        (d["total_clientes"].as_u64(), d["total_pagos"].as_u64(), d["total_campanias"].as_u64()),
        (Some(4), Some(3), Some(2)),
        "{d}"
    );
    assert_eq!(d["pagos_recientes"].as_array().unwrap().len(), 3);
    assert_eq!(d["clientes_recientes"][0]["id"], "partner-bff-x", "newest first: {d}");
    assert_eq!(d["pagos_por_estado"]["COMPLETADO"], 3);
    assert_eq!(d["no_disponible"], json!({}));

    // Clients: pagination metadata, search, sort.
    let (status, l) = api.get("/api/v1/clientes?page=2&per_page=3&sort_by=nombre&sort_order=asc").await;
    assert_eq!(status, StatusCode::OK, "{l}");
    assert_eq!(
        l["pagination"],
        json!({ "page": 2, "per_page": 3, "total": 4, "pages": 2, "has_next": false, "has_prev": true })
    );
    assert_eq!(l["clientes"].as_array().unwrap().len(), 1);
    assert_eq!(l["clientes"][0]["nombre"], "Otro", "A, B, C on page 1, O on page 2: {l}");
    let (_, l) = api.get("/api/v1/clientes?search=GARC").await;
    assert_eq!(l["pagination"]["total"], 1, "{l}");
    assert_eq!(l["clientes"][0]["id"], "partner-bff-0");
    let (_, l) = api.get("/api/v1/clientes?search=partner-bff-2%40").await;
    assert_eq!(l["clientes"][0]["nombre"], "Carla Ruiz", "search on email: {l}");
    let (_, l) = api.get("/api/v1/clientes?search=100%25").await;
    assert_eq!(l["pagination"]["total"], 0, "a % is searched for, not a wildcard: {l}");
    for bad in ["per_page=101", "per_page=0", "page=0", "sort_by=edad", "sort_order=up", "page=x"] {
        let (status, e) = api.get(&format!("/api/v1/clientes?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{bad}: {e}");
    }

    // One client: statistics, recent payouts, the active campaigns that book it.
    let (status, c) = api.get("/api/v1/clientes/partner-bff-0").await;
    assert_eq!(status, StatusCode::OK, "{c}");
    assert_eq!(c["cliente"]["nombre"], "Ana García");
    assert_eq!(c["estadisticas"]["total_pagos"], 3, "{c}");
    assert_eq!(c["estadisticas"]["monto_por_moneda"][0]["monto_total"], 2640.5, "{c}");
    assert_eq!(c["pagos_recientes"].as_array().unwrap().len(), 3);
    let activas: Vec<&str> =
        c["campanias_activas"].as_array().unwrap().iter().map(|k| k["nombre"].as_str().unwrap()).collect();
    assert_eq!(activas, ["Verano BFF"], "{c}");
    let (status, c) = api.get("/api/v1/clientes/partner-nadie").await;
    assert_eq!((status, c["message"].as_str()), (StatusCode::NOT_FOUND, Some("No encontrado")));
    let (status, _) = api.get("/api/v1/clientes/..%2F..%2Fsagas").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an id cannot reach another route");

    // Payouts: filters and aggregations, then one with its transactions and audit trail.
    let (status, l) = api.get("/api/v1/pagos?per_page=2&monto_min=50").await;
    assert_eq!(status, StatusCode::OK, "{l}");
    assert_eq!(
        l["pagination"],
        json!({ "page": 1, "per_page": 2, "total": 2, "pages": 1, "has_next": false, "has_prev": false })
    );
    assert_eq!(l["agregaciones"]["por_moneda"][0]["monto_total"], 2600.5, "{l}");
    let (_, l) = api.get("/api/v1/pagos?monto_min=50&monto_max=200&estado=COMPLETADO&partner_id=partner-bff-0").await;
    assert_eq!(l["pagination"]["total"], 1, "{l}");
    let (_, l) = api.get("/api/v1/pagos?fecha_desde=2000-01-01&fecha_hasta=2000-12-31").await;
    assert_eq!(l["pagination"]["total"], 0, "{l}");
    let (_, l) = api.get("/api/v1/pagos?fecha_desde=2000-01-01").await;
    assert_eq!(l["pagination"]["total"], 3, "{l}");
    let id = l["pagos"][0]["id"].as_str().unwrap().to_owned();
    for bad in ["fecha_desde=ayer", "monto_min=-1", "estado=RARO", "monto_max=mucho"] {
        let (status, e) = api.get(&format!("/api/v1/pagos?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
        assert!(e["error"].as_str().is_some(), "{bad}: {e}");
    }
    let (status, p) = api.get(&format!("/api/v1/pagos/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["estado"], "COMPLETADO");
    assert!(p["transacciones"].as_array().unwrap().iter().any(|t| t["tipo"] == "COMISION"), "{p}");
    assert!(!p["auditoria"].as_array().unwrap().is_empty(), "{p}");
    let (status, _) = api.get("/api/v1/pagos/payout-00000000-0000-0000-0000-000000000000").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Campaigns.
    let (status, l) = api.get("/api/v1/campanias?per_page=1&estado=activa").await;
    assert_eq!(status, StatusCode::OK, "{l}");
    assert_eq!(
        l["pagination"],
        json!({ "page": 1, "per_page": 1, "total": 2, "pages": 2, "has_next": true, "has_prev": false })
    );
    assert_eq!(l["campanias"].as_array().unwrap().len(), 1);

    // One search across the services, and per type.
    let (status, r) = api.get("/api/v1/search?q=bff").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert_eq!(r["totales"], json!({ "clientes": 4, "pagos": 3, "campanias": 2 }), "{r}");
    let (_, r) = api.get("/api/v1/search?q=verano&type=campania&limit=5").await;
    assert_eq!(r["resultados"]["campanias"][0]["nombre"], "Verano BFF", "{r}");
    assert!(r["resultados"].get("clientes").is_none(), "{r}");
    for bad in ["", "q=", "q=x&type=todo", "q=x&limit=0", "q=x&limit=51"] {
        let (status, e) = api.get(&format!("/api/v1/search?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }

    let (status, e) = api.get("/api/v1/nada").await;
    assert_eq!((status, e["error"].is_string()), (StatusCode::NOT_FOUND, true));
    running.stop().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_serves_repeated_reads_and_health_counts_it() {
    let dir = data_dir();
    let svc = services(&dir).await;
    let url = format!("http://{}", svc.addr);
    let running = bff(&url, &url, 60_000).await;
    let api = Http::new(running.addr);
    let (status, first) = api.get("/api/v1/clientes").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let direct = Http::new(svc.addr);
    let (status, _) = direct.post("/cliente/registrar", &cliente("partner-cache", "Ana Cache")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, second) = api.get("/api/v1/clientes").await;
    assert_eq!(second, first, "within its time to live the read comes from the cache");
    let (status, h) = api.get("/api/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!((h["cache"]["hits"].as_u64(), h["cache"]["misses"].as_u64()), (Some(1), Some(1)), "{h}");
    assert_eq!(h["cache"]["hit_rate"], 0.5);
    for name in ["orquestador", "cliente"] {
        assert_eq!(h["servicios"][name]["status"], "ok", "{h}");
        assert!(h["servicios"][name]["tiempo_respuesta_ms"].as_f64().is_some(), "{h}");
    }
    // A write through the BFF empties the cache.
    let (status, _) = api.post("/api/v1/clientes", &cliente("partner-cache-2", "Bea Cache")).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, third) = api.get("/api/v1/clientes").await;
    assert_eq!(third["pagination"]["total"], 2, "{third}");
    let metrics = reqwest::get(format!("http://{}/metrics", running.addr)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("bff_cache_hits_total"), "{metrics}");
    assert!(metrics.contains("bff_backend_requests_total"), "{metrics}");
    running.stop().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_makes_its_parts_unavailable_and_the_rest_answer() {
    let dir = data_dir();
    let svc = services(&dir).await;
    let url = format!("http://{}", svc.addr);
    let down = closed_port();
    let running = bff(&url, &down, 0).await;
    let api = Http::new(running.addr);

    let (status, d) = api.get("/api/v1/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert!(d["total_clientes"].is_null() && d["clientes_recientes"].is_null(), "{d}");
    assert_eq!(d["total_pagos"], 0, "{d}");
    assert!(d["no_disponible"]["clientes"].as_str().unwrap().contains("no disponible"), "{d}");

    let res = reqwest::get(format!("http://{}/api/v1/clientes", running.addr)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers().contains_key("retry-after"));
    let e: Value = res.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("cliente"), "{e}");
    let (status, _) = api.post("/api/v1/clientes", &cliente("partner-down", "Ana")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

    let (status, r) = api.get("/api/v1/search?q=a").await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert!(r["resultados"]["clientes"].is_null() && r["resultados"]["pagos"].is_array(), "{r}");

    let (status, h) = api.get("/api/v1/health").await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert_eq!(
        (h["status"].as_str(), h["servicios"]["cliente"]["status"].as_str()),
        (Some("degraded"), Some("no_disponible")),
        "{h}"
    );
    assert_eq!(h["servicios"]["orquestador"]["status"], "ok");
    running.stop().await;

    // Every backend down: the dashboard itself is unavailable (503), the console says so.
    let running = bff(&down, &down, 0).await;
    let res = reqwest::get(format!("http://{}/api/v1/dashboard", running.addr)).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let res = reqwest::get(format!("http://{}/console/sagas", running.addr)).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.text().await.unwrap().contains("no está disponible"));
    running.stop().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_deployments_token_the_bff_sends_it_and_requires_it() {
    let dir = data_dir();
    let token = || daemon::SecretString::from("bff-token-31");
    let config = embedded::Config {
        data_dir: dir.clone(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        access: daemon::access::Access::bearer(token()).unwrap(),
        faults: saga_core::inject::FaultPlan::none(),
    };
    let svc = embedded::start(config, None).await.unwrap();
    let url = format!("http://{}", svc.addr);
    let mut config = bff::Config::with_backends(&url, &url);
    config.http = "127.0.0.1:0".parse().unwrap();
    config.api_token = Some(token());
    let running = bff::start(&config).await.unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let res = http.get(format!("{base}/api/v1/dashboard")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "the BFF's API requires the token");
    let res = http.get(format!("{base}/api/v1/dashboard")).bearer_auth("bff-token-31").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let d: Value = res.json().await.unwrap();
    assert_eq!(
        (d["total_clientes"].as_u64(), d["no_disponible"].clone()),
        (Some(0), json!({})),
        "the BFF sent the token: {d}"
    );
    let h: Value = http.get(format!("{base}/api/v1/health")).send().await.unwrap().json().await.unwrap();
    assert_eq!(h["status"], "ok", "health stays open, and the services answered the BFF: {h}");
    running.stop().await;

    // Without the token the services refuse the BFF: passed on, never a 500.
    let mut config = bff::Config::with_backends(&url, &url);
    config.http = "127.0.0.1:0".parse().unwrap();
    let running = bff::start(&config).await.unwrap();
    let res = reqwest::get(format!("http://{}/api/v1/clientes", running.addr)).await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    running.stop().await;
    svc.stop().await;
}
