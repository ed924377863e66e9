//! `GET /openapi.json`: the HTTP API described, generated from the handlers' annotations and
//! the types they exchange.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use crate::sagas::crear_campana::solicitud::ErrorCampo;
use crate::sagas::crear_campana::vista::{Campana, Estado};

/// The body of `POST /afiliaciones/campana` (the public API's shape; documentation of what
/// `solicitud::validar` accepts).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SolicitudCampana {
    /// 1 to 200 characters.
    nombre: String,
    /// Up to 2000 characters; optional.
    descripcion: Option<String>,
    /// 1 to 50 characters, e.g. `influencer`.
    tipo: String,
    /// `AAAA-MM-DDTHH:MM:SS`, no zone.
    #[schema(example = "2025-01-01T00:00:00")]
    fecha_inicio: String,
    /// After `fecha_inicio`.
    #[schema(example = "2025-12-31T23:59:59")]
    fecha_fin: String,
    /// Greater than zero, at most two decimals.
    #[schema(example = 15000)]
    presupuesto: f64,
    /// The brand.
    marca: MarcaDoc,
    /// 1 to 100 influencers.
    influencers: Vec<InfluencerDoc>,
}

/// A brand in the request.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MarcaDoc {
    /// A UUID.
    id_marca: uuid::Uuid,
    /// 1 to 200 characters.
    nombre_marca: String,
}

/// An influencer in the request.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct InfluencerDoc {
    /// 1 to 200 characters.
    nombre: String,
    /// e.g. Instagram, TikTok, YouTube, Twitch, X.
    plataforma: String,
    /// 0 to 4294967295.
    seguidores: u32,
    /// 1 to 200 characters.
    categoria: String,
}

/// The answer of an accepted request.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Aceptada {
    id_campana: uuid::Uuid,
    saga_id: uuid::Uuid,
    estado: Estado,
    /// Where to poll the campaign.
    consultar: String,
    /// Where to read the saga.
    saga: String,
}

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
    info(title = "Alpes Partners: CrearCampaña", description = "Starts CrearCampaña sagas and answers queries."),
    paths(
        crate::api::crear_campana,
        crate::api::obtener_campana,
        crate::api::listar_campanas,
        crate::api::listar_sagas,
        crate::api::obtener_saga,
        crate::api::reintentar_saga,
        crate::api::abortar_saga,
        crate::api::health,
    ),
    components(schemas(
        SolicitudCampana,
        MarcaDoc,
        InfluencerDoc,
        Aceptada,
        Error,
        Errores,
        NotaOperador,
        Campana,
        Estado,
        ErrorCampo
    ))
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
