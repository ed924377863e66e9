//! CrearCampaña: create a campaign across marca, influencer and tracking, all or nothing.
//!
//! - [`definicion`]: the saga type, its parameters, its steps (marca, then influencer and
//!   tracking in parallel);
//! - [`solicitud`]: validation of the public request into the saga's parameters;
//! - [`vista`]: the campaign view the API answers from, with its outbox;
//! - [`proyector`]: keeps the view up to date with the sagas' ends;
//! - [`eventos`]: the integration events (`CampanaCreada`, `CampanaRechazada`) and their relay.

pub mod definicion;
pub mod eventos;
pub mod proyector;
pub mod solicitud;
pub mod vista;

use saga_core::definition::SagaDefinition;

pub use definicion::{CrearCampana, Influencers, Presupuesto, SagaCrearCampana, Tracking, SAGA_TYPE};

use super::StepSettings;

/// Every version of CrearCampaña still registered, newest last.
pub fn definitions(settings: &StepSettings) -> Vec<SagaDefinition> {
    vec![definicion::definition_v1(settings), definicion::definition(settings)]
}
