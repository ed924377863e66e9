//! Keeps the campaign view up to date from the saga log. The engine reports every finished saga
//! through a channel (`app`'s observer: no I/O in the engine's path); the projector reads the saga's
//! final state and records it in the view. At start-up, and then every [`CATCH_UP_INTERVAL`], it catches up
//! with every campaign still `pendiente`: it starts a saga that was never started (a crash
//! between recording the campaign and starting its saga; `start` is idempotent on the saga id)
//! and projects sagas that ended while nobody listened.

use std::sync::Arc;
use std::time::Duration;

use saga_core::engine::Engine;
use saga_core::{SagaId, SagaState, SagaStatus};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::vista::{Final, Vista};
use super::SagaCrearCampana;

/// How often the projector catches up with campaigns still pending.
pub const CATCH_UP_INTERVAL: Duration = Duration::from_secs(10);

/// What the view records for a saga in its final state, if it is final.
pub fn final_de(state: &SagaState) -> Option<Final> {
    match state.status {
        SagaStatus::Completed => Some(Final::Activa(json!(state.outputs))),
        SagaStatus::Compensated | SagaStatus::Aborted => {
            let failure = state.failure.clone();
            Some(Final::Rechazada {
                codigo: failure.as_ref().map_or_else(|| "abortada".to_owned(), |f| f.code.clone()),
                motivo: failure.as_ref().map_or_else(|| "abandonada por un operador".to_owned(), |f| f.reason.clone()),
                paso: failure.and_then(|f| f.step),
            })
        }
        _ => None,
    }
}

/// Projects saga `id` into the view if it has ended.
pub async fn project(engine: &Engine, vista: &dyn Vista, id: SagaId) {
    match engine.get(id).await {
        Ok(Some(state)) => {
            if let Some(fin) = final_de(&state) {
                let evento = match super::eventos::de_saga(&state) {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(saga_id = %id, error = %e, "integration event cannot be built; the view is updated without it");
                        None
                    }
                };
                match vista.terminar(id, &fin, evento.as_ref()).await {
                    Ok(true) => info!(saga_id = %id, status = %state.status, "campaign view updated"),
                    Ok(false) => {}
                    Err(e) => warn!(saga_id = %id, error = %e, "campaign view not updated; the catch-up pass retries"),
                }
            }
        }
        Ok(None) => {}
        Err(e) => warn!(saga_id = %id, error = %e, "saga not readable; the catch-up pass retries"),
    }
}

/// One catch-up pass over the campaigns still pending.
pub async fn catch_up(engine: &Engine, vista: &dyn Vista) {
    let pendientes = match vista.pendientes(1_000).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "campaign view unreadable; next pass retries");
            return;
        }
    };
    for c in pendientes {
        match engine.get(c.saga_id).await {
            Ok(None) => match engine.start_saga::<SagaCrearCampana>(c.saga_id, &c.solicitud).await {
                Ok(_) => info!(saga_id = %c.saga_id, "started the saga of a campaign recorded before a crash"),
                Err(e) => warn!(saga_id = %c.saga_id, error = %e, "could not start a pending campaign's saga"),
            },
            Ok(Some(_)) => project(engine, vista, c.saga_id).await,
            Err(e) => warn!(saga_id = %c.saga_id, error = %e, "saga not readable"),
        }
    }
}

/// Runs the projector until `rx` closes: reacts to finished sagas, and catches up every
/// [`CATCH_UP_INTERVAL`].
pub async fn run(engine: Arc<Engine>, vista: Arc<dyn Vista>, mut rx: mpsc::UnboundedReceiver<SagaId>) {
    catch_up(&engine, vista.as_ref()).await;
    let mut tick = tokio::time::interval(CATCH_UP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            id = rx.recv() => match id {
                Some(id) => project(&engine, vista.as_ref(), id).await,
                None => return,
            },
            _ = tick.tick() => catch_up(&engine, vista.as_ref()).await,
        }
    }
}
