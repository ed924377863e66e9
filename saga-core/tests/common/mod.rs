//! A test world for the engine: a three-step saga, real participants (saga-core's participant
//! module over SQLite or PostgreSQL) behind the in-process transport, a manual clock, and a
//! deterministic pump that delivers messages and fires timers until the saga rests.
//!
//! A script tells each participant how to behave per delivery of a (step, kind): succeed, refuse
//! (business failure), answer transient, lose the command, lose the reply, or reply twice.
#![allow(dead_code, missing_docs)]

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use saga_core::clock::{Clock, ManualClock};
use saga_core::definition::{
    BuildError, CommandBody, Registry, RetryPolicy, SagaDefinition, Step, StepCommands, StepContext,
};
use saga_core::engine::{Engine, EngineConfig};
use saga_core::inject::FaultPlan;
use saga_core::log::SagaStore;
use saga_core::participant::{CommandHandler, CommitStats, Handler, HandlerError, PgParticipant, SqliteParticipant};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Outcome, Receiver, Reply, Transport};
use saga_core::{SagaEvent, SagaId, SagaState, StepKind};
use serde_json::json;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};

/// The sequential test saga: uno, then dos, then tres.
pub const SAGA: &str = "prueba";
/// The parallel test saga: uno, then dos and tres at once.
pub const SAGA_PARALELA: &str = "prueba_paralela";
pub const STEPS: [&str; 3] = ["uno", "dos", "tres"];
pub const REPLY_TO: &str = "respuestas.prueba";

pub fn participant_of(step: &str) -> String {
    format!("comandos.{step}")
}

/// Builds `{saga, step}` bodies; the compensation needs nothing from the action's output.
struct Echo(&'static str);

impl StepCommands for Echo {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Hacer", json!({ "saga": ctx.saga_id, "step": self.0, "params": ctx.params })))
    }
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new("Deshacer", json!({ "saga": ctx.saga_id, "step": self.0 })))
    }
}

/// Step timeout in the test saga.
pub const TIMEOUT: Duration = Duration::from_secs(5);

pub fn policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts: attempts,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(2),
        multiplier: 2.0,
        jitter: 0.5,
    }
}

fn step(name: &'static str) -> Step {
    Step::new(name, participant_of(name), Echo(name)).timeout(TIMEOUT).retry(policy(3)).compensation_retry(policy(3))
}

/// `uno` → `dos` → `tres`.
pub fn definition() -> SagaDefinition {
    SagaDefinition::new(SAGA, 1).step(step("uno")).step(step("dos").after("uno")).step(step("tres").after("dos"))
}

/// `uno` → {`dos`, `tres`}: the two run in parallel once `uno` succeeded.
pub fn parallel_definition() -> SagaDefinition {
    SagaDefinition::new(SAGA_PARALELA, 1)
        .step(step("uno"))
        .step(step("dos").after("uno"))
        .step(step("tres").after("uno"))
}

/// The definition of a test saga by name.
pub fn definition_of(saga: &str) -> SagaDefinition {
    if saga == SAGA_PARALELA {
        parallel_definition()
    } else {
        definition()
    }
}

pub fn registry() -> Arc<Registry> {
    let mut registry = Registry::new();
    registry.register(definition()).expect("register test saga");
    registry.register(parallel_definition()).expect("register parallel test saga");
    Arc::new(registry)
}

/// Checks that compensations ran in reverse dependency order: for every step and every step it
/// depends on, both compensated, the dependent's compensation succeeded before the dependency's
/// was first sent (`saga_core::saga::compensation_order_violation`, which the harness uses too).
pub fn assert_reverse_dependency_order(history: &[saga_core::LogEntry], definition: &SagaDefinition) {
    if let Some(problem) = saga_core::saga::compensation_order_violation(history, definition) {
        panic!("{problem}");
    }
}

/// What a participant does with one delivery of a (step, kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    Succeed,
    Refuse,
    Transient,
    LoseCommand,
    LoseReply,
    DuplicateReply,
    /// The handler says the command can never be handled (a poison message).
    Poison,
    /// Writes its effect, then answers transient: the effect must be rolled back.
    TransientAfterWriting,
    /// Succeeds, but holds its transaction open for [`SLOW_HANDLER`] after writing its effect,
    /// so attempts racing it overlap for certain rather than by luck of scheduling.
    Slow,
}

