//! The tracking participant on a real PostgreSQL and on SQLite: opening a context with one link
//! per influencer, the date refusals, closing, a closed context never reopened; the event intake's
//! storage (refusals, counters, the list of events with their data).

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{code, command, pg_participant, scalar, sqlite_participant, Db};
use saga_core::participant::CommandHandler;
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{AbrirTracking, CerrarTracking, Influencer};
use uuid::Uuid;
use workers::tracking::{self, Tracking, CAMPANA_DUPLICADA, CONTEXTO_CERRADO, FECHAS_INVALIDAS};
use workers::tracking_eventos::{Evento, Eventos, PgEventos, Rechazo, SqliteEventos};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&tracking::PG_MIGRATOR, Tracking).await;
    World { db, participant }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&tracking::SQLITE_MIGRATOR, Tracking).await;
    World { db, participant }
}

fn influencers() -> Vec<Influencer> {
    vec![
        Influencer {
            nombre: "Ana García".into(),
            plataforma: "Instagram".into(),
            seguidores: 150_000,
            categoria: "Fitness".into(),
        },
        Influencer {
            nombre: "Carlos López".into(),
            plataforma: "TikTok".into(),
            seguidores: 300_000,
            categoria: "Lifestyle".into(),
        },
    ]
}

fn abrir(saga: SagaId, id_campana: Uuid, desde: &str, hasta: &str) -> Command {
    let body = AbrirTracking {
        id_campana,
        id_marca: Uuid::now_v7(),
        fecha_inicio: desde.parse().unwrap(),
        fecha_fin: hasta.parse().unwrap(),
        influencers: influencers(),
    };
    command(
        "abrir_tracking",
        "comandos.tracking",
        StepKind::Action,
        1,
        saga,
        "AbrirTracking",
        serde_json::to_value(body).unwrap(),
    )
}

fn cerrar(saga: SagaId, id_campana: Uuid) -> Command {
    let body = CerrarTracking { id_campana, id_tracking: None };
    command(
        "abrir_tracking",
        "comandos.tracking",
        StepKind::Compensation,
        1,
        saga,
        "CerrarTracking",
        serde_json::to_value(body).unwrap(),
    )
}

impl World {
    async fn send(&self, command: &Command) -> Outcome {
        self.participant.handle(command).await.unwrap().reply.outcome
    }

    async fn open(&self, id_campana: Uuid) -> i64 {
        scalar(
            &self.db,
            "SELECT COUNT(*) FROM contexto_tracking WHERE id_campana = $1 AND estado = 'abierto'",
            id_campana,
        )
        .await
    }
}

async fn opens_a_context_with_a_link_per_influencer(w: World) {
    let id = Uuid::now_v7();
    match w.send(&abrir(SagaId::new(), id, "2025-01-01T00:00:00", "2025-12-31T23:59:59")).await {
        Outcome::Success { output } => {
            let enlaces = output["enlaces"].as_array().unwrap();
            assert_eq!(enlaces.len(), 2);
            assert_ne!(enlaces[0]["codigo"], enlaces[1]["codigo"]);
            assert!(enlaces[0]["url"].as_str().unwrap().ends_with(enlaces[0]["codigo"].as_str().unwrap()));
        }
        other => panic!("expected a context, got {other:?}"),
    }
    assert_eq!(w.open(id).await, 1);
    // Another saga for the same campaign id is refused, not retried forever on the unique key.
    let twice = w.send(&abrir(SagaId::new(), id, "2025-01-01T00:00:00", "2025-12-31T23:59:59")).await;
    assert_eq!(code(&twice), CAMPANA_DUPLICADA);
}

async fn refuses_dates_it_cannot_track(w: World) {
    let reversed = w.send(&abrir(SagaId::new(), Uuid::now_v7(), "2025-12-31T00:00:00", "2025-01-01T00:00:00")).await;
    assert_eq!(code(&reversed), FECHAS_INVALIDAS);
    let too_long = w.send(&abrir(SagaId::new(), Uuid::now_v7(), "2025-01-01T00:00:00", "2028-01-01T00:00:00")).await;
    assert_eq!(code(&too_long), FECHAS_INVALIDAS);
}

async fn a_closed_context_is_never_reopened(w: World) {
    let saga = SagaId::new();
    let id = Uuid::now_v7();
    w.send(&abrir(saga, id, "2025-01-01T00:00:00", "2025-03-01T00:00:00")).await;
    assert!(matches!(w.send(&cerrar(saga, id)).await, Outcome::Success { .. }));
    assert_eq!(w.open(id).await, 0);
    // Another saga for the same campaign (a retry by the client with a new saga id).
    let reopen = w.send(&abrir(SagaId::new(), id, "2025-01-01T00:00:00", "2025-03-01T00:00:00")).await;
    assert_eq!(code(&reopen), CONTEXTO_CERRADO);
}

