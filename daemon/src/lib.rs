//! What every Alpes daemon (the orchestrator, the workers) does the same way: access by bearer
//! token ([`access`]), logging
//! (human by default, JSON with `ALPES_LOG_FORMAT=json`), layered configuration
//! ([`config`]: defaults, TOML file, `ALPES__…` variables, and the list of variables read),
//! secrets in configuration that never print, Ctrl-C/SIGTERM shutdown (a second Ctrl-C exits at
//! once), `GET /metrics`, and the description of those routes for `GET /openapi.json`
//! ([`openapi`]), and error answers in JSON whatever produced them ([`json_errors`]).

pub mod access;
pub mod config;
pub mod json_errors;
pub mod metrics;
pub mod openapi;

use std::fmt;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The keys of the JSON object `body` that are not in `known`, sorted (none when
/// `body` is not an object). Request validators refuse them: a misspelt optional field would
/// otherwise be dropped without a word, and a client that sends a field the API does not take
/// (an id, a state) learns at once that it is not honoured.
pub fn unknown_fields<'a>(body: &'a serde_json::Value, known: &[&str]) -> Vec<&'a str> {
    match body.as_object() {
        Some(fields) => fields.keys().map(String::as_str).filter(|k| !known.contains(k)).collect(),
        None => Vec::new(),
    }
}

/// What a request validator says of a field [`unknown_fields`] found.
pub const UNKNOWN_FIELD: &str = "no es un campo de esta solicitud";

/// The SQL `LIKE` pattern (with `ESCAPE '\\'`) that finds `text` anywhere, ignoring case: lower
/// case, its `%`, `_` and `\\` escaped; `None` for blank text. The pattern is bound as a
/// parameter, never spliced into SQL.
pub fn like_pattern(text: &str) -> Option<String> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut p = String::from("%");
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    Some(p)
}

