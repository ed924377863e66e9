//! Bearer-token access to a daemon's HTTP API, the same for the orchestrator, every worker daemon
//! and the embedded mode: with a token configured (`api_token`, `ALPES__API_TOKEN`), every route
//! but [`OPEN`] answers `401` unless the request carries `Authorization: Bearer <token>`; without
//! one the API is open (the embedded mode's default). The check runs before any handler, so a
//! refused request starts nothing. The token is a [`SecretString`]: it never prints, it is
//! compared in constant time (SHA-256 of both sides, so not even its length leaks), and neither
//! the refusal's body nor its log line carries what the client sent.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The configuration key of the token (`ALPES__API_TOKEN`).
pub const KEY: &str = "api_token";

/// Routes answered without a token: a supervisor's health probe and Prometheus's scrape, which
/// carry no credentials and reveal nothing a caller could act on (no data, no saga).
pub const OPEN: [&str; 2] = ["/health", "/metrics"];

/// A configured token that no client could send. Says why without the token itself.
#[derive(Debug, thiserror::Error)]
#[error("the API token ({KEY}) must be visible ASCII characters, without spaces")]
pub struct InvalidToken;

/// The `WWW-Authenticate` challenge of a `401`.
const CHALLENGE: &str = "Bearer realm=\"alpes\"";

/// Who may call a daemon's HTTP API: anyone ([`Access::open`]) or the holders of one bearer
/// token ([`Access::bearer`]). Cheap to clone; prints without the token.
#[derive(Clone, Default)]
pub struct Access {
    /// SHA-256 of the token, what requests are compared against; `None`: open.
    digest: Option<[u8; 32]>,
    /// The token itself, for the daemon's own calls to other services ([`Access::authorization`]).
    token: Option<Arc<SecretString>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.required() { "Access(bearer token required)" } else { "Access(open)" })
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Access {
    /// No token: every route is open.
    pub fn open() -> Self {
        Self::default()
    }

    /// Every route but [`OPEN`] requires `token`. An empty token is no token (an empty
    /// `ALPES__API_TOKEN` leaves the API open, as an unset one does). A token is visible ASCII
    /// (no spaces or control characters), what an `Authorization` header can carry: any other
    /// could never be sent, so it is refused at start-up rather than locking every client out.
    pub fn bearer(token: SecretString) -> Result<Self, InvalidToken> {
        let text = token.expose_secret();
        if text.is_empty() {
            return Ok(Self::open());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidToken);
        }
        Ok(Self { digest: Some(digest(text.as_bytes())), token: Some(Arc::new(token)) })
    }

    /// From a configuration's optional token.
    pub fn from_config(token: Option<SecretString>) -> Result<Self, InvalidToken> {
        token.map_or_else(|| Ok(Self::open()), Self::bearer)
    }

    /// Whether a token is required.
    pub fn required(&self) -> bool {
        self.digest.is_some()
    }

    /// The `Authorization` header this daemon sends to the services it calls (they share the
    /// deployment's token), marked sensitive so HTTP clients never log it; `None` when open.
    pub fn authorization(&self) -> Option<HeaderValue> {
        let token = self.token.as_ref()?;
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Whether `headers` carry the token (always, when open).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.digest else { return true };
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| bearer_token(v.as_bytes())) else {
            return false;
        };
        bool::from(digest(given).ct_eq(expected))
    }

    /// `router` with every route but [`OPEN`] behind the token (unchanged when open). Apply it
    /// last, so it is the outermost layer: nothing else runs for a refused request.
    pub fn protect(&self, router: Router) -> Router {
        if !self.required() {
            return router;
        }
        router.layer(axum::middleware::from_fn_with_state(self.clone(), check))
    }
}

/// The token of an `Authorization: Bearer <token>` value (the scheme in any case).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii())
}

async fn check(State(access): State<Access>, request: Request, next: Next) -> Response {
    if OPEN.contains(&request.uri().path()) || access.allows(request.headers()) {
        return next.run(request).await;
    }
    let missing = !request.headers().contains_key(header::AUTHORIZATION);
    // What the client sent is neither logged nor echoed: only whether it sent anything.
    tracing::warn!(method = %request.method(), path = request.uri().path(), missing, "request refused: no valid bearer token");
    let message = if missing {
        "se requiere un token: envíe la cabecera Authorization: Bearer <token>"
    } else {
        "el token no es válido"
    };
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({ "error": message }))).into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(CHALLENGE));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_the_token_passes() {
        let access = Access::bearer("s3cr3t-token".into()).unwrap();
        assert!(access.allows(&headers("Bearer s3cr3t-token")));
        assert!(access.allows(&headers("bearer s3cr3t-token")));
        for wrong in ["Bearer s3cr3t-toke", "Bearer s3cr3t-token2", "Bearer ", "Basic s3cr3t-token", "s3cr3t-token", ""]
        {
            assert!(!access.allows(&headers(wrong)), "{wrong:?} passed");
        }
        assert!(!access.allows(&HeaderMap::new()));
        assert!(Access::open().allows(&HeaderMap::new()));
        assert!(!Access::bearer("".into()).unwrap().required(), "an empty token leaves the API open");
        for unsendable in ["two words", "tab\t", "ñandú", " lead"] {
            let e = Access::bearer(unsendable.into()).unwrap_err();
            assert!(!e.to_string().contains(unsendable));
        }
    }

    #[test]
    fn the_token_never_prints() {
        let access = Access::bearer("s3cr3t-token".into()).unwrap();
        assert!(!format!("{access:?}").contains("s3cr3t"));
        let value = access.authorization().unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cr3t"), "{value:?}");
    }
}
