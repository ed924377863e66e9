//! The integration events of a campaign and the envelope of the events topic.

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{avro_message, AvroMessage, Envelope, Sealed};
use crate::comun::{Centavos, Influencer, Marca};
use crate::union::{message_union, MessageUnion};
use crate::SchemaError;

/// An influencer of a created campaign, with its booking and tracking data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfluencerContratado {
    /// Display name.
    pub nombre: String,
    /// Social platform.
    pub plataforma: String,
    /// Audience size on that platform.
    pub seguidores: u32,
    /// Content category.
    pub categoria: String,
    /// The influencer's id in the influencer context.
    pub id_influencer: Uuid,
    /// The booking.
    pub id_reserva: Uuid,
    /// Tracking code.
    pub codigo_tracking: String,
    /// Tracking link.
    pub url_tracking: String,
}

/// Fat event: the campaign is created and active; it carries everything a consumer needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampanaCreada {
    /// The campaign.
    pub id_campana: Uuid,
    /// Campaign name.
    pub nombre: String,
    /// Campaign description.
    pub descripcion: String,
    /// Campaign type, e.g. `influencer`.
    pub tipo: String,
    /// Start (local date-time, no zone).
    pub fecha_inicio: NaiveDateTime,
    /// End (local date-time, no zone).
    pub fecha_fin: NaiveDateTime,
    /// Budget.
    pub presupuesto_centavos: Centavos,
    /// The funding brand.
    pub marca: Marca,
    /// The budget reservation in the marca context.
    pub id_reserva_presupuesto: Uuid,
    /// Every influencer with its booking and tracking data.
    pub influencers: Vec<InfluencerContratado>,
    /// The tracking context.
    pub id_tracking: Uuid,
    /// When the saga completed.
    pub ocurrido_en: DateTime<Utc>,
}

/// The CrearCampaña request as the public API took it, with the budget in centavos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolicitudCampana {
    /// Campaign name.
    pub nombre: String,
    /// Campaign description.
    pub descripcion: String,
    /// Campaign type, e.g. `influencer`.
    pub tipo: String,
    /// Start (local date-time, no zone).
    pub fecha_inicio: NaiveDateTime,
    /// End (local date-time, no zone).
    pub fecha_fin: NaiveDateTime,
    /// Budget.
    pub presupuesto_centavos: Centavos,
    /// The funding brand.
    pub marca: Marca,
    /// The influencers requested.
    pub influencers: Vec<Influencer>,
}

/// Event: the campaign was not created; every step done was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CampanaRechazada {
    /// The campaign id the saga had assigned.
    pub id_campana: Uuid,
    /// The request, as received.
    pub solicitud: SolicitudCampana,
    /// Stable name of the step that failed, e.g. `reservar_presupuesto`.
    pub paso_fallido: String,
    /// Stable code of the failure, e.g. `PRESUPUESTO_INSUFICIENTE` or `TIMEOUT`.
    pub codigo: String,
    /// Human-readable reason.
    pub motivo: String,
    /// When the saga ended.
    pub ocurrido_en: DateTime<Utc>,
}

avro_message!(InfluencerContratado, CampanaCreada, SolicitudCampana, CampanaRechazada);

message_union! {
    /// An event about a campaign.
    Evento { CampanaCreada, CampanaRechazada }
}

/// Envelope of topic `eventos.campanas`: an integration event about a campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventoCampana {
    /// Id of this event; consumers deduplicate on it.
    pub id_evento: Uuid,
    /// The saga that produced the event.
    pub saga_id: Uuid,
    /// Simple Avro name of the event's record; must agree with `evento`.
    pub message_type: String,
    /// The event.
    pub evento: Evento,
}

impl Sealed for EventoCampana {}

impl AvroMessage for EventoCampana {
    const NAME: &'static str = "EventoCampana";

    fn check(&self) -> Result<(), SchemaError> {
        check_event_type(Self::NAME, &self.message_type, self.evento.message_type())
    }
}

/// Checks that an event envelope's `message_type` names its event's record.
pub(crate) fn check_event_type(envelope: &'static str, message_type: &str, actual: &str) -> Result<(), SchemaError> {
    if message_type == actual {
        Ok(())
    } else {
        Err(SchemaError::Inconsistent {
            envelope,
            problem: format!("message_type is `{message_type}` but the event is `{actual}`"),
        })
    }
}

impl Envelope for EventoCampana {
    const TOPIC: &'static str = "eventos.campanas";
}
