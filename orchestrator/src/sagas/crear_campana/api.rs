//! CrearCampaña's HTTP routes, the public API's as documented:
//!
//! | route | what |
//! |---|---|
//! | `POST /afiliaciones/campana` | validate the public request, record the campaign, start its saga: `202` |
//! | `GET /afiliaciones/campana/{id}` | the campaign from the view: `pendiente`, `activa`, `rechazada` with its reason |
//! | `GET /afiliaciones/campanas?estado=&buscar=&influencer=&limite=&desde=` | `{campanas, total, limite, desde}`, newest first |
//!
//! A campaign is answered in the public API's shape ([`VistaCampana`]): the request's fields as
//! it was given (`presupuesto` in currency units, dates without zone), `id`, `estado` and
//! `fecha_creacion`; then what the saga adds (its id, the failing step, code and reason, the
//! services' outputs, and each influencer's booking and tracking link once active).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use saga_core::engine::Engine;
use saga_core::{SagaId, StepType};
use schemas::{InfluencersReservados, TrackingAbierto};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::definicion::{Influencers, SagaCrearCampana, Tracking};
use super::solicitud::{validar, FORMATO_FECHA};
use super::vista::{Campana, Creada, Estado, FiltroCampanas, Vista};
use crate::api::{parse_id, query, ApiError, MAX_BODY};

/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What the campaign handlers share.
#[derive(Clone)]
pub struct CampanaApi {
    /// The saga engine.
    pub engine: Arc<Engine>,
    /// The campaign view.
    pub vista: Arc<dyn Vista>,
}

/// The campaign routes.
pub fn router(state: CampanaApi) -> Router {
    Router::new()
        .route("/afiliaciones/campana", post(crear_campana))
        .route("/afiliaciones/campana/{id}", get(obtener_campana))
        .route("/afiliaciones/campanas", get(listar_campanas))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn aceptada(c: &Campana) -> Value {
    json!({
        "id_campana": c.id_campana,
        "saga_id": c.saga_id,
        "estado": c.estado,
        "consultar": format!("/afiliaciones/campana/{}", c.id_campana),
        "saga": format!("/sagas/{}", c.saga_id),
    })
}

#[utoipa::path(post, path = "/afiliaciones/campana", tag = "campanas",
    request_body(content = SolicitudCampana, description = "The public request, exactly as it has always been taken"),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried POST with the same key gets the first answer (1 to 200 characters)")),
    responses(
        (status = 202, description = "Accepted: the saga started", body = Aceptada),
        (status = 400, description = "Not JSON, or a bad Idempotency-Key", body = crate::openapi::Error),
        (status = 413, description = "Body over 256 KiB"),
        (status = 422, description = "Every field error; or the Idempotency-Key was used with another request", body = crate::openapi::Errores),
        (status = 503, description = "The database does not answer", body = crate::openapi::Error)))]
async fn crear_campana(State(s): State<CampanaApi>, headers: HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let clave = match headers.get("idempotency-key") {
        None => None,
        Some(v) => match v.to_str() {
            Ok(k) if !k.trim().is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY => Some(k.trim().to_owned()),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("Idempotency-Key debe ser un texto visible de 1 a {MAX_IDEMPOTENCY_KEY} caracteres"),
                ))
            }
        },
    };
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("el cuerpo no es JSON válido: {e}")))?;
    let campana = validar(&json, Uuid::now_v7()).map_err(|errores| {
        ApiError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "la solicitud tiene errores", "errores": errores }),
        )
    })?;
    let saga_id = SagaId::new();
    let creada = s
        .vista
        .crear(&campana, saga_id, clave.as_deref())
        .await
        .map_err(|e| ApiError::database("campaign view", &e.0))?;
    let campana = match creada {
        Creada::Existente(c) => {
            // A retry carries the same request; the same key on another request is a client
            // bug that must not silently answer for a campaign the client did not ask for.
            let mut pedida = campana.clone();
            pedida.id_campana = c.solicitud.id_campana;
            if pedida != c.solicitud {
                let error = format!(
                    "la Idempotency-Key ya se usó con otra solicitud (campaña {}); use otra clave",
                    c.id_campana
                );
                // The same shape as the field errors (`Errores`), the header being the field.
                return Err(ApiError::with_body(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    json!({ "error": error, "errores": [{ "campo": "Idempotency-Key", "error": error }] }),
                ));
            }
            *c
        }
        Creada::Nueva(c) => *c,
    };
    // Started here for a new campaign and for a retry alike: the first request may have
    // recorded the campaign and died (or failed) before its saga was in the log, and a 202 comes
    // only once it is (`start` is idempotent on the saga id). If this fails, the campaign stays
    // `pendiente` and the projector's catch-up starts its saga.
    s.engine.start_saga::<SagaCrearCampana>(campana.saga_id, &campana.solicitud).await?;
    let mut response = (StatusCode::ACCEPTED, Json(aceptada(&campana))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/afiliaciones/campana/{}", campana.id_campana)) {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/afiliaciones/campana/{id}", tag = "campanas",
    params(("id" = Uuid, Path, description = "The campaign id")),
    responses((status = 200, body = VistaCampana), (status = 400, description = "Not a UUID", body = crate::openapi::Error),
              (status = 404, description = "No such campaign", body = crate::openapi::Error),
              (status = 500, body = crate::openapi::Error)))]
