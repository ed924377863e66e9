//! CrearCampaña end to end as it is deployed: the orchestrator and the three workers as separate
//! processes (the `orchestrator` and `worker` binaries), each with its own PostgreSQL database,
//! talking over a real Apache Pulsar broker. Each test gets its own Pulsar namespace and its own
//! databases, so tests never see each other's messages or rows.
//!
//! Needs the `pulsar` feature (scripts/test.sh runs `cargo test --workspace --all-features`),
//! PostgreSQL (`SAGA_TEST_DATABASE_URL`) and Pulsar (`SAGA_TEST_PULSAR_URL`,
//! `SAGA_TEST_PULSAR_ADMIN_URL`); without them the tests fail, saying so.

#![cfg(feature = "pulsar")]
// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use saga_core::log::sql::{create_database, pg_pool};
use serde_json::{json, Value};
use uuid::Uuid;

const NIKE: &str = "123e4567-e89b-12d3-a456-426614174000";
const NIKE_BUDGET: i64 = 10_000_000;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: these tests need PostgreSQL and Apache Pulsar. Run scripts/test.sh, which installs and starts both")
    })
}

fn worker_bin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_orchestrator")).with_file_name("worker");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p workers --features pulsar --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn fresh_database(name: &str) -> String {
    let admin = env("SAGA_TEST_DATABASE_URL");
    create_database(&admin, &format!("saga_test_e2e_{name}")).await.expect("create a database on PostgreSQL")
}