/// How long a [`Behavior::Slow`] handler keeps its transaction open: long enough that every
/// racer of a test has read the step's record before the first one commits (tasks start within
/// a millisecond or two of a barrier), short enough for SQLite, which runs them one by one.
pub const SLOW_HANDLER: Duration = Duration::from_millis(50);

#[derive(Default)]
pub struct Script {
    plan: HashMap<(String, StepKind), VecDeque<Behavior>>,
}

impl Script {
    pub fn on(mut self, step: &str, kind: StepKind, behaviors: &[Behavior]) -> Self {
        self.plan.entry((step.to_owned(), kind)).or_default().extend(behaviors.iter().copied());
        self
    }

    fn next(&mut self, step: &str, kind: StepKind) -> Behavior {
        self.plan.get_mut(&(step.to_owned(), kind)).and_then(|q| q.pop_front()).unwrap_or(Behavior::Succeed)
    }
}

/// The business side of the test participants: records every execution in `effect_log`, and
/// refuses or answers transient when the delivery's behavior says so.
pub struct EffectHandler {
    pub pending: Arc<Mutex<HashMap<saga_core::MessageId, Behavior>>>,
}

macro_rules! effect_handler {
    ($db:ty, $run:ident) => {
        #[async_trait]
        impl Handler<$db> for EffectHandler {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                self.$run(tx, command).await
            }
            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                self.$run(tx, command).await
            }
        }

        impl EffectHandler {
            #[allow(clippy::needless_lifetimes)]
            async fn $run(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                let c = &command.correlation;
                let behavior = self.pending.lock().unwrap().get(&c.message_id).copied().unwrap_or(Behavior::Succeed);
                match behavior {
                    Behavior::Refuse if c.kind == StepKind::Action => {
                        return Ok(Outcome::BusinessFailure { code: "rechazado".into(), reason: "scripted refusal".into() })
                    }
                    Behavior::Transient => return Ok(Outcome::Transient { reason: "scripted transient".into() }),
                    Behavior::Poison => return Err(HandlerError::Invalid("scripted poison".into())),
                    _ => {}
                }
                sqlx::query("INSERT INTO effect_log (saga_id, step, kind, message_id) VALUES ($1, $2, $3, $4)")
                    .bind(c.saga_id.0.to_string())
                    .bind(&c.step_name)
                    .bind(c.kind.as_str())
                    .bind(c.message_id.0.to_string())
                    .execute(&mut **tx)
                    .await?;
                if behavior == Behavior::Slow {
                    tokio::time::sleep(SLOW_HANDLER).await;
                }
                if behavior == Behavior::TransientAfterWriting {
                    return Ok(Outcome::Transient { reason: "scripted transient, after writing".into() });
                }
                Ok(Outcome::Success { output: json!({ "hecho": c.step_name, "attempt": c.attempt }) })
            }
        }
    };
}

effect_handler!(Sqlite, run_sqlite);

pub const EFFECT_LOG_DDL: &str =
    "CREATE TABLE IF NOT EXISTS effect_log (saga_id TEXT NOT NULL, step TEXT NOT NULL, kind TEXT NOT NULL, message_id TEXT NOT NULL)";

/// Where participants keep their records.
#[derive(Clone)]
pub enum ParticipantDb {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl ParticipantDb {
    pub async fn sqlite_memory() -> Self {
        let pool = saga_core::log::sql::sqlite_pool("sqlite::memory:").await.expect("sqlite pool");
        sqlx::query(EFFECT_LOG_DDL).execute(&pool).await.expect("effect_log");
        ParticipantDb::Sqlite(pool)
    }

    pub async fn postgres(pool: PgPool) -> Self {
        sqlx::query(EFFECT_LOG_DDL).execute(&pool).await.expect("effect_log");
        ParticipantDb::Postgres(pool)
    }

    pub async fn handler(
        &self,
        pending: Arc<Mutex<HashMap<saga_core::MessageId, Behavior>>>,
    ) -> Arc<dyn CommandHandler> {
        self.handler_with_stats(pending).await.0
    }

