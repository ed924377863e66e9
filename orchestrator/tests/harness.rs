//! Every saga of the orchestrator runs saga-core's harness (`saga_core::testing`): commands
//! repeated, a failure at each step (parallel siblings included), a crash after every log write,
//! a compensation that keeps failing until an operator retries. The participants are the real
//! workers (`workers`), each over its own in-memory SQLite, as in the embedded mode.
//!
//! Adding a saga adds one test here.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrator::sagas::crear_campana::solicitud::validar;
use orchestrator::sagas::{self, StepSettings};
use saga_core::log::sql::sqlite_pool;
use saga_core::participant::CommandHandler;
use saga_core::testing::{FakeParticipants, SagaHarness};
use serde_json::{json, Value};
use sqlx::SqlitePool;
use uuid::Uuid;
use workers::cliente::{Clientes, NuevoCliente, SqliteClientes};
use workers::marca::{MarcaSeed, MARCAS_POR_DEFECTO};
use workers::participants::{self, Options};

/// The partner the payout saga pays, registered in every fresh cliente database.
const PARTNER: &str = "partner-harness";

/// Every participant of `workers::participants::ALL`, each with its own in-memory database,
/// set up as the embedded mode sets it up.
struct Workers {
    pools: HashMap<&'static str, SqlitePool>,
    handlers: HashMap<&'static str, Arc<dyn CommandHandler>>,
}

impl Workers {
    async fn fresh() -> Self {
        let marcas: Vec<MarcaSeed> = serde_json::from_str(MARCAS_POR_DEFECTO).unwrap();
        let options = Options { marcas };
        let (mut pools, mut handlers) = (HashMap::new(), HashMap::new());
        for participant in participants::ALL {
            let pool = sqlite_pool("sqlite::memory:").await.unwrap();
            let ready = participant.sqlite(pool.clone(), &options).await.unwrap();
            pools.insert(participant.name(), pool);
            handlers.insert(participant.topic(), ready.handler);
        }
        let clientes = SqliteClientes { pool: pools["cliente"].clone() };
        let nuevo = NuevoCliente {
            id: PARTNER.to_owned().try_into().unwrap(),
            nombre: "Laura Gómez".to_owned().try_into().unwrap(),
            email: "laura@alpes.example.com".to_owned().try_into().unwrap(),
            cedula: "1032456789".to_owned().try_into().unwrap(),
            fecha_nacimiento: "1990-05-17".parse().unwrap(),
        };
        clientes.registrar(&nuevo).await.unwrap();
        Self { pools, handlers }
    }

    async fn rows(&self, service: &str, sql: &str) -> Value {
        let rows: Vec<(String, i64)> = sqlx::query_as(sql).fetch_all(&self.pools[service]).await.unwrap();
        json!(rows)
    }
}

#[async_trait]
impl FakeParticipants for Workers {
    fn handler(&self, participant: &str) -> Option<Arc<dyn CommandHandler>> {
        self.handlers.get(participant).cloned()
    }

    /// What is held: each brand's available budget, the budget and bookings reserved, the
    /// tracking contexts open; the payouts not failed, the provider's operations authorised,
    /// the client's payment count. (Released, closed, failed and voided records stay.)
    async fn snapshot(&self) -> Value {
        json!({
            "disponible": self.rows("marca", "SELECT nombre, presupuesto_disponible_centavos FROM marca ORDER BY nombre").await,
            "reservado": self.rows("marca",
                "SELECT estado, SUM(monto_centavos) FROM reserva_presupuesto WHERE estado = 'reservada' GROUP BY estado").await,
            "reservas": self.rows("influencer",
                "SELECT estado, COUNT(*) FROM reserva_influencer WHERE estado = 'reservada' GROUP BY estado").await,
            "contextos": self.rows("tracking",
                "SELECT estado, COUNT(*) FROM contexto_tracking WHERE estado = 'abierto' GROUP BY estado").await,
            "pagos": self.rows("pagos",
                "SELECT estado, SUM(valor_menor) FROM pago WHERE estado <> 'FALLIDO' GROUP BY estado").await,
            "comisiones": self.rows("pagos",
                "SELECT p.estado, SUM(t.valor_menor) FROM transaccion_pago t JOIN pago p ON p.id_pago = t.id_pago \
                 WHERE p.estado <> 'FALLIDO' GROUP BY p.estado").await,
            "operaciones": self.rows("proveedor",
                "SELECT estado, SUM(valor_menor) FROM operacion WHERE estado = 'AUTORIZADA' GROUP BY estado").await,
            "clientes": self.rows("cliente", "SELECT id, total_pagos FROM cliente ORDER BY id").await,
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

fn procesar_pago() -> Value {
    let body = json!({
        "partner_id": PARTNER, "cycle_id": "2025-01", "total_amount": 1500.5, "currency": "USD",
        "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234"
    });
    let pago = orchestrator::sagas::procesar_pago::solicitud::validar(&body, Uuid::now_v7()).unwrap();
    serde_json::to_value(pago).unwrap()
}

#[tokio::test]
async fn procesar_pago_passes_the_harness() {
    let registry = Arc::new(sagas::registry(&StepSettings::default()).unwrap());
    SagaHarness::new(registry, sagas::procesar_pago::SAGA_TYPE, procesar_pago(), Workers::fresh).run_all().await;
}
