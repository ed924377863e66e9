//! Engine throughput and latency: N sagas of three steps through the engine with the in-process
//! transport, on each saga log (in memory as a baseline, SQLite, PostgreSQL). Participants echo
//! success at once and keep no database, so the figures are the engine's and its log's.
//!
//!     cargo bench -p saga-core --bench engine                # 2000 sagas, 32 at a time
//!     SAGAS=5000 CONCURRENCY=64 cargo bench -p saga-core --bench engine
//!
//! PostgreSQL is measured when SAGA_BENCH_DATABASE_URL (or SAGA_TEST_DATABASE_URL) names an
//! admin URL: the bench creates a fresh database there (`scripts/postgres.sh start` gives one).
//! Prints sagas/s, p50/p99 start-to-completion latency, and log writes (transactions and
//! entries) per saga.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use saga_core::definition::{BuildError, CommandBody, Registry, SagaDefinition, Step, StepCommands, StepContext};
use saga_core::engine::{Engine, EngineConfig, EngineObserver};
use saga_core::log::memory::MemoryStore;
use saga_core::log::sql::{PgStore, SqliteStore};
use saga_core::log::SagaStore;
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Outcome, Reply, Transport};
use saga_core::{LogEntry, SagaEvent, SagaId, SagaState};
use serde_json::json;
use tokio::sync::{oneshot, Semaphore};

struct Echo;

impl StepCommands for Echo {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Hacer", json!({ "saga": ctx.saga_id })))
    }
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Deshacer", json!({ "saga": ctx.saga_id })))
    }
}

const STEPS: [&str; 3] = ["marca", "influencer", "tracking"];

/// Counts log transactions and entries, and wakes whoever waits for a saga to finish.
#[derive(Default)]
struct Meter {
    transactions: AtomicU64,
    entries: AtomicU64,
    waiters: Mutex<HashMap<SagaId, oneshot::Sender<Instant>>>,
}

impl EngineObserver for Meter {
    fn on_events(&self, _before: Option<&SagaState>, state: &SagaState, entries: &[LogEntry]) {
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.entries.fetch_add(entries.len() as u64, Ordering::Relaxed);
        if entries.iter().any(|e| matches!(e.event, SagaEvent::Completed | SagaEvent::Compensated)) {
            if let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&state.id) {
                let _ = tx.send(Instant::now());
            }
        }
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn measure(label: &str, store: Arc<dyn SagaStore>, sagas: usize, concurrency: usize) {
    let transport = InProcessTransport::new();
    let mut definition = SagaDefinition::new("bench", 1);
    for step in STEPS {
        definition = definition.step(Step::new(step, format!("comandos.{step}"), Echo));
    }
    let mut registry = Registry::new();
    registry.register(definition).expect("register");
    let meter = Arc::new(Meter::default());
    let engine = Engine::builder(store, Arc::new(registry), Arc::new(transport.clone()))
        .config(EngineConfig { reply_to: "respuestas.bench".into(), ..EngineConfig::default() })
        .observer(meter.clone())
        .build();

    for step in STEPS {
        let transport = transport.clone();
        tokio::spawn(async move {
            let mut commands = transport.commands(&format!("comandos.{step}")).await.expect("subscribe");
            while let Ok(delivery) = commands.recv().await {
                let reply = Reply {
                    correlation: delivery.message.correlation.clone(),
                    outcome: Outcome::Success { output: json!({}) },
                };
                transport.send_reply(&delivery.message.reply_to, &reply).await.expect("reply");
                delivery.ack().await.expect("ack");
            }
        });
    }
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let runner = tokio::spawn(engine.clone().run(async move {
        let _ = stop_rx.await;
    }));

    let limit = Arc::new(Semaphore::new(concurrency));
    let began = Instant::now();
    let mut tasks = Vec::with_capacity(sagas);
    for i in 0..sagas {
        let permit = limit.clone().acquire_owned().await.expect("semaphore");
        let engine = engine.clone();
        let meter = meter.clone();
        tasks.push(tokio::spawn(async move {
            let id = SagaId::new();
            let (tx, rx) = oneshot::channel();
            meter.waiters.lock().unwrap_or_else(|e| e.into_inner()).insert(id, tx);
            let start = Instant::now();
            engine.start("bench", id, json!({ "n": i })).await.expect("start");
            let done =
                tokio::time::timeout(Duration::from_secs(60), rx).await.expect("saga finished in time").expect("meter");
            drop(permit);
            done - start
        }));
    }
    let mut latencies = Vec::with_capacity(sagas);
    for task in tasks {
        latencies.push(task.await.expect("join"));
    }
    let elapsed = began.elapsed();
    let _ = stop_tx.send(());
    let _ = runner.await;
    transport.close();

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let tx = meter.transactions.load(Ordering::Relaxed) as f64 / sagas as f64;
    let entries = meter.entries.load(Ordering::Relaxed) as f64 / sagas as f64;
    println!(
        "{label:<11} {sagas:>6} {concurrency:>5} {:>10.0} {:>9.2} {:>9.2} {tx:>8.1} {entries:>9.1}",
        sagas as f64 / elapsed.as_secs_f64(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
    );
}

fn main() {
    let sagas = env_usize("SAGAS", 2000);
    let concurrency = env_usize("CONCURRENCY", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        println!(
            "{:<11} {:>6} {:>5} {:>10} {:>9} {:>9} {:>8} {:>9}",
            "store", "sagas", "conc", "sagas/s", "p50 ms", "p99 ms", "tx/saga", "entries/saga"
        );
        measure("memory", Arc::new(MemoryStore::new()), sagas, concurrency).await;

        let path = std::env::temp_dir().join(format!("saga-bench-{}.sqlite", uuid::Uuid::new_v4().simple()));
        let sqlite = SqliteStore::connect(&format!("sqlite://{}", path.display())).await.expect("sqlite");
        measure("sqlite", Arc::new(sqlite), sagas, concurrency).await;
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }

        let admin = std::env::var("SAGA_BENCH_DATABASE_URL").or_else(|_| std::env::var("SAGA_TEST_DATABASE_URL"));
        match admin {
            Ok(admin) => {
                let url = saga_core::log::sql::create_database(&admin, "saga_bench").await.expect("create database");
                let pg = PgStore::connect(&url).await.expect("postgres");
                measure("postgres", Arc::new(pg), sagas, concurrency).await;
                let options: sqlx::postgres::PgConnectOptions = url.parse().expect("database URL");
                let name = options.get_database().expect("database name");
                let pool = saga_core::log::sql::pg_pool(&admin, 1).await.expect("postgres admin");
                sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)")).execute(&pool).await.expect("drop database");
            }
            Err(_) => println!("postgres    not measured: set SAGA_BENCH_DATABASE_URL (scripts/postgres.sh url)"),
        }
    });
}