async fn events_are_counted_only_for_an_open_context_and_its_own_codes(w: World) {
    let eventos: Box<dyn Eventos> = match &w.db {
        Db::Pg(pool) => Box::new(PgEventos { pool: pool.clone() }),
        Db::Lite(pool) => Box::new(SqliteEventos { pool: pool.clone() }),
    };
    let saga = SagaId::new();
    let id = Uuid::now_v7();
    let codigo = match w.send(&abrir(saga, id, "2025-01-01T00:00:00", "2025-03-01T00:00:00")).await {
        Outcome::Success { output } => output["enlaces"][0]["codigo"].as_str().unwrap().to_owned(),
        other => panic!("{other:?}"),
    };
    let evento = |tipo: &str, codigo: Option<&str>, valor| Evento {
        id_campana: id,
        tipo: tipo.to_owned(),
        datos: serde_json::Map::new(),
        codigo: codigo.map(str::to_owned),
        valor_centavos: valor,
    };
    assert!(eventos.registrar(&evento("vista", None, None)).await.unwrap().is_ok());
    assert!(eventos.registrar(&evento("conversion", Some(&codigo), Some(1500))).await.unwrap().is_ok());
    assert_eq!(eventos.registrar(&evento("clic", Some("otro"), None)).await.unwrap(), Err(Rechazo::CodigoAjeno));
    let unknown = Evento { id_campana: Uuid::now_v7(), ..evento("vista", None, None) };
    assert_eq!(eventos.registrar(&unknown).await.unwrap(), Err(Rechazo::CampanaDesconocida));
    let r = eventos.resumen(id).await.unwrap().unwrap();
    assert_eq!((r.vistas, r.clics, r.conversiones, r.valor_centavos, r.total), (1, 0, 1, 1500, 2));
    w.send(&cerrar(saga, id)).await;
    assert_eq!(eventos.registrar(&evento("vista", None, None)).await.unwrap(), Err(Rechazo::ContextoCerrado));
    assert_eq!(eventos.resumen(id).await.unwrap().unwrap().vistas, 1);
}

