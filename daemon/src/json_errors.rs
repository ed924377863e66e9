//! Every error a daemon answers is JSON, `{"error": "..."}`, as its own handlers answer: axum's
//! rejections (a body over the limit, a path segment that is not valid UTF-8, a query string
//! that does not parse), an unknown route and a method a route does not take come out of the
//! framework as plain text or an empty body, and [`layer`] rewrites them, keeping their status
//! and headers (`Allow`, `Retry-After`, `WWW-Authenticate`).

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

/// Most of a plain-text error body kept as its message: axum's are one short line.
const MAX_TEXT: usize = 4 * 1024;

/// `router` with every error answer in JSON.
pub fn layer(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(rewrite))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/problem+json"))
}

async fn rewrite(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(&response) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match status {
        StatusCode::NOT_FOUND if text.is_empty() => format!("no existe la ruta {method} {path}"),
        StatusCode::METHOD_NOT_ALLOWED => format!("la ruta {path} no admite el método {method}"),
        StatusCode::PAYLOAD_TOO_LARGE => "el cuerpo de la solicitud supera el tamaño máximo de esta ruta".to_owned(),
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
        _ => text,
    };
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(body))
}
