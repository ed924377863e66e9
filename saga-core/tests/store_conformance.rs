//! One contract, two stores: every test here runs against SQLite (a file) and against a real
//! PostgreSQL (a fresh database per test; `SAGA_TEST_DATABASE_URL` must name the server).
//! The engine's saga scenarios then run on each store, and several engines share one
//! PostgreSQL log.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::*;
use saga_core::clock::Clock;
use saga_core::inject::{FaultPlan, PanicSite};
use saga_core::log::sql::{PgStore, SqliteStore};
use saga_core::log::{Created, ListQuery, SagaStore, StoreError};
use saga_core::transport::{Command, Correlation, Transport};
use saga_core::{LogEntry, MessageId, SagaEvent, SagaId, SagaState, SagaStatus, StepKind};
use serde_json::json;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("time") + Duration::seconds(secs)
}

fn started(id: SagaId, at: DateTime<Utc>, saga_type: &str) -> (SagaState, Vec<LogEntry>) {
    let entry = LogEntry {
        seq: 1,
        at,
        event: SagaEvent::Started {
            saga_type: saga_type.into(),
            version: 1,
            steps: vec!["uno".into(), "dos".into()],
            params: json!({ "n": 1, "texto": "Campaña ñ" }),
        },
    };
    (SagaState::started(id, &entry).expect("started"), vec![entry])
}

fn command_sent(state: &SagaState, at: DateTime<Utc>, deadline: DateTime<Utc>) -> SagaEvent {
    SagaEvent::CommandSent {
        command: Command {
            correlation: Correlation {
                saga_id: state.id,
                saga_type: state.saga_type.clone(),
                step_name: "uno".into(),
                attempt: 1,
                kind: StepKind::Action,
                message_id: MessageId::new(),
            },
            participant: "comandos.uno".into(),
            reply_to: REPLY_TO.into(),
            message_type: "Hacer".into(),
            body: json!({ "at": at }),
        },
        deadline,
    }
}

/// Folds `events` into `state` and returns the entries to append.
fn advance(state: &mut SagaState, at: DateTime<Utc>, events: Vec<SagaEvent>) -> Vec<LogEntry> {
    events
        .into_iter()
        .map(|event| {
            let entry = LogEntry { seq: state.version + 1, at, event };
            state.apply(&entry).expect("apply");
            entry
        })
        .collect()
}

async fn create(store: &dyn SagaStore, state: &SagaState, entries: &[LogEntry]) {
    assert!(matches!(store.create(state, entries).await.expect("create"), Created::New));
}