    /// A participant instance on this database, and a reader of its group commit's counts.
    pub async fn handler_with_stats(
        &self,
        pending: Arc<Mutex<HashMap<saga_core::MessageId, Behavior>>>,
    ) -> (Arc<dyn CommandHandler>, Box<dyn Fn() -> CommitStats + Send + Sync>) {
        match self {
            ParticipantDb::Sqlite(pool) => {
                let p = Arc::new(SqliteParticipant::new(pool.clone(), EffectHandler { pending }));
                p.migrate().await.expect("participant migrations");
                (p.clone(), Box::new(move || p.commit_stats()))
            }
            ParticipantDb::Postgres(pool) => {
                let p = Arc::new(PgParticipant::new(pool.clone(), EffectHandler { pending }));
                p.migrate().await.expect("participant migrations");
                (p.clone(), Box::new(move || p.commit_stats()))
            }
        }
    }

    /// Business executions per (step, kind) for a saga.
    pub async fn effects(&self, saga: SagaId) -> HashMap<(String, String), i64> {
        let rows: Vec<(String, String, i64)> = match self {
            ParticipantDb::Sqlite(pool) => {
                sqlx::query_as("SELECT step, kind, COUNT(*) FROM effect_log WHERE saga_id = $1 GROUP BY step, kind")
                    .bind(saga.0.to_string())
                    .fetch_all(pool)
                    .await
                    .expect("effects")
            }
            ParticipantDb::Postgres(pool) => {
                sqlx::query_as("SELECT step, kind, COUNT(*) FROM effect_log WHERE saga_id = $1 GROUP BY step, kind")
                    .bind(saga.0.to_string())
                    .fetch_all(pool)
                    .await
                    .expect("effects")
            }
        };
        rows.into_iter().map(|(s, k, n)| ((s, k), n)).collect()
    }

    /// Writes a step record as an older participant could have left it: `status`, no stored
    /// action reply.
    pub async fn seed_step(&self, saga: SagaId, step: &str, status: &str) {
        let sql = "INSERT INTO participant_step (saga_id, step, status, action_reply, updated_at) \
                   VALUES ($1, $2, $3, NULL, $4)";
        match self {
            ParticipantDb::Sqlite(pool) => {
                sqlx::query(sql).bind(saga.0).bind(step).bind(status).bind(Utc::now()).execute(pool).await.map(drop)
            }
            ParticipantDb::Postgres(pool) => {
                sqlx::query(sql).bind(saga.0).bind(step).bind(status).bind(Utc::now()).execute(pool).await.map(drop)
            }
        }
        .expect("seed participant_step");
    }

    /// The status of a step's record, if there is one.
    pub async fn step_status(&self, saga: SagaId, step: &str) -> Option<String> {
        let sql = "SELECT status FROM participant_step WHERE saga_id = $1 AND step = $2";
        let row: Option<(String,)> = match self {
            ParticipantDb::Sqlite(pool) => sqlx::query_as(sql).bind(saga.0).bind(step).fetch_optional(pool).await,
            ParticipantDb::Postgres(pool) => sqlx::query_as(sql).bind(saga.0).bind(step).fetch_optional(pool).await,
        }
        .expect("participant_step status");
        row.map(|(status,)| status)
    }
}

effect_handler!(Postgres, run_postgres);

/// Participants for the three steps; they survive engine restarts.
pub struct Participants {
    pub db: ParticipantDb,
    handler: Arc<dyn CommandHandler>,
    pending: Arc<Mutex<HashMap<saga_core::MessageId, Behavior>>>,
    pub script: Mutex<Script>,
    /// Replies held back (lost replies are kept so a test can deliver them late).
    pub held: Mutex<Vec<Reply>>,
}

impl Participants {
    pub async fn new(db: ParticipantDb, script: Script) -> Self {
        let pending = Arc::new(Mutex::new(HashMap::new()));
        let handler = db.handler(pending.clone()).await;
        Self { db, handler, pending, script: Mutex::new(script), held: Mutex::new(Vec::new()) }
    }

