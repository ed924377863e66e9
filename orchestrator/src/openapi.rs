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

/// A dead letter, as the orchestrator recorded it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct DeadLetter {
    id: uuid::Uuid,
    /// The original topic (`comandos.marca`), where a redrive publishes it.
    topic: String,
    /// Where the transport kept it (`….comandos.marca.dlq`).
    dead_letter_topic: String,
    /// The saga message id of its properties (what participants deduplicate on).
    message_id: Option<String>,
    /// Its saga, when its properties name one (a garbage message has none).
    saga_id: Option<uuid::Uuid>,
    saga_type: Option<String>,
    step: Option<String>,
    /// `action`, `compensation` or `reply`.
    kind: Option<String>,
    /// A command's body type, a reply's outcome.
    message_type: Option<String>,
    /// Why it was dead-lettered.
    reason: String,
    dead_at: chrono::DateTime<chrono::Utc>,
    /// When it was last redriven.
    redriven_at: Option<chrono::DateTime<chrono::Utc>>,
    /// How many times it was redriven.
    redrives: i64,
    /// `pending` or `redriven`.
    estado: String,
    /// The operators' notes, oldest first.
    notas: Vec<String>,
}

/// `GET /dead-letters`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ListaDeadLetters {
    /// Newest first.
    dead_letters: Vec<DeadLetter>,
    /// How many match the filter in all.
    total: u64,
    limite: u32,
    desde: u32,
}

/// One dead letter.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct UnDeadLetter {
    dead_letter: DeadLetter,
}

/// `POST /dead-letters/redrive`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Redriven {
    /// How many were redriven.
    redriven: u64,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Alpes Partners orchestrator",
        description = "Starts sagas and answers queries: the routes every saga shares, then each saga's own."
    ),
    paths(
        crate::api::listar_sagas,
        crate::api::obtener_saga,
        crate::api::reintentar_saga,
        crate::api::abortar_saga,
        crate::dead_letters::listar,
        crate::dead_letters::obtener,
        crate::dead_letters::redrive,
        crate::dead_letters::redrive_topic
    ),
    components(schemas(
        Error,
        Errores,
        NotaOperador,
        ErrorCampo,
        DeadLetter,
        ListaDeadLetters,
        UnDeadLetter,
        Redriven
    ))
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
