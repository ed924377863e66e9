//! What the end-to-end tests and the distributed benchmark share: the deployment (the
//! `orchestrator` and `worker` binaries as separate processes, each with its own PostgreSQL
//! database, over a real Apache Pulsar, in a namespace of their own) and its HTTP API.

// Each user (tests, bench) uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use saga_core::log::sql::{create_database, pg_pool};
use serde_json::{json, Value};
use uuid::Uuid;

pub const NIKE: &str = "123e4567-e89b-12d3-a456-426614174000";
pub const NIKE_BUDGET: i64 = 10_000_000;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests need PostgreSQL and Apache Pulsar. Run scripts/test.sh, which installs and starts both")
    })
}

/// The crates the `worker` binary is built from: its package and the workspace crates it depends
/// on. worker/build.rs watches the same ones, so a binary cargo considers current passes here.
const WORKER_CRATES: [&str; 7] = ["worker", "workers", "orchestrator", "saga-core", "saga-pulsar", "schemas", "daemon"];

/// The `worker` binary (package `worker`): `ALPES_WORKER_BIN` if set, taken as it is; else the
/// one cargo built beside this test executable (`target/<profile>/worker`, the test being in
/// `target/<profile>/deps/`), refused if it is missing or older than a source it is built from.
///
/// Why not cargo's own answers: `CARGO_BIN_EXE_worker` exists only for the worker package's own
/// tests, and a `cargo build` started from here waits forever for the target folder's lock,
/// which the `cargo test` running this holds. `cargo test --workspace` builds the binary before
/// it runs any test (the worker package has integration tests), so there it is always current.
pub fn worker_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(find_worker_bin).clone()
}

fn find_worker_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("ALPES_WORKER_BIN") {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "ALPES_WORKER_BIN is {}, which is not a file", path.display());
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test executable is in target/<profile>/deps");
    let bin = profile_dir.join(format!("worker{}", std::env::consts::EXE_SUFFIX));
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => String::new(),
        Some("release") => " --release".to_owned(),
        Some(other) => format!(" --profile {other}"),
    };
    let how = format!(
        "build it with `cargo build -p worker --features pulsar{profile}` (or run `cargo test --workspace \
         --all-features`, which builds it first), or point ALPES_WORKER_BIN at a worker binary"
    );
    let Ok(built) = std::fs::metadata(&bin).and_then(|m| m.modified()) else {
        panic!("the worker binary {} is missing: {how}", bin.display());
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root");
    let mut newer = Vec::new();
    for krate in WORKER_CRATES {
        sources_newer_than(&root.join(krate), built, true, &mut newer);
    }
    if !newer.is_empty() {
        newer.sort();
        let shown: Vec<String> = newer.iter().take(5).map(|p| p.display().to_string()).collect();
        panic!(
            "the worker binary {} is older than {} of its sources ({}{}): {how}",
            bin.display(),
            newer.len(),
            shown.join(", "),
            if newer.len() > shown.len() { ", …" } else { "" }
        );
    }
    bin
}