/// The events of one campaign come back from SQL as they were posted (`datos` as given, any
/// kind), oldest first, paged, with the count of all; another campaign's are not among them.
async fn events_are_listed_oldest_first_paged_with_their_data(w: World) {
    let eventos: Box<dyn Eventos> = match &w.db {
        Db::Pg(pool) => Box::new(PgEventos { pool: pool.clone() }),
        Db::Lite(pool) => Box::new(SqliteEventos { pool: pool.clone() }),
    };
    let (id, otra) = (Uuid::now_v7(), Uuid::now_v7());
    for c in [id, otra] {
        assert!(matches!(
            w.send(&abrir(SagaId::new(), c, "2025-01-01T00:00:00", "2025-03-01T00:00:00")).await,
            Outcome::Success { .. }
        ));
    }
    assert!(eventos.listar(Uuid::now_v7(), 10, 0).await.unwrap().is_none(), "no tracking, no list");
    assert_eq!(eventos.listar(id, 10, 0).await.unwrap(), Some((vec![], 0)));
    let mut posted = Vec::new();
    for n in 0..7 {
        let datos = serde_json::json!({ "n": n, "anidado": { "lista": [1, "dos", null] }, "texto": "ñandú" });
        let e = Evento {
            id_campana: id,
            tipo: if n % 2 == 0 { "vista".into() } else { "compartir".into() },
            datos: datos.as_object().unwrap().clone(),
            codigo: None,
            valor_centavos: None,
        };
        posted.push(eventos.registrar(&e).await.unwrap().unwrap());
        let ajeno = Evento { id_campana: otra, ..e };
        eventos.registrar(&ajeno).await.unwrap().unwrap();
    }
    let (all, total) = eventos.listar(id, 100, 0).await.unwrap().unwrap();
    assert_eq!(total, 7);
    assert_eq!(all, posted, "as recorded, in the order they were recorded");
    assert_eq!(all[3].datos["anidado"]["lista"][1], "dos");
    assert_eq!(all[1].tipo_evento, "compartir");
    let (page, total) = eventos.listar(id, 3, 2).await.unwrap().unwrap();
    assert_eq!((page, total), (posted[2..5].to_vec(), 7));
    let (page, _) = eventos.listar(id, 3, 6).await.unwrap().unwrap();
    assert_eq!(page, posted[6..].to_vec());
    assert!(eventos.listar(id, 3, 7).await.unwrap().unwrap().0.is_empty());
    let r = eventos.resumen(id).await.unwrap().unwrap();
    assert_eq!((r.vistas, r.por_tipo["compartir"], r.total), (4, 3, 7));
    assert_eq!(r.recientes.first(), posted.last(), "the summary's latest come newest first");
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn opens_a_context_with_a_link_per_influencer() {
                super::opens_a_context_with_a_link_per_influencer($db().await).await
            }
            #[tokio::test]
            async fn refuses_dates_it_cannot_track() {
                super::refuses_dates_it_cannot_track($db().await).await
            }
            #[tokio::test]
            async fn events_are_counted_only_for_an_open_context_and_its_own_codes() {
                super::events_are_counted_only_for_an_open_context_and_its_own_codes($db().await).await
            }
            #[tokio::test]
            async fn events_are_listed_oldest_first_paged_with_their_data() {
                super::events_are_listed_oldest_first_paged_with_their_data($db().await).await
            }
            #[tokio::test]
            async fn a_closed_context_is_never_reopened() {
                super::a_closed_context_is_never_reopened($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);

/// An event recorded before events had `datos` (the first migration only) reads back after the
/// later migrations with `{}`, its kind and time kept: the SQLite table rebuild loses nothing.
macro_rules! events_survive_the_datos_migration {
    ($test:ident, $fresh:path, $migrator:path, $eventos:ident) => {
        #[tokio::test]
        async fn $test() {
            let pool = $fresh().await;
            let first = sqlx::migrate::Migrator {
                migrations: std::borrow::Cow::Owned($migrator.migrations[..1].to_vec()),
                ..sqlx::migrate::Migrator::DEFAULT
            };
            saga_core::log::sql::migrate(&first, &pool).await.unwrap();
            let (id_tracking, id_campana, id_evento) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
            let at = chrono::DateTime::from_timestamp_micros(1_750_000_000_123_456).unwrap();
            let dia: chrono::NaiveDateTime = "2025-01-01T00:00:00".parse().unwrap();
            sqlx::query(
                "INSERT INTO contexto_tracking (id_tracking, id_campana, id_marca, fecha_inicio, fecha_fin, estado) \
                 VALUES ($1, $2, $3, $4, $4, 'abierto')",
            )
            .bind(id_tracking)
            .bind(id_campana)
            .bind(Uuid::now_v7())
            .bind(dia)
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO evento_tracking (id_evento, id_tracking, codigo, tipo, valor_centavos, ocurrido_en) \
                 VALUES ($1, $2, NULL, 'clic', NULL, $3)",
            )
            .bind(id_evento)
            .bind(id_tracking)
            .bind(at)
            .execute(&pool)
            .await
            .unwrap();
            saga_core::log::sql::migrate(&$migrator, &pool).await.unwrap();
            let (eventos, total) = $eventos { pool }.listar(id_campana, 10, 0).await.unwrap().unwrap();
            assert_eq!(total, 1);
            assert_eq!(
                (eventos[0].id, eventos[0].tipo_evento.as_str(), eventos[0].datos.is_empty(), eventos[0].fecha_evento),
                (id_evento, "clic", true, at)
            );
        }
    };
}

events_survive_the_datos_migration!(
    postgres_events_survive_the_datos_migration,
    common::fresh_pg,
    tracking::PG_MIGRATOR,
    PgEventos
);
events_survive_the_datos_migration!(
    sqlite_events_survive_the_datos_migration,
    common::fresh_sqlite,
    tracking::SQLITE_MIGRATOR,
    SqliteEventos
);

/// An event whose intake passed the open-context check while a compensation was closing the
/// context must not land after the close: the check and the insert are one atomic step. The
/// interleaving is forced: a lock on the events table holds the intake at its insert, the close
/// commits, then the lock is released. Before the fix the intake had already read `abierto` and
/// inserted its event into a closed context.
#[tokio::test]
async fn an_event_racing_a_close_never_lands_in_the_closed_context() {
    let w = postgres().await;
    let Db::Pg(pool) = &w.db else { unreachable!() };
    let eventos = PgEventos { pool: pool.clone() };
    let (saga, id) = (SagaId::new(), Uuid::now_v7());
    assert!(matches!(
        w.send(&abrir(saga, id, "2025-01-01T00:00:00", "2025-03-01T00:00:00")).await,
        Outcome::Success { .. }
    ));
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE evento_tracking IN EXCLUSIVE MODE").execute(&mut *holder).await.unwrap();
    let intake = tokio::spawn(async move {
        let e = Evento {
            id_campana: id,
            tipo: "vista".into(),
            datos: serde_json::Map::new(),
            codigo: None,
            valor_centavos: None,
        };
        eventos.registrar(&e).await.unwrap()
    });
    // Wait until the intake is blocked on the events table.
    let waiting = async {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND wait_event_type = 'Lock' AND query ILIKE '%evento_tracking%'",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if n > 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), waiting).await.expect("the intake reaches its insert");
    let closer = w.participant.clone();
    let close = tokio::spawn(async move { closer.handle(&cerrar(saga, id)).await.unwrap().reply.outcome });
    // The close commits unless the intake holds the context (a fixed intake may: then the close
    // waits for it, which is also safe); give it time, then release the intake.
    let closed_first = tokio::time::timeout(std::time::Duration::from_millis(500), async {
        loop {
            if w.open(id).await == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok();
    holder.commit().await.unwrap();
    let answer = intake.await.unwrap();
    assert!(matches!(close.await.unwrap(), Outcome::Success { .. }));
    let landed = scalar(
        &w.db,
        "SELECT COUNT(*) FROM evento_tracking e JOIN contexto_tracking c USING (id_tracking) WHERE c.id_campana = $1",
        id,
    )
    .await;
    if closed_first {
        assert_eq!(answer, Err(Rechazo::ContextoCerrado), "the close committed first: the event is refused");
        assert_eq!(landed, 0, "no event in a context closed before it was recorded");
    } else {
        assert!(answer.is_ok(), "the intake held the context: the close waited for it");
        assert_eq!(landed, 1);
    }
}
