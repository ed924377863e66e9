//! tracking's event intake: views, clicks and conversions of an active campaign
//! (`POST /tracking/evento`) and their counters (`GET /tracking/eventos/{id_campana}`). Events for
//! an unknown campaign, a closed context or a code of another campaign are refused with a clear
//! error and record nothing.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use schemas::Centavos;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

/// A conversion's value is below this many centavos (ten billion in the currency).
pub const MAX_VALOR_CENTAVOS: i64 = 1_000_000_000_000;

/// The kinds of event tracking counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TipoEvento {
    /// The content was seen.
    Vista,
    /// A tracking link was followed.
    Clic,
    /// A sale or sign-up was attributed.
    Conversion,
}

impl TipoEvento {
    fn as_str(self) -> &'static str {
        match self {
            TipoEvento::Vista => "vista",
            TipoEvento::Clic => "clic",
            TipoEvento::Conversion => "conversion",
        }
    }
}

/// A valid event.
#[derive(Clone, Debug, PartialEq)]
pub struct Evento {
    /// The campaign.
    pub id_campana: Uuid,
    /// What happened.
    pub tipo: TipoEvento,
    /// The influencer's tracking code, if the event came through a link.
    pub codigo: Option<String>,
    /// A conversion's value, in minor units.
    pub valor_centavos: Option<i64>,
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
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resumen {
    /// The campaign.
    pub id_campana: Uuid,
    /// Its tracking context.
    pub id_tracking: Uuid,
    /// `abierto` or `cerrado`.
    pub estado: String,
    /// Counts per kind.
    pub vistas: i64,
    /// Clicks.
    pub clics: i64,
    /// Conversions.
    pub conversiones: i64,
    /// Sum of conversion values, minor units.
    pub valor_centavos: i64,
    /// The latest events, newest first (at most 50).
    pub recientes: Vec<Value>,
}

/// Storage of tracking events.
#[async_trait]
pub trait Eventos: Send + Sync + 'static {
    /// Records an event, or says why not.
    async fn registrar(&self, evento: &Evento) -> Result<Result<Uuid, Rechazo>, sqlx::Error>;
    /// A campaign's counters; `None` if it has no tracking context.
    async fn resumen(&self, id_campana: Uuid) -> Result<Option<Resumen>, sqlx::Error>;
}

type Reciente = (Uuid, String, Option<String>, Option<i64>, DateTime<Utc>);

macro_rules! sql_eventos {
    ($(#[$meta:meta])* $name:ident, $pool:ty) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            /// The tracking database.
            pub pool: $pool,
        }

        #[async_trait]
        impl Eventos for $name {
            async fn registrar(&self, e: &Evento) -> Result<Result<Uuid, Rechazo>, sqlx::Error> {
                let contexto: Option<(Uuid, String)> =
                    sqlx::query_as("SELECT id_tracking, estado FROM contexto_tracking WHERE id_campana = $1")
                        .bind(e.id_campana)
                        .fetch_optional(&self.pool)
                        .await?;
                let Some((id_tracking, estado)) = contexto else { return Ok(Err(Rechazo::CampanaDesconocida)) };
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
                let id = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO evento_tracking (id_evento, id_tracking, codigo, tipo, valor_centavos, ocurrido_en) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id)
                .bind(id_tracking)
                .bind(&e.codigo)
                .bind(e.tipo.as_str())
                .bind(e.valor_centavos)
                .bind(Utc::now())
                .execute(&self.pool)
                .await?;
                Ok(Ok(id))
            }

            async fn resumen(&self, id_campana: Uuid) -> Result<Option<Resumen>, sqlx::Error> {
                let contexto: Option<(Uuid, String)> =
                    sqlx::query_as("SELECT id_tracking, estado FROM contexto_tracking WHERE id_campana = $1")
                        .bind(id_campana)
                        .fetch_optional(&self.pool)
                        .await?;
                let Some((id_tracking, estado)) = contexto else { return Ok(None) };
                let counts: Vec<(String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT tipo, COUNT(*), CAST(SUM(valor_centavos) AS BIGINT) FROM evento_tracking WHERE id_tracking = $1 GROUP BY tipo",
                )
                .bind(id_tracking)
                .fetch_all(&self.pool)
                .await?;
                let count = |t: &str| counts.iter().find(|(k, _, _)| k == t).map_or(0, |(_, n, _)| *n);
                let valor = counts.iter().find(|(k, _, _)| k == "conversion").and_then(|(_, _, v)| *v).unwrap_or(0);
                let recientes: Vec<Reciente> = sqlx::query_as(
                    "SELECT id_evento, tipo, codigo, valor_centavos, ocurrido_en FROM evento_tracking \
                     WHERE id_tracking = $1 ORDER BY ocurrido_en DESC LIMIT 50",
                )
                .bind(id_tracking)
                .fetch_all(&self.pool)
                .await?;
                Ok(Some(Resumen {
                    id_campana,
                    id_tracking,
                    estado,
                    vistas: count("vista"),
                    clics: count("clic"),
                    conversiones: count("conversion"),
                    valor_centavos: valor,
                    recientes: recientes
                        .into_iter()
                        .map(|(id, tipo, codigo, valor, at)| json!({ "id_evento": id, "tipo": tipo, "codigo": codigo, "valor_centavos": valor, "ocurrido_en": at }))
                        .collect(),
                }))
            }
        }
    };
}

