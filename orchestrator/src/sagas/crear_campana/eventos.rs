//! The integration events of CrearCampaña: `CampanaCreada` when the saga completes,
//! `CampanaRechazada` when it was compensated or abandoned. Fat events: everything a consumer
//! needs (the campaign, its brand, dates, budget, every influencer with its booking and tracking
//! link), so no consumer calls back.
//!
//! They are written to an outbox (`evento_saliente`) in the same transaction as the campaign's
//! final state in the view, one per saga, and a relay publishes them: at least once, consumers
//! deduplicate on `id_evento`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use saga_core::{ActionMessage, SagaState, SagaStatus, StepType};
use schemas::{
    CampanaCreada, CampanaRechazada, Envelope, Evento, EventoCampana, InfluencerContratado, MessageUnion,
    SolicitudCampana,
};
use tracing::{info, warn};
use uuid::Uuid;

use super::definicion::{CrearCampana, Influencers, Presupuesto, Tracking};
use super::vista::Vista;

/// The topic of campaign events (part of the message contract, like every topic name).
pub const TOPICO: &str = EventoCampana::TOPIC;

fn output<T: StepType>(state: &SagaState) -> Result<<T::Action as ActionMessage>::Output, String> {
    state
        .output::<T>()
        .map_err(|e| format!("output of {}: {e}", T::NAME))?
        .ok_or_else(|| format!("no output of {}", T::NAME))
}

/// The event a finished CrearCampaña saga publishes; `None` while it is not final.
pub fn de_saga(state: &SagaState) -> Result<Option<EventoCampana>, String> {
    let c: CrearCampana = serde_json::from_value(state.params.clone()).map_err(|e| format!("parameters: {e}"))?;
    let ocurrido_en = state.updated_at;
    let evento = match state.status {
        SagaStatus::Completed => {
            let presupuesto = output::<Presupuesto>(state)?;
            let reservas = output::<Influencers>(state)?;
            let tracking = output::<Tracking>(state)?;
            let influencers = c
                .influencers
                .iter()
                .zip(reservas.reservas)
                .zip(tracking.enlaces)
                .map(|((i, r), e)| InfluencerContratado {
                    nombre: i.nombre.clone(),
                    plataforma: i.plataforma.clone(),
                    seguidores: i.seguidores,
                    categoria: i.categoria.clone(),
                    id_influencer: r.id_influencer,
                    id_reserva: r.id_reserva,
                    codigo_tracking: e.codigo,
                    url_tracking: e.url,
                })
                .collect();
            Evento::CampanaCreada(CampanaCreada {
                id_campana: c.id_campana,
                nombre: c.nombre,
                descripcion: c.descripcion,
                tipo: c.tipo,
                fecha_inicio: c.fecha_inicio,
                fecha_fin: c.fecha_fin,
                presupuesto_centavos: c.presupuesto_centavos,
                marca: c.marca,
                id_reserva_presupuesto: presupuesto.id_reserva,
                influencers,
                id_tracking: tracking.id_tracking,
                ocurrido_en,
            })
        }
        SagaStatus::Compensated | SagaStatus::Aborted => {
            let failure = state.failure.clone();
            Evento::CampanaRechazada(CampanaRechazada {
                id_campana: c.id_campana,
                solicitud: SolicitudCampana {
                    nombre: c.nombre,
                    descripcion: c.descripcion,
                    tipo: c.tipo,
                    fecha_inicio: c.fecha_inicio,
                    fecha_fin: c.fecha_fin,
                    presupuesto_centavos: c.presupuesto_centavos,
                    marca: c.marca,
                    influencers: c.influencers,
                },
                paso_fallido: failure.as_ref().and_then(|f| f.step.clone()).unwrap_or_default(),
                codigo: failure.as_ref().map_or_else(|| "abortada".to_owned(), |f| f.code.clone()),
                motivo: failure.map_or_else(|| "abandonada por un operador".to_owned(), |f| f.reason),
                ocurrido_en,
            })
        }
        _ => return Ok(None),
    };
    let message_type = evento.message_type().to_owned();
    // The event id is derived from the saga's: every replica and every catch-up pass builds the
    // same event, and the outbox keeps one.
    let id_evento = Uuid::new_v5(&state.id.0, b"evento-campana");
    Ok(Some(EventoCampana { id_evento, saga_id: state.id.0, message_type, evento }))
}

