//! tracking's event intake, the public API's routes as documented:
//!
//! | route | what |
//! |---|---|
//! | `POST /tracking/evento` | record an event of a campaign whose tracking is open: `201` with the event |
//! | `GET /tracking/eventos/{id_campana}?limite=&desde=` | its events, oldest first, paged |
//! | `GET /tracking/eventos/{id_campana}/resumen` | its counters and latest events |
//!
//! The body is `{"id_campana", "tipo_evento", "datos": {...}}`; `tipo` is still read as the
//! older name of `tipo_evento`, and `codigo` (a tracking code of the campaign) and `valor` (a
//! conversion's value) are optional. `tipo_evento` is any kind of event the client names: the
//! summary counts `vista`, `clic` and `conversion` by name and every kind in `por_tipo`.
//! Events for an unknown campaign, a closed context or a code of another campaign are refused
//! with a clear error and record nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use schemas::Centavos;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sqlx::types::Json as SqlJson;
use sqlx::{PgPool, SqlitePool};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

/// A conversion's value is below this many centavos (ten billion in the currency).
pub const MAX_VALOR_CENTAVOS: i64 = 1_000_000_000_000;
/// Longest `tipo_evento`.
pub const MAX_TIPO: usize = 50;
/// Largest body of `POST /tracking/evento` (`datos` included).
pub const MAX_BODY: usize = 16 * 1024;
/// Events per page of `GET /tracking/eventos/{id_campana}` when `limite` is not given.
pub const LIMITE_POR_DEFECTO: u32 = 100;
/// Most events per page: a page stays a few hundred KiB at most.
pub const LIMITE_MAXIMO: u32 = 500;
/// Latest events in the summary.
pub const RECIENTES: u32 = 50;

/// A view: the kind of event the summary counts as `vistas`.
pub const VISTA: &str = "vista";
/// A tracking link followed (`clics`).
pub const CLIC: &str = "clic";
/// A sale or sign-up attributed (`conversiones`); the only kind with a `valor`.
pub const CONVERSION: &str = "conversion";

/// A valid event, as posted.
#[derive(Clone, Debug, PartialEq)]
pub struct Evento {
    /// The campaign.
    pub id_campana: Uuid,
    /// What happened (`tipo_evento`), e.g. `vista`, `clic`, `conversion`.
    pub tipo: String,
    /// The client's free-form data, kept as given.
    pub datos: Map<String, Value>,
    /// The influencer's tracking code, if the event came through a link.
    pub codigo: Option<String>,
    /// A conversion's value, in minor units.
    pub valor_centavos: Option<i64>,
}

/// A recorded event, as the API answers it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventoRegistrado {
    /// The event.
    pub id: Uuid,
    /// The campaign.
    pub id_campana: Uuid,
    /// What happened.
    #[schema(example = "clic")]
    pub tipo_evento: String,
    /// The client's data, as posted (`{}` when none).
    #[schema(value_type = Object)]
    pub datos: Map<String, Value>,
    /// When it was recorded.
    pub fecha_evento: DateTime<Utc>,
    /// The tracking code it came through, if any.
    pub codigo: Option<String>,
    /// A conversion's value in currency units, if any.
    #[schema(value_type = Option<f64>)]
    pub valor: Option<serde_json::Number>,
}

/// Why an event was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rechazo {
    /// No tracking context for this campaign (unknown, or not active yet).
    CampanaDesconocida,
    /// The campaign's tracking was closed (the campaign was compensated).
    ContextoCerrado,
    /// The code is not one of this campaign's.
    CodigoAjeno,
}

/// A campaign's counters.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Resumen {
    /// The campaign.
    pub id_campana: Uuid,
    /// Its tracking context.
    pub id_tracking: Uuid,
    /// `abierto` or `cerrado`.
    pub estado: String,
    /// Events of kind `vista`.
    pub vistas: i64,
    /// Events of kind `clic`.
    pub clics: i64,
    /// Events of kind `conversion`.
    pub conversiones: i64,
    /// Sum of conversion values, minor units.
    pub valor_centavos: i64,
    /// Events per kind, every kind.
    pub por_tipo: BTreeMap<String, i64>,
    /// Every event of the campaign.
    pub total: i64,
    /// The latest events, newest first (at most [`RECIENTES`]).
    pub recientes: Vec<EventoRegistrado>,
}

