//! One function builds the orchestrator for every way it runs ([`build`]): the engine over a saga
//! log and a transport, every saga's own parts (its view, its tasks, its routes: [`SagaModule`]),
//! the generic saga API and `/metrics`. The run modes ([`crate::embedded`],
//! [`crate::distributed`]) only choose the parts: which database, which transport, where
//! integration events go.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use daemon::access::Access;
use daemon::{metrics, Tasks};
use saga_core::dead_letters::DeadLetterStore;
use saga_core::definition::SagaDefinition;
use saga_core::engine::{Engine, EngineConfig, EngineObserver};
use saga_core::inject::FaultPlan;
use saga_core::log::SagaStore;
use saga_core::transport::Transport;
use saga_core::{LogEntry, SagaEvent, SagaState};
use sqlx::{PgPool, SqlitePool};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::info;

use crate::api;
use crate::sagas::StepSettings;

/// The orchestrator's own database: the saga log's, where each saga keeps its view too.
#[derive(Clone, Debug)]
pub enum Db {
    /// The embedded mode.
    Sqlite(SqlitePool),
    /// The distributed mode.
    Postgres(PgPool),
}

/// Where integration events go.
#[derive(Clone)]
pub enum EventSink {
    /// No broker (the embedded mode): each event is checked against its schema and logged; the
    /// outbox keeps it, with its publication time.
    Log,
    /// Published on the broker with its Avro schema attached.
    #[cfg(feature = "pulsar")]
    Broker(saga_pulsar::PulsarTransport),
}

/// What a saga's own parts get to start with.
pub struct SagaContext<'a> {
    /// The engine, to start sagas and read them.
    pub engine: Arc<Engine>,
    /// The orchestrator's database.
    pub db: &'a Db,
    /// Where integration events go.
    pub events: &'a EventSink,
    /// The daemon's tasks: a saga's background work (projector, relay) runs here.
    pub tasks: &'a Tasks,
    /// This saga type's sagas as they end (completed, compensated, aborted): the final states.
    pub finished: mpsc::UnboundedReceiver<SagaState>,
    /// Where the services that sagas query synchronously answer.
    pub services: &'a Services,
}

impl SagaContext<'_> {
    /// Keeps a saga's view up to date and publishes its events: runs the projector over
    /// `projection` (fed with this saga type's finished sagas) and the relay over `outbox`, as
    /// the daemon's tasks. Call it once: the finished sagas go to the first projection.
    pub fn follow(
        &mut self,
        projection: Arc<dyn crate::projector::Projection>,
        outbox: Arc<dyn crate::outbox::Outbox>,
    ) {
        // A second call gets a closed channel: its projector only catches up, then ends.
        let finished = std::mem::replace(&mut self.finished, mpsc::unbounded_channel().1);
        self.tasks.spawn_until_stopped("projector", crate::projector::run(self.engine.clone(), projection, finished));
        self.tasks
            .spawn_until_stopped("event relay", crate::outbox::run(outbox, crate::outbox::publisher(self.events)));
    }
}

/// The services whose HTTP APIs a saga's routes query while answering a request (the payout
/// saga asks cliente whether a partner is registered before it starts a saga).
#[derive(Clone, Debug)]
pub struct Services {
    /// The cliente service's base URL.
    pub cliente_url: String,
    /// The deployment's API token, which these calls carry (cliente requires it when set).
    pub access: Access,
}

/// A saga as the orchestrator runs it: its definitions, and its own parts (a view, routes,
/// tasks). Each saga folder has one; [`crate::sagas::modules`] lists them.
#[async_trait]
pub trait SagaModule: Send + Sync + 'static {
    /// The saga type, as in the log.
    fn saga_type(&self) -> &'static str;

    /// Every version still registered (old ones while sagas in the log use them), newest last.
    fn definitions(&self, steps: &StepSettings) -> Vec<SagaDefinition>;

    /// Opens its state in the orchestrator's database, starts its tasks, and returns its HTTP
    /// routes.
    async fn start(&self, cx: SagaContext<'_>) -> anyhow::Result<Router>;

    /// Its routes' OpenAPI description, merged into `GET /openapi.json`.
    fn openapi(&self) -> utoipa::openapi::OpenApi;
}

/// The parts a run mode chooses.
pub struct Parts {
    /// The orchestrator's database.
    pub db: Db,
    /// The saga log, in that database.
    pub store: Arc<dyn SagaStore>,
    /// The transport to the participants.
    pub transport: Arc<dyn Transport>,
    /// Where integration events go.
    pub events: EventSink,
    /// Step timeouts and retries.
    pub steps: StepSettings,
    /// Faults to inject (drills and tests); empty in normal runs.
    pub faults: FaultPlan,
    /// Replaces the metrics observer (tests).
    pub observer: Option<Arc<dyn EngineObserver>>,
    /// Where the HTTP API listens (port 0: any free port).
    pub http: SocketAddr,
    /// More routes on the same server (the embedded mode serves the participants' own routes).
    pub routes: Router,
    /// The description of `routes`, merged into `GET /openapi.json`.
    pub openapi: utoipa::openapi::OpenApi,
    /// The cliente service's base URL; `None`: this server's own address (the embedded mode,
    /// where cliente's routes are in `routes`).
    pub cliente_url: Option<String>,
    /// How long any HTTP request may run ([`api::REQUEST_DEADLINE`] in both run modes).
    pub request_deadline: Duration,
    /// Who may call the HTTP API (every route but `/health` and `/metrics`), and the token the
    /// orchestrator's own calls to other services carry.
    pub access: Access,
}

