//! The distributed mode's orchestrator: its saga log and campaign view in PostgreSQL, commands
//! and replies over a broker transport, the HTTP API, `/metrics`, the projector and the event
//! relay. Topic names are part of the message contract (each topic has one Avro schema, see
//! `schemas/`): the tenant and namespace are configured, the topics inside them are not.
//! Configuration in layers: defaults, then a TOML file, then `ALPES__…` environment
//! variables (`ALPES__DATABASE_URL`, `ALPES__PULSAR__URL`, `ALPES__HTTP`, …); the database URL is
//! a secret and never printed.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use daemon::{metricas, ExposeSecret, SecretString, Tasks};
use saga_core::definition::RetryPolicy;
use saga_core::engine::{Engine, EngineConfig};
use saga_core::log::sql::{pg_pool, PgStore};
use saga_core::metrics::MetricsObserver;
use saga_core::transport::Transport;
use serde::Deserialize;
use tokio::net::TcpListener;
use tracing::info;

use crate::api::{router, AppState};
use crate::sagas::crear_campana::eventos::{self, Publicador};
use crate::sagas::crear_campana::proyector::{self, AvisoFin};
use crate::sagas::crear_campana::vista::PgVista;
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
    pub pulsar: daemon::configuracion::Pulsar,
    /// Reply timeout of every step, in seconds.
    pub step_timeout_secs: u64,
    /// Attempts of a step (action or compensation) before giving up.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds (doubles up to 10 s).
    pub initial_backoff_ms: u64,
}

/// Keys without a default.
pub const REQUIRED: [&str; 1] = ["database_url"];

/// The defaults (TOML).
pub const DEFAULTS: &str = r#"
http = "127.0.0.1:8000"
step_timeout_secs = 10
max_attempts = 5
initial_backoff_ms = 200
[pulsar]
url = "pulsar://127.0.0.1:6650"
tenant = "alpes"
namespace = "afiliaciones"
subscription = "orchestrator"
"#;

impl Config {
    /// Defaults, then `file` (TOML) if given, then `ALPES__…` environment variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        daemon::configuracion::cargar(DEFAULTS, file, &REQUIRED)
    }

    /// Every environment variable this configuration reads.
    pub fn variables() -> Vec<String> {
        // The defaults are a constant, parsed by a test.
        daemon::configuracion::variables(DEFAULTS, &REQUIRED).unwrap_or_default()
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

/// Starts the orchestrator over `transport` (and `publicador` for integration events).
pub async fn start(
    config: &Config,
    transport: Arc<dyn Transport>,
    publicador: Arc<dyn Publicador>,
) -> anyhow::Result<Running> {
    let pool =
        pg_pool(config.database_url.expose_secret(), 20).await.context("connecting to the orchestrator's database")?;
    let store = PgStore::new(pool.clone());
    store.migrate().await.context("migrating the saga log")?;
    let vista = Arc::new(PgVista::new(pool).await.context("migrating the campaign view")?);
    let registry = crate::sagas::registry(&config.steps()).context("registering the sagas")?;
    let (aviso, fines) = AvisoFin::new(Some(Arc::new(MetricsObserver)));
    let engine = Engine::builder(Arc::new(store), Arc::new(registry), transport)
        .config(EngineConfig {
            reply_to: <schemas::RespuestaAfiliaciones as schemas::Envelope>::TOPIC.to_owned(),
            ..EngineConfig::default()
        })
        .observer(Arc::new(aviso))
        .build();

    let tasks = Tasks::new();
    // Subscribed before the API answers, so the reply to any command it sends has a subscription
    // to land on.
    let replies = engine.subscribe().await.context("subscribing to the replies")?;
    tasks.spawn("engine", engine.clone().run_on(replies, tasks.stop_signal()));
    tasks.spawn_until_stopped("projector", proyector::run(engine.clone(), vista.clone(), fines));
    tasks.spawn_until_stopped("event relay", eventos::run(vista.clone(), publicador, eventos::TOPICO.to_owned()));
    tasks.spawn_until_stopped(
        "store gauges",
        saga_core::metrics::poll_store_gauges(engine.store().clone(), Duration::from_secs(5)),
    );

    let listener = TcpListener::bind(config.http).await.with_context(|| format!("binding {}", config.http))?;
    let addr = listener.local_addr()?;
    let app = router(AppState { engine, vista }).merge(metricas::router(metricas::prometheus()));
    tasks.spawn("HTTP server", axum::serve(listener, app).with_graceful_shutdown(tasks.stop_signal()).into_future());
    info!(%addr, "orchestrator ready");
    Ok(Running::new(addr, tasks))
}