/// Storage of tracking events.
#[async_trait]
pub trait Eventos: Send + Sync + 'static {
    /// Records an event, or says why not.
    async fn registrar(&self, evento: &Evento) -> Result<Result<EventoRegistrado, Rechazo>, sqlx::Error>;
    /// A page of a campaign's events, oldest first, and how many it has in all; `None` if it has
    /// no tracking context.
    async fn listar(
        &self,
        id_campana: Uuid,
        limite: u32,
        desde: u32,
    ) -> Result<Option<(Vec<EventoRegistrado>, i64)>, sqlx::Error>;
    /// A campaign's counters; `None` if it has no tracking context.
    async fn resumen(&self, id_campana: Uuid) -> Result<Option<Resumen>, sqlx::Error>;
}

type Fila = (Uuid, String, Option<String>, Option<i64>, DateTime<Utc>, SqlJson<Map<String, Value>>);

const COLUMNAS: &str = "id_evento, tipo, codigo, valor_centavos, ocurrido_en, datos";

fn registrado(id_campana: Uuid, (id, tipo, codigo, valor, at, SqlJson(datos)): Fila) -> EventoRegistrado {
    EventoRegistrado {
        id,
        id_campana,
        tipo_evento: tipo,
        datos,
        fecha_evento: at,
        codigo,
        valor: valor.map(|v| Centavos(v).to_decimal()),
    }
}

macro_rules! sql_eventos {
    ($(#[$meta:meta])* $name:ident, $pool:ty, $lock:literal) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            /// The tracking database.
            pub pool: $pool,
        }

        impl $name {
            async fn contexto(&self, id_campana: Uuid) -> Result<Option<(Uuid, String)>, sqlx::Error> {
                sqlx::query_as("SELECT id_tracking, estado FROM contexto_tracking WHERE id_campana = $1")
                    .bind(id_campana)
                    .fetch_optional(&self.pool)
                    .await
            }
        }

        #[async_trait]
        impl Eventos for $name {
            async fn registrar(&self, e: &Evento) -> Result<Result<EventoRegistrado, Rechazo>, sqlx::Error> {
                let Some((id_tracking, estado)) = self.contexto(e.id_campana).await? else {
                    return Ok(Err(Rechazo::CampanaDesconocida));
                };
                if estado != "abierto" {
                    return Ok(Err(Rechazo::ContextoCerrado));
                }
                if let Some(codigo) = &e.codigo {
                    let ours: Option<Uuid> = sqlx::query_scalar("SELECT id_tracking FROM enlace_tracking WHERE codigo = $1")
                        .bind(codigo)
                        .fetch_optional(&self.pool)
                        .await?;
                    if ours != Some(id_tracking) {
                        return Ok(Err(Rechazo::CodigoAjeno));
                    }
                }
                // Microseconds, what both databases keep: the answer equals what a read gives.
                let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).unwrap_or_else(Utc::now);
                let fila: Fila = (Uuid::now_v7(), e.tipo.clone(), e.codigo.clone(), e.valor_centavos, now, SqlJson(e.datos.clone()));
                // The open-context check and the insert are one statement, so a compensation that
                // closes the context cannot commit between them. On PostgreSQL the context row is
                // share-locked: a close in flight makes the intake wait and re-read it (then it is
                // `cerrado`, and nothing is inserted), and a close waits for an intake in flight.
                // SQLite runs one statement as one write, alone.
                let inserted = sqlx::query(&format!(
                    "INSERT INTO evento_tracking (id_tracking, {COLUMNAS}) \
                     SELECT id_tracking, $2, $3, $4, $5, $6, $7 FROM contexto_tracking \
                     WHERE id_tracking = $1 AND estado = 'abierto'{}",
                    $lock
                ))
                .bind(id_tracking)
                .bind(fila.0)
                .bind(&fila.1)
                .bind(&fila.2)
                .bind(fila.3)
                .bind(fila.4)
                .bind(&fila.5)
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 0 {
                    // A context is never deleted: it was closed since the check above.
                    return Ok(Err(Rechazo::ContextoCerrado));
                }
                Ok(Ok(registrado(e.id_campana, fila)))
            }

            async fn listar(
                &self,
                id_campana: Uuid,
                limite: u32,
                desde: u32,
            ) -> Result<Option<(Vec<EventoRegistrado>, i64)>, sqlx::Error> {
                let Some((id_tracking, _)) = self.contexto(id_campana).await? else { return Ok(None) };
                // The event id breaks ties: a v7 UUID grows with time within a process.
                let filas: Vec<Fila> = sqlx::query_as(&format!(
                    "SELECT {COLUMNAS} FROM evento_tracking WHERE id_tracking = $1 \
                     ORDER BY ocurrido_en, id_evento LIMIT $2 OFFSET $3"
                ))
                .bind(id_tracking)
                .bind(i64::from(limite.clamp(1, LIMITE_MAXIMO)))
                .bind(i64::from(desde))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM evento_tracking WHERE id_tracking = $1")
                    .bind(id_tracking)
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Some((filas.into_iter().map(|f| registrado(id_campana, f)).collect(), total)))
            }

            async fn resumen(&self, id_campana: Uuid) -> Result<Option<Resumen>, sqlx::Error> {
                let Some((id_tracking, estado)) = self.contexto(id_campana).await? else { return Ok(None) };
                let counts: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT tipo, COUNT(*), CAST(SUM(valor_centavos) AS BIGINT) FROM evento_tracking WHERE id_tracking = $1 GROUP BY tipo",
                )
                .bind(id_tracking)
                .fetch_all(&self.pool)
                .await?;
                let count = |t: &str| counts.iter().find(|(k, _, _)| k == t).map_or(0, |(_, n, _)| *n);
                let valor = counts.iter().find(|(k, _, _)| k == CONVERSION).and_then(|(_, _, v)| *v).unwrap_or(0);
                let recientes: Vec<Fila> = sqlx::query_as(&format!(
                    "SELECT {COLUMNAS} FROM evento_tracking WHERE id_tracking = $1 \
                     ORDER BY ocurrido_en DESC, id_evento DESC LIMIT $2"
                ))
                .bind(id_tracking)
                .bind(i64::from(RECIENTES))
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(Resumen {
                    id_campana,
                    id_tracking,
                    estado,
                    vistas: count(VISTA),
                    clics: count(CLIC),
                    conversiones: count(CONVERSION),
                    valor_centavos: valor,
                    total: counts.iter().map(|(_, n, _)| n).sum(),
                    por_tipo: counts.iter().map(|(k, n, _)| (k.clone(), *n)).collect(),
                    recientes: recientes.into_iter().map(|f| registrado(id_campana, f)).collect(),
                }))
            }
        }
    };
}