/// Sets up the one tracing subscriber: `RUST_LOG` filters (default `info,sqlx=warn`),
/// `ALPES_LOG_FORMAT=json` switches to JSON lines.
pub fn init_logging() {
    let json = std::env::var("ALPES_LOG_FORMAT").is_ok_and(|f| f == "json");
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A configuration value that must never be printed (a database URL with its password): it
/// deserializes from a plain string, prints as `SecretBox<str>([REDACTED])`, and gives its value
/// only through [`ExposeSecret::expose_secret`]. Re-exported so the daemons share one `secrecy`.
pub use secrecy::{ExposeSecret, SecretString};

/// Completes on Ctrl-C or SIGTERM; after it, a second Ctrl-C exits the process at once.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down (Ctrl-C again to exit at once)");
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

/// The tasks of a running daemon, stopped together: each task either watches
/// [`Tasks::stop_signal`] itself (to drain gracefully, [`Tasks::spawn`]) or is cancelled when the
/// stop comes ([`Tasks::spawn_until_stopped`]). A task's error or panic is logged; the daemon
/// goes on. Dropping the tasks without [`Tasks::stop`] signals the stop without waiting.
pub struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Default for Tasks {
    fn default() -> Self {
        Self::new()
    }
}

impl Tasks {
    /// No tasks yet.
    pub fn new() -> Self {
        Self { stop: CancellationToken::new(), tracker: TaskTracker::new() }
    }

    /// A future that completes when the daemon stops: hand it to what drains gracefully.
    pub fn stop_signal(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stop.clone().cancelled_owned()
    }

    /// Runs `task`, which watches [`Tasks::stop_signal`] itself, and logs its error.
    pub fn spawn<E: fmt::Display>(
        &self,
        what: &'static str,
        task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) {
        self.supervise(what, async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "{what} stopped");
            }
        });
    }

    /// Runs `task` until it ends or the daemon stops, whichever comes first.
    pub fn spawn_until_stopped(&self, what: &'static str, task: impl std::future::Future + Send + 'static) {
        let stop = self.stop.clone();
        self.supervise(what, async move {
            stop.run_until_cancelled_owned(task).await;
        });
    }

    /// Runs `task` on its own tokio task, tracked, and logs it if it panics.
    fn supervise(&self, what: &'static str, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let task = tokio::spawn(task);
        self.tracker.spawn(async move {
            match task.await {
                Err(e) if e.is_panic() => tracing::error!(error = %e, "{what} panicked"),
                // Cancelled: the runtime is shutting down.
                _ => {}
            }
        });
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A running daemon: where its HTTP server listens, and its tasks.
pub struct Running {
    /// Where the HTTP server listens.
    pub addr: std::net::SocketAddr,
    tasks: Tasks,
}

impl Running {
    /// A daemon serving on `addr` with `tasks`.
    pub fn new(addr: std::net::SocketAddr, tasks: Tasks) -> Self {
        Self { addr, tasks }
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.tasks.stop().await;
    }
}

/// The answer of a daemon's `GET /health`: 200 when its database and its broker both answered,
/// else 503, with which one did not (`{"status", "database", "broker"}`).
pub fn health<A, B>(
    database: &Result<A, impl fmt::Display>,
    broker: &Result<B, impl fmt::Display>,
) -> axum::response::Response {
    health_of(&[Check::reachable("database", database), Check::reachable("broker", broker)])
}

/// One thing a daemon's `/health` looks at: its name in the answer, and what is wrong with it,
/// if anything.
pub struct Check {
    name: &'static str,
    failure: Option<(&'static str, String)>,
}

impl Check {
    /// Something that must answer (a database, a broker): `ok`, or `unreachable` with the error.
    pub fn reachable<T>(name: &'static str, result: &Result<T, impl fmt::Display>) -> Self {
        Self { name, failure: result.as_ref().err().map(|e| ("unreachable", e.to_string())) }
    }

    /// Something that must be running (the saga engine): `ok`, or `down` with why.
    pub fn running(name: &'static str, why_not: Option<String>) -> Self {
        Self { name, failure: why_not.map(|why| ("down", why)) }
    }
}

/// The answer of a daemon's `GET /health` for any list of checks: 200 when every check passed,
/// else 503; the body names each check (`ok` or what failed) beside `status` (`ok` or
/// `degraded`). Each failure is logged.
pub fn health_of(checks: &[Check]) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let mut body = serde_json::Map::new();
    for check in checks {
        let word = match &check.failure {
            None => "ok",
            Some((word, why)) => {
                tracing::error!(error = %why, "health: {} {word}", check.name);
                word
            }
        };
        body.insert(check.name.to_owned(), serde_json::Value::from(word));
    }
    let ready = checks.iter().all(|c| c.failure.is_none());
    body.insert("status".to_owned(), serde_json::Value::from(if ready { "ok" } else { "degraded" }));
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[test]
    fn a_secret_never_prints() {
        #[derive(Debug, Deserialize)]
        struct Config {
            database_url: SecretString,
        }
        let c: Config = serde_json::from_str(r#"{"database_url": "postgres://alpes:hunter2@db/alpes"}"#)
            .expect("a secret deserializes from a string");
        assert!(!format!("{c:?}").contains("hunter2"), "{c:?}");
        assert_eq!(c.database_url.expose_secret(), "postgres://alpes:hunter2@db/alpes");
    }

    #[tokio::test]
    async fn stop_drains_the_tasks_that_watch_it_and_cancels_the_others() {
        let tasks = Tasks::new();
        let (drained, mut drained_rx) = tokio::sync::oneshot::channel::<()>();
        let stop = tasks.stop_signal();
        tasks.spawn::<std::convert::Infallible>("graceful", async move {
            stop.await;
            // Draining takes a while; stop waits for it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            let _ = drained.send(());
            Ok(())
        });
        let (cancelled, mut cancelled_rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn_until_stopped("forever", async move {
            let _dropped_on_cancel = cancelled;
            std::future::pending::<()>().await;
        });
        tasks.spawn_until_stopped("panics", async { panic!("a task panicking on purpose") });
        tokio::time::timeout(std::time::Duration::from_secs(5), tasks.stop()).await.expect("stop returns");
        assert!(drained_rx.try_recv().is_ok(), "the graceful task had drained when stop returned");
        assert!(
            matches!(cancelled_rx.try_recv(), Err(tokio::sync::oneshot::error::TryRecvError::Closed)),
            "the task that ignores the stop was cancelled"
        );
    }
}
