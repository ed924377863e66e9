//! What every Alpes daemon (the orchestrator, the three workers) does the same way: logging
//! (human by default, JSON with `ALPES_LOG_FORMAT=json`), layered configuration
//! ([`configuracion`]: defaults, TOML file, `ALPES__…` variables, and the list of variables read),
//! secrets in configuration that never print, Ctrl-C/SIGTERM shutdown (a second Ctrl-C exits at
//! once), and `GET /metrics`.

pub mod configuracion;
pub mod metricas;

use std::fmt;

use serde::Deserialize;

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

/// A configuration value that must never be printed (a database URL with its password).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secreto(String);

impl Secreto {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secreto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secreto(***)")
    }
}

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

/// The tasks of a running daemon, stopped together: each task either watches [`Tareas::parada`]
/// itself (to drain gracefully) or is cancelled by [`Tareas::lanzar`] when the stop comes.
pub struct Tareas {
    stop: tokio::sync::watch::Sender<bool>,
    set: tokio::task::JoinSet<()>,
}

impl Default for Tareas {
    fn default() -> Self {
        Self::new()
    }
}

impl Tareas {
    /// No tasks yet.
    pub fn new() -> Self {
        Self { stop: tokio::sync::watch::channel(false).0, set: tokio::task::JoinSet::new() }
    }

    /// A future that completes when the daemon stops: hand it to what drains gracefully.
    pub fn parada(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.stop.subscribe();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    }

    /// Runs `task` until it ends or the daemon stops, whichever comes first.
    pub fn lanzar(&mut self, task: impl std::future::Future + Send + 'static) {
        let parada = self.parada();
        self.set.spawn(async move {
            tokio::select! {
                _ = task => {}
                _ = parada => {}
            }
        });
    }

    /// Runs `task`, which watches [`Tareas::parada`] itself, and logs its error.
    pub fn lanzar_con_parada<E: fmt::Display>(
        &mut self,
        what: &'static str,
        task: impl std::future::Future<Output = Result<(), E>> + Send + 'static,
    ) {
        self.set.spawn(async move {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "{what} stopped");
            }
        });
    }

    /// Stops every task and waits for them.
    pub async fn parar(mut self) {
        let _ = self.stop.send(true);
        while self.set.join_next().await.is_some() {}
    }
}

/// A running daemon: where its HTTP server listens, and its tasks.
pub struct Running {
    /// Where the HTTP server listens.
    pub addr: std::net::SocketAddr,
    tareas: Tareas,
}

impl Running {
    /// A daemon serving on `addr` with `tareas`.
    pub fn new(addr: std::net::SocketAddr, tareas: Tareas) -> Self {
        Self { addr, tareas }
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.tareas.parar().await;
    }
}

/// The answer of a daemon's `GET /health`: 200 when its database and its broker both answered,
/// else 503, with which one did not (`{"status", "database", "broker"}`).
pub fn salud<A, B>(
    database: &Result<A, impl fmt::Display>,
    broker: &Result<B, impl fmt::Display>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    if let Err(e) = database {
        tracing::error!(error = %e, "health: database unreachable");
    }
    if let Err(e) = broker {
        tracing::error!(error = %e, "health: broker unreachable");
    }
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let ready = database.is_ok() && broker.is_ok();
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "degraded" },
        "database": word(database.is_ok()),
        "broker": word(broker.is_ok()),
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secreto::new("postgres://alpes:hunter2@db/alpes");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "postgres://alpes:hunter2@db/alpes");
    }
}
