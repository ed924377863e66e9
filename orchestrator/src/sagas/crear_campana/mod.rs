//! CrearCampaña: create a campaign across marca, influencer and tracking, all or nothing.
//!
//! - [`api`]: its HTTP routes (`POST /afiliaciones/campana`, the campaign queries);
//! - [`definicion`]: the saga type, its parameters, its steps (marca, then influencer and
//!   tracking in parallel);
//! - [`solicitud`]: validation of the public request into the saga's parameters;
//! - [`vista`]: the campaign view the API answers from, with its outbox;
//! - [`projector`]: what the view records for a saga's end (the generic projector keeps it);
//! - [`eventos`]: the integration events (`CampanaCreada`, `CampanaRechazada`) (the relay is [`crate::outbox`]'s).

pub mod api;
pub mod definicion;
pub mod eventos;
pub mod projector;
pub mod solicitud;
pub mod vista;

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use saga_core::definition::SagaDefinition;

pub use definicion::{CrearCampana, Influencers, Presupuesto, SagaCrearCampana, Tracking, SAGA_TYPE};

use super::StepSettings;
use crate::app::{Db, SagaContext, SagaModule};

/// Every version of CrearCampaña still registered, newest last.
pub fn definitions(settings: &StepSettings) -> Vec<SagaDefinition> {
    vec![definicion::definition_v1(settings), definicion::definition(settings)]
}

/// CrearCampaña as the orchestrator runs it: the campaign view in the orchestrator's database,
/// the projector and the event relay as tasks, the campaign routes.
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
        let vista: Arc<dyn vista::Vista> = match cx.db {
            Db::Sqlite(pool) => {
                Arc::new(vista::SqliteVista::new(pool.clone()).await.context("migrating the campaign view")?)
            }
            Db::Postgres(pool) => {
                Arc::new(vista::PgVista::new(pool.clone()).await.context("migrating the campaign view")?)
            }
        };
        cx.follow(Arc::new(vista::Proyeccion(vista.clone())), vista.outbox());
        Ok(api::router(api::CampanaApi { engine: cx.engine, vista }))
    }

    fn openapi(&self) -> utoipa::openapi::OpenApi {
        api::openapi()
    }
}