    /// Handles one command as the script says; returns the replies to send.
    pub async fn deliver(&self, command: &Command) -> Vec<Reply> {
        let c = &command.correlation;
        let behavior = self.script.lock().unwrap().next(&c.step_name, c.kind);
        if behavior == Behavior::LoseCommand {
            return Vec::new();
        }
        self.pending.lock().unwrap().insert(c.message_id, behavior);
        let handled = self.handler.handle(command).await.expect("participant handles command");
        match behavior {
            Behavior::LoseReply => {
                self.held.lock().unwrap().push(handled.reply);
                Vec::new()
            }
            Behavior::DuplicateReply => vec![handled.reply.clone(), handled.reply],
            _ => vec![handled.reply],
        }
    }
}

/// One engine (restartable) over a store, with its transport endpoints.
pub struct World {
    pub store: Arc<dyn SagaStore>,
    pub transport: InProcessTransport,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    pub participants: Arc<Participants>,
    commands: Vec<(String, Box<dyn Receiver<Command>>)>,
    replies: Box<dyn Receiver<Reply>>,
    faults: FaultPlan,
}

pub fn test_config() -> EngineConfig {
    EngineConfig {
        reply_to: REPLY_TO.into(),
        // One try: a failed write is a crash in these tests, not something to wait out.
        store_retry: RetryPolicy { max_attempts: 1, ..RetryPolicy::default() },
        // The pump looks at the queues right after `start`: the in-process transport takes the
        // first commands at once, so waiting for it keeps every run the same.
        start_send_wait: Duration::from_secs(10),
        ..EngineConfig::default()
    }
}

impl World {
    pub async fn new(store: Arc<dyn SagaStore>, participants: Arc<Participants>, faults: FaultPlan) -> Self {
        let transport = InProcessTransport::new();
        let clock = Arc::new(ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("time")));
        let engine = Engine::builder(store.clone(), registry(), Arc::new(transport.clone()))
            .clock(clock.clone())
            .config(test_config())
            .faults(faults.clone())
            .seed(42)
            .build();
        let mut commands = Vec::new();
        for step in STEPS {
            let address = participant_of(step);
            commands.push((address.clone(), transport.commands(&address).await.expect("subscribe")));
        }
        let replies = transport.replies(REPLY_TO).await.expect("subscribe replies");
        Self { store, transport, clock, engine, participants, commands, replies, faults }
    }

    /// A new engine on the same store, transport, clock and participants: a restart.
    pub fn restart(&mut self, faults: FaultPlan) {
        self.restart_with(registry(), faults)
    }

    /// A restart with other definitions registered (a deployment that changed them).
    pub fn restart_with(&mut self, registry: Arc<Registry>, faults: FaultPlan) {
        self.faults = faults;
        self.engine = Engine::builder(self.store.clone(), registry, Arc::new(self.transport.clone()))
            .clock(self.clock.clone())
            .config(test_config())
            .faults(self.faults.clone())
            .seed(43)
            .build();
    }

    /// Delivers messages and fires timers until `id` rests (or the engine fails: a crash).
    pub async fn pump(&mut self, id: SagaId) -> Result<SagaState, saga_core::EngineError> {
        self.pump_until(id, |s| !s.status.is_active()).await
    }

    /// Like `pump`, but stops as soon as the saga's state satisfies `done` (checked before every
    /// delivery and timer).
    pub async fn pump_until(
        &mut self,
        id: SagaId,
        done: impl Fn(&SagaState) -> bool,
    ) -> Result<SagaState, saga_core::EngineError> {
        for _ in 0..10_000 {
            let state = self.engine.get(id).await?.expect("saga exists");
            if done(&state) {
                return Ok(state);
            }
            let mut progressed = false;
            for (_, receiver) in &mut self.commands {
                while let Some(delivery) = try_recv(receiver.as_mut()).await {
                    progressed = true;
                    let replies = self.participants.deliver(&delivery.message).await;
                    for reply in replies {
                        self.transport.send_reply(REPLY_TO, &reply).await.expect("send reply");
                    }
                    delivery.ack().await.expect("ack");
                }
            }
            while let Some(delivery) = try_recv(self.replies.as_mut()).await {
                progressed = true;
                self.engine.handle_reply(&delivery.message).await?;
                delivery.ack().await.expect("ack");
            }
            if progressed {
                continue;
            }
            let state = self.engine.get(id).await?.expect("saga exists");
            if done(&state) || !state.status.is_active() {
                return Ok(state);
            }
            let wake = state.wake_at().unwrap_or_else(|| panic!("active saga with nothing to wait for: {state:#?}"));
            let now = self.clock.now();
            if wake > now {
                self.clock.advance((wake - now).to_std().expect("positive"));
            }
            if self.engine.tick().await? == 0 {
                // Something was due and nothing moved: the timer's write failed (a crash).
                return Err(saga_core::EngineError::Store(saga_core::log::StoreError::unavailable(
                    "timer pass made no progress",
                )));
            }
        }
        panic!("saga {id} did not rest after 10000 pump rounds");
    }

