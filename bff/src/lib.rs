//! The platform's Backend For Frontend and the operators' console, one daemon.
//!
//! - [`api`]: `/api/v1/…`, the web front end's routes. Each aggregates the services' HTTP APIs
//!   (the orchestrator's campaign, payout and saga views; cliente's clients) into one answer, with
//!   the pagination the front end uses (`page`, `per_page`, `total`, `pages`, `has_next`,
//!   `has_prev`). A backend that does not answer makes its part of the answer unavailable, never
//!   the whole answer a `500`.
//! - [`console`]: `/console/…`, server-rendered pages for the people who run the sagas: the saga
//!   list, one saga's timeline drawn as a picture, its dead letters, and the operator's actions.
//! - [`backend`]: the HTTP clients of the services, with their timeout and a short cache of
//!   what is read often.
//!
//! The BFF keeps no data of its own: it can be restarted, or run in several copies, at will.

pub mod api;
pub mod backend;
pub mod console;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use serde::Deserialize;

use backend::Backends;

/// The BFF's configuration defaults (TOML): every key a deployment may override with
/// `ALPES__…` variables. The defaults reach the embedded mode, where every service answers on
/// the orchestrator's address.
pub const DEFAULTS: &str = r#"
http = "127.0.0.1:5001"
# The orchestrator: sagas, the campaign and payout views, dead letters.
orquestador_url = "http://127.0.0.1:8000"
# The cliente service (the embedded mode serves it on the orchestrator's address).
cliente_url = "http://127.0.0.1:8000"
# How long one call to a backend may take before its part is answered as unavailable.
timeout_ms = 3000
# How long a read is served from the cache; 0 turns the cache off.
cache_ttl_ms = 2000
# How many answers the cache holds at most.
cache_entradas = 1000
"#;

/// The BFF's configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where it listens.
    pub http: SocketAddr,
    /// The orchestrator's base URL.
    pub orquestador_url: String,
    /// The cliente service's base URL.
    pub cliente_url: String,
    /// Timeout of one backend call, in milliseconds.
    pub timeout_ms: u64,
    /// Time to live of a cached read, in milliseconds (0: no cache).
    pub cache_ttl_ms: u64,
    /// Most answers cached.
    pub cache_entradas: u64,
    /// The deployment's bearer token (`ALPES__API_TOKEN`): sent to the services, and required
    /// on `/api/v1`; unset: open. A secret. The console's pages do not take it (see
    /// README_SAGA, "Access").
    #[serde(default)]
    pub api_token: Option<daemon::SecretString>,
}

impl Config {
    /// The defaults, then `file`, then the `ALPES__…` environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        daemon::config::load(DEFAULTS, file, &[])
    }

    /// Every variable the BFF reads.
    pub fn variables() -> anyhow::Result<Vec<String>> {
        daemon::config::variables(DEFAULTS, &[daemon::access::KEY])
    }

    /// The defaults, with the backends at `orquestador` and `cliente` (tests, the embedded mode).
    pub fn with_backends(orquestador: &str, cliente: &str) -> Config {
        let mut c: Config = toml::from_str(DEFAULTS).expect("the defaults are valid");
        c.orquestador_url = orquestador.trim_end_matches('/').to_owned();
        c.cliente_url = cliente.trim_end_matches('/').to_owned();
        c
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }
}

/// What the routes share.
#[derive(Clone)]
pub struct State {
    /// The services.
    pub backends: Arc<Backends>,
}

/// Every route of the BFF: `/api/v1`, `/console`, `/metrics`; a request runs at most twice the
/// backend timeout (two calls in a row at most) plus a second.
pub fn router(config: &Config) -> anyhow::Result<Router> {
    let access =
        daemon::access::Access::from_config(config.api_token.clone()).map_err(|e| anyhow::anyhow!("api_token: {e}"))?;
    let backends = Arc::new(Backends::new(config, &access).context("building the backends' HTTP clients")?);
    let state = State { backends };
    let deadline = config.timeout() * 2 + Duration::from_secs(1);
    let routes = Router::new()
        .nest("/api/v1", access.protect(api::router(state.clone())))
        .merge(console::router(state))
        .merge(daemon::metrics::router(daemon::metrics::prometheus()));
    Ok(with_deadline(routes, deadline))
}

fn with_deadline(router: Router, deadline: Duration) -> Router {
    router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| async move {
            let path = request.uri().path().to_owned();
            match tokio::time::timeout(deadline, next.run(request)).await {
                Ok(response) => response,
                Err(_) => {
                    tracing::warn!(path, deadline_ms = deadline.as_millis() as u64, "request cut at its deadline");
                    api::error(
                        axum::http::StatusCode::SERVICE_UNAVAILABLE,
                        "la solicitud no terminó a tiempo; inténtelo de nuevo",
                    )
                }
            }
        },
    ))
}

/// Starts the BFF: binds `config.http` and serves until [`daemon::Running::stop`].
pub async fn start(config: &Config) -> anyhow::Result<daemon::Running> {
    let app = router(config)?;
    let listener =
        tokio::net::TcpListener::bind(config.http).await.with_context(|| format!("binding {}", config.http))?;
    let addr = listener.local_addr()?;
    let tasks = daemon::Tasks::new();
    let stop = tasks.stop_signal();
    tasks.spawn("bff http server", async move { axum::serve(listener, app).with_graceful_shutdown(stop).await });
    Ok(daemon::Running::new(addr, tasks))
}
