//! The distributed mode's orchestrator: its saga log and the sagas' views in PostgreSQL,
//! commands and replies over a broker transport, integration events on the broker; the rest is
//! [`app::build`]. Topic names are part of the message contract (each topic has one Avro schema, see
//! `schemas/`): the tenant and namespace are configured, the topics inside them are not.
//! Configuration in layers: defaults, then a TOML file, then `ALPES__…` environment
//! variables (`ALPES__DATABASE_URL`, `ALPES__PULSAR__URL`, `ALPES__HTTP`, …); the database URL is
//! a secret and never printed.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use daemon::{ExposeSecret, SecretString, Tasks};
use saga_core::definition::RetryPolicy;
use saga_core::inject::FaultPlan;
use saga_core::log::sql::{pg_pool, PgStore};
use saga_core::transport::Transport;
use serde::Deserialize;

use crate::app::{self, Db, EventSink, Parts};
use crate::sagas::StepSettings;

/// The orchestrator's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// The orchestrator's PostgreSQL database (saga log and campaign view).
    pub database_url: SecretString,
    /// The broker.
    pub pulsar: daemon::config::Pulsar,
    /// Reply timeout of every step, in seconds.
    pub step_timeout_secs: u64,
    /// Attempts of a step (action or compensation) before giving up.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds (doubles up to 10 s).
    pub initial_backoff_ms: u64,
    /// The cliente service's HTTP API (the payout saga checks partners there).
    pub cliente_url: String,
    /// The bearer token the HTTP API requires (every route but `/health` and `/metrics`), and
    /// that the orchestrator sends to cliente; unset or empty: the API is open. A secret.
    #[serde(default)]
    pub api_token: Option<SecretString>,
}

/// Keys without a default.
pub const REQUIRED: [&str; 1] = ["database_url"];

/// The defaults (TOML).
pub const DEFAULTS: &str = r#"
http = "127.0.0.1:8000"
step_timeout_secs = 10
max_attempts = 5
initial_backoff_ms = 200
cliente_url = "http://127.0.0.1:8004"
[pulsar]
url = "pulsar://127.0.0.1:6650"
tenant = "alpes"
namespace = "afiliaciones"
subscription = "orchestrator"
"#;

impl Config {
    /// Defaults, then `file` (TOML) if given, then `ALPES__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        daemon::config::load(DEFAULTS, file, &REQUIRED)
    }

    /// Every environment variable this configuration reads.
    pub fn variables() -> Vec<String> {
        // The defaults are a constant, parsed by a test.
        daemon::config::variables(DEFAULTS, &[REQUIRED[0], daemon::access::KEY]).unwrap_or_default()
    }

    /// The steps' timeouts and retries from this configuration.
    pub fn steps(&self) -> StepSettings {
        let retry = RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: Duration::from_millis(self.initial_backoff_ms),
            ..RetryPolicy::default()
        };
        StepSettings {
            timeout: Duration::from_secs(self.step_timeout_secs),
            retry: retry.clone(),
            compensation_retry: retry,
        }
    }
}

/// A running orchestrator.
pub use daemon::Running;

/// Starts the orchestrator over `transport`, publishing integration events to `events`.
pub async fn start(config: &Config, transport: Arc<dyn Transport>, events: EventSink) -> anyhow::Result<Running> {
    let pool =
        pg_pool(config.database_url.expose_secret(), 20).await.context("connecting to the orchestrator's database")?;
    let store = PgStore::new(pool.clone());
    store.migrate().await.context("migrating the saga log")?;
    let tasks = Tasks::new();
    let parts = Parts {
        db: Db::Postgres(pool),
        store: Arc::new(store),
        transport,
        events,
        steps: config.steps(),
        faults: FaultPlan::none(),
        observer: None,
        http: config.http,
        routes: Router::new(),
        openapi: utoipa::openapi::OpenApi::default(),
        cliente_url: Some(config.cliente_url.clone()),
        request_deadline: crate::api::REQUEST_DEADLINE,
        access: daemon::access::Access::from_config(config.api_token.clone())?,
    };
    let app = app::build(parts, &tasks).await?;
    Ok(Running::new(app.addr, tasks))
}
