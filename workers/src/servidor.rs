//! A worker daemon: one participant (marca, influencer or tracking) with its own PostgreSQL
//! database, consuming its command topic over a broker transport and replying, plus an HTTP
//! server with `/health`, `/metrics` and, for tracking, the event intake.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use daemon::{metricas, Tasks};
use saga_core::log::sql::{migrate, pg_pool};
use saga_core::participant::{serve_on, CommandHandler, PgParticipant, DEFAULT_CONCURRENCY};
use saga_core::transport::Transport;
use schemas::Envelope;
use tokio::net::TcpListener;
use tracing::info;

use crate::marca::{Marca, MarcaSeed};
use crate::{influencer, marca, tracking, tracking_eventos};

/// Which participant a daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servicio {
    /// Budgets.
    Marca,
    /// Bookings.
    Influencer,
    /// Tracking contexts and events.
    Tracking,
}

impl Servicio {
    /// The service's name, as the command line and the default subscription spell it.
    pub fn name(self) -> &'static str {
        match self {
            Servicio::Marca => "marca",
            Servicio::Influencer => "influencer",
            Servicio::Tracking => "tracking",
        }
    }

    /// The command topic (part of the message contract: one Avro envelope per topic).
    pub fn topic(self) -> &'static str {
        match self {
            Servicio::Marca => schemas::ComandoMarca::TOPIC,
            Servicio::Influencer => schemas::ComandoInfluencer::TOPIC,
            Servicio::Tracking => schemas::ComandoTracking::TOPIC,
        }
    }
}

/// A worker daemon's configuration: defaults (per service), then a TOML file, then `ALPES__…`
/// environment variables (daemon::configuracion).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where its HTTP server (`/health`, `/metrics`, tracking's event intake) listens.
    pub http: SocketAddr,
    /// Its own PostgreSQL database. A secret: never printed.
    pub database_url: daemon::SecretString,
    /// The broker.
    pub pulsar: daemon::configuracion::Pulsar,
    /// marca only: a JSON file of brands to seed (a list of [`MarcaSeed`]); without it, the
    /// built-in `workers/seed/marcas.json`. Seeding adds missing brands and never changes one.
    #[serde(default)]
    pub marcas: Option<std::path::PathBuf>,
}

/// Keys without a default.
pub const REQUIRED: [&str; 1] = ["database_url"];

impl Config {
    /// The defaults of a service: HTTP on 127.0.0.1:8001 (marca), 8002 (influencer), 8003
    /// (tracking); the broker on 127.0.0.1:6650, tenant `alpes`, namespace `afiliaciones`, the
    /// service's name as subscription.
    pub fn defaults(servicio: Servicio) -> String {
        let port = match servicio {
            Servicio::Marca => 8001,
            Servicio::Influencer => 8002,
            Servicio::Tracking => 8003,
        };
        format!(
            "http = \"127.0.0.1:{port}\"\n[pulsar]\nurl = \"pulsar://127.0.0.1:6650\"\ntenant = \"alpes\"\n\
             namespace = \"afiliaciones\"\nsubscription = \"{}\"\n",
            servicio.name()
        )
    }

    /// Reads the configuration of `servicio`.
    pub fn load(servicio: Servicio, file: Option<&std::path::Path>) -> anyhow::Result<Self> {
        daemon::configuracion::cargar(&Self::defaults(servicio), file, &REQUIRED)
    }

    /// Every environment variable the daemon of `servicio` reads.
    pub fn variables(servicio: Servicio) -> Vec<String> {
        let mut keys = REQUIRED.to_vec();
        if servicio == Servicio::Marca {
            keys.push("marcas");
        }
        // The defaults are built here and parsed by a test.
        daemon::configuracion::variables(&Self::defaults(servicio), &keys).unwrap_or_default()
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

/// Starts a worker: migrates its database (and seeds brands, for marca), consumes `topic`.
pub async fn start(
    servicio: Servicio,
    database_url: &str,
    http: SocketAddr,
    topic: String,
    transport: Arc<dyn Transport>,
    marcas: &[MarcaSeed],
) -> anyhow::Result<Running> {
    let pool = pg_pool(database_url, 10).await.with_context(|| format!("connecting to the {servicio:?} database"))?;
    let mut app = Router::new();
    let handler: Arc<dyn CommandHandler> = match servicio {
        Servicio::Marca => {
            migrate(&marca::PG_MIGRATOR, &pool).await.context("migrating marca")?;
            Marca::seed_postgres(&pool, marcas).await.context("seeding brands")?;
            let p = PgParticipant::new(pool.clone(), Marca);
            p.migrate().await.context("migrating the participant tables")?;
            Arc::new(p)
        }
        Servicio::Influencer => {
            migrate(&influencer::PG_MIGRATOR, &pool).await.context("migrating influencer")?;
            let p = PgParticipant::new(pool.clone(), influencer::Influencers);
            p.migrate().await.context("migrating the participant tables")?;
            Arc::new(p)
        }
        Servicio::Tracking => {
            migrate(&tracking::PG_MIGRATOR, &pool).await.context("migrating tracking")?;
            let p = PgParticipant::new(pool.clone(), tracking::Tracking);
            p.migrate().await.context("migrating the participant tables")?;
            app = app.merge(tracking_eventos::router(Arc::new(tracking_eventos::PgEventos { pool: pool.clone() })));
            Arc::new(p)
        }
    };
    let tasks = Tasks::new();
    // Subscribed before the HTTP server answers: a worker that reports itself healthy receives
    // every command sent from then on (a first subscription starts at the end of the topic).
    let commands = transport.commands(&topic).await.with_context(|| format!("subscribing to {topic}"))?;
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
                    daemon::salud(&database, &broker)
                }
            }),
        )
        .merge(metricas::router(metricas::prometheus()));
    let listener = TcpListener::bind(http).await.with_context(|| format!("binding {http}"))?;
    let addr = listener.local_addr()?;
    tasks.spawn("HTTP server", axum::serve(listener, app).with_graceful_shutdown(tasks.stop_signal()).into_future());
    info!(?servicio, %addr, topic, "worker ready");
    Ok(Running::new(addr, tasks))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_service_lists_its_variables() {
        for servicio in [Servicio::Marca, Servicio::Influencer, Servicio::Tracking] {
            let vars = Config::variables(servicio);
            for v in ["ALPES__DATABASE_URL", "ALPES__HTTP", "ALPES__PULSAR__URL", "ALPES__PULSAR__SUBSCRIPTION"] {
                assert!(vars.iter().any(|x| x == v), "{servicio:?} lacks {v}: {vars:?}");
            }
            assert_eq!(vars.iter().any(|x| x == "ALPES__MARCAS"), servicio == Servicio::Marca);
        }
        let seeds = Config {
            http: "127.0.0.1:1".parse().unwrap(),
            database_url: "x".into(),
            pulsar: daemon::configuracion::Pulsar {
                url: "u".into(),
                tenant: "t".into(),
                namespace: "n".into(),
                subscription: "s".into(),
            },
            marcas: None,
        }
        .marcas()
        .unwrap();
        assert!(seeds.len() >= 2, "{seeds:?}");
    }
}
