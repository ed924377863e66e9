//! Keeps a saga's view up to date from the saga log. The engine reports every finished saga
//! through a channel with the final state it wrote (`app`'s observer: no I/O in the engine's
//! path; a final state never changes, so no read of the log is needed); the projector has the
//! view record it ([`Projection::finish`]). At start-up, and then
//! every [`CATCH_UP_INTERVAL`], it walks every view entry still pending, page by page with a
//! cursor, so however many sagas are stuck it reaches them all: it starts a saga that was never
//! started (a crash between recording the request and starting its saga; `start` is idempotent
//! on the saga id) and projects sagas that ended while nobody listened. A saga whose end cannot be
//! recorded (its integration event cannot be built, the database refuses) stays pending in the
//! view, is counted (`projection_failures_total{saga}`) and logged, and is retried every pass.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_core::engine::Engine;
use saga_core::{SagaId, SagaState};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{info, warn};
use uuid::Uuid;

/// How often the projector catches up with entries still pending.
pub const CATCH_UP_INTERVAL: Duration = Duration::from_secs(10);

/// Entries read per page of a catch-up pass.
pub const PAGE: u32 = 500;

/// Where a catch-up pass is: the last entry seen, in (creation time, id) order.
pub type Cursor = (DateTime<Utc>, Uuid);

/// A view entry whose saga has not been seen to end.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its place in the catch-up order.
    pub cursor: Cursor,
    /// Its saga.
    pub saga_id: SagaId,
    /// The saga's parameters, to start it if it never started.
    pub params: Value,
}

/// A saga's view, as the projector keeps it.
#[async_trait]
pub trait Projection: Send + Sync + 'static {
    /// The saga type whose sagas this view follows.
    fn saga_type(&self) -> &'static str;
    /// Records how `state` ended, with its integration event, if it has ended; `Ok(false)`
    /// when there was nothing to do (not final, or recorded already).
    async fn finish(&self, state: &SagaState) -> Result<bool, String>;
    /// Entries still pending after `after`, in (creation time, id) order, at most `limit`.
    async fn pending(&self, after: Option<Cursor>, limit: u32) -> Result<Vec<Pending>, String>;
}

/// Records in the view how `state`, a final state the engine wrote, ended.
pub async fn project(view: &dyn Projection, state: &SagaState) {
    match view.finish(state).await {
        Ok(true) => info!(saga_id = %state.id, status = %state.status, saga_type = view.saga_type(), "view updated"),
        Ok(false) => {}
        Err(e) => {
            metrics::counter!("projection_failures_total", "saga" => view.saga_type()).increment(1);
            warn!(saga_id = %state.id, error = %e, "view not updated; the catch-up pass retries");
        }
    }
}

/// One catch-up pass over every entry still pending; returns how many it looked at.
pub async fn catch_up(engine: &Engine, view: &dyn Projection) -> usize {
    let mut after = None;
    let mut seen = 0;
    loop {
        let page = match view.pending(after, PAGE).await {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "view unreadable; next pass retries");
                return seen;
            }
        };
        let Some(last) = page.last() else { return seen };
        after = Some(last.cursor);
        let full = page.len() == PAGE as usize;
        seen += page.len();
        for p in page {
            match engine.get(p.saga_id).await {
                Ok(None) => match engine.start(view.saga_type(), p.saga_id, p.params).await {
                    Ok(_) => info!(saga_id = %p.saga_id, "started the saga of a request recorded before a crash"),
                    Err(e) => warn!(saga_id = %p.saga_id, error = %e, "could not start a pending request's saga"),
                },
                Ok(Some(state)) => {
                    if let Err(e) = view.finish(&state).await {
                        metrics::counter!("projection_failures_total", "saga" => view.saga_type()).increment(1);
                        warn!(saga_id = %p.saga_id, error = %e, "view not updated; next pass retries");
                    }
                }
                Err(e) => warn!(saga_id = %p.saga_id, error = %e, "saga not readable"),
            }
        }
        if !full {
            return seen;
        }
    }
}

/// Runs the projector until `rx` closes: reacts to finished sagas, and catches up every
/// [`CATCH_UP_INTERVAL`].
pub async fn run(engine: Arc<Engine>, view: Arc<dyn Projection>, mut rx: mpsc::UnboundedReceiver<SagaState>) {
    catch_up(&engine, view.as_ref()).await;
    let mut tick = tokio::time::interval(CATCH_UP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            finished = rx.recv() => match finished {
                Some(state) => project(view.as_ref(), &state).await,
                None => return,
            },
            _ = tick.tick() => { catch_up(&engine, view.as_ref()).await; }
        }
    }
}
