//! What the campaign view records for a finished CrearCampaña saga. The projector itself is the
//! generic one ([`crate::projector`]), over [`super::vista::Proyeccion`]: it reacts to finished
//! sagas and catches up, page by page, with every campaign still `pendiente` (starting the saga
//! of a campaign recorded before a crash, projecting sagas that ended unobserved).

use saga_core::{SagaState, SagaStatus};
use serde_json::json;

use super::vista::Final;

/// What the view records for a saga in its final state, if it is final.
pub fn final_de(state: &SagaState) -> Option<Final> {
    match state.status {
        SagaStatus::Completed => Some(Final::Activa(json!(state.outputs))),
        SagaStatus::Compensated | SagaStatus::Aborted => {
            let failure = state.failure.clone();
            Some(Final::Rechazada {
                codigo: failure.as_ref().map_or_else(|| "abortada".to_owned(), |f| f.code.clone()),
                motivo: failure.as_ref().map_or_else(|| "abandonada por un operador".to_owned(), |f| f.reason.clone()),
                paso: failure.and_then(|f| f.step),
            })
        }
        _ => None,
    }
}
