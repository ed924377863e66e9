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
use saga_core::inject::FaultPlan;
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
