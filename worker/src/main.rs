//! `worker`: one participant of CrearCampaña (marca, influencer or tracking) as a daemon, with
//! its own PostgreSQL database, consuming its command topic on Apache Pulsar and replying.
//!
//! - `worker run marca|influencer|tracking [--config FILE]`
//! - `worker env marca|influencer|tracking`: the environment variables it reads.
//! - `worker list`: every participant this binary runs.

/// The allocator: see the workspace's `mimalloc` dependency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use daemon::ExposeSecret;
use workers::participants::{self, Options, Participant};
use workers::server::{self, Config};

/// A participant daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the participant: migrates and seeds its database, consumes its topic, serves
    /// `/health` and `/metrics` (and tracking's event intake).
    Run {
        /// Which participant: marca, influencer or tracking.
        #[arg(value_parser = participant)]
        participant: &'static dyn Participant,
        /// TOML configuration file (environment variables override it).
        #[arg(long, env = "ALPES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints the name of every participant, one per line.
    List,
    /// Prints every configuration variable the participant reads, one per line (besides
    /// `ALPES_CONFIG`, the `--config` file).
    Env {
        /// Which participant.
        #[arg(value_parser = participant)]
        participant: &'static dyn Participant,
    },
}

fn participant(name: &str) -> Result<&'static dyn Participant, String> {
    participants::by_name(name).ok_or_else(|| {
        let known: Vec<_> = participants::ALL.iter().map(|p| p.name()).collect();
        format!("no participant {name:?}; one of {}", known.join(", "))
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::List => {
            for participant in participants::ALL {
                println!("{}", participant.name());
            }
            Ok(())
        }
        Command::Env { participant } => {
            for variable in Config::variables(participant) {
                println!("{variable}");
            }
            Ok(())
        }
        Command::Run { participant, config } => {
            daemon::init_logging();
            let config = Config::load(participant, config.as_deref())?;
            tracing::info!(participant = participant.name(), ?config, "configuration");
            let options = Options { marcas: config.marcas().context("reading the brands to seed")? };
            let transport = config.pulsar.transport(Arc::new(orchestrator::sagas::codec()));
            let access = daemon::access::Access::from_config(config.api_token.clone())?;
            let running = server::start(
                participant,
                config.database_url.expose_secret(),
                config.http,
                Arc::new(transport),
                &options,
                &access,
            )
            .await?;
            println!("Alpes Partners {} worker listening on http://{}", participant.name(), running.addr);
            daemon::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
    }
}