/// A namespace of its own under the `alpes` tenant, keeping messages an hour even without a
/// subscription (as the deployment's namespace does: see docker-compose.yml).
async fn fresh_namespace() -> String {
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
struct Daemon {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    env: HashMap<String, String>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    fn new(name: &str, program: PathBuf, args: &[&str], env: HashMap<String, String>, port: u16, dir: &Path) -> Self {
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

    fn spawn(&mut self) {
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
    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let status = Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// `kill -9`: no shutdown code runs.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `/health` answers 200 (database and broker reachable).
    async fn ready(&mut self) {
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

/// The deployment: three workers and the orchestrator, in their own namespace and databases.
struct Stack {
    namespace: String,
    dbs: HashMap<&'static str, String>,
    marca: Daemon,
    influencer: Daemon,
    tracking: Daemon,
    orchestrator: Daemon,
    http: reqwest::Client,
}

impl Stack {
    async fn start() -> Self {
        let namespace = fresh_namespace().await;
        let dir = std::env::temp_dir().join(format!("alpes-e2e-{namespace}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut dbs = HashMap::new();
        for s in ["orchestrator", "marca", "influencer", "tracking"] {
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
        let worker = |name: &str| {
            let port = free_port();
            Daemon::new(name, worker_bin(), &["run", name], common(&dbs[name], port), port, &dir)
        };
        let (mut marca, mut influencer, mut tracking) = (worker("marca"), worker("influencer"), worker("tracking"));
        let port = free_port();
        let mut orchestrator_env = common(&dbs["orchestrator"], port);
        // Short step timeouts, so a command lost with a killed worker is resent soon.
        orchestrator_env.insert("ALPES__STEP_TIMEOUT_SECS".to_owned(), "3".to_owned());
        let mut orchestrator = Daemon::new(
            "orchestrator",
            PathBuf::from(env!("CARGO_BIN_EXE_orchestrator")),
            &["distributed"],
            orchestrator_env,
            port,
            &dir,
        );
        for d in [&mut marca, &mut influencer, &mut tracking, &mut orchestrator] {
            d.spawn();
        }
        for d in [&mut marca, &mut influencer, &mut tracking, &mut orchestrator] {
            d.ready().await;
        }
        Self { namespace, dbs, marca, influencer, tracking, orchestrator, http: reqwest::Client::new() }
    }

    async fn post(&self, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}/afiliaciones/campana", self.orchestrator.url())).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.orchestrator.url())).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Polls a campaign until it leaves `pendiente`.
    async fn settled(&self, id: &str) -> Value {
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
    async fn commands(&self, saga: &str) -> Vec<(String, String)> {
        let (status, s) = self.get(&format!("/sagas/{saga}")).await;
        assert_eq!(status, StatusCode::OK);
        let mut out: Vec<(String, String)> = Vec::new();
        for e in s["historia"].as_array().unwrap() {
            if e["event"]["type"] == "command_sent" {
                let c = &e["event"]["command"]["correlation"];
                let key = (c["step_name"].as_str().unwrap().to_owned(), c["kind"].as_str().unwrap().to_owned());
                if !out.contains(&key) {
                    out.push(key);
                }
            }
        }
        out
    }

    async fn db(&self, service: &str) -> sqlx::PgPool {
        pg_pool(&self.dbs[service], 2).await.unwrap()
    }

    /// Every integration event on `eventos.campanas`, read from the broker (the admin API's
    /// examine-message, oldest first), decoded with the v1 Avro schema.
    async fn events(&self) -> Vec<schemas::EventoCampana> {
        let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
        let mut out = Vec::new();
        let mut last = None;
        for position in 1.. {
            let url = format!(
                "{admin}/admin/v2/persistent/alpes/{}/eventos.campanas/examinemessage?initialPosition=earliest&messagePosition={position}",
                self.namespace
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
            out.push(schemas::decode::<schemas::EventoCampana>(&bytes).expect("an EventoCampana in Avro"));
        }
        out
    }

    /// Waits until the saga's event is on the topic.
    async fn event_of(&self, saga: &str) -> schemas::EventoCampana {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.events().await.into_iter().find(|e| e.saga_id.to_string() == saga) {
                return e;
            }
            assert!(Instant::now() < deadline, "no event of saga {saga} on eventos.campanas after 30 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the three services hold, for a list of campaigns, checked against the campaigns'
    /// final states: the budget of each active campaign reserved once, the rest released;
    /// bookings and tracking likewise; Nike's available budget is the seed minus what is held.
    async fn check_effects(&self, campaigns: &[(String, Value, i64, usize)]) {
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

/// Polls `check` until it holds.
async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
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

/// The request of DESIGN.md, with influencers of their own so campaigns never overlap.
fn ejemplo(presupuesto: i64) -> Value {
    json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
      "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59",
      "presupuesto": presupuesto, "marca": { "id_marca": NIKE, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Ana {}", Uuid::new_v4()), "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                       { "nombre": format!("Carlos {}", Uuid::new_v4()), "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] })
}

fn pair(step: &str, kind: &str) -> (String, String) {
    (step.to_owned(), kind.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_across_processes_and_campana_creada_is_on_the_topic() {
    let stack = Stack::start().await;
    let (status, accepted) = stack.post(&ejemplo(15000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let id = accepted["id_campana"].as_str().unwrap().to_owned();
    let saga = accepted["saga_id"].as_str().unwrap().to_owned();
    let c = stack.settled(&id).await;
    assert_eq!(c["estado"], "activa", "{c}");
    assert_eq!(
        stack.commands(&saga).await,
        vec![
            pair("reservar_presupuesto", "action"),
            pair("reservar_influencers", "action"),
            pair("abrir_tracking", "action")
        ]
    );
    stack.check_effects(&[(id.clone(), c, 1_500_000, 2)]).await;

    let evento = stack.event_of(&saga).await;
    assert_eq!(evento.message_type, "CampanaCreada");
    let schemas::Evento::CampanaCreada(creada) = evento.evento else { panic!("expected CampanaCreada") };
    assert_eq!(creada.id_campana.to_string(), id);
    assert_eq!(creada.presupuesto_centavos, schemas::Centavos(1_500_000));
    assert_eq!(creada.influencers.len(), 2);
    assert!(creada.influencers.iter().all(|i| !i.codigo_tracking.is_empty()));

    // The saga's ids crossed the process boundary in the message properties: each worker's
    // span for the command carries the saga id, its step and its attempt.
    for (worker, step) in [
        (&stack.marca, "reservar_presupuesto"),
        (&stack.influencer, "reservar_influencers"),
        (&stack.tracking, "abrir_tracking"),
    ] {
        let logs = worker.logs();
        let line = logs
            .lines()
            .find(|l| l.contains(&saga) && l.contains(step))
            .unwrap_or_else(|| panic!("{}: no log line with saga {saga} and step {step}:\n{logs}", worker.name));
        let v: Value = serde_json::from_str(line).unwrap();
        let span = v["span"].clone();
        assert_eq!(span["saga_id"], json!(saga), "{line}");
        assert_eq!(span["step"], json!(step), "{line}");
        assert_eq!(span["attempt"], json!(1), "{line}");
    }

    // Metrics moved on both sides of the broker.
    let scrape =
        |url: String| async move { reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap() };
    let orchestrator = scrape(stack.orchestrator.url()).await;
    assert!(
        orchestrator.contains("saga_finished_total{saga=\"crear_campana\",outcome=\"completed\"} 1"),
        "{orchestrator}"
    );
    assert!(orchestrator.contains("transport_messages_published_total{transport=\"pulsar\""), "{orchestrator}");
    let marca = scrape(stack.marca.url()).await;
    assert!(marca.contains("participant_commands_total{participant=\"comandos.marca\",kind=\"action\",disposition=\"applied\",outcome=\"success\"} 1"), "{marca}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_business_failure_compensates_exactly_the_steps_done_in_reverse() {
    let stack = Stack::start().await;
    let mut inactive_brand = ejemplo(15000);
    inactive_brand["marca"]["id_marca"] = json!("323e4567-e89b-12d3-a456-426614174000");
    let mut small_audience = ejemplo(15000);
    small_audience["influencers"][1]["seguidores"] = json!(10);
    let mut long_window = ejemplo(15000);
    long_window["fecha_fin"] = json!("2028-01-01T00:00:00");
    let cases = [
        (inactive_brand, "reservar_presupuesto", "MARCA_INACTIVA", vec![]),
        (
            small_audience,
            "reservar_influencers",
            "AUDIENCIA_INSUFICIENTE",
            vec![pair("reservar_presupuesto", "compensation")],
        ),
        (
            long_window,
            "abrir_tracking",
            "FECHAS_INVALIDAS",
            vec![pair("reservar_influencers", "compensation"), pair("reservar_presupuesto", "compensation")],
        ),
    ];
    let mut effects = Vec::new();
    for (body, step, code, compensations) in cases {
        let (status, accepted) = stack.post(&body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        let id = accepted["id_campana"].as_str().unwrap().to_owned();
        let saga = accepted["saga_id"].as_str().unwrap().to_owned();
        let c = stack.settled(&id).await;
        assert_eq!(c["estado"], "rechazada", "{c}");
        assert_eq!((c["paso_fallido"].as_str(), c["codigo"].as_str()), (Some(step), Some(code)), "{c}");
        let sent: Vec<_> = stack.commands(&saga).await.into_iter().filter(|(_, k)| k == "compensation").collect();
        assert_eq!(sent, compensations, "failure at {step}");
        let evento = stack.event_of(&saga).await;
        let schemas::Evento::CampanaRechazada(rechazada) = evento.evento else { panic!("expected CampanaRechazada") };
        assert_eq!((rechazada.paso_fallido.as_str(), rechazada.codigo.as_str()), (step, code));
        effects.push((id, c, 1_500_000, 2));
    }
    // Nothing is held anywhere: every reservation made was released.
    stack.check_effects(&effects).await;
}

/// Starts `n` campaigns of 100.00 each, about a third of them refused by tracking.
async fn start_many(stack: &Stack, n: usize) -> Vec<(String, String)> {
    let mut started = Vec::new();
    for i in 0..n {
        let mut body = ejemplo(100);
        if i % 3 == 2 {
            body["fecha_fin"] = json!("2028-01-01T00:00:00");
        }
        let (status, accepted) = stack.post(&body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        started.push((
            accepted["id_campana"].as_str().unwrap().to_owned(),
            accepted["saga_id"].as_str().unwrap().to_owned(),
        ));
    }
    started
}

async fn settle_all(stack: &Stack, started: &[(String, String)]) -> Vec<(String, Value, i64, usize)> {
    let mut out = Vec::new();
    for (i, (id, _)) in started.iter().enumerate() {
        let c = stack.settled(id).await;
        let expected = if i % 3 == 2 { "rechazada" } else { "activa" };
        assert_eq!(c["estado"], expected, "{c}");
        out.push((id.clone(), c, 10_000, 2));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_orchestrator_killed_mid_sagas_and_restarted_ends_every_saga() {
    let mut stack = Stack::start().await;
    // tracking is frozen, so every saga stops mid-way at its third step (or its compensation).
    stack.tracking.signal("STOP");
    let started = start_many(&stack, 24).await;
    wait_for(Duration::from_secs(30), "every saga waiting on tracking", || async {
        for (_, saga) in &started {
            let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
            let s = &s["saga"];
            if s["status"] != "running" || s["in_flight"]["command"]["participant"] != "comandos.tracking" {
                return false;
            }
        }
        true
    })
    .await;
    stack.orchestrator.kill9();
    // tracking wakes up and answers while the orchestrator is dead: the replies wait on the
    // orchestrator's durable subscription.
    stack.tracking.signal("CONT");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.orchestrator.spawn();
    stack.orchestrator.ready().await;
    let effects = settle_all(&stack, &started).await;
    stack.check_effects(&effects).await;
    // Every saga is final in the log too, and each has exactly one event on the topic.
    let (_, sagas) = stack.get("/sagas?limite=100").await;
    let sagas = sagas["sagas"].as_array().unwrap();
    assert_eq!(sagas.len(), started.len());
    assert!(sagas.iter().all(|s| s["status"] == "completed" || s["status"] == "compensated"), "{sagas:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = stack.events().await;
        let mut per_saga: HashMap<Uuid, usize> = HashMap::new();
        for e in &events {
            *per_saga.entry(e.saga_id).or_default() += 1;
        }
        if per_saga.len() == started.len() {
            // At least once: a relay killed between publishing and marking publishes again,
            // with the same id_evento (consumers deduplicate on it).
            let distinct: std::collections::HashSet<Uuid> = events.iter().map(|e| e.id_evento).collect();
            assert_eq!(distinct.len(), started.len());
            break;
        }
        assert!(Instant::now() < deadline, "{} of {} sagas have their event", per_saga.len(), started.len());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_and_restarted_applies_no_effect_twice() {
    let mut stack = Stack::start().await;
    let first = start_many(&stack, 12).await;
    // marca dies with commands in flight (received, maybe applied, maybe replied).
    tokio::time::sleep(Duration::from_millis(300)).await;
    stack.marca.kill9();
    let second = start_many(&stack, 6).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stack.marca.spawn();
    stack.marca.ready().await;
    let started: Vec<_> = first.into_iter().chain(second).collect();
    let effects = settle_all(&stack, &started).await;
    // One reservation per campaign and the brand's budget moved once per active campaign.
    stack.check_effects(&effects).await;
    let marca = stack.db("marca").await;
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM reserva_presupuesto").fetch_one(&marca).await.unwrap();
    assert_eq!(rows as usize, started.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_post_with_the_same_idempotency_key_starts_one_saga() {
    let stack = Stack::start().await;
    let body = ejemplo(15000);
    let (first_status, first) = stack.post(&body, Some("crear-verano-2024")).await;
    let (second_status, second) = stack.post(&body, Some("crear-verano-2024")).await;
    assert_eq!((first_status, second_status), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(
        (&first["id_campana"], &first["saga_id"]),
        (&second["id_campana"], &second["saga_id"]),
        "{first} {second}"
    );
    stack.settled(first["id_campana"].as_str().unwrap()).await;
    let (_, sagas) = stack.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
    // The same key with another body is a client error, not a second saga.
    let (status, answer) = stack.post(&ejemplo(20000), Some("crear-verano-2024")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (_, sagas) = stack.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1, "{sagas}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_a_command_topic_is_dead_lettered_and_the_worker_goes_on() {
    let stack = Stack::start().await;
    let config = saga_pulsar::PulsarConfig::new(env("SAGA_TEST_PULSAR_URL"), "alpes", &stack.namespace, "e2e");
    let raw = saga_pulsar::PulsarTransport::new(config, std::sync::Arc::new(schemas::AvroCodec::crear_campana()));
    let properties = HashMap::from([("saga_id".to_owned(), "00000000-0000-0000-0000-000000000042".to_owned())]);
    raw.publish("comandos.marca", None, b"\x00\x01not avro".to_vec(), properties).await.unwrap();

    // marca keeps serving: a campaign completes after the poison.
    let (_, accepted) = stack.post(&ejemplo(15000), None).await;
    let c = stack.settled(accepted["id_campana"].as_str().unwrap()).await;
    assert_eq!(c["estado"], "activa", "{c}");

    // The poison is on comandos.marca.dlq, byte for byte, with the reason.
    let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
    let url = format!(
        "{admin}/admin/v2/persistent/alpes/{}/comandos.marca.dlq/examinemessage?initialPosition=earliest&messagePosition=1",
        stack.namespace
    );
    let res = stack.http.get(url).send().await.unwrap();
    assert!(res.status().is_success(), "nothing on comandos.marca.dlq: {}", res.status());
    let reason = res.headers()["X-Pulsar-PROPERTY-dead_letter_reason"].to_str().unwrap().to_owned();
    assert!(reason.starts_with("undecodable"), "{reason}");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"\x00\x01not avro");
    let metrics = reqwest::get(format!("{}/metrics", stack.marca.url())).await.unwrap().text().await.unwrap();
    let topic = format!("persistent://alpes/{}/comandos.marca", stack.namespace);
    assert!(
        metrics
            .contains(&format!("transport_messages_dead_lettered_total{{transport=\"pulsar\",topic=\"{topic}\"}} 1")),
        "{metrics}"
    );
}
