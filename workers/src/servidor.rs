//! A worker daemon: one participant (marca, influencer or tracking) with its own PostgreSQL
//! database, consuming its command topic over a broker transport and replying, plus an HTTP
//! server with `/health`, `/metrics` and, for tracking, the event intake.

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::routing::get;
use axum::{Json, Router};
use daemon::{metricas, Tareas};
use saga_core::log::sql::{migrate, pg_pool};
use saga_core::participant::{serve, CommandHandler, PgParticipant};
use saga_core::transport::Transport;
use serde_json::json;
use tokio::net::TcpListener;
use tracing::info;

use crate::marca::{Marca, MarcaSeed};
use crate::{influencer, marca, tracking, tracking_eventos};

/// Which participant a daemon runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servicio {
    /// Budgets.
    Marca,
    /// Bookings.
    Influencer,
    /// Tracking contexts and events.
    Tracking,
}

impl Servicio {
    /// The default command topic.
    pub fn topic(self) -> &'static str {
        match self {
            Servicio::Marca => "comandos.marca",
            Servicio::Influencer => "comandos.influencer",
            Servicio::Tracking => "comandos.tracking",
        }
    }
}

/// A running worker.
pub struct Running {
    /// Where its HTTP server listens.
    pub addr: SocketAddr,
    tareas: Tareas,
}

impl Running {
    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.tareas.parar().await;
    }
}

/// Starts a worker: migrates its database (and seeds brands, for marca), consumes `topic`.
pub async fn start(
    servicio: Servicio,
    database_url: &str,
    http: SocketAddr,
    topic: String,
    transport: Arc<dyn Transport>,
    marcas: &[MarcaSeed],
) -> anyhow::Result<Running> {
    let pool = pg_pool(database_url, 10).await.with_context(|| format!("connecting to the {servicio:?} database"))?;
    let mut app = Router::new();
    let handler: Arc<dyn CommandHandler> = match servicio {
        Servicio::Marca => {
            migrate(&marca::PG_MIGRATOR, &pool).await.context("migrating marca")?;
            Marca::seed_postgres(&pool, marcas).await.context("seeding brands")?;
            let p = PgParticipant::new(pool.clone(), Marca);
            p.migrate().await.context("migrating the participant tables")?;
            Arc::new(p)
        }
        Servicio::Influencer => {
            migrate(&influencer::PG_MIGRATOR, &pool).await.context("migrating influencer")?;
            let p = PgParticipant::new(pool.clone(), influencer::Influencers);
            p.migrate().await.context("migrating the participant tables")?;
            Arc::new(p)
        }
        Servicio::Tracking => {
            migrate(&tracking::PG_MIGRATOR, &pool).await.context("migrating tracking")?;
            let p = PgParticipant::new(pool.clone(), tracking::Tracking);
            p.migrate().await.context("migrating the participant tables")?;
            app = app.merge(tracking_eventos::router(Arc::new(tracking_eventos::PgEventos { pool: pool.clone() })));
            Arc::new(p)
        }
    };
    let mut tareas = Tareas::new();
    tareas.lanzar_con_parada("participant", serve(handler, transport, topic.clone(), tareas.parada()));
    let health_pool = pool.clone();
    let app = app
        .route(
            "/health",
            get(move || {
                let pool = health_pool.clone();
                async move {
                    match sqlx::query("SELECT 1").execute(&pool).await {
                        Ok(_) => (axum::http::StatusCode::OK, Json(json!({ "status": "ok", "database": "ok" }))),
                        Err(_) => (
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            Json(json!({ "status": "degraded", "database": "unreachable" })),
                        ),
                    }
                }
            }),
        )
        .merge(metricas::router(metricas::prometheus()));
    let listener = TcpListener::bind(http).await.with_context(|| format!("binding {http}"))?;
    let addr = listener.local_addr()?;
    tareas.lanzar_con_parada(
        "HTTP server",
        axum::serve(listener, app).with_graceful_shutdown(tareas.parada()).into_future(),
    );
    info!(?servicio, %addr, topic, "worker ready");
    Ok(Running { addr, tareas })
}