async fn create_is_idempotent_and_returns_the_existing_saga(store: Arc<dyn SagaStore>) {
    let id = SagaId::new();
    let (state, entries) = started(id, t(0), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let (other, other_entries) = started(id, t(5), "otra");
    match store.create(&other, &other_entries).await.expect("second create") {
        Created::Existing(existing) => assert_eq!(*existing, state),
        Created::New => panic!("a second create with the same id must not create"),
    }
    assert_eq!(store.history(id).await.unwrap(), entries, "nothing appended by the second create");
}

async fn state_and_history_round_trip(store: Arc<dyn SagaStore>) {
    let id = SagaId::new();
    let (mut state, mut all) = started(id, t(0), "prueba");
    create(store.as_ref(), &state, &all).await;
    let version = state.version;
    let ev = command_sent(&state, t(1), t(31));
    let more = advance(&mut state, t(1), vec![ev]);
    store.append(version, &state, &more).await.expect("append");
    all.extend(more);
    assert_eq!(store.load(id).await.unwrap(), Some(state.clone()));
    assert_eq!(store.history(id).await.unwrap(), all);
    assert_eq!(SagaState::replay(id, &all).unwrap(), state);
    assert_eq!(store.load(SagaId::new()).await.unwrap(), None);
    assert!(store.history(SagaId::new()).await.unwrap().is_empty());
}

async fn append_refuses_a_stale_version_and_writes_nothing(store: Arc<dyn SagaStore>) {
    let id = SagaId::new();
    let (mut state, entries) = started(id, t(0), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let stale = state.clone();
    let ev = command_sent(&state, t(1), t(31));
    let first = advance(&mut state, t(1), vec![ev]);
    store.append(1, &state, &first).await.expect("first append");

    let mut loser = stale;
    let ev = command_sent(&loser, t(2), t(32));
    let second = advance(&mut loser, t(2), vec![ev]);
    match store.append(1, &loser, &second).await {
        Err(StoreError::Conflict(c)) => assert_eq!(c, id),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(store.history(id).await.unwrap().len(), 2, "the losing append wrote nothing");
    assert_eq!(store.load(id).await.unwrap(), Some(state));
}

async fn concurrent_appends_on_one_version_let_exactly_one_win(store: Arc<dyn SagaStore>) {
    let id = SagaId::new();
    let (state, entries) = started(id, t(0), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        let mut mine = state.clone();
        tasks.push(tokio::spawn(async move {
            let ev = command_sent(&mine, t(i), t(30 + i));
            let more = advance(&mut mine, t(i), vec![ev]);
            store.append(1, &mine, &more).await
        }));
    }
    let mut wins = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(()) => wins += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    let history = store.history(id).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(SagaState::replay(id, &history).unwrap(), store.load(id).await.unwrap().unwrap());
}

async fn list_filters_and_pages_newest_first(store: Arc<dyn SagaStore>) {
    let mut ids = Vec::new();
    for i in 0..5 {
        let id = SagaId::new();
        let saga_type = if i % 2 == 0 { "par" } else { "impar" };
        let (mut state, entries) = started(id, t(i), saga_type);
        create(store.as_ref(), &state, &entries).await;
        if i == 4 {
            let more = advance(&mut state, t(10), vec![SagaEvent::Completed]);
            store.append(1, &state, &more).await.unwrap();
        }
        ids.push(id);
    }
    let all = store.list(&ListQuery { limit: 100, ..ListQuery::default() }).await.unwrap();
    let listed: Vec<SagaId> = all.iter().map(|s| s.id).filter(|id| ids.contains(id)).collect();
    assert_eq!(listed, ids.iter().rev().copied().collect::<Vec<_>>(), "newest first");
    let par =
        store.list(&ListQuery { saga_type: Some("par".into()), limit: 100, ..ListQuery::default() }).await.unwrap();
    assert_eq!(par.iter().filter(|s| ids.contains(&s.id)).count(), 3);
    assert!(par.iter().all(|s| s.saga_type == "par"));
    let done = store
        .list(&ListQuery { status: Some(SagaStatus::Completed), limit: 100, ..ListQuery::default() })
        .await
        .unwrap();
    assert_eq!(done.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[4]]);
    assert_eq!(done[0].version, 2);
    let page = store.list(&ListQuery { limit: 2, offset: 1, ..ListQuery::default() }).await.unwrap();
    // An age filter: those started at or before t(2), newest first.
    let older =
        store.list(&ListQuery { created_before: Some(t(2)), limit: 100, ..ListQuery::default() }).await.unwrap();
    let older: Vec<SagaId> = older.iter().map(|s| s.id).filter(|id| ids.contains(id)).collect();
    assert_eq!(older, vec![ids[2], ids[1], ids[0]]);
    assert_eq!(page.iter().map(|s| s.id).collect::<Vec<_>>(), vec![ids[3], ids[2]]);
}

async fn active_and_due_find_exactly_the_sagas_to_drive(store: Arc<dyn SagaStore>) {
    // a: waiting on a deadline at t(30); b: waiting on a deadline at t(90); c: completed.
    let mut made = Vec::new();
    for deadline in [30, 90] {
        let id = SagaId::new();
        let (mut state, entries) = started(id, t(0), "prueba");
        create(store.as_ref(), &state, &entries).await;
        let ev = command_sent(&state, t(0), t(deadline));
        let more = advance(&mut state, t(0), vec![ev]);
        store.append(1, &state, &more).await.unwrap();
        made.push(id);
    }
    let c = SagaId::new();
    let (mut state, entries) = started(c, t(0), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let more = advance(&mut state, t(0), vec![SagaEvent::Completed]);
    store.append(1, &state, &more).await.unwrap();

    assert!(store.due(t(29), 100).await.unwrap().iter().all(|id| !made.contains(id)));
    assert_eq!(
        store.due(t(30), 100).await.unwrap().into_iter().filter(|id| made.contains(id) || *id == c).collect::<Vec<_>>(),
        vec![made[0]]
    );
    let both: Vec<_> =
        store.due(t(100), 100).await.unwrap().into_iter().filter(|id| made.contains(id) || *id == c).collect();
    assert_eq!(both, made, "ordered by wake time; a finished saga is never due");

    // `active` pages through everything running or compensating, in id order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.active(after, 1).await.unwrap();
        let Some(last) = page.last().copied() else { break };
        seen.extend(page);
        after = Some(last);
    }
    assert!(made.iter().all(|id| seen.contains(id)));
    assert!(!seen.contains(&c));
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted);
}

async fn stats_count_by_status(store: Arc<dyn SagaStore>) {
    let before = store.stats().await.unwrap();
    let count = |s: &saga_core::log::StoreStats, st: SagaStatus| {
        s.by_status.iter().find(|(x, _)| *x == st).map_or(0, |(_, n)| *n)
    };
    let id = SagaId::new();
    let (mut state, entries) = started(id, t(-100), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let mid = store.stats().await.unwrap();
    assert_eq!(count(&mid, SagaStatus::Running), count(&before, SagaStatus::Running) + 1);
    assert!(mid.oldest_unfinished.is_some_and(|t0| t0 <= t(-100)));
    let more = advance(&mut state, t(0), vec![SagaEvent::Completed]);
    store.append(1, &state, &more).await.unwrap();
    let after = store.stats().await.unwrap();
    assert_eq!(count(&after, SagaStatus::Running), count(&before, SagaStatus::Running));
    assert_eq!(count(&after, SagaStatus::Completed), count(&before, SagaStatus::Completed) + 1);
}

async fn defer_pushes_the_wake_back_and_a_transition_clears_it(store: Arc<dyn SagaStore>) {
    let id = SagaId::new();
    let (mut state, entries) = started(id, t(0), "prueba");
    create(store.as_ref(), &state, &entries).await;
    let ev = command_sent(&state, t(0), t(30));
    let more = advance(&mut state, t(0), vec![ev]);
    store.append(1, &state, &more).await.unwrap();
    let fresh = store.summary(id).await.unwrap().unwrap();
    assert_eq!((fresh.wake_at, fresh.wake_failures, fresh.wake_error.as_deref()), (Some(t(30)), 0, None));

    assert_eq!(store.defer(id, t(60), "unknown saga type prueba v1").await.unwrap(), 1);
    assert_eq!(store.defer(id, t(120), "still unknown").await.unwrap(), 2);
    let deferred = store.summary(id).await.unwrap().unwrap();
    assert_eq!(deferred.wake_at, Some(t(120)));
    assert_eq!((deferred.wake_failures, deferred.wake_error.as_deref()), (2, Some("still unknown")));
    assert_eq!(deferred.version, 2, "neither the state nor the log moved");
    assert_eq!(store.history(id).await.unwrap().len(), 2);
    assert!(!store.due(t(119), 100).await.unwrap().contains(&id), "not due before its new wake-up time");
    assert!(store.due(t(120), 100).await.unwrap().contains(&id));
    assert!(store.stats().await.unwrap().failing >= 1);
    let listed = store.list(&ListQuery { limit: 1000, ..ListQuery::default() }).await.unwrap();
    assert_eq!(listed.iter().find(|s| s.id == id).unwrap().wake_failures, 2, "the flag shows in the list");
    // A wake-up time already later than the deferral (another engine moved the saga on) is kept.
    assert_eq!(store.defer(id, t(100), "late").await.unwrap(), 0);
    assert_eq!(store.summary(id).await.unwrap().unwrap().wake_at, Some(t(120)));

    let more = advance(&mut state, t(130), vec![SagaEvent::TimedOut { step: 0, kind: StepKind::Action, attempt: 1 }]);
    store.append(2, &state, &more).await.unwrap();
    let driven = store.summary(id).await.unwrap().unwrap();
    assert_eq!((driven.wake_failures, driven.wake_error), (0, None), "a transition clears the flag");
    // A finished saga has no wake-up time and is never deferred.
    let more = advance(&mut state, t(131), vec![SagaEvent::Completed]);
    store.append(3, &state, &more).await.unwrap();
    assert_eq!(store.defer(id, t(200), "x").await.unwrap(), 0);
    assert_eq!(store.summary(id).await.unwrap().unwrap().wake_at, None);
    assert_eq!(store.summary(SagaId::new()).await.unwrap(), None);
}

/// A redelivery storm of stale replies to a finished saga: the first few are logged, the rest
/// only counted; its `updated_at` stays the time it finished; replies ignored by an active saga
/// are logged and counted as before.
async fn stale_replies_to_a_finished_saga_are_counted_without_growing_its_log(store: Arc<dyn SagaStore>) {
    let script = Script::default().on("dos", StepKind::Action, &[Behavior::DuplicateReply]);
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, script).await);
    let mut w = World::new(store.clone(), participants, FaultPlan::none()).await;
    let id = SagaId::new();
    w.engine.start(SAGA, id, params()).await.unwrap();
    let done = w.pump(id).await.unwrap();
    assert_eq!(done.status, SagaStatus::Completed);
    let history = store.history(id).await.unwrap();
    let ignored_while_active =
        history.iter().filter(|e| matches!(e.event, SagaEvent::ReplyIgnored { .. })).count() as u64;
    assert_eq!(ignored_while_active, 1, "dos's duplicate reply, logged while the saga ran");
    let summary = store.summary(id).await.unwrap().unwrap();
    assert_eq!(summary.replies_ignored, 1, "and counted");

    let first = history
        .iter()
        .find_map(|e| match &e.event {
            SagaEvent::CommandSent { command, .. } => Some(command.correlation.clone()),
            _ => None,
        })
        .unwrap();
    let stale = saga_core::Reply { correlation: first, outcome: saga_core::Outcome::Success { output: json!({}) } };
    w.clock.advance(std::time::Duration::from_secs(60));
    for _ in 0..50 {
        assert_eq!(w.engine.handle_reply(&stale).await.unwrap(), saga_core::ReplyDisposition::Ignored);
    }

    let after = store.history(id).await.unwrap();
    let logged = &after[history.len()..];
    assert_eq!(logged.len(), saga_core::saga::LOGGED_IGNORED_AT_REST as usize, "only the first few are logged");
    assert!(logged.iter().all(|e| matches!(e.event, SagaEvent::ReplyIgnored { .. })));
    let state = store.load(id).await.unwrap().unwrap();
    assert_eq!(state.updated_at, done.updated_at, "a finished saga keeps the time it finished at");
    assert_eq!(state.status, SagaStatus::Completed);
    assert_eq!(SagaState::replay(id, &after).unwrap(), state, "the row is still the fold of the log");
    let summary = store.summary(id).await.unwrap().unwrap();
    assert_eq!(summary.updated_at, done.updated_at);
    assert_eq!(summary.replies_ignored, 51, "every ignored reply counted");
}

