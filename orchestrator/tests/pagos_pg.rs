//! The payout saga's rules on real PostgreSQL: the orchestrator and every worker as the
//! distributed mode starts them, each with its own database, connected by the in-process
//! transport (the end-to-end tests run the same over Apache Pulsar as separate processes).
//!
//! - a payout completes: amounts exact in every service, the commission 10%, one
//!   `PagoCompletado` in the outbox;
//! - a partner that is not a registered client is refused before any saga starts;
//! - each refusal of the provider compensates the client's credit, then the payout, in reverse;
//! - a provider timeout on the first attempt is retried and the payout completes;
//! - one cycle of one partner is paid once, under concurrent identical requests; a different
//!   request for the same cycle is a 409;
//! - with a token on every daemon, the orchestrator's partner check carries it to cliente.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::distributed::{self, Config};
use reqwest::StatusCode;
use saga_core::log::sql::{create_database, pg_pool};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::Transport;
use serde_json::{json, Value};
use sqlx::PgPool;
use workers::participants::{self, Options};
use workers::server;

async fn fresh_database(name: &str) -> String {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    create_database(&admin, &format!("worker_test_{name}")).await.expect("create a database on PostgreSQL")
}

struct World {
    base: String,
    cliente: String,
    http: reqwest::Client,
    dbs: HashMap<&'static str, String>,
    stop: Vec<daemon::Running>,
}

