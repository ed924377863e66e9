//! `alpes-bench`: drives CrearCampaña-shaped sagas through this project (the engine alone on
//! each saga log, the embedded mode, the distributed mode) and through its peers (steno, Temporal),
//! and reports per run: sagas/s by outcome, latency percentiles, CPU per saga and peak memory per
//! process, messages, commits and WAL per saga. `suite` runs the whole comparison, the peers in
//! alternating rounds; BENCHMARKS.md says how to read it.

/// The allocator: see the workspace's `mimalloc` dependency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod engine_alone;
mod load;
mod meter;
mod report;
mod stack;
mod steno_peer;
mod suite;
mod temporal;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::load::{Load, Workload};
use crate::report::{Reporter, Run};

#[derive(Parser, Debug)]
#[command(name = "alpes-bench", about = "Measures sagas: this engine in each mode, steno and Temporal, side by side.")]
struct Cli {
    /// Also append each run as a JSON line to this file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// An admin URL of PostgreSQL, for the PostgreSQL log and the distributed mode.
    #[arg(long, global = true, env = "SAGA_TEST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The broker's service URL, for the distributed mode.
    #[arg(long, global = true, env = "SAGA_TEST_PULSAR_URL")]
    pulsar_url: Option<String>,
    /// The broker's admin URL, for the distributed mode.
    #[arg(long, global = true, env = "SAGA_TEST_PULSAR_ADMIN_URL")]
    pulsar_admin_url: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// One system, one workload.
    Run {
        /// What to measure.
        #[arg(long)]
        system: System,
        /// Closed loop: sagas in flight (each client starts the next when its saga ended).
        #[arg(long, default_value_t = 16, conflicts_with = "rate")]
        clients: usize,
        /// Closed loop: sagas in all.
        #[arg(long, default_value_t = 400)]
        sagas: usize,
        /// Open loop: arrivals a second (instead of the closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Open loop: for how long.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Percent of sagas refused at their last step, which compensate.
        #[arg(long, default_value_t = 0)]
        fail: usize,
    },
    /// Every system and workload; the peers against this engine in alternating rounds.
    Suite {
        /// Rounds of each comparison (A B A B …).
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Seconds, not minutes: few sagas per run, every system once (the test command's run).
        #[arg(long)]
        quick: bool,
        /// Leave Temporal out (it installs a Python venv and a server binary on first use).
        #[arg(long)]
        no_temporal: bool,
    },
}

/// A system the harness can measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum System {
    /// The engine with its in-memory log and the in-process transport.
    EngineMemory,
    /// The engine with its SQLite log.
    EngineSqlite,
    /// The engine with its PostgreSQL log.
    EnginePostgres,
    /// `orchestrator embedded`: one process, SQLite files, over HTTP.
    Embedded,
    /// `orchestrator distributed` and the workers over Pulsar and PostgreSQL, over HTTP.
    Distributed,
    /// steno with its in-memory store.
    Steno,
    /// The Temporal dev server (SQLite, its default journal) and a Python worker.
    Temporal,
    /// The same, its SQLite file in WAL mode.
    TemporalWal,
}

/// The name runs of `system` report under.
pub fn system_name(system: System) -> &'static str {
    match system {
        System::EngineMemory => "engine/memory",
        System::EngineSqlite => "engine/sqlite",
        System::EnginePostgres => "engine/postgres",
        System::Embedded => "embedded",
        System::Distributed => "distributed",
        System::Steno => "steno",
        System::Temporal => "temporal",
        System::TemporalWal => "temporal/wal",
    }
}

/// Where the servers are, from the command line or the environment.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// PostgreSQL's admin URL.
    pub database_url: Option<String>,
    /// The distributed mode's servers, when all are given.
    pub servers: Option<stack::Servers>,
}

/// Measures `system` under `workload`.
pub async fn measure(system: System, workload: &Workload, env: &Env) -> anyhow::Result<Run> {
    use engine_alone::Store;
    let mut run = match system {
        System::EngineMemory => engine_alone::run(Store::Memory, workload, None).await,
        System::EngineSqlite => engine_alone::run(Store::Sqlite, workload, None).await,
        System::EnginePostgres => engine_alone::run(Store::Postgres, workload, env.database_url.as_deref()).await,
        System::Embedded => stack::run(stack::Mode::Embedded, workload, None).await,
        System::Distributed => stack::run(stack::Mode::Distributed, workload, env.servers.as_ref()).await,
        System::Steno => steno_peer::run(workload).await,
        System::Temporal => temporal::run(workload, false).await,
        System::TemporalWal => temporal::run(workload, true).await,
    }?;
    run.system = system_name(system).to_owned();
    Ok(run)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let servers = match (&cli.database_url, &cli.pulsar_url, &cli.pulsar_admin_url) {
        (Some(db), Some(url), Some(admin)) => {
            Some(stack::Servers { database_url: db.clone(), pulsar_url: url.clone(), pulsar_admin_url: admin.clone() })
        }
        _ => None,
    };
    let env = Env { database_url: cli.database_url.clone(), servers };
    // Two worker threads, as the daemons run on this 2-core machine; the peers get the same.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        let mut reporter = Reporter::new(cli.json.as_deref())?;
        match cli.command {
            Cmd::Run { system, clients, sagas, rate, seconds, fail } => {
                let load = match rate {
                    Some(rate) => Load::Open { rate, seconds },
                    None => Load::Closed { clients, sagas },
                };
                let run = measure(system, &Workload { load, fail_percent: fail }, &env).await?;
                reporter.add(run)?;
            }
            Cmd::Suite { rounds, quick, no_temporal } => {
                suite::run(&mut reporter, &env, rounds, quick, !no_temporal).await?;
            }
        }
        anyhow::Ok(())
    })
}
