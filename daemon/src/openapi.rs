//! The routes every daemon serves the same way, described for its `GET /openapi.json`:
//! `/health`, `/metrics` and `/openapi.json` itself. Each daemon merges this into the document of
//! its own routes ([`operations`]) and serves the result ([`router`]).

use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// The answer of `GET /health` (see [`crate::health`]).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Salud {
    /// `ok` when the database and the broker answered, else `degraded`.
    #[schema(example = "ok")]
    status: String,
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    database: String,
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    broker: String,
}

#[utoipa::path(get, path = "/health", tag = "operacion",
    responses((status = 200, description = "The database and the broker answer", body = Salud),
              (status = 503, description = "The database or the broker does not answer: which one", body = Salud)))]
#[allow(dead_code)]
fn health() {}

#[utoipa::path(get, path = "/metrics", tag = "operacion",
    responses((status = 200, description = "The process's metrics, Prometheus text format", content_type = "text/plain", body = String)))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/openapi.json", tag = "operacion",
    responses((status = 200, description = "This document", content_type = "application/json", body = Object)))]
#[allow(dead_code)]
fn openapi() {}

#[derive(OpenApi)]
#[openapi(paths(health, metrics, openapi), components(schemas(Salud)))]
struct Operations;

/// `/health`, `/metrics` and `/openapi.json`, described.
pub fn operations() -> utoipa::openapi::OpenApi {
    Operations::openapi()
}

/// `GET /openapi.json` answering `doc` (serialized once, here).
pub fn router(doc: &utoipa::openapi::OpenApi) -> Router {
    // An OpenApi value always serializes; an empty body would be the visible sign if not.
    let body = Bytes::from(serde_json::to_vec(doc).unwrap_or_default());
    Router::new().route(
        "/openapi.json",
        get(move || std::future::ready(([(header::CONTENT_TYPE, "application/json")], body.clone()))),
    )
}
