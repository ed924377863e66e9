//! `worker`: one participant of CrearCampaña (marca, influencer or tracking) as a daemon, with
//! its own PostgreSQL database, consuming its command topic on Apache Pulsar and replying.
//!
//! - `worker run marca|influencer|tracking [--config FILE]`
//! - `worker env marca|influencer|tracking`: the environment variables it reads.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use daemon::ExposeSecret;
use workers::servidor::{self, Config, Servicio};

/// A CrearCampaña participant daemon.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the participant: migrates and (marca) seeds its database, consumes its topic, serves
    /// `/health` and `/metrics` (and tracking's event intake).
    Run {
        /// Which participant.
        servicio: Nombre,
        /// TOML configuration file (environment variables override it).
        #[arg(long, env = "ALPES_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Prints every configuration variable the participant reads, one per line (besides
    /// `ALPES_CONFIG`, the `--config` file).
    Env {
        /// Which participant.
        servicio: Nombre,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Nombre {
    Marca,
    Influencer,
    Tracking,
}

impl From<Nombre> for Servicio {
    fn from(n: Nombre) -> Self {
        match n {
            Nombre::Marca => Servicio::Marca,
            Nombre::Influencer => Servicio::Influencer,
            Nombre::Tracking => Servicio::Tracking,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Env { servicio } => {
            for variable in Config::variables(servicio.into()) {
                println!("{variable}");
            }
            Ok(())
        }
        Command::Run { servicio, config } => {
            daemon::init_logging();
            let servicio = Servicio::from(servicio);
            let config = Config::load(servicio, config.as_deref())?;
            tracing::info!(?servicio, ?config, "configuration");
            let marcas = if servicio == Servicio::Marca { config.marcas()? } else { Vec::new() };
            let transport = config.pulsar.transport(Arc::new(schemas::AvroCodec::crear_campana()));
            let running = servidor::start(
                servicio,
                config.database_url.expose_secret(),
                config.http,
                servicio.topic().to_owned(),
                Arc::new(transport),
                &marcas,
            )
            .await?;
            println!("Alpes Partners {} worker listening on http://{}", servicio.name(), running.addr);
            daemon::shutdown_signal().await;
            running.stop().await;
            Ok(())
        }
    }
}
