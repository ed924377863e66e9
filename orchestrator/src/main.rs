//! `orchestrator`: runs CrearCampaña.
//!
//! - `orchestrator embedded`: everything in one process, SQLite files, the in-process transport.
//! - `orchestrator distributed`: the orchestrator alone, its log in PostgreSQL, commands and
//!   replies over Apache Pulsar (built with the `pulsar` feature; the workers run as `worker`).
//! - `orchestrator env`: the environment variables the distributed mode reads.

/// The allocator: see the workspace's `mimalloc` dependency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use orchestrator::embedded::{self, MARCAS_POR_DEFECTO};

/// The CrearCampaña orchestrator.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Orchestrator and the three participants in one process, with SQLite files in a folder.
    Embedded {
        /// Folder for the SQLite files.
        #[arg(long, env = "ALPES__DATA_DIR", default_value = ".data/embedded")]
        data_dir: PathBuf,
        /// Address of the HTTP API (loopback by default).
        #[arg(long, env = "ALPES__HTTP", default_value = "127.0.0.1:8000")]
        http: SocketAddr,
        /// JSON file of brands to seed (default: workers/seed/marcas.json, built in).
        #[arg(long, env = "ALPES__MARCAS")]
        marcas: Option<PathBuf>,
        /// Require this bearer token on every route but /health and /metrics (default: none,
        /// the API is open). Prefer the variable: a flag shows in the process list.
        #[arg(long, env = "ALPES__API_TOKEN", hide_env_values = true, value_name = "TOKEN")]
        api_token: Option<String>,
        /// Drill: every action of this step fails as if refused (repeatable).
        #[arg(long = "inject-fail-action", value_name = "STEP")]
        fail_actions: Vec<String>,
        /// Drill: every compensation of this step fails, so sagas that need it end stuck
        /// (repeatable). Restart without it, then retry them.
        #[arg(long = "inject-fail-compensation", value_name = "STEP")]
        fail_compensations: Vec<String>,
        /// Drill: the participant dead-letters attempt ATTEMPT of this step's action instead of
        /// handling it (the step times out and its retry succeeds), as `STEP:ATTEMPT`
        /// (repeatable). Gives a dead letter linked to its saga, to redrive.
        #[arg(long = "inject-dead-letter-command", value_name = "STEP:ATTEMPT", value_parser = step_attempt)]
        dead_letter_commands: Vec<(String, u32)>,
    },
    /// The orchestrator alone: saga log and campaign view in PostgreSQL, commands and replies
    /// over Apache Pulsar. Configured by `--config FILE` (TOML) and `ALPES__…` variables.
    #[cfg(feature = "pulsar")]
    Distributed {
        /// TOML configuration file (environment variables override it).
        #[arg(long, env = "ALPES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints every configuration variable the distributed mode reads, one per line (besides
    /// `ALPES_CONFIG`, the `--config` file).
    Env,
}

/// `STEP:ATTEMPT`, attempt from 1.
fn step_attempt(raw: &str) -> Result<(String, u32), String> {
    let (step, attempt) = raw.rsplit_once(':').ok_or_else(|| format!("expected STEP:ATTEMPT, not {raw:?}"))?;
    let attempt: u32 = attempt.parse().map_err(|_| format!("the attempt of {raw:?} is not a number"))?;
    if step.is_empty() || attempt == 0 {
        return Err(format!("expected STEP:ATTEMPT with an attempt from 1, not {raw:?}"));
    }
    Ok((step.to_owned(), attempt))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    daemon::init_logging();
    match Cli::parse().mode {
        Mode::Embedded {
            data_dir,
            http,
            marcas,
            api_token,
            fail_actions,
            fail_compensations,
            dead_letter_commands,
        } => {
            let mut faults = saga_core::inject::FaultPlan::none();
            for step in fail_actions {
                faults = faults.fail_action(step);
            }
            for step in fail_compensations {
                faults = faults.fail_compensation(step);
            }
            for (step, attempt) in dead_letter_commands {
                faults = faults.dead_letter_command(step, attempt);
            }
            if !faults.is_empty() {
                tracing::warn!(?faults, "fault injection is on: this run fails on purpose");
            }
            let marcas = match marcas {
                Some(path) => std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
                None => MARCAS_POR_DEFECTO.to_owned(),
            };
            let access = daemon::access::Access::from_config(api_token.map(daemon::SecretString::from))?;
            let config = embedded::Config { data_dir, http, marcas, steps: Default::default(), faults, access };
            let running = embedded::start(config, None).await?;
            println!("Alpes Partners (embedded) listening on http://{}", running.addr);
            println!("  POST http://{}/afiliaciones/campana   GET /afiliaciones/campanas   GET /sagas", running.addr);
            daemon::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
        #[cfg(feature = "pulsar")]
        Mode::Distributed { config } => {
            use std::sync::Arc;

            use orchestrator::app::EventSink;
            use orchestrator::distributed;

            let config = distributed::Config::load(config.as_deref())?;
            tracing::info!(?config, "configuration");
            let transport = config.pulsar.transport(Arc::new(orchestrator::sagas::codec()));
            let events = EventSink::Broker(transport.clone());
            let running = distributed::start(&config, Arc::new(transport), events).await?;
            println!("Alpes Partners orchestrator listening on http://{}", running.addr);
            daemon::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
        Mode::Env => {
            for variable in orchestrator::distributed::Config::variables() {
                println!("{variable}");
            }
            Ok(())
        }
    }
}
