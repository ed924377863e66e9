//! The HTTP API every saga shares: sagas, their histories, operator actions, health, and the
//! OpenAPI document. Each saga adds its own routes (`sagas/<saga>/api.rs`).
//!
//! | route | what |
//! |---|---|
//! | `GET /sagas?estado=&tipo=&iniciada_antes=&limite=&desde=` | sagas, newest first, and how many there are per status |
//! | `GET /sagas/{id}` | a saga's state, its summary (next wake-up, timer failures), its whole history, with times, and its dead letters |
//! | `POST /sagas/{id}/retry`, `POST /sagas/{id}/abort` | operator actions (body `{"nota": "..."}`, optional) |
//! | `GET /health` | readiness: the database and the broker answer, the saga engine runs |
//! | `/dead-letters…` | dead letters: list, show, redrive ([`crate::dead_letters`]) |
//!
//! `GET /openapi.json` and `GET /metrics` are added by [`crate::app::build`]. Errors are JSON
//! `{"error": "..."}` (and `"errores": [...]` for field errors). Internal errors are logged and
//! answered with a generic message: nothing internal leaks. No request runs past its deadline
//! ([`with_deadline`], [`REQUEST_DEADLINE`]): it is answered `503`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use saga_core::dead_letters::DeadLetterStore;
use saga_core::engine::{Engine, EngineError};
use saga_core::log::ListQuery;
use saga_core::{SagaId, SagaStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{error, warn};
use uuid::Uuid;

/// Largest request body: the biggest valid request (100 influencers, long texts) is ~60 KiB.
pub const MAX_BODY: usize = 256 * 1024;

/// How long any request may run before it is answered `503`. Longer than the saga log's own
/// retry budget (about 6 s of backoff, see `EngineConfig::store_retry`), so an answer the
/// database can still give arrives; short enough that no client or proxy waits on a broker or
/// database outage for minutes. A request cut here may have written its saga already: a
/// campaign stays `pendiente` and the projector's catch-up starts it (`start` is idempotent).
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(15);

/// `router` with every request cut at `deadline`: answered `503` with a JSON error, like every
/// other error of the API, and logged.
pub fn with_deadline(router: Router, deadline: std::time::Duration) -> Router {
    router.layer(axum::middleware::from_fn_with_state(deadline, cut_at_deadline))
}

async fn cut_at_deadline(
    State(deadline): State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    match tokio::time::timeout(deadline, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            warn!(%method, path, deadline_ms = deadline.as_millis() as u64, "request cut at its deadline");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "la solicitud no terminó a tiempo; inténtelo de nuevo")
                .into_response()
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The saga engine.
    pub engine: Arc<Engine>,
    /// The dead letters recorded in the saga log's database.
    pub dead_letters: DeadLetterStore,
}

/// The shared routes.
pub fn router(engine: Arc<Engine>, dead_letters: DeadLetterStore) -> Router {
    Router::new()
        .route("/sagas", get(listar_sagas))
        .route("/sagas/{id}", get(obtener_saga))
        .route("/sagas/{id}/retry", post(reintentar_saga))
        .route("/sagas/{id}/abort", post(abortar_saga))
        .route("/health", get(health))
        .merge(crate::dead_letters::routes())
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(AppState { engine, dead_letters })
}

/// An API error: a status and a message meant for the client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

/// What a 503 asks clients to wait before retrying, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;

impl ApiError {
    /// `{"error": message}` with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, body: json!({ "error": message.into() }) }
    }

    /// Any body with `status`.
    pub fn with_body(status: StatusCode, body: Value) -> Self {
        Self { status, body }
    }

    /// A dependency that does not answer: `503` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// A failed database call of a view: `503` with `Retry-After` when the database is
    /// unreachable, busy or shutting down (retrying later may succeed), else an internal error.
    pub fn database(context: &str, e: &sqlx::Error) -> Self {
        if database_unavailable(e) {
            tracing::warn!(error = %e, "{context}: database unavailable");
            Self::unavailable("la base de datos no responde; inténtelo de nuevo")
        } else {
            Self::internal(context, e)
        }
    }

    /// An internal error: logged with `context`, answered with a generic message.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        error!(error = %e, "{context}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "error interno; inténtelo de nuevo")
    }
}