sql_eventos!(
    /// Tracking events in PostgreSQL.
    PgEventos,
    PgPool,
    " FOR SHARE"
);
sql_eventos!(
    /// Tracking events in SQLite (the embedded mode).
    SqliteEventos,
    SqlitePool,
    ""
);

/// The fields of an event body; any other is an error (a client's own data goes in `datos`).
pub const CAMPOS: &[&str] = &["id_campana", "tipo_evento", "tipo", "datos", "codigo", "valor"];

/// Validates an event body: `{"id_campana": uuid, "tipo_evento": text of 1 to 50 characters
/// (or `tipo`, its older name), "datos": optional object, "codigo": optional text, "valor":
/// optional number > 0 with at most two decimals, conversions only}`. `Err` lists every field
/// error as `{campo, error}`.
pub fn validar(body: &Value) -> Result<Evento, Vec<Value>> {
    let mut errores = Vec::new();
    let mut fail = |campo: &str, error: &str| errores.push(json!({ "campo": campo, "error": error }));
    if !body.is_object() {
        fail("", "el cuerpo debe ser un objeto JSON");
        return Err(errores);
    }
    for campo in daemon::unknown_fields(body, CAMPOS) {
        fail(campo, daemon::UNKNOWN_FIELD);
    }
    let id_campana = match body.get("id_campana") {
        Some(Value::String(s)) => match Uuid::parse_str(s) {
            Ok(id) => Some(id),
            Err(_) => {
                fail("id_campana", "debe ser un UUID");
                None
            }
        },
        None | Some(Value::Null) => {
            fail("id_campana", "es obligatorio (un UUID)");
            None
        }
        Some(_) => {
            fail("id_campana", "debe ser un UUID");
            None
        }
    };
    let texto = |campo: &str| match body.get(campo) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_str().map(str::trim)),
    };
    let tipo = match (texto("tipo_evento"), texto("tipo")) {
        (None, None) => {
            fail("tipo_evento", "es obligatorio (p. ej. vista, clic, conversion)");
            None
        }
        (Some(Some(a)), Some(Some(b))) if a != b => {
            fail("tipo", "no coincide con tipo_evento (tipo es su nombre anterior: envíe uno de los dos)");
            None
        }
        (Some(t), _) | (None, Some(t)) => {
            let campo = if body.get("tipo_evento").is_some_and(|v| !v.is_null()) { "tipo_evento" } else { "tipo" };
            match t {
                Some(t) if !t.is_empty() && t.chars().count() <= MAX_TIPO => Some(t.to_owned()),
                _ => {
                    fail(campo, &format!("debe ser un texto de 1 a {MAX_TIPO} caracteres"));
                    None
                }
            }
        }
    };
    let datos = match body.get("datos") {
        None | Some(Value::Null) => Some(Map::new()),
        Some(Value::Object(m)) => Some(m.clone()),
        Some(_) => {
            fail("datos", "debe ser un objeto");
            None
        }
    };
    let codigo = match body.get("codigo") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) if !c.is_empty() && c.len() <= 64 => Some(c.clone()),
        Some(_) => {
            fail("codigo", "debe ser un texto de 1 a 64 caracteres");
            None
        }
    };
    let valor_centavos = match body.get("valor") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_f64().map(Centavos::from_decimal) {
            Some(Ok(Centavos(c))) if c > 0 && c < MAX_VALOR_CENTAVOS => Some(c),
            _ => {
                fail("valor", "debe ser un número positivo con a lo sumo dos decimales");
                None
            }
        },
        Some(_) => {
            fail("valor", "debe ser un número");
            None
        }
    };
    if valor_centavos.is_some() && tipo.as_deref().is_some_and(|t| t != CONVERSION) {
        fail("valor", "solo una conversión tiene valor");
    }
    match (id_campana, tipo, datos) {
        (Some(id_campana), Some(tipo), Some(datos)) if errores.is_empty() => {
            Ok(Evento { id_campana, tipo, datos, codigo, valor_centavos })
        }
        _ => Err(errores),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn unavailable(e: &sqlx::Error) -> Response {
    tracing::error!(error = %e, "tracking events");
    error(StatusCode::SERVICE_UNAVAILABLE, "la base de datos no responde; inténtelo de nuevo".into())
}

/// `raw` as a campaign id, or the 400 that says why not.
#[allow(clippy::result_large_err)] // The error is the response itself, built once, on the error path.
fn id_campana(raw: &str) -> Result<Uuid, Response> {
    Uuid::parse_str(raw)
        .map_err(|_| error(StatusCode::BAD_REQUEST, format!("el id de campaña debe ser un UUID, no {raw:?}")))
}

#[utoipa::path(post, path = "/tracking/evento", tag = "tracking",
    request_body(content = SolicitudEvento, description = "The event: `id_campana`, `tipo_evento`, `datos`"),
    responses(
        (status = 201, description = "Recorded", body = EventoRegistrado),
        (status = 400, description = "Not JSON", body = Error),
        (status = 404, description = "The campaign has no tracking (unknown, or not active yet)", body = Error),
        (status = 409, description = "The campaign's tracking is closed", body = Error),
        (status = 413, description = "Body over 16 KiB"),
        (status = 422, description = "Every field error; or a code of another campaign", body = Errores),
        (status = 503, description = "The database does not answer", body = Error)))]
