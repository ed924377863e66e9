//! What participants answer: each step's output, the three outcomes of a command, and the envelope
//! of the reply topic.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{avro_message, AvroMessage, Envelope, Sealed};
use crate::comandos::check_header;
use crate::comun::{Centavos, Correlacion};
use crate::pagos::{PagoClienteRegistrado, PagoConfirmado, PagoEnviado, PagoRegistrado};
use crate::union::{message_union, MessageUnion};
use crate::SchemaError;

// ---- Step outputs --------------------------------------------------------------------------

/// Output of step 1's action: the budget reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresupuestoReservado {
    /// The reservation.
    pub id_reserva: Uuid,
    /// The brand charged.
    pub id_marca: Uuid,
    /// Amount reserved.
    pub monto_centavos: Centavos,
    /// The brand's budget still available after this reservation.
    pub disponible_restante_centavos: Centavos,
}

/// One influencer's booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservaInfluencer {
    /// The influencer's name, as in the command.
    pub nombre: String,
    /// The influencer's platform, as in the command.
    pub plataforma: String,
    /// The influencer's id in the influencer context.
    pub id_influencer: Uuid,
    /// The booking.
    pub id_reserva: Uuid,
}

/// Output of step 2's action: one booking per influencer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfluencersReservados {
    /// Bookings, one per influencer of the command.
    pub reservas: Vec<ReservaInfluencer>,
}

/// One influencer's tracking code and link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnlaceTracking {
    /// The influencer's name, as in the command.
    pub nombre: String,
    /// The influencer's platform, as in the command.
    pub plataforma: String,
    /// Tracking code the influencer shares.
    pub codigo: String,
    /// Tracking link the influencer shares.
    pub url: String,
}

/// Output of step 3's action: the tracking context and one code and link per influencer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackingAbierto {
    /// The tracking context.
    pub id_tracking: Uuid,
    /// One per influencer of the command.
    pub enlaces: Vec<EnlaceTracking>,
}

/// Output of every compensation: it is done (a compensation cannot fail for business reasons).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompensacionConfirmada {
    /// True when no effect of the action existed: a tombstone now refuses the late action.
    pub lapida: bool,
}

message_union! {
    /// A step's output: what a successful reply carries.
    Salida {
        PresupuestoReservado,
        InfluencersReservados,
        TrackingAbierto,
        CompensacionConfirmada,
        PagoRegistrado,
        PagoEnviado,
        PagoClienteRegistrado,
        PagoConfirmado,
    }
}

// ---- Outcomes ------------------------------------------------------------------------------

/// Outcome: the action or compensation is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exito {
    /// The step's output.
    pub salida: Salida,
}

/// Outcome: the action was refused by a business rule and had no effect; the saga compensates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FalloNegocio {
    /// Stable machine-readable code, e.g. `PRESUPUESTO_INSUFICIENTE`.
    pub codigo: String,
    /// Human-readable reason.
    pub motivo: String,
}

/// Outcome: the participant could not decide now (e.g. its database is down); the saga retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorTransitorio {
    /// Human-readable reason.
    pub motivo: String,
}

/// The outcome of one command, in the union order of `RespuestaAfiliaciones.resultado`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resultado {
    /// Done, with the step's output.
    Exito(Exito),
    /// Refused by a business rule.
    FalloNegocio(FalloNegocio),
    /// Not decided now; retry.
    ErrorTransitorio(ErrorTransitorio),
}

impl Resultado {
    /// The reply's `message_type`: the output's record on success, else the outcome's record.
    pub fn message_type(&self) -> &'static str {
        match self {
            Self::Exito(exito) => exito.salida.message_type(),
            Self::FalloNegocio(_) => "FalloNegocio",
            Self::ErrorTransitorio(_) => "ErrorTransitorio",
        }
    }
}

avro_message!(
    PresupuestoReservado,
    ReservaInfluencer,
    InfluencersReservados,
    EnlaceTracking,
    TrackingAbierto,
    CompensacionConfirmada,
    Exito,
    FalloNegocio,
    ErrorTransitorio,
);

// ---- Topic envelope ------------------------------------------------------------------------

/// Envelope of topic `respuestas.afiliaciones`: a participant's reply to one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RespuestaAfiliaciones {
    /// The command's `saga_id`, `saga_type`, `step`, `attempt` and `kind`; `message_id` is the
    /// reply's own, `reply_to` is `None`, and `message_type` is [`Resultado::message_type`].
    pub correlacion: Correlacion,
    /// `message_id` of the command answered.
    pub en_respuesta_a: Uuid,
    /// Success with output, business failure, or transient error.
    pub resultado: Resultado,
}

impl Sealed for RespuestaAfiliaciones {}

impl AvroMessage for RespuestaAfiliaciones {
    const NAME: &'static str = "RespuestaAfiliaciones";

    fn check(&self) -> Result<(), SchemaError> {
        check_header(Self::NAME, &self.correlacion, self.resultado.message_type(), None)
    }
}

impl Envelope for RespuestaAfiliaciones {
    const TOPIC: &'static str = "respuestas.afiliaciones";
}
