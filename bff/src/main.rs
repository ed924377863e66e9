//! `bff`: the platform's Backend For Frontend (`/api/v1`) and the operators' console
//! (`/console`), over the services' HTTP APIs.
//!
//! - `bff run [--config FILE]`: serves on `127.0.0.1:5001` by default, reading the embedded
//!   mode's address (`127.0.0.1:8000`) for every service unless configured otherwise.
//! - `bff env`: the environment variables it reads.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The web BFF and the operators' console.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serves `/api/v1`, `/console` and `/metrics` (the default).
    Run {
        /// TOML configuration file (environment variables override it).
        #[arg(long, env = "ALPES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints every configuration variable it reads, one per line.
    Env,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Run { config: None }) {
        Command::Env => {
            for variable in bff::Config::variables()? {
                println!("{variable}");
            }
            Ok(())
        }
        Command::Run { config } => {
            daemon::init_logging();
            let config = bff::Config::load(config.as_deref())?;
            tracing::info!(?config, "configuration");
            let running = bff::start(&config).await?;
            println!(
                "Alpes Partners BFF listening on http://{}/api/v1 (console: http://{}/console)",
                running.addr, running.addr
            );
            daemon::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
    }
}
