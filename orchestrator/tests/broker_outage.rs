//! The HTTP API during a broker outage: the orchestrator (built as every run mode builds it,
//! `app::build`) over a transport whose sends and readiness probe never answer, as a broker that
//! is down while the transport's own retries go on for minutes. A campaign POST still answers
//! 202 once its saga is in the log (the saga's first command waits in the background), and a
//! request that would wait on the broker (`/health`) is cut at the request deadline.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use daemon::Tasks;
use orchestrator::app::{self, Db, EventSink, Parts};
use reqwest::StatusCode;
use saga_core::inject::FaultPlan;
use saga_core::log::sql::SqliteStore;
use saga_core::log::SagaStore;
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Receiver, Reply, Transport, TransportError};
use saga_core::SagaStatus;
use serde_json::{json, Value};

/// Subscribing works (the consumers were made before the outage); nothing sent ever returns.
struct BrokerDown(InProcessTransport);

#[async_trait]
impl Transport for BrokerDown {
    async fn send_command(&self, _command: &Command) -> Result<(), TransportError> {
        std::future::pending().await
    }
    async fn send_reply(&self, _reply_to: &str, _reply: &Reply) -> Result<(), TransportError> {
        std::future::pending().await
    }
    async fn commands(&self, participant: &str) -> Result<Box<dyn Receiver<Command>>, TransportError> {
        self.0.commands(participant).await
    }
    async fn replies(&self, address: &str) -> Result<Box<dyn Receiver<Reply>>, TransportError> {
        self.0.replies(address).await
    }
    async fn ready(&self) -> Result<(), TransportError> {
        std::future::pending().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answers_once_the_saga_is_logged_and_no_request_outlives_its_deadline() {
    let path = std::env::temp_dir().join(format!("alpes-outage-{}.sqlite", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let store_handle = store.clone();
    let tasks = Tasks::new();
    let parts = Parts {
        db: Db::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        transport: Arc::new(BrokerDown(InProcessTransport::new())),
        events: EventSink::Log,
        steps: Default::default(),
        faults: FaultPlan::none(),
        observer: None,
        http: "127.0.0.1:0".parse().unwrap(),
        routes: Router::new(),
        openapi: Default::default(),
        cliente_url: None,
        request_deadline: Duration::from_millis(500),
        access: Default::default(),
    };
    let app = app::build(parts, &tasks).await.unwrap();
    let base = format!("http://{}", app.addr);
    // A client that gives up long after the server should have answered.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    let request = json!({ "nombre": "Campaña", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
        "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100,
        "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
        "influencers": [ { "nombre": "Ana", "plataforma": "Instagram", "seguidores": 150000, "categoria": "x" } ] });
    let res = http.post(format!("{base}/afiliaciones/campana")).json(&request).send().await;
    let res = res.expect("the POST is answered although the broker does not answer");
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let accepted: Value = res.json().await.unwrap();
    let saga_id: uuid::Uuid = accepted["saga_id"].as_str().unwrap().parse().unwrap();
    let saga = store_handle.load(saga_core::SagaId(saga_id)).await.unwrap().expect("the saga is in the log");
    assert_eq!(saga.status, SagaStatus::Running);
    assert_eq!(saga.in_flight.len(), 1, "its first command is logged as sent; the timer resends it if need be");

    let res = http.get(format!("{base}/health")).send().await.expect("/health is answered at its deadline");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = res.json().await.unwrap();
    assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "a JSON error like every other: {body}");
    tasks.stop().await;
}
