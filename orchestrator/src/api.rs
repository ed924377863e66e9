//! The HTTP API: a thin shim that starts CrearCampaña sagas and answers queries.
//!
//! | route | what |
//! |---|---|
//! | `POST /afiliaciones/campana` | validate the public request, record the campaign, start its saga: `202` |
//! | `GET /afiliaciones/campana/{id}` | the campaign from the view: `pendiente`, `activa`, `rechazada` with its reason |
//! | `GET /afiliaciones/campanas?estado=&limite=&desde=` | campaigns, newest first |
//! | `GET /sagas?estado=&limite=&desde=` | sagas, newest first |
//! | `GET /sagas/{id}` | a saga's state and its whole history, with times |
//! | `POST /sagas/{id}/retry`, `POST /sagas/{id}/abort` | operator actions (body `{"nota": "..."}`, optional) |
//! | `GET /health` | liveness, and readiness of the database and the broker |
//!
//! Errors are JSON `{"error": "..."}` (and `"errores": [...]` for field errors). Internal errors
//! are logged and answered with a generic message: nothing internal leaks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use saga_core::engine::{Engine, EngineError};
use saga_core::log::ListQuery;
use saga_core::{SagaId, SagaStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::error;
use uuid::Uuid;

use crate::sagas::crear_campana::solicitud::validar;
use crate::sagas::crear_campana::vista::{Campana, Creada, Estado, Vista};
use crate::sagas::crear_campana::SAGA_TYPE;

/// Largest request body: the biggest valid request (100 influencers, long texts) is ~60 KiB.
pub const MAX_BODY: usize = 256 * 1024;
/// Longest `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 200;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The saga engine.
    pub engine: Arc<Engine>,
    /// The campaign view.
    pub vista: Arc<dyn Vista>,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/afiliaciones/campana", post(crear_campana))
        .route("/afiliaciones/campana/{id}", get(obtener_campana))
        .route("/afiliaciones/campanas", get(listar_campanas))
        .route("/sagas", get(listar_sagas))
        .route("/sagas/{id}", get(obtener_saga))
        .route("/sagas/{id}/retry", post(reintentar_saga))
        .route("/sagas/{id}/abort", post(abortar_saga))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An API error: a status and a message meant for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, body: json!({ "error": message.into() }) }
    }

    fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        error!(error = %e, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "error interno; inténtelo de nuevo")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound(id) => ApiError::new(StatusCode::NOT_FOUND, format!("la saga {id} no existe")),
            EngineError::InvalidState { id, status, why } => {
                ApiError::new(StatusCode::CONFLICT, format!("la saga {id} está {status}: {why}"))
            }
            EngineError::Store(s) if s.is_transient() => {
                error!(error = %s, "saga log unavailable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "la base de datos no responde; inténtelo de nuevo")
            }
            other => ApiError::internal("engine error", other),
        }
    }
}

fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{what} debe ser un UUID, no {raw:?}")))
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
    request_body(content = crate::openapi::SolicitudCampana, description = "The public request, exactly as it has always been taken"),
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried POST with the same key gets the first answer (1 to 200 characters)")),
    responses(
        (status = 202, description = "Accepted: the saga started", body = crate::openapi::Aceptada),
        (status = 400, description = "Not JSON, or a bad Idempotency-Key", body = crate::openapi::Error),
        (status = 413, description = "Body over 256 KiB"),
        (status = 422, description = "Every field error; or the Idempotency-Key was used with another request", body = crate::openapi::Errores),
        (status = 503, description = "The database does not answer", body = crate::openapi::Error)))]
pub(crate) async fn crear_campana(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
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
    let campana = validar(&json, Uuid::now_v7()).map_err(|errores| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        body: json!({ "error": "la solicitud tiene errores", "errores": errores }),
    })?;
    let saga_id = SagaId::new();
    let creada =
        s.vista.crear(&campana, saga_id, clave.as_deref()).await.map_err(|e| ApiError::internal("campaign view", e))?;
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
                return Err(ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    body: json!({ "error": error, "errores": [{ "campo": "Idempotency-Key", "error": error }] }),
                });
            }
            *c
        }
        Creada::Nueva(c) => {
            // If this fails, the campaign stays `pendiente` and the projector's catch-up starts
            // its saga (start is idempotent on the saga id).
            s.engine.start(SAGA_TYPE, c.saga_id, json!(c.solicitud)).await?;
            *c
        }
    };
    let mut response = (StatusCode::ACCEPTED, Json(aceptada(&campana))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/afiliaciones/campana/{}", campana.id_campana)) {
        response.headers_mut().insert("location", location);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/afiliaciones/campana/{id}", tag = "campanas",
    params(("id" = Uuid, Path, description = "The campaign id")),
    responses((status = 200, body = Campana), (status = 400, body = crate::openapi::Error), (status = 404, body = crate::openapi::Error)))]
pub(crate) async fn obtener_campana(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Campana>, ApiError> {
    let id = parse_id(&id, "el id de campaña")?;
    match s.vista.obtener(id).await.map_err(|e| ApiError::internal("campaign view", e))? {
        Some(c) => Ok(Json(c)),
        None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("la campaña {id} no existe"))),
    }
}