impl World {
    async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Every daemon requiring `token` when given (the workers by their `Access`, the
    /// orchestrator by `api_token` in its configuration file); the test's client sends it.
    async fn start_with(token: Option<&str>) -> Self {
        let access = daemon::access::Access::from_config(token.map(Into::into)).unwrap();
        let transport: Arc<dyn Transport> = Arc::new(InProcessTransport::new());
        let mut dbs = HashMap::new();
        let mut stop = Vec::new();
        let mut cliente = String::new();
        for participant in participants::ALL {
            let db = fresh_database(participant.name()).await;
            let w = server::start(
                *participant,
                &db,
                "127.0.0.1:0".parse().unwrap(),
                transport.clone(),
                &Options::default(),
                &access,
            )
            .await
            .unwrap();
            if participant.name() == "cliente" {
                cliente = format!("http://{}", w.addr);
            }
            dbs.insert(participant.name(), db);
            stop.push(w);
        }
        let orquestador = fresh_database("orquestador").await;
        dbs.insert("orquestador", orquestador.clone());
        let toml = format!(
            "database_url = {orquestador:?}\nhttp = \"127.0.0.1:0\"\ncliente_url = {cliente:?}\ninitial_backoff_ms = 50\n"
        );
        let file = std::env::temp_dir().join(format!("pagos-pg-{}.toml", uuid::Uuid::new_v4().simple()));
        let toml = match token {
            Some(t) => format!("{toml}api_token = {t:?}\n"),
            None => toml,
        };
        std::fs::write(&file, toml).unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let orchestrator = distributed::start(&config, transport, orchestrator::app::EventSink::Log).await.unwrap();
        let base = format!("http://{}", orchestrator.addr);
        stop.push(orchestrator);
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = access.authorization() {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
        Self { base, cliente, http, dbs, stop }
    }

    async fn db(&self, service: &str) -> PgPool {
        pg_pool(&self.dbs[service], 2).await.unwrap()
    }

    async fn post(&self, url: String, body: &Value) -> (StatusCode, Value) {
        let res = self.http.post(url).json(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn registrar_cliente(&self) -> String {
        let (id, body) = casos::cliente();
        let (status, c) = self.post(format!("{}/cliente/registrar", self.cliente), &body).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        id
    }

    async fn pagar(&self, body: &Value) -> (StatusCode, Value) {
        self.post(format!("{}/pagos/pagar", self.base), body).await
    }

    /// Polls a payout until it leaves `PENDIENTE`.
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..400 {
            let (status, p) = self.get(&format!("/pagos/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{p}");
            if p["estado"] != "PENDIENTE" {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("payout {id} still pending after 20 s");
    }

    async fn commands(&self, saga: &str) -> Vec<(String, String)> {
        let (status, s) = self.get(&format!("/sagas/{saga}")).await;
        assert_eq!(status, StatusCode::OK);
        casos::comandos(&s)
    }

    async fn total_pagos(&self, partner: &str) -> i64 {
        sqlx::query_scalar("SELECT total_pagos FROM cliente WHERE id = $1")
            .bind(partner)
            .fetch_one(&self.db("cliente").await)
            .await
            .unwrap()
    }

    async fn stop(self) {
        for r in self.stop.into_iter().rev() {
            r.stop().await;
        }
    }
}

fn uuid_of(id: &str) -> uuid::Uuid {
    id.strip_prefix("payout-").unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payout_completes_with_exact_amounts_in_every_service() {
    let w = World::start().await;
    let partner = w.registrar_cliente().await;
    let (status, accepted) = w.pagar(&casos::pago(&partner)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("payout-"), "{accepted}");
    let p = w.settled(&id).await;
    assert_eq!(p["estado"], "COMPLETADO", "{p}");
    assert_eq!(p["monto_total"], json!({ "valor": 1500.5, "moneda": "USD", "valor_menor": 150_050 }));
    assert_eq!(p["partner_id"], json!(partner));
    let transacciones = p["transacciones"].as_array().unwrap();
    assert_eq!(transacciones.len(), 1, "{p}");
    assert_eq!(transacciones[0]["tipo"], "COMISION");
    assert_eq!(transacciones[0]["monto"]["valor_menor"], 15_005);
    assert_eq!(transacciones[0]["porcentaje"], 10);
    for key in ["id", "partner_id", "cycle_id", "estado", "monto_total", "fecha_creacion", "fecha_actualizacion"] {
        assert!(p.get(key).is_some(), "{key} missing: {p}");
    }
    let auditoria = p["auditoria"].as_array().unwrap();
    assert!(auditoria.iter().any(|e| e["evento"] == "completed"), "{p}");
    let saga = p["saga_id"].as_str().unwrap();
    assert!(casos::pasos_pago_completo(&w.commands(saga).await));

    let id_pago = uuid_of(&id);
    let (estado, valor): (String, i64) = sqlx::query_as("SELECT estado, valor_menor FROM pago WHERE id_pago = $1")
        .bind(id_pago)
        .fetch_one(&w.db("pagos").await)
        .await
        .unwrap();
    assert_eq!((estado.as_str(), valor), ("COMPLETADO", 150_050));
    let comision: Vec<(String, i64)> =
        sqlx::query_as("SELECT tipo, valor_menor FROM transaccion_pago WHERE id_pago = $1")
            .bind(id_pago)
            .fetch_all(&w.db("pagos").await)
            .await
            .unwrap();
    assert_eq!(comision, vec![("COMISION".to_owned(), 15_005)]);
    let operacion: Vec<(String, i64)> = sqlx::query_as("SELECT estado, valor_menor FROM operacion WHERE id_pago = $1")
        .bind(id_pago)
        .fetch_all(&w.db("proveedor").await)
        .await
        .unwrap();
    assert_eq!(operacion, vec![("AUTORIZADA".to_owned(), 150_050)]);
    assert_eq!(w.total_pagos(&partner).await, 1);
    let (_, cliente) = w.get_cliente(&partner).await;
    assert_eq!(cliente["total_pagos"], 1, "{cliente}");
    assert!(cliente["ultimo_pago"].is_string(), "{cliente}");

    // One event in the outbox, PagoCompletado, published.
    let orq = w.db("orquestador").await;
    let eventos: Vec<(String, bool)> =
        sqlx::query_as("SELECT tipo, publicado_en IS NOT NULL FROM evento_pago_saliente WHERE saga_id = $1")
            .bind(uuid::Uuid::parse_str(saga).unwrap())
            .fetch_all(&orq)
            .await
            .unwrap();
    assert_eq!(eventos.len(), 1, "{eventos:?}");
    assert_eq!(eventos[0].0, "PagoCompletado");
    w.stop().await;
}

impl World {
    async fn get_cliente(&self, id: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}/cliente/{id}", self.cliente)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unregistered_partner_is_refused_without_a_saga() {
    let w = World::start().await;
    let (status, answer) = w.pagar(&casos::pago("partner-que-no-existe")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer, json!({ "error": "Partner no encontrado" }));
    let (_, sagas) = w.get("/sagas").await;
    assert_eq!(sagas["sagas"], json!([]), "{sagas}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_provider_refusal_compensates_in_reverse_and_a_timeout_is_retried() {
    let w = World::start().await;
    let partner = w.registrar_cliente().await;
    for casos::Fallo { solicitud, paso, codigo, compensaciones } in casos::fallos_pago(|| casos::pago(&partner)) {
        let (status, accepted) = w.pagar(&solicitud).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let p = w.settled(accepted["id"].as_str().unwrap()).await;
        assert_eq!(p["estado"], "FALLIDO", "{p}");
        assert_eq!((p["paso_fallido"].as_str(), p["codigo"].as_str()), (Some(paso), Some(codigo)), "{p}");
        let sent = w.commands(p["saga_id"].as_str().unwrap()).await;
        let undone: Vec<_> = sent.into_iter().filter(|(_, k)| k == "compensation").collect();
        assert_eq!(undone, compensaciones, "{codigo}");
        let (estado,): (String,) = sqlx::query_as("SELECT estado FROM pago WHERE id_pago = $1")
            .bind(uuid_of(p["id"].as_str().unwrap()))
            .fetch_one(&w.db("pagos").await)
            .await
            .unwrap();
        assert_eq!(estado, "FALLIDO");
    }
    // Every credit was reverted.
    assert_eq!(w.total_pagos(&partner).await, 0);

    // The provider times out on the first attempt for this card: the step is retried.
    let mut body = casos::pago(&partner);
    body["payment_method_mask"] = json!("****0119");
    let (_, accepted) = w.pagar(&body).await;
    let p = w.settled(accepted["id"].as_str().unwrap()).await;
    assert_eq!(p["estado"], "COMPLETADO", "{p}");
    let intentos: Vec<&Value> = p["auditoria"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["evento"] == "command_sent" && e["paso"] == "enviar_pago")
        .map(|e| &e["intento"])
        .collect();
    assert_eq!(intentos, [&json!(1), &json!(2)], "{p}");
    assert_eq!(w.total_pagos(&partner).await, 1);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_cycle_is_paid_once_under_concurrent_requests() {
    let w = Arc::new(World::start().await);
    let partner = w.registrar_cliente().await;
    let body = casos::pago(&partner);
    let answers = futures_util::future::join_all((0..16).map(|_| {
        let (w, body) = (w.clone(), body.clone());
        async move { w.pagar(&body).await }
    }))
    .await;
    let ids: std::collections::HashSet<String> = answers
        .iter()
        .map(|(status, a)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{a}");
            a["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert_eq!(answers.iter().filter(|(_, a)| a["existente"] == false).count(), 1, "{answers:?}");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(w.settled(&id).await["estado"], "COMPLETADO");
    let (_, sagas) = w.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM pago WHERE id_partner = $1")
        .bind(&partner)
        .fetch_one(&w.db("pagos").await)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(w.total_pagos(&partner).await, 1);

    // The same cycle with another amount is a conflict, and starts nothing.
    let mut other = body.clone();
    other["total_amount"] = json!(10);
    let (status, answer) = w.pagar(&other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let (_, sagas) = w.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
    match Arc::try_unwrap(w) {
        Ok(w) => w.stop().await,
        Err(_) => panic!("world still shared"),
    }
}

/// The views' database goes away: the routes that read it answer `503` with `Retry-After` (not
/// a `500`), and answer again once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unavailable_view_database_is_a_503_with_retry_after() {
    let w = World::start().await;
    let admin = pg_pool(&std::env::var("SAGA_TEST_DATABASE_URL").unwrap(), 1).await.unwrap();
    let url = w.dbs["orquestador"].clone();
    let name = url.rsplit('/').next().unwrap().to_owned();
    let block = |allow: bool| format!("ALTER DATABASE \"{name}\" WITH ALLOW_CONNECTIONS {allow}");
    sqlx::query(&block(false)).execute(&admin).await.unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&admin)
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for path in [
        format!("/afiliaciones/campana/{}", uuid::Uuid::new_v4()),
        "/afiliaciones/campanas".to_owned(),
        format!("/pagos/payout-{}", uuid::Uuid::new_v4()),
        "/pagos".to_owned(),
    ] {
        let res = w.http.get(format!("{}{path}", w.base)).send().await.unwrap();
        let retry = res.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        statuses.push((path, res.status(), retry));
    }
    sqlx::query(&block(true)).execute(&admin).await.unwrap();
    for (path, status, retry) in &statuses {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {statuses:?}");
        assert!(retry.is_some(), "{path} has no Retry-After");
    }
    // Back: the same routes answer.
    let mut back = false;
    for _ in 0..100 {
        if w.get("/pagos").await.0 == StatusCode::OK {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(back, "the views answer again once the database is back");
    w.stop().await;
}

/// The lists the BFF pages through, on PostgreSQL: payouts filtered by amount, date, state and
/// text with their aggregations, and clients searched and sorted, all in SQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn payouts_and_clients_are_filtered_paged_and_summed_in_sql() {
    let w = World::start().await;
    let partner = w.registrar_cliente().await;
    let mut ids = Vec::new();
    for (monto, moneda, mask) in [(100.0, "USD", "****1234"), (2500.5, "USD", "****1234"), (7000.0, "CLP", "****0002")]
    {
        let mut body = casos::pago(&partner);
        body["total_amount"] = json!(monto);
        body["currency"] = json!(moneda);
        body["payment_method_type"] = json!("CARD");
        body["payment_method_mask"] = json!(mask);
        let (status, a) = w.pagar(&body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{a}");
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        w.settled(id).await;
    }
    let q = |query: &str| format!("/pagos?partner_id={partner}&{query}");
    let (status, all) = w.get(&q("limite=2")).await;
    assert_eq!(status, StatusCode::OK, "{all}");
    assert_eq!((all["total"].as_u64(), all["pagos"].as_array().unwrap().len()), (Some(3), 2));
    // The card ending 0002 is refused: two completed in USD, one failed in CLP.
    assert_eq!(all["agregaciones"]["por_estado"], json!({ "COMPLETADO": 2, "FALLIDO": 1 }), "{all}");
    assert_eq!(
        all["agregaciones"]["por_moneda"],
        json!([{ "moneda": "CLP", "pagos": 1, "monto_total": 7000.0, "monto_total_menor": 7000 },
               { "moneda": "USD", "pagos": 2, "monto_total": 2600.5, "monto_total_menor": 260050 }])
    );
    // Amount bounds are in units of each payout's currency: 7000 CLP is 7000, not 70.00.
    let (_, l) = w.get(&q("monto_min=150")).await;
    assert_eq!(l["total"], 2, "{l}");
    let (_, l) = w.get(&q("monto_min=100&monto_max=100")).await;
    assert_eq!(l["total"], 1, "{l}");
    let (_, l) = w.get(&q("estado=FALLIDO")).await;
    assert_eq!(l["pagos"][0]["monto_total"]["moneda"], "CLP", "{l}");
    let today = chrono::Utc::now().date_naive();
    let (_, l) = w.get(&q(&format!("fecha_desde={today}&fecha_hasta={today}"))).await;
    assert_eq!(l["total"], 3, "{l}");
    let (_, l) = w.get(&q(&format!("fecha_hasta={}", today.pred_opt().unwrap()))).await;
    assert_eq!(l["total"], 0, "{l}");
    let (_, l) = w.get(&format!("/pagos?buscar={}", partner.to_uppercase())).await;
    assert_eq!(l["total"], 3, "{l}");
    let (status, e) = w.get(&q("fecha_desde=2025-13-01")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");

    // Clients: search by name or email, sorted, paged, counted.
    let cliente = |id: &str, nombre: &str| {
        json!({ "id": id, "nombre": nombre, "email": format!("{id}@lista.example.com"), "cedula": "1234567890",
                "fecha_nacimiento": "1990-05-15" })
    };
    for (id, nombre) in [("partner-lista-b", "Beatriz Zapata"), ("partner-lista-a", "Álvaro Pérez")] {
        let (status, c) = w.post(format!("{}/cliente/registrar", w.cliente), &cliente(id, nombre)).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
    }
    let list = |query: &str| {
        let url = format!("{}/clientes?{query}", w.cliente);
        let http = w.http.clone();
        async move {
            let res = http.get(url).send().await.unwrap();
            (res.status(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, l) = list("buscar=LISTA&orden=nombre&direccion=asc").await;
    assert_eq!(status, StatusCode::OK, "{l}");
    let nombres: Vec<&str> = l["clientes"].as_array().unwrap().iter().map(|c| c["nombre"].as_str().unwrap()).collect();
    assert_eq!(nombres, ["Álvaro Pérez", "Beatriz Zapata"], "{l}");
    assert!(l["clientes"][0].get("cedula").is_none(), "no personal data in a list: {l}");
    let (_, l) = list("buscar=ALVARO").await;
    assert_eq!(l["total"], 1, "{l}");
    let (_, l) = list("limite=1&desde=1&orden=fecha_registro&direccion=desc").await;
    assert_eq!((l["total"].as_u64(), l["clientes"][0]["id"].as_str()), (Some(3), Some("partner-lista-b")), "{l}");
    let (status, e) = list("orden=cedula").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    w.stop().await;
}

/// The distributed mode with `api_token` set on every daemon: the orchestrator's partner check
/// reaches the cliente worker daemon with the token (without it cliente answers 401 and the
/// payout is a 503), and a request without the token is refused by both.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_token_the_orchestrator_sends_it_to_cliente() {
    let w = World::start_with(Some("pg-token-77aa")).await;
    let id = w.registrar_cliente().await;
    let (status, p) = w.pagar(&casos::pago(&id)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{p}");
    assert_eq!(w.settled(p["id"].as_str().unwrap()).await["estado"], "COMPLETADO");
    let bare = reqwest::Client::new();
    for url in [format!("{}/pagos", w.base), format!("{}/cliente/{id}", w.cliente)] {
        assert_eq!(bare.get(&url).send().await.unwrap().status(), StatusCode::UNAUTHORIZED, "{url}");
    }
    w.stop().await;
}
