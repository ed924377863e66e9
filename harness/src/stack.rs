//! The product as users run it, measured through its HTTP API: the embedded mode (one
//! `orchestrator embedded` process, SQLite files) and the distributed mode (`orchestrator
//! distributed` and one `worker` process per participant, each with its own PostgreSQL database,
//! over Apache Pulsar). Each run gets a fresh deployment: new databases, a new Pulsar namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::load::{self, Ended, Workload};
use crate::meter::{self, Postgres, Watched};
use crate::report::Run;

/// Which deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One process, SQLite, the in-process transport.
    Embedded,
    /// Four daemons, PostgreSQL, Pulsar.
    Distributed,
}

/// Where the distributed mode's servers are.
#[derive(Clone, Debug)]
pub struct Servers {
    /// An admin URL of PostgreSQL (databases are created there).
    pub database_url: String,
    /// The broker's service URL.
    pub pulsar_url: String,
    /// The broker's admin (HTTP) URL.
    pub pulsar_admin_url: String,
}

/// A binary built beside this one (`target/<profile>/NAME`), or in `ALPES_BENCH_BIN_DIR`.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("ALPES_BENCH_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_exe()?.parent().context("the harness's folder")?.to_path_buf(),
    };
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it first (`cargo build --release -p orchestrator -p worker --features pulsar`, \
             or the same without --release for a debug harness), or set ALPES_BENCH_BIN_DIR",
            path.display()
        );
    }
    Ok(path)
}

