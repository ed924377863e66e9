//! Dead letters an operator can act on, over HTTP: the orchestrator records the dead letters of
//! every topic it knows (its participants' command topics and its own reply topic, [`watched`])
//! in its saga-log database ([`saga_core::dead_letters`]), and these routes list, show and
//! redrive them.
//!
//! | route | what |
//! |---|---|
//! | `GET /dead-letters?topic=&saga_id=&estado=pending\|redriven&limite=&desde=` | `{dead_letters, total, limite, desde}`, newest first |
//! | `GET /dead-letters/{id}` | `{dead_letter}` |
//! | `POST /dead-letters/{id}/redrive` | publishes it again to its topic; `{dead_letter}` (body `{"nota": "..."}`, optional) |
//! | `POST /dead-letters/redrive?topic=T` | redrives every pending one of `T`; `{redriven: n}` |
//!
//! `GET /sagas/{id}` lists the saga's dead letters too (`crate::api`).

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use saga_core::dead_letters::{self, Carries, DeadLetterQuery, DeadLetterStore, Estado, RedriveError, Watched};
use saga_core::definition::SagaDefinition;
use saga_core::transport::TransportError;
use saga_core::SagaId;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{parse_id, query, ApiError, AppState};

/// The addresses whose dead letters the orchestrator records: every participant of `definitions`
/// (its command topic) and `reply_to` (its own replies).
pub fn watched<'a>(definitions: impl IntoIterator<Item = &'a SagaDefinition>, reply_to: &str) -> Vec<Watched> {
    let participants: BTreeSet<String> =
        definitions.into_iter().flat_map(|d| d.steps.iter().map(|s| s.participant.clone())).collect();
    let mut watched: Vec<Watched> =
        participants.into_iter().map(|address| Watched { address, carries: Carries::Commands }).collect();
    watched.push(Watched { address: reply_to.to_owned(), carries: Carries::Replies });
    watched
}

/// The dead-letter routes (the shared [`AppState`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/dead-letters", get(listar))
        .route("/dead-letters/redrive", post(redrive_topic))
        .route("/dead-letters/{id}", get(obtener))
        .route("/dead-letters/{id}/redrive", post(redrive))
}

/// The filter and page of `GET /dead-letters`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filtro {
    /// Only this original topic (`comandos.marca`).
    pub topic: Option<String>,
    /// Only this saga's.
    pub saga_id: Option<String>,
    /// `pending` or `redriven`.
    pub estado: Option<String>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

fn database(e: &sqlx::Error) -> ApiError {
    ApiError::database("dead letters", e)
}

/// A saga's dead letters, newest first (at most 100), for `GET /sagas/{id}`.
pub async fn of_saga(store: &DeadLetterStore, id: SagaId) -> Result<Value, ApiError> {
    let q = DeadLetterQuery { saga_id: Some(id), limit: 100, ..DeadLetterQuery::default() };
    let (records, _) = store.list(&q).await.map_err(|e| database(&e))?;
    Ok(json!(records))
}

#[utoipa::path(get, path = "/dead-letters", tag = "dead letters",
    params(("topic" = Option<String>, Query, description = "Only this original topic, e.g. comandos.marca"),
           ("saga_id" = Option<Uuid>, Query, description = "Only this saga's"),
           ("estado" = Option<String>, Query, description = "pending or redriven"),
           ("limite" = Option<u32>, Query, description = "1 to 500 (default 50)"), ("desde" = Option<u32>, Query)),
    responses((status = 200, description = "`{dead_letters: [dead letter], total, limite, desde}`, newest first", body = crate::openapi::ListaDeadLetters),
              (status = 400, description = "Unknown `estado`, a `saga_id` that is not a UUID, a bad number", body = crate::openapi::Error),
              (status = 503, description = "The database does not answer", body = crate::openapi::Error)))]
pub(crate) async fn listar(
    State(s): State<AppState>,
    f: Result<Query<Filtro>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let f = query(f)?;
    let estado = f
        .estado
        .as_deref()
        .map(str::parse::<Estado>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    let saga_id = f.saga_id.as_deref().map(|raw| parse_id(raw, "saga_id").map(SagaId)).transpose()?;
    let limit = f.limite.unwrap_or(50).clamp(1, 500);
    let offset = f.desde.unwrap_or(0);
    let q = DeadLetterQuery { topic: f.topic, saga_id, estado, limit, offset };
    let (records, total) = s.dead_letters.list(&q).await.map_err(|e| database(&e))?;
    Ok(Json(json!({ "dead_letters": records, "total": total, "limite": limit, "desde": offset })))
}

#[utoipa::path(get, path = "/dead-letters/{id}", tag = "dead letters",
    params(("id" = Uuid, Path, description = "The dead letter's id")),
    responses((status = 200, description = "`{dead_letter}`", body = crate::openapi::UnDeadLetter),
              (status = 400, description = "Not a UUID", body = crate::openapi::Error),
              (status = 404, description = "No such dead letter", body = crate::openapi::Error),
              (status = 503, description = "The database does not answer", body = crate::openapi::Error)))]
