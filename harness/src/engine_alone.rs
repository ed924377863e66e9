//! The engine alone: CrearCampaña's shape (one step, then two in parallel) through
//! `saga_core::Engine` with the in-process transport, on each saga log (in memory, SQLite,
//! PostgreSQL). The participants answer at once and keep no database, so the figures are the
//! engine's and its log's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use saga_core::definition::{BuildError, CommandBody, Registry, SagaDefinition, Step, StepCommands, StepContext};
use saga_core::engine::{Engine, EngineConfig, EngineObserver};
use saga_core::log::memory::MemoryStore;
use saga_core::log::sql::{PgStore, SqliteStore};
use saga_core::log::SagaStore;
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Outcome, Reply, Transport};
use saga_core::{LogEntry, SagaEvent, SagaId, SagaState, StepKind};
use serde_json::json;
use tokio::sync::oneshot;

use crate::load::{self, Ended, Workload};
use crate::meter::{self, Postgres, Watched};
use crate::report::Run;

/// Which saga log the engine writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Store {
    /// `MemoryStore`: not durable, the engine's own cost.
    Memory,
    /// `SqliteStore`, a file in the temporary folder.
    Sqlite,
    /// `PgStore`, a fresh database on the server of `--database-url`.
    Postgres,
}

/// A step's commands: the saga's number, and whether the last step must refuse it.
struct Echo;

impl StepCommands for Echo {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Hacer", json!({ "n": ctx.params["n"], "fallar": ctx.params["fallar"] })))
    }
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Deshacer", json!({ "n": ctx.params["n"] })))
    }
}

/// CrearCampaña's steps: the budget first, then influencers and tracking side by side.
const STEPS: [(&str, Option<&str>); 3] = [
    ("reservar_presupuesto", None),
    ("reservar_influencers", Some("reservar_presupuesto")),
    ("abrir_tracking", Some("reservar_presupuesto")),
];
/// The step that refuses the sagas meant to fail.
const LAST: &str = "abrir_tracking";

/// Counts the commands sent, and tells each saga's client when it ended.
#[derive(Default)]
struct Meter {
    commands: AtomicU64,
    waiters: Mutex<HashMap<SagaId, oneshot::Sender<Ended>>>,
}

impl EngineObserver for Meter {
    fn on_events(&self, _before: Option<&SagaState>, state: &SagaState, entries: &[LogEntry]) {
        let sent = entries.iter().filter(|e| matches!(e.event, SagaEvent::CommandSent { .. })).count();
        self.commands.fetch_add(sent as u64, Ordering::Relaxed);
        let ended = entries.iter().find_map(|e| match e.event {
            SagaEvent::Completed => Some(Ended::Completed),
            SagaEvent::Compensated => Some(Ended::Compensated),
            _ => None,
        });
        if let Some(ended) = ended {
            if let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&state.id) {
                let _ = tx.send(ended);
            }
        }
    }
}

/// Runs `workload` through the engine on `store` and reports it. `database_url` (an admin URL)
/// is needed for `Store::Postgres`.
pub async fn run(store: Store, workload: &Workload, database_url: Option<&str>) -> anyhow::Result<Run> {
    let mut watched = vec![Watched::this("harness (engine, participants, clients)")];
    let mut postgres = None;
    let mut cleanup: Box<dyn FnOnce() + Send> = Box::new(|| {});
    let log: Arc<dyn SagaStore> = match store {
        Store::Memory => Arc::new(MemoryStore::new()),
        Store::Sqlite => {
            let path = std::env::temp_dir().join(format!("alpes-bench-{}.sqlite", uuid::Uuid::new_v4().simple()));
            let sqlite = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.context("SQLite")?;
            cleanup = Box::new(move || {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            });
            Arc::new(sqlite)
        }
        Store::Postgres => {
            let admin = database_url.context("the PostgreSQL log needs --database-url")?;
            let pg = Postgres::connect(admin).await?;
            let url =
                saga_core::log::sql::create_database(admin, "alpes_bench").await.context("creating a database")?;
            watched.push(pg.watched());
            let store = PgStore::connect(&url).await.context("connecting the PostgreSQL log")?;
            postgres = Some((pg, url));
            Arc::new(store)
        }
    };

    let transport = InProcessTransport::new();
    let mut definition = SagaDefinition::new("bench", 1);
    for (step, after) in STEPS {
        let mut s = Step::new(step, format!("comandos.{step}"), Echo);
        if let Some(after) = after {
            s = s.after(after);
        }
        definition = definition.step(s);
    }
    let mut registry = Registry::new();
    registry.register(definition).context("registering the saga")?;
    let meter = Arc::new(Meter::default());
    let engine = Engine::builder(log, Arc::new(registry), Arc::new(transport.clone()))
        .config(EngineConfig { reply_to: "respuestas.bench".into(), ..EngineConfig::default() })
        .observer(meter.clone())
        .build();
    for (step, _) in STEPS {
        let transport = transport.clone();
        let mut commands = transport.commands(&format!("comandos.{step}")).await?;
        tokio::spawn(async move {
            while let Ok(delivery) = commands.recv().await {
                let command = &delivery.message;
                let refuse = step == LAST
                    && command.correlation.kind == StepKind::Action
                    && command.body["fallar"].as_bool() == Some(true);
                let outcome = if refuse {
                    Outcome::BusinessFailure { code: "FECHAS_INVALIDAS".into(), reason: "refused on purpose".into() }
                } else {
                    Outcome::Success { output: json!({}) }
                };
                let reply = Reply { correlation: command.correlation.clone(), outcome };
                if transport.send_reply(&command.reply_to, &reply).await.is_err() || delivery.ack().await.is_err() {
                    return;
                }
            }
        });
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = tokio::spawn(engine.clone().run(async move {
        let _ = stop_rx.await;
    }));

    let saga = {
        let (engine, meter) = (engine.clone(), meter.clone());
        move |i: usize, fail: bool| {
            let (engine, meter) = (engine.clone(), meter.clone());
            async move {
                let id = SagaId::new();
                let (tx, rx) = oneshot::channel();
                meter.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
                engine.start("bench", id, json!({ "n": i, "fallar": fail })).await.map_err(|e| e.to_string())?;
                match tokio::time::timeout(Duration::from_secs(60), rx).await {
                    Ok(Ok(ended)) => Ok(ended),
                    _ => Err(format!("saga {id} did not end within 60 s")),
                }
            }
        }
    };
    // Warm-up: pools and tasks exist before the clock starts.
    load::drive(&Workload { load: load::Load::Closed { clients: 4, sagas: 50 }, fail_percent: 0 }, saga.clone()).await;
    let commands_before = meter.commands.load(Ordering::Relaxed);
    let pg_before = match &postgres {
        Some((pg, _)) => Some(pg.read(true).await?),
        None => None,
    };
    let cpu_before = meter::cpu(&watched);
    let sample = load::drive(workload, saga).await;
    let cpu_after = meter::cpu(&watched);
    let mut run = Run::new("engine", workload, &sample);
    run.processes = meter::costs(&watched, &cpu_before, &cpu_after);
    // Each command has its reply.
    run.messages_per_saga =
        Some(2.0 * (meter.commands.load(Ordering::Relaxed) - commands_before) as f64 / run.sagas().max(1) as f64);
    let _ = stop_tx.send(());
    let _ = runner.await;
    transport.close();
    if let Some((pg, url)) = postgres {
        let after = pg.read(true).await?;
        run = run.with_postgres(pg_before.unwrap_or_default(), after);
        crate::stack::drop_database(&pg, &url).await;
    }
    cleanup();
    Ok(run)
}