/// One daemon process, killed when dropped.
struct Daemon {
    name: String,
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Daemon {
    fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &HashMap<String, String>,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(program)
            .args(args)
            .envs(env)
            .env("ALPES__HTTP", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name: name.to_owned(), child, port, log })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn ready(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("{} exited with {status}; its log:\n{log}", self.name);
            }
            if let Ok(res) = http.get(format!("{}/health", self.url())).send().await {
                if res.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("{} not ready in 60 s (log: {})", self.name, self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port free on the loopback now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running deployment.
struct Deployment {
    daemons: Vec<Daemon>,
    databases: Vec<String>,
    dir: PathBuf,
    /// The Pulsar namespace's admin URL, deleted with its topics after the run.
    namespace: Option<String>,
}

impl Deployment {
    fn api(&self) -> String {
        // The orchestrator is started last.
        self.daemons.last().map(Daemon::url).unwrap_or_default()
    }

    fn watched(&self) -> Vec<Watched> {
        self.daemons.iter().map(|d| Watched::one(&d.name, d.child.id())).collect()
    }

    /// Messages the daemons' transports published (`transport_messages_published_total`).
    async fn messages(&self, http: &reqwest::Client) -> f64 {
        let mut total = 0.0;
        for d in &self.daemons {
            let Ok(res) = http.get(format!("{}/metrics", d.url())).send().await else { continue };
            let text = res.text().await.unwrap_or_default();
            total += text
                .lines()
                .filter(|l| l.starts_with("transport_messages_published_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        total
    }
}

async fn embedded(http: &reqwest::Client, dir: &Path) -> anyhow::Result<Deployment> {
    let program = binary("orchestrator")?;
    let data = dir.join("data");
    let env = HashMap::from([("ALPES__DATA_DIR".to_owned(), data.display().to_string())]);
    let mut daemon = Daemon::spawn("orchestrator (embedded)", &program, &["embedded"], &env, dir)?;
    daemon.ready(http).await?;
    Ok(Deployment { daemons: vec![daemon], databases: Vec::new(), dir: dir.to_owned(), namespace: None })
}

async fn distributed(http: &reqwest::Client, servers: &Servers, dir: &Path) -> anyhow::Result<Deployment> {
    let (orchestrator, worker) = (binary("orchestrator")?, binary("worker")?);
    let namespace = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let base = format!("{}/admin/v2/namespaces/alpes/{namespace}", servers.pulsar_admin_url);
    let res = http.put(&base).json(&json!({})).send().await.context("the broker's admin API")?;
    if !res.status().is_success() {
        bail!("creating namespace alpes/{namespace}: {}", res.status());
    }
    let mut deployment =
        Deployment { daemons: Vec::new(), databases: Vec::new(), dir: dir.to_owned(), namespace: Some(base) };
    let env_for = |database_url: String| {
        HashMap::from([
            ("ALPES__DATABASE_URL".to_owned(), database_url),
            ("ALPES__PULSAR__URL".to_owned(), servers.pulsar_url.clone()),
            ("ALPES__PULSAR__NAMESPACE".to_owned(), namespace.clone()),
        ])
    };
    for participant in workers::participants::ALL {
        let name = participant.name();
        let url = saga_core::log::sql::create_database(&servers.database_url, &format!("bench_{name}")).await?;
        deployment.databases.push(url.clone());
        let env = env_for(url);
        deployment.daemons.push(Daemon::spawn(name, &worker, &["run", name], &env, dir)?);
    }
    let cliente = deployment.daemons.iter().find(|d| d.name == "cliente").context("a cliente worker")?.url();
    let url = saga_core::log::sql::create_database(&servers.database_url, "bench_orchestrator").await?;
    deployment.databases.push(url.clone());
    let mut env = env_for(url);
    env.insert("ALPES__CLIENTE_URL".to_owned(), cliente);
    deployment.daemons.push(Daemon::spawn("orchestrator", &orchestrator, &["distributed"], &env, dir)?);
    for d in &mut deployment.daemons {
        d.ready(http).await?;
    }
    Ok(deployment)
}

/// Nike, a brand the participants seed with a budget of 10,000,000 (each campaign takes 1).
const NIKE: &str = "123e4567-e89b-12d3-a456-426614174000";

/// The documented example request, with influencers of its own; `fail`: an end date the
/// tracking service refuses, so the saga compensates at its last step.
fn campana(fail: bool) -> Value {
    let id = uuid::Uuid::new_v4();
    json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
      "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": if fail { "2028-01-01T00:00:00" } else { "2025-12-31T23:59:59" },
      "presupuesto": 1, "marca": { "id_marca": NIKE, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Ana {id}"), "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                       { "nombre": format!("Carlos {id}"), "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] })
}

/// One campaign: `POST /afiliaciones/campana`, then `GET /sagas/{id}?esperar_ms=&solo_saga=true`
/// until it rests (a client waiting for the end needs the state, not the history).
async fn one_saga(http: &reqwest::Client, api: &str, fail: bool) -> Result<Ended, String> {
    let res = http
        .post(format!("{api}/afiliaciones/campana"))
        .json(&campana(fail))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = res.status();
    let body: Value = res.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("POST /afiliaciones/campana: {status} {body}"));
    }
    let saga = body["saga_id"].as_str().ok_or_else(|| format!("no saga_id in {body}"))?.to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let res = http
            .get(format!("{api}/sagas/{saga}?esperar_ms=10000&solo_saga=true"))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: Value = res.json().await.map_err(|e| e.to_string())?;
        match body["saga"]["status"].as_str() {
            Some("completed") => return Ok(Ended::Completed),
            Some("compensated") => return Ok(Ended::Compensated),
            Some("running" | "compensating") if Instant::now() < deadline => continue,
            other => return Err(format!("saga {saga} ended {other:?}")),
        }
    }
}

/// Drops a run's database.
pub async fn drop_database(pg: &Postgres, url: &str) {
    let Ok(options) = url.parse::<sqlx::postgres::PgConnectOptions>() else { return };
    if let Some(name) = options.get_database() {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(pg.pool()).await;
    }
}

/// Runs `workload` on a fresh deployment of `mode`, after a warm-up, and reports it.
pub async fn run(mode: Mode, workload: &Workload, servers: Option<&Servers>) -> anyhow::Result<Run> {
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build()?;
    let dir = std::env::temp_dir().join(format!("alpes-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let (deployment, pg, system) = match mode {
        Mode::Embedded => (embedded(&http, &dir).await?, None, "embedded"),
        Mode::Distributed => {
            let servers = servers.context("the distributed mode needs PostgreSQL and Pulsar")?;
            let pg = Postgres::connect(&servers.database_url).await?;
            (distributed(&http, servers, &dir).await?, Some(pg), "distributed")
        }
    };
    let mut watched = deployment.watched();
    if let Some(pg) = &pg {
        watched.push(pg.watched());
        match meter::pulsar_broker() {
            Some(pid) => watched.push(Watched::one("pulsar broker", pid)),
            None => eprintln!("the broker's JVM was not found on this machine: its CPU is not counted"),
        }
    }
    watched.push(Watched::this("harness (clients)"));

    let api = Arc::new(deployment.api());
    let saga = {
        let (http, api) = (http.clone(), api.clone());
        move |_: usize, fail: bool| {
            let (http, api) = (http.clone(), api.clone());
            async move { one_saga(&http, &api, fail).await }
        }
    };
    let warm =
        load::drive(&Workload { load: load::Load::Closed { clients: 4, sagas: 20 }, fail_percent: 0 }, saga.clone())
            .await;
    if warm.errors > 0 {
        bail!("the warm-up failed: {}", warm.first_error.unwrap_or_default());
    }
    let messages_before = deployment.messages(&http).await;
    let pg_before = match &pg {
        Some(pg) => Some(pg.read(true).await?),
        None => None,
    };
    let cpu_before = meter::cpu(&watched);
    let sample = load::drive(workload, saga).await;
    let cpu_after = meter::cpu(&watched);
    let mut run = Run::new(system, workload, &sample);
    run.processes = meter::costs(&watched, &cpu_before, &cpu_after);
    run.messages_per_saga = Some((deployment.messages(&http).await - messages_before) / run.sagas().max(1) as f64);
    if let Some(pg) = &pg {
        let after = pg.read(true).await?;
        run = run.with_postgres(pg_before.unwrap_or_default(), after);
    }
    let (databases, dir, namespace) =
        (deployment.databases.clone(), deployment.dir.clone(), deployment.namespace.clone());
    drop(deployment);
    if let Some(namespace) = namespace {
        let _ = http.delete(format!("{namespace}?force=true")).send().await;
    }
    if let Some(pg) = &pg {
        for url in &databases {
            drop_database(pg, url).await;
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Ok(run)
}
