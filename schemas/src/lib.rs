//! Avro schemas of the messages of every saga (CrearCampaña, the payout saga) (`schemas/v1/*.avsc`), their Rust types, and the
//! codec the Pulsar transport and the workers use.
//!
//! - Every `.avsc` file defines one named type and has a Rust type of the same name whose serde
//!   shape matches it field for field ([`AvroMessage`]).
//! - Each topic carries one envelope ([`Envelope`]): [`ComandoMarca`], [`ComandoInfluencer`],
//!   [`ComandoTracking`], [`ComandoPagos`], [`ComandoProveedor`], [`ComandoCliente`],
//!   [`RespuestaAfiliaciones`], [`EventoCampana`] and [`EventoPago`].
//! - [`encode`], [`decode`] and [`decode_from`] work on raw Avro datums, the payload of a Pulsar
//!   topic with schema type AVRO; [`ParsedSchema::json`] is the schema a producer attaches.
//! - The saga engine holds command bodies and step outputs as `(message_type, JSON)`;
//!   [`MessageUnion`] maps that form to the typed unions ([`CuerpoMarca`], [`Salida`], ...) and back.
//!
//! The representation choices (money, dates, ids) and the evolution rule are in `README.md`.

mod codec;
mod comandos;
mod comun;
mod error;
mod eventos;
mod pagos;
mod registry;
mod respuestas;
mod union;
pub mod wire;

#[cfg(test)]
mod tests;

pub use codec::{decode, decode_from, encode, AvroMessage, Envelope};
pub use comandos::{
    AbrirTracking, CerrarTracking, ComandoInfluencer, ComandoMarca, ComandoTracking, CuerpoInfluencer, CuerpoMarca,
    CuerpoTracking, LiberarInfluencers, LiberarPresupuesto, ReservarInfluencers, ReservarPresupuesto,
};
pub use comun::{Centavos, Correlacion, ImporteInvalido, Influencer, Marca, TipoPaso};
pub use error::SchemaError;
pub use eventos::{CampanaCreada, CampanaRechazada, Evento, EventoCampana, InfluencerContratado, SolicitudCampana};
pub use pagos::{
    AnularPago, ComandoCliente, ComandoPagos, ComandoProveedor, ConfirmarPago, CuerpoCliente, CuerpoPagos,
    CuerpoProveedor, EnviarPago, EventoDePago, EventoPago, MarcarPagoFallido, MetodoPago, Moneda, MonedaDesconocida,
    Monto, PagoClienteRegistrado, PagoCompletado, PagoConfirmado, PagoEnviado, PagoFallido, PagoRegistrado,
    RegistrarPago, RegistrarPagoCliente, RevertirConfirmacion, RevertirPagoCliente, SolicitudPago, TransaccionPago,
};
pub use registry::ParsedSchema;
pub use respuestas::{
    CompensacionConfirmada, EnlaceTracking, ErrorTransitorio, Exito, FalloNegocio, InfluencersReservados,
    PresupuestoReservado, ReservaInfluencer, RespuestaAfiliaciones, Resultado, Salida, TrackingAbierto,
};
pub use union::MessageUnion;
pub use wire::AvroCodec;
