//! The embedded mode: the orchestrator and every participant in one process, over the
//! in-process transport, each with its own SQLite file in one folder, serving the same HTTP API.
//! Nothing to install: a newcomer runs the product with `cargo run`.
//!
//! Brands are seeded from a JSON file (default: the brands of `workers/seed/marcas.json`,
//! compiled in) on every start: brands not yet known are added, known ones keep their state.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use daemon::Tasks;
use saga_core::engine::{Engine, EngineObserver};
use saga_core::log::sql::{sqlite_pool, SqliteStore};
use saga_core::participant::serve;
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::Transport;
use tracing::info;
use workers::marca::MarcaSeed;
use workers::participants::{self, Options};

use crate::app::{self, Db, EventSink, Parts};
use crate::sagas::StepSettings;

/// The brands seeded when no file is given.
pub use workers::marca::MARCAS_POR_DEFECTO;

/// How the embedded mode runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the SQLite files live.
    pub data_dir: PathBuf,
    /// Where the HTTP API listens (port 0: any free port).
    pub http: SocketAddr,
    /// The brands to seed (JSON: a list of `MarcaSeed`).
    pub marcas: String,
    /// Step timeouts and retries.
    pub steps: StepSettings,
    /// Faults to inject (drills and tests: a step's action refused, a compensation failing, a
    /// command dead-lettered by its participant); empty in normal runs.
    pub faults: saga_core::inject::FaultPlan,
    /// Who may call the HTTP API: open by default (`--api-token`, `ALPES__API_TOKEN`, to require
    /// a bearer token).
    pub access: daemon::access::Access,
}

/// A running embedded deployment.
pub struct Running {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// The engine, for tests and tools in the same process.
    pub engine: Arc<Engine>,
    /// Where the SQLite files are (`orquestador.sqlite` holds the log and the sagas' views).
    pub data_dir: PathBuf,
    tasks: Tasks,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.tasks.stop().await;
    }
}

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(format!("{name}.sqlite")).display())
}

/// Starts everything and returns once the API listens. `observer` replaces the metrics observer
/// (tests); each saga's projector is always attached.
pub async fn start(config: Config, observer: Option<Arc<dyn EngineObserver>>) -> anyhow::Result<Running> {
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let transport = InProcessTransport::new();
    let tasks = Tasks::new();

    // Participants, each with its own database.
    let marcas: Vec<MarcaSeed> = serde_json::from_str(&config.marcas).context("parsing the brands to seed")?;
    let options = Options { marcas };
    let t: Arc<dyn Transport> = Arc::new(transport.clone());
    // The participants' side of the transport: where the plan makes them dead-letter commands.
    let participants_transport = config.faults.participant_transport(t.clone());
    let mut routes = Router::new();
    let mut openapi = utoipa::openapi::OpenApi::default();
    for participant in participants::ALL {
        let name = participant.name();
        let pool =
            sqlite_pool(&sqlite_url(&config.data_dir, name)).await.with_context(|| format!("opening {name}.sqlite"))?;
        let ready = participant.sqlite(pool, &options).await?;
        // Their routes (tracking's event intake) are served by the same server here; by each
        // worker daemon when distributed.
        routes = routes.merge(ready.routes);
        daemon::openapi::merge(&mut openapi, ready.openapi)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("describing {name}'s routes"))?;
        let pt = participants_transport.clone();
        tasks.spawn(name, serve(ready.handler, pt, participant.topic().to_owned(), tasks.stop_signal()));
    }

    // The orchestrator: the saga log and each saga's view in one database.
    let store = SqliteStore::connect(&sqlite_url(&config.data_dir, "orquestador"))
        .await
        .context("opening orquestador.sqlite")?;
    let data_dir = config.data_dir.clone();
    let parts = Parts {
        db: Db::Sqlite(store.pool().clone()),
        store: Arc::new(store),
        transport: t,
        events: EventSink::Log,
        steps: config.steps,
        faults: config.faults,
        observer,
        http: config.http,
        routes,
        openapi,
        cliente_url: None,
        request_deadline: crate::api::REQUEST_DEADLINE,
        access: config.access,
    };
    let app = app::build(parts, &tasks).await?;
    let stopped = tasks.stop_signal();
    tasks.spawn::<std::convert::Infallible>("transport", async move {
        stopped.await;
        transport.close();
        Ok(())
    });
    info!(addr = %app.addr, data_dir = %data_dir.display(), "embedded mode ready");
    Ok(Running { addr: app.addr, engine: app.engine, data_dir, tasks })
}