    /// Delivers every command queued for the participants, as the pump does, but hands the
    /// replies back instead of sending them: for commands that arrive after the saga rests, which
    /// `pump` never delivers (it returns as soon as the saga is at rest).
    pub async fn deliver_queued_commands(&mut self) -> Vec<Reply> {
        let mut replies = Vec::new();
        for (_, receiver) in &mut self.commands {
            while let Some(delivery) = try_recv(receiver.as_mut()).await {
                replies.extend(self.participants.deliver(&delivery.message).await);
                delivery.ack().await.expect("ack");
            }
        }
        replies
    }

    /// Pumps; on an engine error (an injected crash), restarts the engine and recovers, as a
    /// supervisor would, until the saga rests.
    pub async fn pump_through_crashes(&mut self, id: SagaId, lift: impl Fn(&Self)) -> SagaState {
        for _ in 0..50 {
            match self.pump(id).await {
                Ok(state) => return state,
                Err(_) => {
                    lift(self);
                    self.restart(self.faults.clone());
                    self.engine.recover().await.expect("recover");
                }
            }
        }
        panic!("saga {id} did not rest through crashes");
    }
}

async fn try_recv<M: Send>(receiver: &mut dyn Receiver<M>) -> Option<saga_core::transport::Delivery<M>> {
    // The in-process receiver is ready on its first poll when a message is queued.
    let mut recv = std::pin::pin!(receiver.recv());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match recv.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(result) => result.ok(),
        std::task::Poll::Pending => None,
    }
}

/// The (step, kind) of every command the log says was sent, in order, without repeats of the
/// same step and kind (retries).
pub fn sent(history: &[saga_core::LogEntry]) -> Vec<(String, StepKind)> {
    let mut out: Vec<(String, StepKind)> = Vec::new();
    for entry in history {
        if let SagaEvent::CommandSent { command, .. } = &entry.event {
            let key = (command.correlation.step_name.clone(), command.correlation.kind);
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
}

/// The steps compensated, in the order their compensations were first sent.
pub fn compensations(history: &[saga_core::LogEntry]) -> Vec<String> {
    sent(history).into_iter().filter(|(_, k)| *k == StepKind::Compensation).map(|(s, _)| s).collect()
}

pub fn params() -> serde_json::Value {
    json!({ "nombre": "Campaña de prueba", "presupuesto": 15000 })
}

/// A fresh PostgreSQL database for one test, on the cluster `SAGA_TEST_DATABASE_URL` names (an
/// admin URL; `scripts/test.sh` sets it). Without it the test fails, saying so: PostgreSQL tests
/// are never skipped.
pub async fn fresh_pg() -> (PgPool, String) {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "SAGA_TEST_DATABASE_URL is not set: the PostgreSQL tests need a real server. \
             Run `scripts/test.sh` (it installs and starts one), or set it to an admin URL such as \
             postgres://postgres@127.0.0.1:55432/postgres"
        )
    });
    let url = saga_core::log::sql::create_database(&admin, "saga_test")
        .await
        .unwrap_or_else(|e| panic!("cannot create a database on PostgreSQL at SAGA_TEST_DATABASE_URL ({admin}): {e}"));
    let pool = saga_core::log::sql::pg_pool(&url, 20).await.expect("connect to test database");
    (pool, url)
}

/// A fresh SQLite file for one test.
pub fn fresh_sqlite_url() -> String {
    let path = std::env::temp_dir().join(format!("saga-test-{}.sqlite", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}", path.display())
}