async fn registrar(State(store): State<Arc<dyn Eventos>>, body: axum::body::Bytes) -> Response {
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("el cuerpo no es JSON válido: {e}")),
    };
    let evento = match validar(&json) {
        Ok(e) => e,
        Err(errores) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": "el evento tiene errores", "errores": errores })),
            )
                .into_response()
        }
    };
    match store.registrar(&evento).await {
        Ok(Ok(registrado)) => {
            // `id_evento` as the intake answered before `id`.
            let mut body = json!(registrado);
            body["id_evento"] = json!(registrado.id);
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(Rechazo::CampanaDesconocida)) => {
            error(StatusCode::NOT_FOUND, format!("la campaña {} no tiene tracking activo", evento.id_campana))
        }
        Ok(Err(Rechazo::ContextoCerrado)) => {
            error(StatusCode::CONFLICT, format!("el tracking de la campaña {} está cerrado", evento.id_campana))
        }
        Ok(Err(Rechazo::CodigoAjeno)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": format!("el código no pertenece a la campaña {}", evento.id_campana),
                "errores": [{ "campo": "codigo", "error": "no es un código de esta campaña" }],
            })),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

/// Paging of the event list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pagina {
    /// At most this many (1 to [`LIMITE_MAXIMO`]; default [`LIMITE_POR_DEFECTO`]).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