/// Where events go.
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes one event; `Err` leaves it in the outbox for the next pass.
    async fn publish(&self, topico: &str, evento: &EventoCampana) -> Result<(), String>;
}

/// The embedded mode's publisher: there is no broker, so an event is checked against its Avro
/// schema and written to the log; the outbox keeps it, with its publication time.
pub struct LogPublisher;

#[async_trait]
impl Publisher for LogPublisher {
    async fn publish(&self, topico: &str, evento: &EventoCampana) -> Result<(), String> {
        schemas::encode(evento).map_err(|e| e.to_string())?;
        info!(topico, id_evento = %evento.id_evento, tipo = %evento.message_type, "integration event published to the log");
        Ok(())
    }
}

/// The distributed mode's publisher: the event, Avro-encoded, on the broker, with the
/// `EventoCampana` schema attached (so the registry holds it and consumers can read it by it)
/// and `id_evento`, `saga_id` and `message_type` in the message properties.
#[cfg(feature = "pulsar")]
pub struct BrokerPublisher(pub saga_pulsar::PulsarTransport);

#[cfg(feature = "pulsar")]
#[async_trait]
impl Publisher for BrokerPublisher {
    async fn publish(&self, topico: &str, evento: &EventoCampana) -> Result<(), String> {
        use saga_core::transport::codec::{SchemaKind, WireSchema};
        let payload = schemas::encode(evento).map_err(|e| e.to_string())?;
        let schema = WireSchema {
            kind: SchemaKind::Avro,
            definition: schemas::ParsedSchema::of::<EventoCampana>().json().to_owned(),
        };
        let properties = std::collections::HashMap::from([
            ("id_evento".to_owned(), evento.id_evento.to_string()),
            (saga_pulsar::property::SAGA_ID.to_owned(), evento.saga_id.to_string()),
            (saga_pulsar::property::MESSAGE_TYPE.to_owned(), evento.message_type.clone()),
        ]);
        self.0.publish(topico, Some(&schema), payload, properties).await.map_err(|e| e.to_string())?;
        info!(topico, id_evento = %evento.id_evento, tipo = %evento.message_type, "integration event published");
        Ok(())
    }
}

/// How often the relay looks at the outbox.
pub const RELAY_INTERVAL: Duration = Duration::from_millis(500);

/// One relay pass: publishes what the outbox holds unpublished to `topico`, oldest first.
pub async fn relay_once(vista: &dyn Vista, publisher: &dyn Publisher, topico: &str) -> usize {
    let pendientes = match vista.eventos_pendientes(100).await {
        Ok(p) => p,
        Err(e) => {
            warn!(error = %e, "outbox unreadable");
            return 0;
        }
    };
    let mut n = 0;
    for evento in pendientes {
        match publisher.publish(topico, &evento).await {
            Ok(()) => match vista.marcar_publicado(evento.id_evento, Utc::now()).await {
                Ok(()) => n += 1,
                Err(e) => warn!(error = %e, "event published but not marked; it will be published again"),
            },
            Err(e) => {
                warn!(id_evento = %evento.id_evento, error = %e, "event not published; next pass retries");
                break;
            }
        }
    }
    n
}

/// Runs the relay forever, publishing to `topico`.
pub async fn run(vista: Arc<dyn Vista>, publisher: Arc<dyn Publisher>, topico: String) {
    let mut tick = tokio::time::interval(RELAY_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        relay_once(vista.as_ref(), publisher.as_ref(), &topico).await;
    }
}