/// Whether `e` says the database is unavailable for now (connection lost or refused, pool
/// exhausted or closed, server shutting down or out of resources, SQLite busy), rather than that
/// the statement or the data is wrong.
pub fn database_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d.code().is_some_and(|code| {
            // PostgreSQL: 08 connection exception, 53 insufficient resources, 55 object not in
            // prerequisite state (a database not accepting connections, a lock not available),
            // 57 operator intervention (admin shutdown, cannot connect now). SQLite: 5 busy,
            // 6 locked.
            ["08", "53", "55", "57"].iter().any(|class| code.starts_with(class)) || code == "5" || code == "6"
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
        }
        response
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
                ApiError::unavailable("la base de datos no responde; inténtelo de nuevo")
            }
            other => ApiError::internal("engine error", other),
        }
    }
}

/// `raw` as a UUID, or a 400 naming `what`.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, format!("{what} debe ser un UUID, no {raw:?}")))
}

/// The query of a list route, or a 400 in the API's error shape (axum's own rejection is plain
/// text).
pub fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(p)| p)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("parámetros inválidos: {}", e.body_text())))
}

/// Paging and filters of `GET /sagas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsultaSagas {
    /// Only this status.
    pub estado: Option<String>,
    /// Only this saga type.
    pub tipo: Option<String>,
    /// Only sagas started at or before this (RFC 3339): older than an age.
    pub iniciada_antes: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

/// Paging and filter of the list routes.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pagina {
    /// Only this state.
    pub estado: Option<String>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

#[utoipa::path(get, path = "/sagas", tag = "sagas",
    params(("estado" = Option<String>, Query, description = "running, compensating, completed, compensated, stuck or aborted"),
           ("tipo" = Option<String>, Query, description = "Only this saga type, e.g. procesar_pago"),
           ("iniciada_antes" = Option<String>, Query, description = "Only sagas started at or before this instant (RFC 3339)"),
           ("limite" = Option<u32>, Query), ("desde" = Option<u32>, Query)),
    responses((status = 200, description = "`{sagas: [summary], limite, desde, por_estado: {status: count}}`, newest first; `por_estado` counts every saga in the log"),
              (status = 400, description = "Unknown `estado`, or a bad number", body = crate::openapi::Error),
              (status = 503, description = "The saga log does not answer", body = crate::openapi::Error)))]
pub(crate) async fn listar_sagas(
    State(s): State<AppState>,
    p: Result<Query<ConsultaSagas>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let p = query(p)?;
    let status = p
        .estado
        .as_deref()
        .map(str::parse::<SagaStatus>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let limit = p.limite.unwrap_or(50).clamp(1, 500);
    let offset = p.desde.unwrap_or(0);
    let q = ListQuery { status, saga_type: p.tipo, created_before: p.iniciada_antes, limit, offset };
    let sagas = s.engine.list(&q).await?;
    let stats = s.engine.store().stats().await.map_err(EngineError::from)?;
    let por_estado: serde_json::Map<String, Value> =
        stats.by_status.iter().map(|(status, n)| (status.as_str().to_owned(), json!(n))).collect();
    Ok(Json(json!({ "sagas": sagas, "limite": limit, "desde": offset, "por_estado": por_estado })))
}

/// The longest `GET /sagas/{id}?esperar_ms=` waits: well inside [`REQUEST_DEADLINE`], which
/// must leave room for the last read.
pub const MAX_ESPERA_MS: u64 = 10_000;

/// The wait of `GET /sagas/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Espera {
    /// Wait at most this long (0 to [`MAX_ESPERA_MS`]) for the saga to rest (or to go past
    /// `despues_de`) before answering.
    pub esperar_ms: Option<u64>,
    /// With `esperar_ms`: answer as soon as the saga's version is above this one.
    pub despues_de: Option<i64>,
    /// `true`: answer `{saga}` alone, without the summary, the history and the dead letters
    /// (three reads fewer, and a far smaller answer, for a client that only waits for the end).
    #[serde(default)]
    pub solo_saga: bool,
}

