//! The commands of CrearCampaña, one action and one compensation per participant, and the
//! envelopes of the three command topics.
//!
//! A compensation may arrive before its action (the participant then leaves a tombstone), so each
//! carries the keys of the saga input that locate the effect (`id_campana`, ...), never only an id
//! that the action produced.

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{avro_message, AvroMessage, Envelope, Sealed};
use crate::comun::{Centavos, Correlacion, Influencer, TipoPaso};
use crate::respuestas::{InfluencersReservados, PresupuestoReservado, TrackingAbierto};
use crate::union::{message_union, MessageUnion};
use crate::SchemaError;

// ---- Step 1: marca -------------------------------------------------------------------------

/// Action of step 1: reserve the campaign's budget against the brand's available budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservarPresupuesto {
    /// The campaign being created.
    pub id_campana: Uuid,
    /// The brand whose budget is reserved.
    pub id_marca: Uuid,
    /// Amount to reserve.
    pub monto_centavos: Centavos,
}

/// Compensation of step 1: release the campaign's reservation, or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiberarPresupuesto {
    /// Key of the reservation: one per campaign.
    pub id_campana: Uuid,
    /// The brand whose budget was reserved.
    pub id_marca: Uuid,
    /// The reservation's id when the action's reply was seen; never needed to release.
    pub id_reserva: Option<Uuid>,
}

// ---- Step 2: influencer --------------------------------------------------------------------

/// Action of step 2: book each influencer for the campaign's date window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservarInfluencers {
    /// The campaign being created.
    pub id_campana: Uuid,
    /// Window start (local date-time, no zone).
    pub fecha_inicio: NaiveDateTime,
    /// Window end (local date-time, no zone).
    pub fecha_fin: NaiveDateTime,
    /// Influencers to book.
    pub influencers: Vec<Influencer>,
}

/// Compensation of step 2: release the campaign's bookings, or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiberarInfluencers {
    /// Key of the bookings: the campaign.
    pub id_campana: Uuid,
    /// The influencers the action would have booked.
    pub influencers: Vec<Influencer>,
}

// ---- Step 3: tracking ----------------------------------------------------------------------

/// Action of step 3: open the campaign's tracking context, with a code and link per influencer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbrirTracking {
    /// The campaign being created.
    pub id_campana: Uuid,
    /// The brand, to attribute conversions.
    pub id_marca: Uuid,
    /// Tracking start (local date-time, no zone).
    pub fecha_inicio: NaiveDateTime,
    /// Tracking end (local date-time, no zone).
    pub fecha_fin: NaiveDateTime,
    /// One code and link is issued per influencer.
    pub influencers: Vec<Influencer>,
}

/// Compensation of step 3: close the campaign's tracking context, or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CerrarTracking {
    /// Key of the tracking context: one per campaign.
    pub id_campana: Uuid,
    /// The context's id when the action's reply was seen; never needed to close.
    pub id_tracking: Option<Uuid>,
}

avro_message!(
    ReservarPresupuesto,
    LiberarPresupuesto,
    ReservarInfluencers,
    LiberarInfluencers,
    AbrirTracking,
    CerrarTracking,
);

// ---- Topic envelopes -----------------------------------------------------------------------

/// Declares a participant's body union (for each step it runs: the action, with the record its
/// success answers, then the compensation; `;` between steps), the envelope of its command topic, and for the saga engine which participant
/// each command goes to and what the action answers: the topic is written here and nowhere else.
macro_rules! command_topic {
    (
        $(#[$envelope_meta:meta])* $envelope:ident on $topic:literal,
        $(#[$body_meta:meta])* $body:ident { $($action:ident -> $output:ident, $compensation:ident);+ $(;)? }
    ) => {
        $(
            impl saga_core::CommandMessage for $action {
                const PARTICIPANT: &'static str = $topic;
            }

            impl saga_core::ActionMessage for $action {
                type Output = $output;
            }

            impl saga_core::CommandMessage for $compensation {
                const PARTICIPANT: &'static str = $topic;
            }
        )+

        message_union! {
            $(#[$body_meta])*
            $body { $($action, $compensation),+ }
        }

        impl $body {
            /// Whether this body is a step's action or its compensation.
            pub fn kind(&self) -> TipoPaso {
                match self {
                    $(
                        Self::$action(_) => TipoPaso::Accion,
                        Self::$compensation(_) => TipoPaso::Compensacion,
                    )+
                }
            }
        }

        $(#[$envelope_meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        pub struct $envelope {
            /// Correlation header; `message_type` and `kind` must agree with the body.
            pub correlacion: Correlacion,
            /// An action or a compensation.
            pub cuerpo: $body,
        }

        impl Sealed for $envelope {}

        impl AvroMessage for $envelope {
            const NAME: &'static str = stringify!($envelope);

            fn check(&self) -> Result<(), SchemaError> {
                check_header(
                    Self::NAME,
                    &self.correlacion,
                    self.cuerpo.message_type(),
                    Some(self.cuerpo.kind()),
                )
            }
        }

        impl Envelope for $envelope {
            const TOPIC: &'static str = $topic;
        }
    };
}
pub(crate) use command_topic;

command_topic! {
    /// Envelope of topic `comandos.marca`.
    ComandoMarca on "comandos.marca",
    /// Body of a command for the marca participant.
    CuerpoMarca { ReservarPresupuesto -> PresupuestoReservado, LiberarPresupuesto }
}

command_topic! {
    /// Envelope of topic `comandos.influencer`.
    ComandoInfluencer on "comandos.influencer",
    /// Body of a command for the influencer participant.
    CuerpoInfluencer { ReservarInfluencers -> InfluencersReservados, LiberarInfluencers }
}

command_topic! {
    /// Envelope of topic `comandos.tracking`.
    ComandoTracking on "comandos.tracking",
    /// Body of a command for the tracking participant.
    CuerpoTracking { AbrirTracking -> TrackingAbierto, CerrarTracking }
}

/// Checks that a header names its body's record and, for commands, its kind.
pub(crate) fn check_header(
    envelope: &'static str,
    correlacion: &Correlacion,
    message_type: &str,
    kind: Option<TipoPaso>,
) -> Result<(), SchemaError> {
    if correlacion.message_type != message_type {
        return Err(SchemaError::Inconsistent {
            envelope,
            problem: format!("message_type is `{}` but the body is `{message_type}`", correlacion.message_type),
        });
    }
    match kind {
        Some(kind) if kind != correlacion.kind => Err(SchemaError::Inconsistent {
            envelope,
            problem: format!("kind is {:?} but `{message_type}` is an {kind:?}", correlacion.kind),
        }),
        _ => Ok(()),
    }
}
