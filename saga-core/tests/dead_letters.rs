//! The dead-letter table on SQLite and PostgreSQL (a fresh database per test;
//! `SAGA_TEST_DATABASE_URL` must name the server): recorded once per (topic, source id), filters
//! and paging newest first, redrives counted with their notes, pending counts by topic. And the
//! in-process transport's side: dead letters served with the correlation's properties,
//! collected into the table, and redriven back onto their queue.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use common::{fresh_pg, fresh_sqlite_url};
use saga_core::dead_letters::{self, Carries, DeadLetterQuery, DeadLetterStore, Estado, Watched};
use saga_core::log::sql::{PgStore, SqliteStore};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{property, Command, Correlation, DeadLetter, Transport};
use saga_core::{MessageId, SagaId, StepKind};

fn correlated(address: &str, saga: SagaId, step: &str, kind: &str, n: i64) -> DeadLetter {
    let properties = BTreeMap::from([
        (property::SAGA_ID.to_owned(), saga.to_string()),
        (property::SAGA_TYPE.to_owned(), "crear_campana".to_owned()),
        (property::STEP.to_owned(), step.to_owned()),
        (property::KIND.to_owned(), kind.to_owned()),
        (property::MESSAGE_ID.to_owned(), MessageId::new().to_string()),
        (property::MESSAGE_TYPE.to_owned(), "ReservarPresupuesto".to_owned()),
    ]);
    DeadLetter {
        address: address.to_owned(),
        dead_letter_address: format!("{address}.dlq"),
        source_id: format!("1:{n}:-1"),
        reason: format!("poison {n}"),
        payload: vec![0xde, 0xad, n as u8],
        properties,
        dead_at: Utc.timestamp_opt(1_700_000_000 + n, 0).single().unwrap(),
    }
}

fn garbage(address: &str, n: i64) -> DeadLetter {
    DeadLetter {
        properties: BTreeMap::new(),
        reason: "undecodable: garbage".into(),
        ..correlated(address, SagaId::new(), "x", "action", n)
    }
}

async fn records_once_filters_pages_and_counts_redrives(store: DeadLetterStore) {
    let saga = SagaId::new();
    let first = correlated("comandos.marca", saga, "reservar_presupuesto", "action", 1);
    assert!(store.record(&first, Carries::Commands).await.unwrap(), "a new dead letter is recorded");
    assert!(!store.record(&first, Carries::Commands).await.unwrap(), "the same dead letter delivered again is not");
    // The same source id on another topic is another dead letter.
    assert!(store
        .record(&correlated("comandos.tracking", saga, "abrir_tracking", "compensation", 1), Carries::Commands)
        .await
        .unwrap());
    assert!(store.record(&garbage("comandos.marca", 2), Carries::Commands).await.unwrap());
    let reply = correlated("respuestas.afiliaciones", saga, "reservar_presupuesto", "action", 3);
    assert!(store.record(&reply, Carries::Replies).await.unwrap());

    let all = DeadLetterQuery { limit: 50, ..DeadLetterQuery::default() };
    let (records, total) = store.list(&all).await.unwrap();
    assert_eq!(total, 4);
    let order: Vec<(&str, i64)> =
        records.iter().map(|r| (r.topic.as_str(), r.dead_at.timestamp() - 1_700_000_000)).collect();
    // Newest first; a tie in time goes to the later record (ids are time-ordered).
    assert_eq!(
        order,
        [("respuestas.afiliaciones", 3), ("comandos.marca", 2), ("comandos.tracking", 1), ("comandos.marca", 1)]
    );
    assert_eq!(records[0].kind.as_deref(), Some("reply"), "a dead letter of a reply topic is a reply");

    let marca =
        store.list(&DeadLetterQuery { topic: Some("comandos.marca".into()), limit: 50, ..all.clone() }).await.unwrap();
    assert_eq!(marca.1, 2);
    let g = &marca.0[0];
    assert_eq!(
        (g.saga_id, g.step.as_deref(), g.kind.as_deref(), g.message_id.as_deref()),
        (None, None, None, None),
        "garbage has no saga"
    );
    assert_eq!(g.reason, "undecodable: garbage");
    let r = &marca.0[1];
    assert_eq!(r.saga_id, Some(saga));
    assert_eq!(r.saga_type.as_deref(), Some("crear_campana"));
    assert_eq!(r.step.as_deref(), Some("reservar_presupuesto"));
    assert_eq!(r.kind.as_deref(), Some("action"));
    assert_eq!(r.message_type.as_deref(), Some("ReservarPresupuesto"));
    assert_eq!(r.message_id.as_deref(), first.message_id());
    assert_eq!((r.estado, r.redrives, r.redriven_at, r.notas.len()), (Estado::Pending, 0, None, 0));
    assert_eq!(r.dead_letter(), first, "payload, properties and source id kept for a redrive");

    let of_saga = store.list(&DeadLetterQuery { saga_id: Some(saga), limit: 50, ..all.clone() }).await.unwrap();
    assert_eq!(of_saga.1, 3);
    let page = store.list(&DeadLetterQuery { limit: 1, offset: 1, ..all.clone() }).await.unwrap();
    assert_eq!((page.0.len(), page.1, page.0[0].topic.as_str()), (1, 4, "comandos.marca"));

    let pending = store.pending_by_topic().await.unwrap();
    assert_eq!(pending.get("comandos.marca"), Some(&2));

    let after = store.mark_redriven(r.id, Some("marca arreglada")).await.unwrap().unwrap();
    assert_eq!(
        (after.estado, after.redrives, after.notas.clone()),
        (Estado::Redriven, 1, vec!["marca arreglada".to_owned()])
    );
    assert!(after.redriven_at.is_some());
    let after = store.mark_redriven(r.id, None).await.unwrap().unwrap();
    assert_eq!((after.redrives, after.notas.len()), (2, 1), "a redrive without a note adds none");
    let after = store.mark_redriven(r.id, Some("otra vez")).await.unwrap().unwrap();
    assert_eq!(after.notas, ["marca arreglada", "otra vez"]);
    assert_eq!(store.pending_by_topic().await.unwrap().get("comandos.marca"), Some(&1));
    let redriven =
        store.list(&DeadLetterQuery { estado: Some(Estado::Redriven), limit: 50, ..all.clone() }).await.unwrap();
    assert_eq!((redriven.1, redriven.0[0].id), (1, r.id));
    let pending = store.list(&DeadLetterQuery { estado: Some(Estado::Pending), limit: 50, ..all }).await.unwrap();
    assert_eq!(pending.1, 3);
    assert!(store.get(uuid::Uuid::new_v4()).await.unwrap().is_none());
    assert!(store.mark_redriven(uuid::Uuid::new_v4(), None).await.unwrap().is_none());
}