#[utoipa::path(get, path = "/sagas/{id}", tag = "sagas",
    params(("id" = Uuid, Path, description = "The saga id"),
           ("esperar_ms" = Option<u64>, Query, description = "Wait up to this many ms (at most 10000) for the saga to rest (completed, compensated, aborted or stuck) before answering; the answer is the saga as it is then"),
           ("despues_de" = Option<i64>, Query, description = "With esperar_ms: answer as soon as the saga's version is above this"),
           ("solo_saga" = Option<bool>, Query, description = "true: answer `{saga}` alone (no resumen, historia, dead_letters)")),
    responses((status = 200, description = "`{saga: state, resumen: summary (wake_at, wake_failures, wake_error), historia: [log entry with seq, at, event], dead_letters: [dead letter]}`; with solo_saga=true, `{saga: state}`"),
              (status = 400, description = "Not a UUID, or a bad wait", body = crate::openapi::Error),
              (status = 404, description = "No such saga", body = crate::openapi::Error)))]
pub(crate) async fn obtener_saga(
    State(s): State<AppState>,
    Path(id): Path<String>,
    espera: Result<Query<Espera>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let id = SagaId(parse_id(&id, "el id de saga")?);
    let espera = query(espera)?;
    if espera.despues_de.is_some() && espera.esperar_ms.is_none() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "despues_de solo tiene sentido con esperar_ms"));
    }
    let state = match espera.esperar_ms {
        Some(ms) if ms > MAX_ESPERA_MS => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("esperar_ms admite de 0 a {MAX_ESPERA_MS}, no {ms}"),
            ))
        }
        Some(ms) => s.engine.wait(id, espera.despues_de, std::time::Duration::from_millis(ms)).await?,
        None => s.engine.get(id).await?,
    };
    let state = state.ok_or(EngineError::NotFound(id))?;
    if espera.solo_saga {
        return Ok(Json(json!({ "saga": state })));
    }
    let summary = s.engine.summary(id).await?;
    let history = s.engine.history(id).await?;
    let dead_letters = crate::dead_letters::of_saga(&s.dead_letters, id).await?;
    Ok(Json(json!({ "saga": state, "resumen": summary, "historia": history, "dead_letters": dead_letters })))
}

/// Body of the operator routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
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
    responses((status = 200, description = "`{saga: state}`"),
              (status = 400, description = "Not a UUID, or a body that is not `{\"nota\": \"...\"}`", body = crate::openapi::Error),
              (status = 404, description = "No such saga", body = crate::openapi::Error),
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
    responses((status = 200, description = "`{saga: state}`"),
              (status = 400, description = "Not a UUID, or a body that is not `{\"nota\": \"...\"}`", body = crate::openapi::Error),
              (status = 404, description = "No such saga", body = crate::openapi::Error),
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

/// `GET /health` (described with the other daemons' in `daemon::openapi`).
pub(crate) async fn health(State(s): State<AppState>) -> Response {
    let (database, broker) = tokio::join!(s.engine.store().stats(), s.engine.transport().ready());
    let engine = s.engine.health();
    let engine_down = (!engine.running).then(|| {
        let tasks: Vec<String> = engine
            .tasks
            .iter()
            .map(|t| {
                format!(
                    "{} {:?} ({} panics in a row, last: {})",
                    t.task,
                    t.state,
                    t.panics_in_a_row,
                    t.last_panic.as_deref().unwrap_or("none")
                )
            })
            .collect();
        format!("saga engine not running: {}", tasks.join("; "))
    });
    daemon::health_of(&[
        daemon::Check::reachable("database", &database),
        daemon::Check::reachable("broker", &broker),
        daemon::Check::running("engine", engine_down),
    ])
}