/// A store whose next create or append commits and then reports a lost connection, as a
/// client sees a connection reset during `COMMIT`.
struct CommitsThenFails {
    inner: Arc<dyn SagaStore>,
    fail_create: std::sync::atomic::AtomicBool,
    fail_append: std::sync::atomic::AtomicBool,
}

fn lost_connection() -> StoreError {
    StoreError::unavailable("connection reset by peer (after the commit)")
}

#[async_trait::async_trait]
impl SagaStore for CommitsThenFails {
    async fn create(&self, state: &SagaState, entries: &[LogEntry]) -> Result<Created, StoreError> {
        let created = self.inner.create(state, entries).await?;
        if self.fail_create.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(lost_connection());
        }
        Ok(created)
    }
    async fn append(&self, expected: i64, state: &SagaState, entries: &[LogEntry]) -> Result<(), StoreError> {
        self.inner.append(expected, state, entries).await?;
        if self.fail_append.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(lost_connection());
        }
        Ok(())
    }
    async fn defer(&self, id: SagaId, until: DateTime<Utc>, error: &str) -> Result<u32, StoreError> {
        self.inner.defer(id, until, error).await
    }
    async fn count_ignored_reply(&self, id: SagaId) -> Result<(), StoreError> {
        self.inner.count_ignored_reply(id).await
    }
    async fn summary(&self, id: SagaId) -> Result<Option<saga_core::log::SagaSummary>, StoreError> {
        self.inner.summary(id).await
    }
    async fn load(&self, id: SagaId) -> Result<Option<SagaState>, StoreError> {
        self.inner.load(id).await
    }
    async fn history(&self, id: SagaId) -> Result<Vec<LogEntry>, StoreError> {
        self.inner.history(id).await
    }
    async fn list(&self, query: &ListQuery) -> Result<Vec<saga_core::log::SagaSummary>, StoreError> {
        self.inner.list(query).await
    }
    async fn active(&self, after: Option<SagaId>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        self.inner.active(after, limit).await
    }
    async fn due(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<SagaId>, StoreError> {
        self.inner.due(now, limit).await
    }
    async fn stats(&self) -> Result<saga_core::log::StoreStats, StoreError> {
        self.inner.stats().await
    }
}