async fn obtener_campana(State(s): State<CampanaApi>, Path(id): Path<String>) -> Result<Json<VistaCampana>, ApiError> {
    let id = parse_id(&id, "el id de campaña")?;
    match s.vista.obtener(id).await.map_err(|e| ApiError::database("campaign view", &e.0))? {
        Some(c) => Ok(Json(VistaCampana::from(&c))),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("la campaña {id} no existe"))),
    }
}

#[utoipa::path(get, path = "/afiliaciones/campanas", tag = "campanas",
    params(("estado" = Option<Estado>, Query, description = "Only this state"),
           ("buscar" = Option<String>, Query, description = "Only those whose name contains this, ignoring case"),
           ("influencer" = Option<String>, Query, description = "Only those that book an influencer of this name (whole name, ignoring case)"),
           ("limite" = Option<u32>, Query, description = "At most this many (1 to 500, default 50)"),
           ("desde" = Option<u32>, Query, description = "Skip this many")),
    responses((status = 200, description = "A page of campaigns, newest first, and how many match", body = ListaCampanas),
              (status = 400, description = "Unknown `estado`, or a bad number", body = crate::openapi::Error),
              (status = 500, body = crate::openapi::Error)))]
async fn listar_campanas(
    State(s): State<CampanaApi>,
    p: Result<Query<ConsultaCampanas>, QueryRejection>,
) -> Result<Json<ListaCampanas>, ApiError> {
    let p = query(p)?;
    let estado = p
        .estado
        .as_deref()
        .map(str::parse::<Estado>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limite = p.limite.unwrap_or(50).clamp(1, 500);
    let desde = p.desde.unwrap_or(0);
    let filtro = FiltroCampanas { estado, buscar: p.buscar, influencer: p.influencer };
    let listado =
        s.vista.listar(&filtro, limite, desde).await.map_err(|e| ApiError::database("campaign view", &e.0))?;
    Ok(Json(ListaCampanas {
        campanas: listado.campanas.iter().map(VistaCampana::from).collect(),
        total: listado.total,
        limite,
        desde,
    }))
}

/// The query of `GET /afiliaciones/campanas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsultaCampanas {
    /// Only this state.
    pub estado: Option<String>,
    /// Only those whose name contains this, ignoring case.
    pub buscar: Option<String>,
    /// Only those that book an influencer of this name (the whole name, ignoring case).
    pub influencer: Option<String>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

/// The answer of `GET /afiliaciones/campanas`.
#[derive(Serialize, ToSchema)]
pub struct ListaCampanas {
    /// This page, newest first.
    pub campanas: Vec<VistaCampana>,
    /// How many campaigns match the filter in all (not only this page).
    pub total: u64,
    /// The page size used.
    pub limite: u32,
    /// How many were skipped.
    pub desde: u32,
}

/// A campaign as the public API answers it: the request's fields as it was given, its `id`,
/// `estado` and `fecha_creacion`, then what the saga adds.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(as = Campana)]
pub struct VistaCampana {
    /// The campaign.
    pub id: Uuid,
    /// The brand that funds it.
    pub marca: MarcaDoc,
    /// Its name.
    pub nombre: String,
    /// Its description (empty when the request had none).
    pub descripcion: String,
    /// Its kind, e.g. `influencer`.
    pub tipo: String,
    /// `pendiente` while its saga runs, then `activa` or `rechazada`.
    pub estado: Estado,
    /// When it was requested.
    pub fecha_creacion: DateTime<Utc>,
    /// As the request gave it: `AAAA-MM-DDTHH:MM:SS`, no zone.
    #[schema(example = "2025-01-01T00:00:00")]
    pub fecha_inicio: String,
    /// As the request gave it.
    #[schema(example = "2025-12-31T23:59:59")]
    pub fecha_fin: String,
    /// In currency units, as the request takes it (kept exact inside, in minor units).
    #[schema(value_type = f64, example = 15000)]
    pub presupuesto: serde_json::Number,
    /// As the request gave them, with each one's booking and tracking link once active.
    pub influencers: Vec<InfluencerVista>,
    /// The same as `id`.
    pub id_campana: Uuid,
    /// The saga that creates it (`GET /sagas/{saga_id}`).
    #[schema(value_type = Uuid)]
    pub saga_id: SagaId,
    /// The step that refused it.
    pub paso_fallido: Option<String>,
    /// Why it was refused.
    pub motivo: Option<String>,
    /// The refusal's code, e.g. `MARCA_DESCONOCIDA`.
    pub codigo: Option<String>,
    /// What each service answered (by step), once active.
    #[schema(value_type = Option<Object>)]
    pub resultado: Option<Value>,
    /// When it last changed.
    pub fecha_actualizacion: DateTime<Utc>,
}

/// An influencer of a campaign: as the request gave it, then, once the campaign is active, its
/// booking and its tracking link.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct InfluencerVista {
    /// Display name.
    pub nombre: String,
    /// e.g. Instagram.
    pub plataforma: String,
    /// Audience on that platform.
    pub seguidores: u32,
    /// e.g. Fitness.
    pub categoria: String,
    /// The influencer's id in the influencer service, once booked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_influencer: Option<Uuid>,
    /// The booking, once booked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_reserva: Option<Uuid>,
    /// The tracking code, once tracking is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub codigo_tracking: Option<String>,
    /// The tracking link, once tracking is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_tracking: Option<String>,
}

