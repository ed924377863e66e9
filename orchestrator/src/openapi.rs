//! `GET /openapi.json`: the HTTP API described, generated from the handlers' annotations and
//! the types they exchange: the shared routes, each saga's own, the routes every daemon serves
//! (`/health`, `/metrics`, `/openapi.json`); [`crate::app::build`] adds the run mode's extra
//! routes (the embedded mode's participants).

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::sagas::crear_campana::solicitud::ErrorCampo;

/// An error.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Error {
    /// What is wrong.
    error: String,
}

/// Field errors.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Errores {
    error: String,
    /// Every field error, not only the first.
    errores: Vec<ErrorCampo>,
}

/// The body of operator actions.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct NotaOperador {
    /// Why; written in the saga log.
    nota: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Alpes Partners orchestrator",
        description = "Starts sagas and answers queries: the routes every saga shares, then each saga's own."
    ),
    paths(crate::api::listar_sagas, crate::api::obtener_saga, crate::api::reintentar_saga, crate::api::abortar_saga,),
    components(schemas(Error, Errores, NotaOperador, ErrorCampo))
)]
struct ApiDoc;

/// The document: the shared routes, every saga's, then the daemons' common ones.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for module in crate::sagas::modules() {
        doc.merge(module.openapi());
    }
    doc.merge(daemon::openapi::operations());
    doc
}