/// Collects the files under `dir` that go into the worker binary (Rust, manifests, migrations,
/// the Avro schemas and the seed compiled in) and were modified after `built`. At a crate's top
/// level, what is not built into it is skipped, as worker/build.rs skips it.
fn sources_newer_than(dir: &Path, built: std::time::SystemTime, top: bool, newer: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if top && matches!(name.as_str(), "tests" | "benches" | "examples" | "target") {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            sources_newer_than(&path, built, false, newer);
        } else if matches!(path.extension().and_then(|e| e.to_str()), Some("rs" | "toml" | "sql" | "avsc" | "json"))
            && meta.modified().is_ok_and(|m| m > built)
        {
            newer.push(path);
        }
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub async fn fresh_database(name: &str) -> String {
    let admin = env("SAGA_TEST_DATABASE_URL");
    create_database(&admin, &format!("saga_test_e2e_{name}")).await.expect("create a database on PostgreSQL")
}

/// A namespace of its own under the `alpes` tenant, keeping messages an hour even without a
/// subscription (as the deployment's namespace does: see docker-compose.yml).
pub async fn fresh_namespace() -> String {
    let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
    let ns = format!("e2e-{}", &Uuid::new_v4().simple().to_string()[..12]);
    let http = reqwest::Client::new();
    let base = format!("{admin}/admin/v2/namespaces/alpes/{ns}");
    let res = http.put(&base).json(&json!({})).send().await.unwrap();
    assert!(res.status().is_success(), "creating namespace alpes/{ns}: {}", res.status());
    let res = http
        .post(format!("{base}/retention"))
        .json(&json!({ "retentionTimeInMinutes": 60, "retentionSizeInMB": 100 }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "retention of alpes/{ns}: {}", res.status());
    ns
}

/// One daemon process, killed (SIGKILL) when dropped.
pub struct Daemon {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: HashMap<String, String>,
    pub port: u16,
    pub log: PathBuf,
    pub child: Option<Child>,
}

impl Daemon {
    pub fn new(
        name: &str,
        program: PathBuf,
        args: &[&str],
        env: HashMap<String, String>,
        port: u16,
        dir: &Path,
    ) -> Self {
        Self {
            name: name.to_owned(),
            program,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            port,
            log: dir.join(format!("{name}.log")),
            child: None,
        }
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(&self.env)
            .env("ALPES_LOG_FORMAT", "json")
            .env("RUST_LOG", "info,sqlx=warn")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.program.display()));
        self.child = Some(child);
    }

    /// Sends a signal (`STOP` freezes the process with its connections open, `CONT` resumes it).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// `kill -9`: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers 200 (database and broker reachable).
    pub async fn ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("{} exited with {status}; its log:\n{}", self.name, self.logs());
            }
            if let Ok(res) = reqwest::get(format!("{}/health", self.url())).await {
                if res.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{} not ready in 60 s; its log:\n{}", self.name, self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The deployment: every participant's worker (`workers::participants::ALL`) and the
/// orchestrator, in their own namespace and databases.
pub struct Stack {
    pub namespace: String,
    pub dbs: HashMap<&'static str, String>,
    pub workers: Vec<Daemon>,
    pub orchestrator: Daemon,
    pub http: reqwest::Client,
}

impl Stack {
    pub async fn start() -> Self {
        // First, so a missing or stale worker binary fails the test before it creates anything.
        let worker_bin = worker_bin();
        let namespace = fresh_namespace().await;
        let dir = std::env::temp_dir().join(format!("alpes-e2e-{namespace}"));
        std::fs::create_dir_all(&dir).unwrap();
        let names: Vec<&'static str> = workers::participants::ALL.iter().map(|p| p.name()).collect();
        let mut dbs = HashMap::new();
        for s in names.iter().copied().chain(["orchestrator"]) {
            dbs.insert(s, fresh_database(s).await);
        }
        let common = |db: &str, port: u16| {
            HashMap::from([
                ("ALPES__DATABASE_URL".to_owned(), db.to_owned()),
                ("ALPES__HTTP".to_owned(), format!("127.0.0.1:{port}")),
                ("ALPES__PULSAR__URL".to_owned(), env("SAGA_TEST_PULSAR_URL")),
                ("ALPES__PULSAR__NAMESPACE".to_owned(), namespace.clone()),
            ])
        };
        let mut workers: Vec<Daemon> = names
            .iter()
            .map(|name| {
                let port = free_port();
                Daemon::new(name, worker_bin.clone(), &["run", name], common(&dbs[name], port), port, &dir)
            })
            .collect();
        let port = free_port();
        let mut orchestrator_env = common(&dbs["orchestrator"], port);
        // Short step timeouts, so a command lost with a killed worker is resent soon.
        orchestrator_env.insert("ALPES__STEP_TIMEOUT_SECS".to_owned(), "3".to_owned());
        let cliente = workers.iter().find(|w| w.name == "cliente").expect("a cliente worker").url();
        orchestrator_env.insert("ALPES__CLIENTE_URL".to_owned(), cliente);
        let mut orchestrator = Daemon::new(
            "orchestrator",
            PathBuf::from(env!("CARGO_BIN_EXE_orchestrator")),
            &["distributed"],
            orchestrator_env,
            port,
            &dir,
        );
        for d in workers.iter_mut().chain([&mut orchestrator]) {
            d.spawn();
        }
        for d in workers.iter_mut().chain([&mut orchestrator]) {
            d.ready().await;
        }
        Self { namespace, dbs, workers, orchestrator, http: reqwest::Client::new() }
    }

    /// Each topic's backlog over its subscriptions, and each dead-letter topic's message count,
    /// from the broker's admin API.
    pub async fn topics(&self) -> (HashMap<String, i64>, HashMap<String, i64>) {
        let admin = format!("{}/admin/v2/persistent/alpes/{}", env("SAGA_TEST_PULSAR_ADMIN_URL"), self.namespace);
        let get = |url: String| async move { self.http.get(url).send().await.unwrap().json::<Value>().await.unwrap() };
        let list: Vec<String> = serde_json::from_value(get(admin.clone()).await).unwrap();
        let mut backlog = HashMap::new();
        let mut dead = HashMap::new();
        for topic in list {
            let name = topic.rsplit('/').next().unwrap().to_owned();
            let stats = get(format!("{admin}/{name}/stats")).await;
            if name.ends_with(".dlq") {
                dead.insert(name, stats["msgInCounter"].as_i64().unwrap_or(0));
            } else {
                let n: i64 = stats["subscriptions"]
                    .as_object()
                    .map(|subs| subs.values().map(|s| s["msgBacklog"].as_i64().unwrap_or(0)).sum())
                    .unwrap_or(0);
                backlog.insert(name, n);
            }
        }
        (backlog, dead)
    }

    /// The sum of the samples of the counter or gauge `name` whose labels contain `label`, from
    /// the `/metrics` of `daemon` (`orchestrator` or a worker).
    pub async fn metric(&self, daemon: &str, name: &str, label: &str) -> f64 {
        let url = if daemon == "orchestrator" { self.orchestrator.url() } else { self.worker(daemon).url() };
        let text = self.http.get(format!("{url}/metrics")).send().await.unwrap().text().await.unwrap();
        let with_labels = format!("{name}{{");
        text.lines()
            .filter(|l| {
                (l.starts_with(&with_labels) && l.contains(label))
                    || (label.is_empty() && l.starts_with(&format!("{name} ")))
            })
            .filter_map(|l| l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()))
            .sum()
    }

    /// The worker of participant `name`.
    pub fn worker(&self, name: &str) -> &Daemon {
        self.workers.iter().find(|w| w.name == name).unwrap_or_else(|| panic!("no worker {name}"))
    }

    /// The worker of participant `name`, to kill and restart it.
    pub fn worker_mut(&mut self, name: &str) -> &mut Daemon {
        self.workers.iter_mut().find(|w| w.name == name).unwrap_or_else(|| panic!("no worker {name}"))
    }

    /// POSTs `body` to `path` on `service` (`orchestrator` or a worker).
    pub async fn post_to(&self, service: &str, path: &str, body: &Value) -> (StatusCode, Value) {
        let base = if service == "orchestrator" { self.orchestrator.url() } else { self.worker(service).url() };
        let res = self.http.post(format!("{base}{path}")).json(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}/afiliaciones/campana", self.orchestrator.url())).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.orchestrator.url())).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Polls a campaign until it leaves `pendiente`.
    pub async fn settled(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let (status, c) = self.get(&format!("/afiliaciones/campana/{id}")).await;
            if status == StatusCode::OK && c["estado"] != "pendiente" {
                return c;
            }
            assert!(Instant::now() < deadline, "campaign {id} still pending after 90 s: {c}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The (step, kind) of every command the saga sent, in order, without retries.
    pub async fn commands(&self, saga: &str) -> Vec<(String, String)> {
        let (status, s) = self.get(&format!("/sagas/{saga}")).await;
        assert_eq!(status, StatusCode::OK);
        crate::casos::comandos(&s)
    }

    pub async fn db(&self, service: &str) -> sqlx::PgPool {
        pg_pool(&self.dbs[service], 2).await.unwrap()
    }

    /// Every integration event on `E`'s topic, read from the broker (the admin API's
    /// examine-message, oldest first), decoded with the v1 Avro schema.
    pub async fn events<E: IntegrationEvent>(&self) -> Vec<E> {
        let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
        let mut out = Vec::new();
        let mut last = None;
        for position in 1.. {
            let url = format!(
                "{admin}/admin/v2/persistent/alpes/{}/{}/examinemessage?initialPosition=earliest&messagePosition={position}",
                self.namespace,
                E::TOPIC
            );
            let res = self.http.get(url).send().await.unwrap();
            if !res.status().is_success() {
                break;
            }
            // Past the end, the broker answers with the last message again.
            let id = res.headers().get("X-Pulsar-Message-ID").map(|v| v.to_str().unwrap().to_owned());
            if id.is_none() || id == last {
                break;
            }
            last = id;
            let bytes = res.bytes().await.unwrap();
            out.push(schemas::decode::<E>(&bytes).unwrap_or_else(|e| panic!("not an {} in Avro: {e}", E::TOPIC)));
        }
        out
    }

    /// Waits until the saga's event is on its topic.
    pub async fn event_of<E: IntegrationEvent>(&self, saga: &str) -> E {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.events::<E>().await.into_iter().find(|e| e.saga_id().to_string() == saga) {
                return e;
            }
            assert!(Instant::now() < deadline, "no event of saga {saga} on {} after 30 s", E::TOPIC);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the three services hold, for a list of campaigns, checked against the campaigns'
    /// final states: the budget of each active campaign reserved once, the rest released;
    /// bookings and tracking likewise; Nike's available budget is the seed minus what is held.
    pub async fn check_effects(&self, campaigns: &[(String, Value, i64, usize)]) {
        let marca = self.db("marca").await;
        let influencer = self.db("influencer").await;
        let tracking = self.db("tracking").await;
        let mut held = 0;
        for (id, c, amount, influencers) in campaigns {
            let id: Uuid = id.parse().unwrap();
            let active = c["estado"] == "activa";
            let budget: Vec<(String, i64)> =
                sqlx::query_as("SELECT estado, monto_centavos FROM reserva_presupuesto WHERE id_campana = $1")
                    .bind(id)
                    .fetch_all(&marca)
                    .await
                    .unwrap();
            let bookings: Vec<(String,)> =
                sqlx::query_as("SELECT estado FROM reserva_influencer WHERE id_campana = $1")
                    .bind(id)
                    .fetch_all(&influencer)
                    .await
                    .unwrap();
            let contexts: Vec<(String,)> = sqlx::query_as("SELECT estado FROM contexto_tracking WHERE id_campana = $1")
                .bind(id)
                .fetch_all(&tracking)
                .await
                .unwrap();
            if active {
                assert_eq!(budget, vec![("reservada".to_owned(), *amount)], "campaign {id}");
                assert_eq!(bookings.len(), *influencers, "campaign {id}");
                assert!(bookings.iter().all(|(e,)| e == "reservada"), "campaign {id}: {bookings:?}");
                assert_eq!(contexts, vec![("abierto".to_owned(),)], "campaign {id}");
                held += amount;
            } else {
                assert!(budget.iter().all(|(e, _)| e == "liberada") && budget.len() <= 1, "campaign {id}: {budget:?}");
                assert!(bookings.iter().all(|(e,)| e == "liberada"), "campaign {id}: {bookings:?}");
                assert!(contexts.iter().all(|(e,)| e == "cerrado"), "campaign {id}: {contexts:?}");
            }
        }
        let (available,): (i64,) =
            sqlx::query_as("SELECT presupuesto_disponible_centavos FROM marca WHERE id_marca = $1")
                .bind(Uuid::parse_str(NIKE).unwrap())
                .fetch_one(&marca)
                .await
                .unwrap();
        assert_eq!(available, NIKE_BUDGET - held, "Nike's budget: seed minus the active campaigns' reservations");
    }
}

/// The envelope of an integration events topic.
pub trait IntegrationEvent: schemas::Envelope {
    /// The saga that produced it.
    fn saga_id(&self) -> Uuid;
    /// Its id, on which consumers deduplicate.
    fn id_evento(&self) -> Uuid;
}

impl IntegrationEvent for schemas::EventoCampana {
    fn saga_id(&self) -> Uuid {
        self.saga_id
    }
    fn id_evento(&self) -> Uuid {
        self.id_evento
    }
}

impl IntegrationEvent for schemas::EventoPago {
    fn saga_id(&self) -> Uuid {
        self.saga_id
    }
    fn id_evento(&self) -> Uuid {
        self.id_evento
    }
}

/// Polls `check` until it holds.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The public API's documented example request, with influencers of their own so campaigns never overlap.
pub fn ejemplo(presupuesto: i64) -> Value {
    json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
      "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59",
      "presupuesto": presupuesto, "marca": { "id_marca": NIKE, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Ana {}", Uuid::new_v4()), "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                       { "nombre": format!("Carlos {}", Uuid::new_v4()), "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] })
}