/// A built orchestrator.
pub struct App {
    /// Where the HTTP API listens.
    pub addr: SocketAddr,
    /// The engine.
    pub engine: Arc<Engine>,
}

/// Sends each finished saga's final state to its module's channel; passes every event on to `next` (metrics).
struct Finished {
    by_type: HashMap<&'static str, mpsc::UnboundedSender<SagaState>>,
    next: Arc<dyn EngineObserver>,
}

impl EngineObserver for Finished {
    fn on_reply_counted(&self, state: &SagaState) {
        self.next.on_reply_counted(state);
    }

    fn on_events(&self, before: Option<&SagaState>, state: &SagaState, entries: &[LogEntry]) {
        self.next.on_events(before, state, entries);
        let finished = entries
            .iter()
            .any(|e| matches!(e.event, SagaEvent::Completed | SagaEvent::Compensated | SagaEvent::Aborted));
        if let (true, Some(tx)) = (finished, self.by_type.get(state.saga_type.as_str())) {
            // Receivers live as long as the daemon; a closed one means it is stopping.
            let _ = tx.send(state.clone());
        }
    }
}

/// Builds and starts the orchestrator on `tasks`: the engine subscribes to its replies before the
/// API answers, so the reply to any command it sends has a subscription to land on.
pub async fn build(parts: Parts, tasks: &Tasks) -> anyhow::Result<App> {
    let modules = crate::sagas::modules();
    let registry = crate::sagas::registry(&parts.steps).context("registering the sagas")?;
    let mut by_type = HashMap::new();
    let mut finished = Vec::new();
    for module in &modules {
        let (tx, rx) = mpsc::unbounded_channel();
        by_type.insert(module.saga_type(), tx);
        finished.push(rx);
    }
    let watched = crate::dead_letters::watched(
        registry.definitions().map(|d| d.as_ref()),
        <schemas::RespuestaAfiliaciones as schemas::Envelope>::TOPIC,
    );
    let next = parts.observer.unwrap_or_else(|| Arc::new(saga_core::metrics::MetricsObserver));
    let engine = Engine::builder(parts.store, Arc::new(registry), parts.transport)
        .config(EngineConfig {
            reply_to: <schemas::RespuestaAfiliaciones as schemas::Envelope>::TOPIC.to_owned(),
            ..EngineConfig::default()
        })
        .observer(Arc::new(Finished { by_type, next }))
        .faults(parts.faults)
        .build();

    let replies = engine.subscribe().await.context("subscribing to the replies")?;
    tasks.spawn("engine", engine.clone().run_on(replies, tasks.stop_signal()));
    tasks.spawn_until_stopped(
        "store gauges",
        saga_core::metrics::poll_store_gauges(engine.store().clone(), Duration::from_secs(5)),
    );

    // Bound before the sagas start, so the embedded mode can give its own address to the routes
    // that query its participants' HTTP APIs.
    let listener = TcpListener::bind(parts.http).await.with_context(|| format!("binding {}", parts.http))?;
    let addr = listener.local_addr()?;
    let services = Services {
        cliente_url: parts.cliente_url.unwrap_or_else(|| format!("http://{addr}")),
        access: parts.access.clone(),
    };

    // Dead letters of every topic the orchestrator knows, recorded beside the saga log.
    let dead_letters = match &parts.db {
        Db::Sqlite(pool) => DeadLetterStore::Sqlite(pool.clone()),
        Db::Postgres(pool) => DeadLetterStore::Postgres(pool.clone()),
    };
    tasks.spawn_until_stopped(
        "dead letters",
        saga_core::dead_letters::collect(
            dead_letters.clone(),
            engine.transport().clone(),
            watched,
            Duration::from_secs(5),
        ),
    );

    let mut app = api::router(engine.clone(), dead_letters);
    for (module, finished) in modules.iter().zip(finished) {
        let cx = SagaContext {
            engine: engine.clone(),
            db: &parts.db,
            events: &parts.events,
            tasks,
            finished,
            services: &services,
        };
        app = app.merge(module.start(cx).await.with_context(|| format!("starting {}", module.saga_type()))?);
    }
    let mut doc = crate::openapi::document();
    daemon::openapi::merge(&mut doc, parts.openapi).map_err(anyhow::Error::msg).context("describing the routes")?;
    if parts.access.required() {
        daemon::openapi::require_bearer(&mut doc);
    }
    // The token check is the outermost layer: a refused request reaches nothing else.
    let app = parts.access.protect(daemon::json_errors::layer(api::with_deadline(
        app.merge(parts.routes).merge(metrics::router(metrics::prometheus())).merge(daemon::openapi::router(&doc)),
        parts.request_deadline,
    )));

    tasks.spawn("HTTP server", axum::serve(listener, app).with_graceful_shutdown(tasks.stop_signal()).into_future());
    info!(%addr, sagas = modules.len(), access = ?parts.access, "orchestrator ready");
    Ok(App { addr, engine })
}
