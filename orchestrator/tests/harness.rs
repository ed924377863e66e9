//! Every saga of the orchestrator runs saga-core's harness (`saga_core::testing`): commands
//! repeated, a failure at each step (parallel siblings included), a crash after every log write,
//! a compensation that keeps failing until an operator retries. The participants are the real
//! workers (`workers`), each over its own in-memory SQLite, as in the embedded mode.
//!
//! Adding a saga adds one test here.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use async_trait::async_trait;
use orchestrator::sagas::crear_campana::solicitud::validar;
use orchestrator::sagas::{self, StepSettings};
use saga_core::log::sql::{migrate, sqlite_pool};
use saga_core::participant::{CommandHandler, SqliteParticipant};
use saga_core::testing::{FakeParticipants, SagaHarness};
use schemas::{ComandoInfluencer, ComandoMarca, ComandoTracking, Envelope};
use serde_json::{json, Value};
use sqlx::SqlitePool;
use uuid::Uuid;
use workers::marca::{Marca, MarcaSeed, MARCAS_POR_DEFECTO};
use workers::{influencer, marca, tracking};

/// marca, influencer and tracking, each with its own in-memory database.
struct Workers {
    marca: (SqlitePool, Arc<dyn CommandHandler>),
    influencer: (SqlitePool, Arc<dyn CommandHandler>),
    tracking: (SqlitePool, Arc<dyn CommandHandler>),
}

impl Workers {
    async fn fresh() -> Self {
        let marcas: Vec<MarcaSeed> = serde_json::from_str(MARCAS_POR_DEFECTO).unwrap();
        let pool = sqlite_pool("sqlite::memory:").await.unwrap();
        migrate(&marca::SQLITE_MIGRATOR, &pool).await.unwrap();
        Marca::seed_sqlite(&pool, &marcas).await.unwrap();
        let p = SqliteParticipant::new(pool.clone(), Marca);
        p.migrate().await.unwrap();
        let m: (SqlitePool, Arc<dyn CommandHandler>) = (pool, Arc::new(p));

        let pool = sqlite_pool("sqlite::memory:").await.unwrap();
        migrate(&influencer::SQLITE_MIGRATOR, &pool).await.unwrap();
        let p = SqliteParticipant::new(pool.clone(), influencer::Influencers);
        p.migrate().await.unwrap();
        let i: (SqlitePool, Arc<dyn CommandHandler>) = (pool, Arc::new(p));

        let pool = sqlite_pool("sqlite::memory:").await.unwrap();
        migrate(&tracking::SQLITE_MIGRATOR, &pool).await.unwrap();
        let p = SqliteParticipant::new(pool.clone(), tracking::Tracking);
        p.migrate().await.unwrap();
        let t: (SqlitePool, Arc<dyn CommandHandler>) = (pool, Arc::new(p));
        Self { marca: m, influencer: i, tracking: t }
    }
}

async fn rows(pool: &SqlitePool, sql: &str) -> Value {
    let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(pool).await.unwrap();
    json!(rows)
}

#[async_trait]
impl FakeParticipants for Workers {
    fn handler(&self, participant: &str) -> Option<Arc<dyn CommandHandler>> {
        match participant {
            ComandoMarca::TOPIC => Some(self.marca.1.clone()),
            ComandoInfluencer::TOPIC => Some(self.influencer.1.clone()),
            ComandoTracking::TOPIC => Some(self.tracking.1.clone()),
            _ => None,
        }
    }

    /// What is held: each brand's available budget, the budget and bookings reserved, the
    /// tracking contexts open. (Released reservations and closed contexts stay as records.)
    async fn snapshot(&self) -> Value {
        json!({
            "disponible": rows(&self.marca.0, "SELECT nombre, presupuesto_disponible_centavos FROM marca ORDER BY nombre").await,
            "reservado": rows(&self.marca.0,
                "SELECT estado, SUM(monto_centavos) FROM reserva_presupuesto WHERE estado = 'reservada' GROUP BY estado").await,
            "reservas": rows(&self.influencer.0,
                "SELECT estado, COUNT(*) FROM reserva_influencer WHERE estado = 'reservada' GROUP BY estado").await,
            "contextos": rows(&self.tracking.0,
                "SELECT estado, COUNT(*) FROM contexto_tracking WHERE estado = 'abierto' GROUP BY estado").await,
        })
    }
}

fn crear_campana() -> Value {
    let body = json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
      "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59",
      "presupuesto": 15000, "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
      "influencers": [ { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                       { "nombre": "Carlos López", "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] });
    serde_json::to_value(validar(&body, Uuid::now_v7()).unwrap()).unwrap()
}

#[tokio::test]
async fn crear_campana_passes_the_harness() {
    let registry = Arc::new(sagas::registry(&StepSettings::default()).unwrap());
    SagaHarness::new(registry, sagas::crear_campana::SAGA_TYPE, crear_campana(), Workers::fresh).run_all().await;
}