#[utoipa::path(get, path = "/tracking/eventos/{id_campana}", tag = "tracking",
    params(("id_campana" = Uuid, Path, description = "The campaign"),
           ("limite" = Option<u32>, Query, description = "At most this many (1 to 500, default 100)"),
           ("desde" = Option<u32>, Query, description = "Skip this many")),
    responses(
        (status = 200, description = "The campaign's events, oldest first; `X-Total-Count` says how many it has in all",
         body = Vec<EventoRegistrado>, headers(("X-Total-Count" = i64, description = "Every event of the campaign"))),
        (status = 400, description = "Not a UUID, or a bad number", body = Error),
        (status = 404, description = "The campaign has no tracking", body = Error),
        (status = 503, description = "The database does not answer", body = Error)))]
async fn listar(
    State(store): State<Arc<dyn Eventos>>,
    Path(id): Path<String>,
    pagina: Result<Query<Pagina>, QueryRejection>,
) -> Response {
    let id = match id_campana(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let pagina = match pagina {
        Ok(Query(p)) => p,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("parámetros inválidos: {}", e.body_text())),
    };
    let limite = pagina.limite.unwrap_or(LIMITE_POR_DEFECTO).clamp(1, LIMITE_MAXIMO);
    match store.listar(id, limite, pagina.desde.unwrap_or(0)).await {
        Ok(Some((eventos, total))) => {
            let mut response = Json(eventos).into_response();
            response.headers_mut().insert("x-total-count", HeaderValue::from(total));
            response
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("la campaña {id} no tiene tracking")),
        Err(e) => unavailable(&e),
    }
}

#[utoipa::path(get, path = "/tracking/eventos/{id_campana}/resumen", tag = "tracking",
    params(("id_campana" = Uuid, Path, description = "The campaign")),
    responses(
        (status = 200, description = "The campaign's counters and latest events", body = Resumen),
        (status = 400, description = "Not a UUID", body = Error),
        (status = 404, description = "The campaign has no tracking", body = Error),
        (status = 503, description = "The database does not answer", body = Error)))]
async fn resumen(State(store): State<Arc<dyn Eventos>>, Path(id): Path<String>) -> Response {
    let id = match id_campana(&id) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match store.resumen(id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("la campaña {id} no tiene tracking")),
        Err(e) => unavailable(&e),
    }
}

/// `POST /tracking/evento`, `GET /tracking/eventos/{id_campana}` and its `/resumen`.
pub fn router(store: Arc<dyn Eventos>) -> Router {
    Router::new()
        .route("/tracking/evento", post(registrar))
        .route("/tracking/eventos/{id_campana}", get(listar))
        .route("/tracking/eventos/{id_campana}/resumen", get(resumen))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(store)
}

// ---- The description ----------------------------------------------------------------------

/// The body of `POST /tracking/evento` (documentation of what [`validar`] accepts).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SolicitudEvento {
    /// The campaign; its tracking must be open (the campaign `activa`).
    id_campana: Uuid,
    /// What happened: 1 to 50 characters, e.g. `vista`, `clic`, `conversion`.
    #[schema(example = "clic")]
    tipo_evento: String,
    /// Free-form data, kept as given; optional.
    #[schema(value_type = Option<Object>)]
    datos: Option<Map<String, Value>>,
    /// The older name of `tipo_evento`; optional.
    tipo: Option<String>,
    /// A tracking code of this campaign (from its influencers' links); optional.
    codigo: Option<String>,
    /// A conversion's value in currency units, at most two decimals; conversions only.
    valor: Option<f64>,
}

/// An error.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Error {
    /// What is wrong.
    error: String,
}

/// One problem with one field.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorCampo {
    /// The field, e.g. `tipo_evento`.
    campo: String,
    /// What is wrong with it.
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

#[derive(OpenApi)]
#[openapi(
    paths(registrar, listar, resumen),
    components(schemas(SolicitudEvento, EventoRegistrado, Resumen, Error, Errores, ErrorCampo))
)]
struct EventosDoc;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    EventosDoc::openapi()
}