/// A `start` and a reply whose log writes commit but report a lost connection: the engine reads
/// the log back, finds its own transition and sends the commands it put in flight at once, so
/// the saga completes without waiting for a timeout and without recording the reply as stale.
async fn an_ambiguous_commit_is_read_back_and_acted_on(inner: Arc<dyn SagaStore>) {
    let store = Arc::new(CommitsThenFails { inner, fail_create: false.into(), fail_append: false.into() });
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, Script::default()).await);
    let mut w = World::new(store.clone(), participants, FaultPlan::none()).await;
    // The write path may retry (the worlds of the other tests treat a failed write as a crash).
    w.engine = saga_core::Engine::builder(store.clone(), registry(), Arc::new(w.transport.clone()))
        .clock(w.clock.clone())
        .config(saga_core::EngineConfig {
            store_retry: saga_core::RetryPolicy {
                max_attempts: 4,
                initial_backoff: std::time::Duration::from_millis(1),
                max_backoff: std::time::Duration::from_millis(5),
                multiplier: 2.0,
                jitter: 0.0,
            },
            ..test_config()
        })
        .build();

    // The start's create.
    let id = SagaId::new();
    store.fail_create.store(true, std::sync::atomic::Ordering::SeqCst);
    let started = w.engine.start(SAGA, id, params()).await.unwrap();
    assert!(started.created, "the saga this call wrote is reported as created");
    assert_eq!(w.transport.pending_commands(&participant_of("uno")), 1, "uno was sent by start, not by its timeout");

    // The append of uno's reply (which puts dos in flight).
    store.fail_append.store(true, std::sync::atomic::Ordering::SeqCst);
    let state = w.pump(id).await.unwrap();
    assert_eq!(state.status, SagaStatus::Completed);
    assert!(!store.fail_append.load(std::sync::atomic::Ordering::SeqCst), "the append did fail once");
    let history = store.history(id).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|e| e.event.name()).collect();
    assert!(!kinds.contains(&"timed_out"), "no step waited for its timeout: {kinds:?}");
    assert!(!kinds.contains(&"reply_ignored"), "the reply was not decided again as stale: {kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "command_sent").count(), 3, "{kinds:?}");
    assert_eq!(SagaState::replay(id, &history).unwrap(), store.load(id).await.unwrap().unwrap());
}

#[tokio::test]
async fn memory_an_ambiguous_commit_is_read_back_and_acted_on() {
    an_ambiguous_commit_is_read_back_and_acted_on(Arc::new(saga_core::log::memory::MemoryStore::new())).await
}

