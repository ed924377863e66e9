//! A worker daemon: one participant (marca, influencer or tracking) with its own PostgreSQL
//! database, consuming its command topic over a broker transport and replying, plus an HTTP
//! server with `/health`, `/metrics`, `/openapi.json` (describing every route it serves) and, for
//! tracking, the event intake.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use daemon::{metrics, Tasks};
use saga_core::log::sql::pg_pool;
use saga_core::participant::{serve_on, DEFAULT_CONCURRENCY};
use saga_core::transport::Transport;
use tokio::net::TcpListener;
use tracing::info;

use crate::marca::{self, MarcaSeed};
use crate::participants::{Options, Participant, Ready};

/// A worker daemon's configuration: defaults (per service), then a TOML file, then `ALPES__…`
/// environment variables (daemon::config).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where its HTTP server (`/health`, `/metrics`, tracking's event intake) listens.
    pub http: SocketAddr,
    /// Its own PostgreSQL database. A secret: never printed.
    pub database_url: daemon::SecretString,
    /// The broker.
    pub pulsar: daemon::config::Pulsar,
    /// marca only: a JSON file of brands to seed (a list of [`MarcaSeed`]); without it, the
    /// built-in `workers/seed/marcas.json`. Seeding adds missing brands and never changes one.
    #[serde(default)]
    pub marcas: Option<std::path::PathBuf>,
    /// The bearer token its HTTP API requires (every route but `/health` and `/metrics`);
    /// unset or empty: open. A secret.
    #[serde(default)]
    pub api_token: Option<daemon::SecretString>,
}

/// Keys without a default.
pub const REQUIRED: [&str; 1] = ["database_url"];

impl Config {
    /// The defaults of a participant: HTTP on 127.0.0.1 and its port (8001 marca, 8002
    /// influencer, 8003 tracking); the broker on 127.0.0.1:6650, tenant `alpes`, namespace
    /// `afiliaciones`, the participant's name as subscription.
    pub fn defaults(participant: &dyn Participant) -> String {
        format!(
            "http = \"127.0.0.1:{}\"\n[pulsar]\nurl = \"pulsar://127.0.0.1:6650\"\ntenant = \"alpes\"\n\
             namespace = \"afiliaciones\"\nsubscription = \"{}\"\n",
            participant.http_port(),
            participant.name()
        )
    }

    /// Reads the configuration of `participant`.
    pub fn load(participant: &dyn Participant, file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        daemon::config::load(&Self::defaults(participant), file, &REQUIRED)
    }

    /// Every environment variable the daemon of `participant` reads.
    pub fn variables(participant: &dyn Participant) -> Vec<String> {
        let mut keys = REQUIRED.to_vec();
        keys.push(daemon::access::KEY);
        keys.extend_from_slice(participant.extra_keys());
        // The defaults are built here and parsed by a test.
        daemon::config::variables(&Self::defaults(participant), &keys).unwrap_or_default()
    }

    /// The brands to seed: the file's, or the built-in ones.
    pub fn marcas(&self) -> anyhow::Result<Vec<MarcaSeed>> {
        let text = match &self.marcas {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            None => marca::MARCAS_POR_DEFECTO.to_owned(),
        };
        serde_json::from_str(&text).context("the brands file is not a JSON list of brands")
    }
}

/// A running worker.
pub use daemon::Running;

/// The `/openapi.json` of `participant`'s daemon: its own routes (`own`, from [`Ready`]), then
/// `/health`, `/metrics` and `/openapi.json`.
pub fn document(
    participant: &dyn Participant,
    own: utoipa::openapi::OpenApi,
) -> anyhow::Result<utoipa::openapi::OpenApi> {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title(format!("Alpes Partners {} worker", participant.name()))
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(format!(
                    "The {} participant's daemon: it consumes {}; its HTTP server answers these routes.",
                    participant.name(),
                    participant.topic()
                )))
                .build(),
        )
        .build();
    daemon::openapi::merge(&mut doc, own).map_err(anyhow::Error::msg)?;
    daemon::openapi::merge(&mut doc, daemon::openapi::operations()).map_err(anyhow::Error::msg)?;
    Ok(doc)
}

/// Starts a worker: migrates its database (and seeds it), consumes its command topic, and serves
/// its HTTP API to the callers `access` admits.
pub async fn start(
    participant: &dyn Participant,
    database_url: &str,
    http: SocketAddr,
    transport: Arc<dyn Transport>,
    options: &Options,
    access: &daemon::access::Access,
) -> anyhow::Result<Running> {
    let name = participant.name();
    let topic = participant.topic();
    let pool = pg_pool(database_url, 10).await.with_context(|| format!("connecting to the {name} database"))?;
    let Ready { handler, routes: app, openapi } = participant.postgres(pool.clone(), options).await?;
    let tasks = Tasks::new();
    // Subscribed before the HTTP server answers: a worker that reports itself healthy receives
    // every command sent from then on (a first subscription starts at the end of the topic).
    let commands = transport.commands(topic).await.with_context(|| format!("subscribing to {topic}"))?;
    info!(participant = %topic, concurrency = DEFAULT_CONCURRENCY, "participant serving");
    tasks
        .spawn("participant", serve_on(handler, transport.clone(), commands, DEFAULT_CONCURRENCY, tasks.stop_signal()));
    let health_pool = pool.clone();
    let health_transport = transport.clone();
    let app = app
        .route(
            "/health",
            get(move || {
                let pool = health_pool.clone();
                let transport = health_transport.clone();
                async move {
                    let (database, broker) = tokio::join!(sqlx::query("SELECT 1").execute(&pool), transport.ready());
                    daemon::health(&database, &broker)
                }
            }),
        )
        .merge(metrics::router(metrics::prometheus()))
        .merge(daemon::openapi::router(&{
            let mut doc = document(participant, openapi).context("describing the routes")?;
            if access.required() {
                daemon::openapi::require_bearer(&mut doc);
            }
            doc
        }));
    let app = access.protect(daemon::json_errors::layer(app));
    let listener = TcpListener::bind(http).await.with_context(|| format!("binding {http}"))?;
    let addr = listener.local_addr()?;
    tasks.spawn("HTTP server", axum::serve(listener, app).with_graceful_shutdown(tasks.stop_signal()).into_future());
    info!(participant = name, %addr, topic, ?access, "worker ready");
    Ok(Running::new(addr, tasks))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_participant_lists_its_variables() {
        for participant in crate::participants::ALL {
            let vars = Config::variables(*participant);
            for v in ["ALPES__DATABASE_URL", "ALPES__HTTP", "ALPES__PULSAR__URL", "ALPES__PULSAR__SUBSCRIPTION"] {
                assert!(vars.iter().any(|x| x == v), "{} lacks {v}: {vars:?}", participant.name());
            }
            assert_eq!(vars.iter().any(|x| x == "ALPES__MARCAS"), participant.name() == "marca");
            assert!(vars.iter().any(|x| x == "ALPES__API_TOKEN"), "{vars:?}");
        }
        let seeds = Config {
            http: "127.0.0.1:1".parse().unwrap(),
            database_url: "x".into(),
            pulsar: daemon::config::Pulsar {
                url: "u".into(),
                tenant: "t".into(),
                namespace: "n".into(),
                subscription: "s".into(),
            },
            marcas: None,
            api_token: None,
        }
        .marcas()
        .unwrap();
        assert!(seeds.len() >= 2, "{seeds:?}");
    }
}