/// Paging and filter of the list routes.
#[derive(Debug, Deserialize)]
pub struct Pagina {
    /// Only this state.
    pub estado: Option<String>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

#[utoipa::path(get, path = "/afiliaciones/campanas", tag = "campanas",
    params(("estado" = Option<Estado>, Query, description = "Only this state"),
           ("limite" = Option<u32>, Query, description = "At most this many (1 to 500, default 50)"),
           ("desde" = Option<u32>, Query, description = "Skip this many")),
    responses((status = 200, description = "`{campanas: [Campana], limite, desde}`, newest first"), (status = 400, body = crate::openapi::Error)))]
pub(crate) async fn listar_campanas(
    State(s): State<AppState>,
    Query(p): Query<Pagina>,
) -> Result<Json<Value>, ApiError> {
    let estado = p
        .estado
        .as_deref()
        .map(str::parse::<Estado>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limite = p.limite.unwrap_or(50).clamp(1, 500);
    let desde = p.desde.unwrap_or(0);
    let campanas = s.vista.listar(estado, limite, desde).await.map_err(|e| ApiError::internal("campaign view", e))?;
    Ok(Json(json!({ "campanas": campanas, "limite": limite, "desde": desde })))
}

#[utoipa::path(get, path = "/sagas", tag = "sagas",
    params(("estado" = Option<String>, Query, description = "running, compensating, completed, compensated, stuck or aborted"),
           ("limite" = Option<u32>, Query), ("desde" = Option<u32>, Query)),
    responses((status = 200, description = "`{sagas: [summary], limite, desde}`, newest first"), (status = 400, body = crate::openapi::Error)))]
pub(crate) async fn listar_sagas(State(s): State<AppState>, Query(p): Query<Pagina>) -> Result<Json<Value>, ApiError> {
    let status = p
        .estado
        .as_deref()
        .map(str::parse::<SagaStatus>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limit = p.limite.unwrap_or(50).clamp(1, 500);
    let offset = p.desde.unwrap_or(0);
    let sagas = s.engine.list(&ListQuery { status, saga_type: None, limit, offset }).await?;
    Ok(Json(json!({ "sagas": sagas, "limite": limit, "desde": offset })))
}

#[utoipa::path(get, path = "/sagas/{id}", tag = "sagas",
    params(("id" = Uuid, Path, description = "The saga id")),
    responses((status = 200, description = "`{saga: state, historia: [log entry with seq, at, event]}`"), (status = 404, body = crate::openapi::Error)))]
pub(crate) async fn obtener_saga(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = SagaId(parse_id(&id, "el id de saga")?);
    let state = s.engine.get(id).await?.ok_or(EngineError::NotFound(id))?;
    let history = s.engine.history(id).await?;
    Ok(Json(json!({ "saga": state, "historia": history })))
}

/// Body of the operator routes.
#[derive(Debug, Default, Deserialize)]
pub struct Nota {
    /// Why the operator acts; written in the saga log.
    pub nota: Option<String>,
}

fn nota(body: &Bytes) -> Result<String, ApiError> {
    if body.is_empty() {
        return Ok("(sin nota)".into());
    }
    let n: Nota = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("el cuerpo debe ser {{\"nota\": \"...\"}}: {e}"))
    })?;
    Ok(n.nota.unwrap_or_else(|| "(sin nota)".into()))
}

#[utoipa::path(post, path = "/sagas/{id}/retry", tag = "sagas",
    params(("id" = Uuid, Path)), request_body(content = Option<crate::openapi::NotaOperador>),
    responses((status = 200, description = "`{saga: state}`"), (status = 404, body = crate::openapi::Error),
              (status = 409, description = "Only a stuck saga can be retried", body = crate::openapi::Error)))]
pub(crate) async fn reintentar_saga(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = SagaId(parse_id(&id, "el id de saga")?);
    let state = s.engine.retry(id, &nota(&body)?).await?;
    Ok(Json(json!({ "saga": state })))
}

#[utoipa::path(post, path = "/sagas/{id}/abort", tag = "sagas",
    params(("id" = Uuid, Path)), request_body(content = Option<crate::openapi::NotaOperador>),
    responses((status = 200, description = "`{saga: state}`"), (status = 404, body = crate::openapi::Error),
              (status = 409, description = "Only a running or stuck saga can be aborted", body = crate::openapi::Error)))]
pub(crate) async fn abortar_saga(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = SagaId(parse_id(&id, "el id de saga")?);
    // An abandoned saga reaches the campaign view through the projector, like every other end.
    let state = s.engine.abort(id, &nota(&body)?).await?;
    Ok(Json(json!({ "saga": state })))
}

#[utoipa::path(get, path = "/health", tag = "operacion",
    responses((status = 200, description = "`{status: ok, database: ok}`"), (status = 503, description = "The saga log does not answer")))]
pub(crate) async fn health(State(s): State<AppState>) -> Response {
    let (database, broker) = tokio::join!(s.engine.store().stats(), s.engine.transport().ready());
    daemon::salud(&database, &broker)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}
