//! The payout saga (`procesar_pago`): pay a partner its commissions across pagos, the payment
//! provider and cliente, all or nothing.
//!
//! - [`api`]: its HTTP routes (`POST /pagos/pagar`, `GET /pagos/{id}`, `GET /pagos`) and the
//!   partner check against the cliente service;
//! - [`definicion`]: the saga type, its parameters, its four steps (record; send and credit the
//!   client in parallel; confirm);
//! - [`solicitud`]: validation of the public request into the saga's parameters;
//! - [`vista`]: the payout view the API answers from (one payout per partner and cycle), with
//!   its outbox;
//! - [`eventos`]: the integration events (`PagoCompletado`, `PagoFallido`).

pub mod api;
pub mod definicion;
pub mod eventos;
pub mod solicitud;
pub mod vista;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use saga_core::definition::SagaDefinition;

pub use definicion::{AbonoCliente, Confirmacion, Envio, ProcesarPago, Registro, SagaProcesarPago, SAGA_TYPE};

use super::StepSettings;
use crate::app::{Db, SagaContext, SagaModule};

/// Every version of the payout saga still registered, newest last.
pub fn definitions(settings: &StepSettings) -> Vec<SagaDefinition> {
    vec![definicion::definition(settings)]
}

/// The payout saga as the orchestrator runs it: the payout view in the orchestrator's database,
/// the projector and the event relay as tasks, the payout routes.
pub struct Modulo;

#[async_trait]
impl SagaModule for Modulo {
    fn saga_type(&self) -> &'static str {
        SAGA_TYPE
    }

    fn definitions(&self, steps: &StepSettings) -> Vec<SagaDefinition> {
        definitions(steps)
    }

    async fn start(&self, mut cx: SagaContext<'_>) -> anyhow::Result<Router> {
        let vista: Arc<dyn vista::VistaPagos> = match cx.db {
            Db::Sqlite(pool) => {
                Arc::new(vista::SqliteVistaPagos::new(pool.clone()).await.context("migrating the payout view")?)
            }
            Db::Postgres(pool) => {
                Arc::new(vista::PgVistaPagos::new(pool.clone()).await.context("migrating the payout view")?)
            }
        };
        cx.follow(Arc::new(vista::Proyeccion(vista.clone())), vista.outbox());
        let directorio = Arc::new(api::DirectorioHttp::new(&cx.services.cliente_url, &cx.services.access)?);
        Ok(api::router(api::PagosApi { engine: cx.engine, vista, directorio }))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        api::openapi()
    }
}
