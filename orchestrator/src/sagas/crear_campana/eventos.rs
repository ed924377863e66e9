//! The integration events of CrearCampaña: `CampanaCreada` when the saga completes,
//! `CampanaRechazada` when it was compensated or abandoned. Fat events: everything a consumer
//! needs (the campaign, its brand, dates, budget, every influencer with its booking and tracking
//! link), so no consumer calls back.
//!
//! They are written to an outbox (`evento_saliente`) in the same transaction as the campaign's
//! final state in the view, one per saga, and the relay ([`crate::outbox`]) publishes them: at
//! least once, consumers deduplicate on `id_evento`.

use saga_core::{ActionMessage, SagaState, SagaStatus, StepType};
use schemas::{
    CampanaCreada, CampanaRechazada, Envelope, Evento, EventoCampana, InfluencerContratado, MessageUnion,
    SolicitudCampana,
};
use uuid::Uuid;

use super::definicion::{CrearCampana, Influencers, Presupuesto, Tracking};

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