/// The output of step `T` in a campaign's `resultado`, if there and readable.
fn salida<T: serde::de::DeserializeOwned>(resultado: Option<&Value>, step: &str) -> Option<T> {
    serde_json::from_value(resultado?.get(step)?.clone()).ok()
}

/// The item of `list` for the influencer at `index` named `nombre` on `plataforma`: the one at
/// the same place if it names it (the services answer in the request's order), else the one that
/// does.
fn de_influencer<T>(list: &[T], index: usize, named: impl Fn(&T) -> bool) -> Option<&T> {
    list.get(index).filter(|x| named(x)).or_else(|| list.iter().find(|x| named(x)))
}

impl From<&Campana> for VistaCampana {
    fn from(c: &Campana) -> Self {
        let s = &c.solicitud;
        let reservas: Option<InfluencersReservados> = salida(c.resultado.as_ref(), Influencers::NAME);
        let tracking: Option<TrackingAbierto> = salida(c.resultado.as_ref(), Tracking::NAME);
        let influencers = s
            .influencers
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let reserva = reservas.as_ref().and_then(|r| {
                    de_influencer(&r.reservas, n, |x| x.nombre == i.nombre && x.plataforma == i.plataforma)
                });
                let enlace = tracking.as_ref().and_then(|t| {
                    de_influencer(&t.enlaces, n, |x| x.nombre == i.nombre && x.plataforma == i.plataforma)
                });
                InfluencerVista {
                    nombre: i.nombre.clone(),
                    plataforma: i.plataforma.clone(),
                    seguidores: i.seguidores,
                    categoria: i.categoria.clone(),
                    id_influencer: reserva.map(|r| r.id_influencer),
                    id_reserva: reserva.map(|r| r.id_reserva),
                    codigo_tracking: enlace.map(|e| e.codigo.clone()),
                    url_tracking: enlace.map(|e| e.url.clone()),
                }
            })
            .collect();
        VistaCampana {
            id: c.id_campana,
            marca: MarcaDoc { id_marca: s.marca.id_marca, nombre_marca: s.marca.nombre_marca.clone() },
            nombre: s.nombre.clone(),
            descripcion: s.descripcion.clone(),
            tipo: s.tipo.clone(),
            estado: c.estado,
            fecha_creacion: c.creada_en,
            fecha_inicio: s.fecha_inicio.format(FORMATO_FECHA).to_string(),
            fecha_fin: s.fecha_fin.format(FORMATO_FECHA).to_string(),
            presupuesto: s.presupuesto_centavos.to_decimal(),
            influencers,
            id_campana: c.id_campana,
            saga_id: c.saga_id,
            paso_fallido: c.paso_fallido.clone(),
            motivo: c.motivo.clone(),
            codigo: c.codigo.clone(),
            resultado: c.resultado.clone(),
            fecha_actualizacion: c.actualizada_en,
        }
    }
}

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

/// A brand, in the request and in the answers.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct MarcaDoc {
    /// A UUID.
    pub id_marca: uuid::Uuid,
    /// 1 to 200 characters.
    pub nombre_marca: String,
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

#[derive(OpenApi)]
#[openapi(
    paths(crear_campana, obtener_campana, listar_campanas),
    components(schemas(
        SolicitudCampana,
        MarcaDoc,
        InfluencerDoc,
        Aceptada,
        VistaCampana,
        InfluencerVista,
        ListaCampanas,
        Estado
    ))
)]
struct CampanaDoc;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    CampanaDoc::openapi()
}
