//! The influencer participant on a real PostgreSQL and on SQLite: bookings, each business
//! refusal (all or nothing), release, and concurrent overlapping campaigns that cannot both book
//! the same influencer.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{code, command, pg_participant, scalar, sqlite_participant, Db};
use saga_core::participant::CommandHandler;
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{Influencer, LiberarInfluencers, ReservarInfluencers};
use uuid::Uuid;
use workers::influencer::{
    self, Influencers, AUDIENCIA_INSUFICIENTE, CAMPANA_DUPLICADA, INFLUENCER_OCUPADO, PLATAFORMA_DESCONOCIDA,
    VENTANA_INVALIDA,
};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&influencer::PG_MIGRATOR, Influencers).await;
    World { db, participant }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&influencer::SQLITE_MIGRATOR, Influencers).await;
    World { db, participant }
}

fn ana() -> Influencer {
    Influencer {
        nombre: "Ana García".into(),
        plataforma: "Instagram".into(),
        seguidores: 150_000,
        categoria: "Fitness".into(),
    }
}

fn carlos() -> Influencer {
    Influencer {
        nombre: "Carlos López".into(),
        plataforma: "TikTok".into(),
        seguidores: 300_000,
        categoria: "Lifestyle".into(),
    }
}

fn reservar(id_campana: Uuid, desde: &str, hasta: &str, influencers: Vec<Influencer>) -> Command {
    let body = ReservarInfluencers {
        id_campana,
        fecha_inicio: desde.parse().unwrap(),
        fecha_fin: hasta.parse().unwrap(),
        influencers,
    };
    command(
        "reservar_influencers",
        "comandos.influencer",
        StepKind::Action,
        1,
        SagaId::new(),
        "ReservarInfluencers",
        serde_json::to_value(body).unwrap(),
    )
}

fn liberar(saga: SagaId, id_campana: Uuid) -> Command {
    let body = LiberarInfluencers { id_campana, influencers: vec![ana()] };
    command(
        "reservar_influencers",
        "comandos.influencer",
        StepKind::Compensation,
        1,
        saga,
        "LiberarInfluencers",
        serde_json::to_value(body).unwrap(),
    )
}

impl World {
    async fn send(&self, command: &Command) -> Outcome {
        self.participant.handle(command).await.unwrap().reply.outcome
    }

    async fn booked(&self, id_campana: Uuid) -> i64 {
        scalar(
            &self.db,
            "SELECT COUNT(*) FROM reserva_influencer WHERE id_campana = $1 AND estado = 'reservada'",
            id_campana,
        )
        .await
    }
}

async fn books_every_influencer_and_refuses_an_overlapping_window(w: World) {
    let first = Uuid::now_v7();
    match w.send(&reservar(first, "2025-01-01T00:00:00", "2025-06-30T23:59:59", vec![ana(), carlos()])).await {
        Outcome::Success { output } => assert_eq!(output["reservas"].as_array().unwrap().len(), 2),
        other => panic!("expected bookings, got {other:?}"),
    }
    assert_eq!(w.booked(first).await, 2);
    let twice = w.send(&reservar(first, "2026-01-01T00:00:00", "2026-02-01T00:00:00", vec![carlos()])).await;
    assert_eq!(code(&twice), CAMPANA_DUPLICADA, "another saga for the same campaign id");
    // Same influencer (name and platform differ only in case and spaces), overlapping window.
    let mut ana_again = ana();
    ana_again.nombre = "  ana garcía ".into();
    ana_again.plataforma = "instagram".into();
    let second = Uuid::now_v7();
    let busy = w.send(&reservar(second, "2025-06-01T00:00:00", "2025-07-31T00:00:00", vec![ana_again])).await;
    assert_eq!(code(&busy), INFLUENCER_OCUPADO);
    // A window that starts when the first ends does not overlap.
    let third = Uuid::now_v7();
    assert!(matches!(
        w.send(&reservar(third, "2025-06-30T23:59:59", "2025-08-31T00:00:00", vec![ana()])).await,
        Outcome::Success { .. }
    ));
}

async fn refusals_book_nobody(w: World) {
    let mut small = carlos();
    small.seguidores = 500;
    let id = Uuid::now_v7();
    let refused = w.send(&reservar(id, "2025-01-01T00:00:00", "2025-02-01T00:00:00", vec![ana(), small])).await;
    assert_eq!(code(&refused), AUDIENCIA_INSUFICIENTE);
    assert_eq!(w.booked(id).await, 0, "all or nothing: Ana was not booked either");
    let mut odd = ana();
    odd.plataforma = "MySpace".into();
    assert_eq!(
        code(&w.send(&reservar(Uuid::now_v7(), "2025-01-01T00:00:00", "2025-02-01T00:00:00", vec![odd])).await),
        PLATAFORMA_DESCONOCIDA
    );
    assert_eq!(
        code(&w.send(&reservar(Uuid::now_v7(), "2025-02-01T00:00:00", "2025-01-01T00:00:00", vec![ana()])).await),
        VENTANA_INVALIDA
    );
}

async fn release_frees_the_influencer(w: World) {
    let first = Uuid::now_v7();
    let booking = reservar(first, "2025-01-01T00:00:00", "2025-03-01T00:00:00", vec![ana()]);
    w.send(&booking).await;
    assert!(matches!(w.send(&liberar(booking.correlation.saga_id, first)).await, Outcome::Success { .. }));
    assert_eq!(w.booked(first).await, 0);
    let again = w.send(&reservar(Uuid::now_v7(), "2025-01-15T00:00:00", "2025-02-15T00:00:00", vec![ana()])).await;
    assert!(matches!(again, Outcome::Success { .. }), "released: bookable again, got {again:?}");
}

async fn concurrent_overlapping_campaigns_book_an_influencer_once(w: World) {
    let w = Arc::new(w);
    let mut tasks = Vec::new();
    let mut campaigns = Vec::new();
    for _ in 0..8 {
        let w = w.clone();
        let id = Uuid::now_v7();
        campaigns.push(id);
        tasks.push(tokio::spawn(async move {
            w.send(&reservar(id, "2025-01-01T00:00:00", "2025-12-31T00:00:00", vec![ana()])).await
        }));
    }
    let mut booked = 0;
    for task in tasks {
        match task.await.unwrap() {
            Outcome::Success { .. } => booked += 1,
            other => assert_eq!(code(&other), INFLUENCER_OCUPADO),
        }
    }
    assert_eq!(booked, 1);
    let mut rows = 0;
    for id in campaigns {
        rows += w.booked(id).await;
    }
    assert_eq!(rows, 1);
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn books_every_influencer_and_refuses_an_overlapping_window() {
                super::books_every_influencer_and_refuses_an_overlapping_window($db().await).await
            }
            #[tokio::test]
            async fn refusals_book_nobody() {
                super::refusals_book_nobody($db().await).await
            }
            #[tokio::test]
            async fn release_frees_the_influencer() {
                super::release_frees_the_influencer($db().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_overlapping_campaigns_book_an_influencer_once() {
                super::concurrent_overlapping_campaigns_book_an_influencer_once($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