async fn sqlite() -> DeadLetterStore {
    let store = SqliteStore::connect(&fresh_sqlite_url()).await.unwrap();
    DeadLetterStore::Sqlite(store.pool().clone())
}

async fn postgres() -> DeadLetterStore {
    let (pool, _) = fresh_pg().await;
    PgStore::new(pool.clone()).migrate().await.unwrap();
    DeadLetterStore::Postgres(pool)
}

#[tokio::test]
async fn sqlite_records_once_filters_pages_and_counts_redrives() {
    records_once_filters_pages_and_counts_redrives(sqlite().await).await
}

#[tokio::test]
async fn postgres_records_once_filters_pages_and_counts_redrives() {
    records_once_filters_pages_and_counts_redrives(postgres().await).await
}

fn command(step: &str) -> Command {
    Command {
        correlation: Correlation {
            saga_id: SagaId::new(),
            saga_type: "crear_campana".into(),
            step_name: step.into(),
            attempt: 1,
            kind: StepKind::Action,
            message_id: MessageId::new(),
        },
        participant: "comandos.marca".into(),
        reply_to: "respuestas.afiliaciones".into(),
        message_type: "ReservarPresupuesto".into(),
        body: serde_json::json!({ "presupuesto": 1 }),
    }
}

/// Dead-letters a command on the in-process transport, collects it into `store`, redrives it
/// twice: it is recorded once, and each redrive queues the same command again.
async fn in_process_dead_letters_are_collected_and_redriven(store: DeadLetterStore) {
    let transport = InProcessTransport::new();
    let t: Arc<dyn Transport> = Arc::new(transport.clone());
    let mut commands = t.commands("comandos.marca").await.unwrap();
    let sent = command("reservar_presupuesto");
    t.send_command(&sent).await.unwrap();
    commands.recv().await.unwrap().dead_letter("cannot handle it").await.unwrap();

    let watched = vec![Watched { address: "comandos.marca".into(), carries: Carries::Commands }];
    let collector = tokio::spawn(dead_letters::collect(store.clone(), t.clone(), watched, Duration::from_millis(50)));
    let all = DeadLetterQuery { limit: 50, ..DeadLetterQuery::default() };
    let mut listed = Vec::new();
    for _ in 0..100 {
        listed = store.list(&all).await.unwrap().0;
        if !listed.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed.len(), 1, "collected");
    let r = &listed[0];
    assert_eq!((r.topic.as_str(), r.dead_letter_topic.as_str()), ("comandos.marca", "comandos.marca.dlq"));
    assert_eq!(r.saga_id, Some(sent.correlation.saga_id));
    assert_eq!(r.message_id, Some(sent.correlation.message_id.to_string()));
    assert_eq!(
        (r.step.as_deref(), r.kind.as_deref(), r.reason.as_str()),
        (Some("reservar_presupuesto"), Some("action"), "cannot handle it")
    );
    assert_eq!(transport.pending_dead_letters("comandos.marca"), 0, "acknowledged once recorded");

    for n in 1..=2 {
        let after = dead_letters::redrive(&store, t.as_ref(), r.id, Some("again")).await.unwrap();
        assert_eq!(after.redrives, n);
        let redriven = tokio::time::timeout(Duration::from_secs(2), commands.recv()).await.unwrap().unwrap();
        assert_eq!(redriven.message, sent, "the same command, message id and all");
        redriven.ack().await.unwrap();
    }
    assert_eq!(store.list(&all).await.unwrap().1, 1, "redriving records nothing new");
    collector.abort();
}

#[tokio::test]
async fn sqlite_in_process_dead_letters_are_collected_and_redriven() {
    in_process_dead_letters_are_collected_and_redriven(sqlite().await).await
}

#[tokio::test]
async fn postgres_in_process_dead_letters_are_collected_and_redriven() {
    in_process_dead_letters_are_collected_and_redriven(postgres().await).await
}