pub(crate) async fn obtener(State(s): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "el id de dead letter")?;
    let record = s.dead_letters.get(id).await.map_err(|e| database(&e))?.ok_or_else(|| not_found(id))?;
    Ok(Json(json!({ "dead_letter": record })))
}

fn not_found(id: uuid::Uuid) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("el dead letter {id} no existe"))
}

/// The optional `{"nota": "..."}` of a redrive.
fn nota(body: &Bytes) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let n: crate::api::Nota = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("el cuerpo debe ser {{\"nota\": \"...\"}}: {e}"))
    })?;
    Ok(n.nota.filter(|n| !n.trim().is_empty()))
}

fn redrive_error(e: RedriveError) -> ApiError {
    match e {
        RedriveError::NotFound(id) => not_found(id),
        RedriveError::Transport(TransportError::Codec(why)) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("no se puede volver a publicar: {why}"))
        }
        RedriveError::Transport(e) => {
            tracing::warn!(error = %e, "redrive: broker unavailable");
            ApiError::unavailable("el broker no responde; inténtelo de nuevo")
        }
        RedriveError::Database(e) => database(&e),
    }
}

#[utoipa::path(post, path = "/dead-letters/{id}/redrive", tag = "dead letters",
    params(("id" = Uuid, Path)), request_body(content = Option<crate::openapi::NotaOperador>),
    responses((status = 200, description = "Published again to its original topic (payload and properties, without the `dead_letter_*` ones); `{dead_letter}` with `redrives` counted. Safe to repeat: participants deduplicate by message id", body = crate::openapi::UnDeadLetter),
              (status = 400, description = "Not a UUID, or a body that is not `{\"nota\": \"...\"}`", body = crate::openapi::Error),
              (status = 404, description = "No such dead letter", body = crate::openapi::Error),
              (status = 422, description = "The transport cannot read the stored message back (the in-process transport's own format)", body = crate::openapi::Error),
              (status = 503, description = "The broker or the database does not answer; nothing recorded", body = crate::openapi::Error)))]
pub(crate) async fn redrive(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id, "el id de dead letter")?;
    let nota = nota(&body)?;
    let transport = s.engine.transport().clone();
    let record =
        dead_letters::redrive(&s.dead_letters, transport.as_ref(), id, nota.as_deref()).await.map_err(redrive_error)?;
    Ok(Json(json!({ "dead_letter": record })))
}

/// The topic of `POST /dead-letters/redrive`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeTopic {
    /// The original topic whose pending dead letters are redriven.
    pub topic: Option<String>,
}

#[utoipa::path(post, path = "/dead-letters/redrive", tag = "dead letters",
    params(("topic" = String, Query, description = "The original topic, e.g. comandos.marca")),
    request_body(content = Option<crate::openapi::NotaOperador>),
    responses((status = 200, description = "Every pending dead letter of the topic redriven, oldest first: `{redriven: n}`", body = crate::openapi::Redriven),
              (status = 400, description = "No `topic`, or a bad body", body = crate::openapi::Error),
              (status = 503, description = "The broker or the database does not answer (those redriven before it stay redriven)", body = crate::openapi::Error)))]
pub(crate) async fn redrive_topic(
    State(s): State<AppState>,
    t: Result<Query<DeTopic>, QueryRejection>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let topic = query(t)?
        .topic
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::new(StatusCode::BAD_REQUEST, "falta el parámetro topic"))?;
    let nota = nota(&body)?;
    let transport = s.engine.transport().clone();
    let n = dead_letters::redrive_topic(&s.dead_letters, transport.as_ref(), &topic, nota.as_deref())
        .await
        .map_err(redrive_error)?;
    Ok(Json(json!({ "redriven": n })))
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn a_broker_that_does_not_take_a_redrive_is_a_503_with_retry_after() {
        let r = redrive_error(RedriveError::Transport(TransportError::Unavailable("down".into()))).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.headers().contains_key(axum::http::header::RETRY_AFTER));
        let r = redrive_error(RedriveError::NotFound(uuid::Uuid::nil())).into_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = redrive_error(RedriveError::Transport(TransportError::Codec("x".into()))).into_response();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}