sql_eventos!(
    /// Tracking events in PostgreSQL.
    PgEventos,
    PgPool
);
sql_eventos!(
    /// Tracking events in SQLite (the embedded mode).
    SqliteEventos,
    SqlitePool
);

/// Validates an event body: `{"id_campana": uuid, "tipo": "vista"|"clic"|"conversion",
/// "codigo": optional text, "valor": optional number > 0 (conversions only, two decimals)}`.
pub fn validar(body: &Value) -> Result<Evento, Vec<Value>> {
    let mut errores = Vec::new();
    let mut fail = |campo: &str, error: &str| errores.push(json!({ "campo": campo, "error": error }));
    let id_campana = match body.get("id_campana").and_then(Value::as_str).map(Uuid::parse_str) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            fail("id_campana", "debe ser un UUID");
            None
        }
        None => {
            fail("id_campana", "es obligatorio (un UUID)");
            None
        }
    };
    let tipo = match body.get("tipo").and_then(Value::as_str) {
        Some("vista") => Some(TipoEvento::Vista),
        Some("clic") => Some(TipoEvento::Clic),
        Some("conversion") => Some(TipoEvento::Conversion),
        _ => {
            fail("tipo", "debe ser vista, clic o conversion");
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
    if valor_centavos.is_some() && tipo.is_some_and(|t| t != TipoEvento::Conversion) {
        fail("valor", "solo una conversión tiene valor");
    }
    match (id_campana, tipo) {
        (Some(id_campana), Some(tipo)) if errores.is_empty() => Ok(Evento { id_campana, tipo, codigo, valor_centavos }),
        _ => Err(errores),
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

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
        Ok(Ok(id)) => (StatusCode::CREATED, Json(json!({ "id_evento": id }))).into_response(),
        Ok(Err(Rechazo::CampanaDesconocida)) => {
            error(StatusCode::NOT_FOUND, format!("la campaña {} no tiene tracking activo", evento.id_campana))
        }
        Ok(Err(Rechazo::ContextoCerrado)) => {
            error(StatusCode::CONFLICT, format!("el tracking de la campaña {} está cerrado", evento.id_campana))
        }
        Ok(Err(Rechazo::CodigoAjeno)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("el código no pertenece a la campaña {}", evento.id_campana),
        ),
        Err(e) => {
            tracing::error!(error = %e, "tracking events");
            error(StatusCode::SERVICE_UNAVAILABLE, "la base de datos no responde; inténtelo de nuevo".into())
        }
    }
}

async fn resumen(State(store): State<Arc<dyn Eventos>>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("el id de campaña debe ser un UUID, no {id:?}"));
    };
    match store.resumen(id).await {
        Ok(Some(r)) => Json(r).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("la campaña {id} no tiene tracking")),
        Err(e) => {
            tracing::error!(error = %e, "tracking events");
            error(StatusCode::SERVICE_UNAVAILABLE, "la base de datos no responde; inténtelo de nuevo".into())
        }
    }
}

/// `POST /tracking/evento` and `GET /tracking/eventos/{id_campana}`.
pub fn router(store: Arc<dyn Eventos>) -> Router {
    Router::new()
        .route("/tracking/evento", post(registrar))
        .route("/tracking/eventos/{id_campana}", get(resumen))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(store)
}