#[tokio::test]
async fn postgres_an_ambiguous_commit_is_read_back_and_acted_on() {
    an_ambiguous_commit_is_read_back_and_acted_on(pg_store().await).await
}

#[tokio::test]
async fn sqlite_an_ambiguous_commit_is_read_back_and_acted_on() {
    an_ambiguous_commit_is_read_back_and_acted_on(sqlite_store().await).await
}

/// Makes a saga's state row unreadable, as a hand edit or a bug could.
enum Corrupter {
    None,
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Corrupter {
    async fn corrupt(&self, id: SagaId) -> bool {
        let sql = "UPDATE saga SET state = $2 WHERE saga_id = $1";
        let garbage = sqlx::types::Json(json!({ "garbage": true }));
        match self {
            Corrupter::None => return false,
            Corrupter::Sqlite(pool) => sqlx::query(sql).bind(id.0).bind(garbage).execute(pool).await.map(drop),
            Corrupter::Postgres(pool) => sqlx::query(sql).bind(id.0).bind(garbage).execute(pool).await.map(drop),
        }
        .expect("corrupt the state row");
        true
    }
}

/// More sagas than one timer batch that can never be driven (their type is no longer
/// registered; on the SQL stores one's state row is unreadable; one's transition panics), all
/// due before one healthy saga: the healthy saga's timeout still fires within a few passes, and
/// the failing ones are deferred (further at each failure) and flagged, until their type is
/// registered again and they are driven and the flag cleared.
async fn sagas_that_cannot_be_driven_do_not_starve_the_timer(store: Arc<dyn SagaStore>, corrupter: Corrupter) {
    let participants = Arc::new(Participants::new(ParticipantDb::sqlite_memory().await, Script::default()).await);
    let mut w = World::new(store.clone(), participants, FaultPlan::none()).await;
    let batch = w.engine.config().tick_batch as usize;
    let mut failing = Vec::new();
    for _ in 0..batch + 44 {
        let id = SagaId::new();
        w.engine.start(SAGA, id, params()).await.unwrap();
        failing.push(id);
    }
    let corrupt = failing[7];
    let corrupted = corrupter.corrupt(corrupt).await;
    w.clock.advance(std::time::Duration::from_secs(1));
    let panicky = SagaId::new();
    w.engine.start(SAGA_PARALELA, panicky, params()).await.unwrap();
    w.clock.advance(std::time::Duration::from_secs(1));
    let healthy = SagaId::new();
    w.engine.start(SAGA_PARALELA, healthy, params()).await.unwrap();

    // A deployment without the sequential saga's definition, and a bug that one saga's state
    // triggers.
    let mut only_parallel = saga_core::Registry::new();
    only_parallel.register(parallel_definition()).unwrap();
    w.restart_with(Arc::new(only_parallel), FaultPlan::none().panic_at(PanicSite::Saga(panicky), u32::MAX));
    w.clock.advance(TIMEOUT + std::time::Duration::from_secs(1));
    let now = w.clock.now();
    assert!(store.due(now, u32::MAX).await.unwrap().contains(&healthy), "the healthy saga is due");

    for _ in 0..4 {
        w.engine.tick().await.unwrap();
    }
    let history = store.history(healthy).await.unwrap();
    assert!(
        history.iter().any(|e| matches!(e.event, SagaEvent::TimedOut { .. })),
        "the healthy saga's timeout fired behind {} failing sagas",
        failing.len()
    );

    for id in failing.iter().chain([&panicky]) {
        let s = store.summary(*id).await.unwrap().unwrap();
        assert_eq!(s.wake_failures, 1, "{id}: deferred once (the clock did not move): {s:?}");
        assert!(s.wake_at.unwrap() > now, "{id}: its wake-up time moved past now: {s:?}");
        let error = s.wake_error.unwrap();
        let expected = if *id == panicky {
            "panicked"
        } else if *id == corrupt && corrupted {
            "corrupt"
        } else {
            "unknown saga type"
        };
        assert!(error.contains(expected), "{id}: {error}");
    }
    assert_eq!(store.stats().await.unwrap().failing, failing.len() as i64 + 1);

    // Still failing: the next look is further away.
    let first = store.summary(failing[0]).await.unwrap().unwrap().wake_at.unwrap() - now;
    w.clock.advance(std::time::Duration::from_secs(2));
    let later = w.clock.now();
    for _ in 0..4 {
        w.engine.tick().await.unwrap();
    }
    let s = store.summary(failing[0]).await.unwrap().unwrap();
    assert_eq!(s.wake_failures, 2);
    assert!(s.wake_at.unwrap() - later > first, "the backoff grows: {first} then {}", s.wake_at.unwrap() - later);

    // The definition registered again and the bug fixed: every saga but the corrupt one is
    // driven (its timeout fires) and unflagged.
    w.restart(FaultPlan::none());
    w.clock.advance(std::time::Duration::from_secs(10));
    for _ in 0..8 {
        w.engine.tick().await.unwrap();
    }
    for id in failing.iter().chain([&panicky]).filter(|id| !(**id == corrupt && corrupted)) {
        let s = store.summary(*id).await.unwrap().unwrap();
        assert_eq!((s.wake_failures, s.wake_error.as_deref()), (0, None), "{id}: {s:?}");
        let history = store.history(*id).await.unwrap();
        assert!(history.iter().any(|e| matches!(e.event, SagaEvent::TimedOut { .. })), "{id} driven");
    }
    assert_eq!(store.stats().await.unwrap().failing, i64::from(corrupted));
}

#[tokio::test]
async fn memory_stale_replies_to_a_finished_saga_are_counted_without_growing_its_log() {
    stale_replies_to_a_finished_saga_are_counted_without_growing_its_log(Arc::new(
        saga_core::log::memory::MemoryStore::new(),
    ))
    .await
}

#[tokio::test]
async fn memory_sagas_that_cannot_be_driven_do_not_starve_the_timer() {
    let store = Arc::new(saga_core::log::memory::MemoryStore::new());
    sagas_that_cannot_be_driven_do_not_starve_the_timer(store, Corrupter::None).await
}

#[tokio::test]
async fn sqlite_sagas_that_cannot_be_driven_do_not_starve_the_timer() {
    let store = SqliteStore::connect(&fresh_sqlite_url()).await.unwrap();
    let pool = store.pool().clone();
    sagas_that_cannot_be_driven_do_not_starve_the_timer(Arc::new(store), Corrupter::Sqlite(pool)).await
}

#[tokio::test]
async fn postgres_sagas_that_cannot_be_driven_do_not_starve_the_timer() {
    let (_, url) = fresh_pg().await;
    let store = PgStore::connect(&url).await.unwrap();
    let pool = store.pool().clone();
    sagas_that_cannot_be_driven_do_not_starve_the_timer(Arc::new(store), Corrupter::Postgres(pool)).await
}

async fn engine_scenarios_run_on_the_store(store: Arc<dyn SagaStore>, db: ParticipantDb) {
    let participants = Arc::new(Participants::new(db, Script::default()).await);
    let mut w = World::new(store.clone(), participants.clone(), FaultPlan::none()).await;
    let id = SagaId::new();
    w.engine.start(SAGA, id, params()).await.unwrap();
    assert_eq!(w.pump(id).await.unwrap().status, SagaStatus::Completed);
    let history = store.history(id).await.unwrap();
    assert_eq!(SagaState::replay(id, &history).unwrap(), store.load(id).await.unwrap().unwrap());

    for (i, failing) in STEPS.iter().enumerate() {
        let mut w = World::new(store.clone(), participants.clone(), FaultPlan::none().fail_action(*failing)).await;
        let id = SagaId::new();
        w.engine.start(SAGA, id, params()).await.unwrap();
        assert_eq!(w.pump(id).await.unwrap().status, SagaStatus::Compensated);
        let expected: Vec<String> = STEPS[..i].iter().rev().map(|s| s.to_string()).collect();
        assert_eq!(compensations(&store.history(id).await.unwrap()), expected);
    }
}

/// Writes that arrive together share transactions, and each keeps its own answer: creates are
/// new or find their saga, appends win or conflict on their own version, and a write the
/// database refuses (its log positions taken) fails alone.
async fn concurrent_writes_share_commits_and_keep_their_own_answers(store: Arc<dyn SagaStore>, stats: Stats) {
    use futures_util::future::join_all;
    let existing = SagaId::new();
    let (first, first_entries) = started(existing, t(0), "prueba");
    create(store.as_ref(), &first, &first_entries).await;
    let before = stats();

    let sagas: Vec<(SagaState, Vec<LogEntry>)> = (0..40).map(|i| started(SagaId::new(), t(i), "prueba")).collect();
    let (mut again, _) = started(existing, t(99), "otra");
    again.params = json!({ "distinto": true });
    // Two entries at one position: refused by the database, inside whatever batch carries it.
    let broken = SagaId::new();
    let (broken_state, mut broken_entries) = started(broken, t(0), "prueba");
    broken_entries.push(broken_entries[0].clone());
    let creates = sagas
        .iter()
        .map(|(state, entries)| store.create(state, entries))
        .chain([store.create(&again, &first_entries), store.create(&broken_state, &broken_entries)]);
    let created = join_all(creates).await;
    let (broken_answer, rest) = created.split_last().unwrap();
    let (again_answer, news) = rest.split_last().unwrap();
    assert!(news.iter().all(|c| matches!(c, Ok(Created::New))), "{news:?}");
    match again_answer {
        Ok(Created::Existing(state)) => assert_eq!(**state, first, "the stored saga, not the second create's"),
        other => panic!("a second create must find the saga: {other:?}"),
    }
    assert!(broken_answer.is_err(), "two entries at one position must be refused: {broken_answer:?}");
    assert_eq!(store.load(broken).await.unwrap(), None, "the refused create wrote nothing");

    // One append per saga at its version, and a second one at the same version for every fourth.
    let mut appends = Vec::new();
    for (i, (state, _)) in sagas.iter().enumerate() {
        let copies = if i % 4 == 0 { 2 } else { 1 };
        for copy in 0..copies {
            let mut next = state.clone();
            let event = command_sent(&next, t(100 + copy), t(130));
            let entries = advance(&mut next, t(100 + copy), vec![event]);
            appends.push((i, next, entries));
        }
    }
    let appended = join_all(appends.iter().map(|(_, state, entries)| store.append(1, state, entries))).await;
    for (i, (state, _)) in sagas.iter().enumerate() {
        let answers: Vec<_> = appends.iter().zip(&appended).filter(|((j, _, _), _)| *j == i).map(|(_, a)| a).collect();
        let wins = answers.iter().filter(|a| a.is_ok()).count();
        let conflicts = answers.iter().filter(|a| matches!(a, Err(StoreError::Conflict(c)) if *c == state.id)).count();
        assert_eq!((wins, conflicts), (1, answers.len() - 1), "saga {i}: {answers:?}");
        let history = store.history(state.id).await.unwrap();
        assert_eq!(history.len(), 2, "saga {i}");
        assert_eq!(SagaState::replay(state.id, &history).unwrap(), store.load(state.id).await.unwrap().unwrap());
    }
    assert_eq!(store.history(existing).await.unwrap(), first_entries, "the second create appended nothing");

    let after = stats();
    let writes = after.writes - before.writes;
    let batches = after.batches - before.batches;
    assert_eq!(writes, 42 + appends.len() as u64);
    assert!(batches * 4 <= writes, "{writes} writes in {batches} batches: concurrent writes must share transactions");
}

/// A store's group commit counts.
type Stats = Box<dyn Fn() -> saga_core::log::CommitStats + Send + Sync>;

macro_rules! conformance {
    ($store:ident, $make:expr) => {
        mod $store {
            use super::*;

            #[tokio::test]
            async fn create_is_idempotent_and_returns_the_existing_saga() {
                super::create_is_idempotent_and_returns_the_existing_saga($make).await
            }
            #[tokio::test]
            async fn state_and_history_round_trip() {
                super::state_and_history_round_trip($make).await
            }
            #[tokio::test]
            async fn append_refuses_a_stale_version_and_writes_nothing() {
                super::append_refuses_a_stale_version_and_writes_nothing($make).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_appends_on_one_version_let_exactly_one_win() {
                super::concurrent_appends_on_one_version_let_exactly_one_win($make).await
            }
            #[tokio::test]
            async fn list_filters_and_pages_newest_first() {
                super::list_filters_and_pages_newest_first($make).await
            }
            #[tokio::test]
            async fn active_and_due_find_exactly_the_sagas_to_drive() {
                super::active_and_due_find_exactly_the_sagas_to_drive($make).await
            }
            #[tokio::test]
            async fn stats_count_by_status() {
                super::stats_count_by_status($make).await
            }
            #[tokio::test]
            async fn stale_replies_to_a_finished_saga_are_counted_without_growing_its_log() {
                super::stale_replies_to_a_finished_saga_are_counted_without_growing_its_log($make).await
            }
            #[tokio::test]
            async fn defer_pushes_the_wake_back_and_a_transition_clears_it() {
                super::defer_pushes_the_wake_back_and_a_transition_clears_it($make).await
            }
        }
    };
}

async fn sqlite_store() -> Arc<dyn SagaStore> {
    Arc::new(SqliteStore::connect(&fresh_sqlite_url()).await.expect("sqlite store"))
}

async fn pg_store() -> Arc<dyn SagaStore> {
    let (_, url) = fresh_pg().await;
    Arc::new(PgStore::connect(&url).await.expect("postgres store"))
}

conformance!(sqlite, sqlite_store().await);
conformance!(postgres, pg_store().await);

#[tokio::test]
async fn sqlite_concurrent_writes_share_commits_and_keep_their_own_answers() {
    let store = Arc::new(SqliteStore::connect(&fresh_sqlite_url()).await.unwrap());
    let counts = store.clone();
    concurrent_writes_share_commits_and_keep_their_own_answers(store, Box::new(move || counts.commit_stats())).await
}

#[tokio::test]
async fn postgres_concurrent_writes_share_commits_and_keep_their_own_answers() {
    let (_, url) = fresh_pg().await;
    let store = Arc::new(PgStore::connect(&url).await.unwrap());
    let counts = store.clone();
    concurrent_writes_share_commits_and_keep_their_own_answers(store, Box::new(move || counts.commit_stats())).await
}

#[tokio::test]
async fn sqlite_engine_scenarios() {
    engine_scenarios_run_on_the_store(sqlite_store().await, ParticipantDb::sqlite_memory().await).await
}

#[tokio::test]
async fn postgres_engine_scenarios_with_postgres_participants() {
    let (pool, _) = fresh_pg().await;
    engine_scenarios_run_on_the_store(pg_store().await, ParticipantDb::postgres(pool).await).await
}

#[tokio::test]
async fn the_log_is_append_only_in_both_databases() {
    let (pool, url) = fresh_pg().await;
    let pg = PgStore::connect(&url).await.unwrap();
    let id = SagaId::new();
    let (state, entries) = started(id, t(0), "prueba");
    create(&pg, &state, &entries).await;
    for sql in ["UPDATE saga_log SET kind = 'x'", "DELETE FROM saga_log"] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err("postgres must refuse");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    let lite = SqliteStore::connect(&fresh_sqlite_url()).await.unwrap();
    create(&lite, &state, &entries).await;
    for sql in ["UPDATE saga_log SET kind = 'x'", "DELETE FROM saga_log"] {
        let err = sqlx::query(sql).execute(lite.pool()).await.expect_err("sqlite must refuse");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
}

#[tokio::test]
async fn a_saga_survives_closing_and_reopening_both_databases() {
    let url = fresh_sqlite_url();
    let (_, pg_url) = fresh_pg().await;
    let id = SagaId::new();
    let (state, entries) = started(id, t(0), "prueba");
    {
        let lite = SqliteStore::connect(&url).await.unwrap();
        create(&lite, &state, &entries).await;
        lite.pool().close().await;
        let pg = PgStore::connect(&pg_url).await.unwrap();
        create(&pg, &state, &entries).await;
        pg.pool().close().await;
    }
    let lite = SqliteStore::connect(&url).await.unwrap();
    assert_eq!(lite.load(id).await.unwrap(), Some(state.clone()));
    let pg = PgStore::connect(&pg_url).await.unwrap();
    assert_eq!(pg.load(id).await.unwrap(), Some(state));
}

/// Two engines share one PostgreSQL log and every reply is delivered to both at once: each
/// saga still advances one step at a time (one accepted reply per attempt, a gapless log).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_engines_on_one_postgres_log_advance_each_saga_one_at_a_time() {
    let (pool, url) = fresh_pg().await;
    let store: Arc<dyn SagaStore> = Arc::new(PgStore::connect(&url).await.unwrap());
    let participants = Arc::new(Participants::new(ParticipantDb::postgres(pool).await, Script::default()).await);
    let mut a = World::new(store.clone(), participants.clone(), FaultPlan::none()).await;
    let b = World::new(store.clone(), participants.clone(), FaultPlan::none()).await;
    let mut ids = Vec::new();
    for _ in 0..10 {
        let id = SagaId::new();
        a.engine.start(SAGA, id, params()).await.unwrap();
        ids.push(id);
    }
    // Drive: deliver A's commands; every reply goes to both engines concurrently.
    let mut commands = Vec::new();
    for step in STEPS {
        commands.push(a.transport.commands(&participant_of(step)).await.unwrap());
    }
    let mut replies = a.transport.replies(REPLY_TO).await.unwrap();
    let mut rounds = 0;
    loop {
        rounds += 1;
        assert!(rounds < 200, "sagas did not finish");
        let mut all_done = true;
        for id in &ids {
            if store.load(*id).await.unwrap().unwrap().status.is_active() {
                all_done = false;
            }
        }
        if all_done {
            break;
        }
        for receiver in &mut commands {
            while let Ok(Ok(d)) = tokio::time::timeout(std::time::Duration::from_millis(5), receiver.recv()).await {
                for reply in participants.deliver(&d.message).await {
                    a.transport.send_reply(REPLY_TO, &reply).await.unwrap();
                }
                d.ack().await.unwrap();
            }
        }
        while let Ok(Ok(d)) = tokio::time::timeout(std::time::Duration::from_millis(5), replies.recv()).await {
            let (ea, eb) = (a.engine.clone(), b.engine.clone());
            let (r1, r2) = (d.message.clone(), d.message.clone());
            let (x, y) = tokio::join!(
                tokio::spawn(async move { ea.handle_reply(&r1).await }),
                tokio::spawn(async move { eb.handle_reply(&r2).await })
            );
            x.unwrap().unwrap();
            y.unwrap().unwrap();
            d.ack().await.unwrap();
        }
        // B's sends (when it won a race) went to B's own in-process transport: forward them.
        let mut b_commands = Vec::new();
        for step in STEPS {
            b_commands.push(b.transport.commands(&participant_of(step)).await.unwrap());
        }
        for receiver in &mut b_commands {
            while let Ok(Ok(d)) = tokio::time::timeout(std::time::Duration::from_millis(5), receiver.recv()).await {
                a.transport.send_command(&d.message).await.unwrap();
                d.ack().await.unwrap();
            }
        }
        let _ = &mut a;
    }
    for id in ids {
        let history = store.history(id).await.unwrap();
        assert_eq!(store.load(id).await.unwrap().unwrap().status, SagaStatus::Completed);
        let seqs: Vec<i64> = history.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=history.len() as i64).collect::<Vec<_>>(), "gapless log");
        let accepted = history.iter().filter(|e| matches!(e.event, SagaEvent::ReplyAccepted { .. })).count();
        assert_eq!(accepted, 3, "exactly one accepted reply per step");
        let ignored = history.iter().filter(|e| matches!(e.event, SagaEvent::ReplyIgnored { .. })).count();
        assert_eq!(ignored, 3, "the other engine's copy of each reply was recorded and ignored");
        assert_eq!(SagaState::replay(id, &history).unwrap(), store.load(id).await.unwrap().unwrap());
    }
}
