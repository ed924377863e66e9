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
    /// `ok` when every check passed, else `degraded`.
    #[schema(example = "ok")]
    status: String,
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    database: String,
    /// `ok` or `unreachable`.
    #[schema(example = "ok")]
    broker: String,
    /// The orchestrator only: `ok`, or `down` when the saga engine is not running (stopped, or a
    /// task in a crash loop).
    #[schema(example = "ok")]
    engine: Option<String>,
}

#[utoipa::path(get, path = "/health", tag = "operacion",
    responses((status = 200, description = "The database and the broker answer (and, on the orchestrator, the saga engine runs)", body = Salud),
              (status = 503, description = "The database or the broker does not answer, or the engine is down: which one", body = Salud)))]
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

/// A schema's shape: without its descriptions and examples, which may differ between two services
/// that describe the same body.
fn shape(schema: &impl Serialize) -> Option<serde_json::Value> {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for key in ["description", "example", "examples"] {
                    map.remove(key);
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(schema).ok()?;
    strip(&mut v);
    Some(v)
}

/// Merges `other` into `doc`, refusing a schema that `doc` already names with another shape:
/// utoipa keeps the first of two schemas of one name, so a clash would describe one service's
/// bodies with another's.
pub fn merge(doc: &mut utoipa::openapi::OpenApi, other: utoipa::openapi::OpenApi) -> Result<(), String> {
    if let (Some(mine), Some(theirs)) = (&doc.components, &other.components) {
        for (name, schema) in &theirs.schemas {
            if let Some(existing) = mine.schemas.get(name) {
                if shape(existing) != shape(schema) {
                    return Err(format!("two different schemas are named {name} in one OpenAPI document"));
                }
            }
        }
    }
    doc.merge(other);
    Ok(())
}

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

/// Declares in `doc` that its routes need a bearer token (the daemon was started with one): a
/// `bearer` security scheme required by every operation, except `/health` and `/metrics`, which
/// stay open ([`crate::access::OPEN`]).
pub fn require_bearer(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
    let mut scheme = Http::new(HttpAuthScheme::Bearer);
    scheme.description = Some(format!(
        "The token this daemon was started with ({}); a missing or wrong one is 401",
        crate::config::variable(crate::access::KEY)
    ));
    doc.components.get_or_insert_with(Default::default).add_security_scheme("bearer", SecurityScheme::Http(scheme));
    doc.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
    for path in crate::access::OPEN {
        if let Some(operation) = doc.paths.paths.get_mut(path).and_then(|item| item.get.as_mut()) {
            // An empty requirement: no credentials.
            operation.security = Some(vec![SecurityRequirement::default()]);
        }
    }
}
