//! The messages of the payout saga (`procesar_pago`): money with its currency, the commands of
//! the pagos, proveedor and cliente participants with their outputs, the envelopes of their
//! command topics, and the integration events of a payout with the envelope of `eventos.pagos`.
//!
//! As for CrearCampaña, a compensation carries the saga-input keys that locate its effect
//! (`id_pago`, `id_partner`), so it can run, and leave a tombstone, before its action arrived.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::{avro_message, AvroMessage, Envelope, Sealed};
use crate::comandos::{check_header, command_topic};
use crate::comun::{minor_units, Correlacion, ImporteInvalido, TipoPaso};
use crate::union::{message_union, MessageUnion};
use crate::SchemaError;

// ---- Money ---------------------------------------------------------------------------------

/// A currency the platform pays in, by its ISO 4217 code (an Avro `string` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Moneda {
    /// US dollar, 2 decimals.
    Usd,
    /// Euro, 2 decimals.
    Eur,
    /// Colombian peso, 2 decimals.
    Cop,
    /// Mexican peso, 2 decimals.
    Mxn,
    /// Chilean peso, no decimals.
    Clp,
}

impl Moneda {
    /// Every currency, in code order.
    pub const TODAS: [Moneda; 5] = [Moneda::Clp, Moneda::Cop, Moneda::Eur, Moneda::Mxn, Moneda::Usd];

    /// The ISO 4217 code.
    pub fn codigo(self) -> &'static str {
        match self {
            Moneda::Usd => "USD",
            Moneda::Eur => "EUR",
            Moneda::Cop => "COP",
            Moneda::Mxn => "MXN",
            Moneda::Clp => "CLP",
        }
    }

    /// Decimals of the minor unit (ISO 4217's exponent).
    pub fn decimales(self) -> u32 {
        match self {
            Moneda::Clp => 0,
            _ => 2,
        }
    }
}

impl fmt::Display for Moneda {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.codigo())
    }
}

/// A code that is not one of [`Moneda::TODAS`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("moneda desconocida {0:?} (USD, EUR, COP, MXN, CLP)")]
pub struct MonedaDesconocida(pub String);

impl FromStr for Moneda {
    type Err = MonedaDesconocida;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Moneda::TODAS.into_iter().find(|m| m.codigo() == s).ok_or_else(|| MonedaDesconocida(s.to_owned()))
    }
}

impl TryFrom<String> for Moneda {
    type Error = MonedaDesconocida;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Moneda> for String {
    fn from(m: Moneda) -> String {
        m.codigo().to_owned()
    }
}

/// An exact amount: minor units of a currency (`Monto.avsc`). Never a float inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Monto {
    /// The amount in minor units: `150050` USD is 1500.50.
    pub valor_menor: i64,
    /// Its currency.
    pub moneda: Moneda,
}

impl Monto {
    /// `value`, a JSON number in major units as the public API sends it (`1500.5`), in `moneda`:
    /// exact, refused when it has more decimals than the currency's minor unit (see
    /// [`crate::Centavos::from_decimal`] for how the decimals are counted).
    pub fn from_decimal(value: f64, moneda: Moneda) -> Result<Monto, ImporteInvalido> {
        Ok(Monto { valor_menor: minor_units(value, moneda.decimales())?, moneda })
    }

    /// The amount in major units, for JSON answers (`1500.5`). Exact for every amount below
    /// 2^53 minor units: the shortest decimal that reads back as the float is the amount.
    pub fn valor(&self) -> f64 {
        // Division by a power of ten of an integer below 2^53 is correctly rounded, so the
        // float is the closest to the decimal amount and prints as it.
        #[allow(clippy::cast_precision_loss)]
        let v = self.valor_menor as f64;
        v / 10f64.powi(self.moneda.decimales() as i32)
    }

    /// `percent`% of this amount, rounded half away from zero to the minor unit.
    pub fn porcentaje(&self, percent: i64) -> Monto {
        let scaled = i128::from(self.valor_menor) * i128::from(percent);
        let rounded = (scaled.abs() + 50) / 100 * scaled.signum();
        Monto { valor_menor: i64::try_from(rounded).unwrap_or(i64::MAX), moneda: self.moneda }
    }
}

impl fmt::Display for Monto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.moneda.decimales() as usize;
        let abs = self.valor_menor.unsigned_abs();
        let sign = if self.valor_menor < 0 { "-" } else { "" };
        if d == 0 {
            return write!(f, "{sign}{abs} {}", self.moneda);
        }
        let p = 10u64.pow(d as u32);
        write!(f, "{sign}{}.{:0d$} {}", abs / p, abs % p, self.moneda)
    }
}

/// How a payout reaches its partner (`MetodoPago.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetodoPago {
    /// `payment_method_type`, e.g. `BANK_TRANSFER`.
    pub tipo: String,
    /// `payment_method_mask`, e.g. `****1234`.
    pub mascara: String,
}

/// One transaction of a payout (`TransaccionPago.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransaccionPago {
    /// The transaction.
    pub id_transaccion: Uuid,
    /// Kind, e.g. `COMISION`.
    pub tipo: String,
    /// Its amount.
    pub monto: Monto,
    /// Its share of the payout's total, in percent.
    pub porcentaje: i64,
}

// ---- Commands ------------------------------------------------------------------------------

/// Step 1 action (pagos): record the payout and its commission transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrarPago {
    /// The payout.
    pub id_pago: Uuid,
    /// The partner paid.
    pub id_partner: String,
    /// The payment cycle.
    pub id_ciclo: String,
    /// The total.
    pub monto: Monto,
    /// How it is paid.
    pub metodo_pago: MetodoPago,
}

/// Step 1 compensation (pagos): mark the payout failed, or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarcarPagoFallido {
    /// Key of the payout.
    pub id_pago: Uuid,
}

/// Step 2 action (proveedor): send the payout through the payment provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnviarPago {
    /// The payout: the provider's idempotency key.
    pub id_pago: Uuid,
    /// The partner paid.
    pub id_partner: String,
    /// The amount sent.
    pub monto: Monto,
    /// Where it is sent.
    pub metodo_pago: MetodoPago,
}

/// Step 2 compensation (proveedor): void the operation, or refund it; or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnularPago {
    /// Key of the provider's operation.
    pub id_pago: Uuid,
    /// The operation's id when the action's reply was seen; never needed.
    pub id_operacion: Option<Uuid>,
}

/// Step 3 action (cliente): record the payment on the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrarPagoCliente {
    /// The client paid.
    pub id_partner: String,
    /// The payout.
    pub id_pago: Uuid,
    /// The amount paid.
    pub monto: Monto,
}

/// Step 3 compensation (cliente): remove the payment from the client, or leave a tombstone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertirPagoCliente {
    /// The client.
    pub id_partner: String,
    /// Key of the payment on the client.
    pub id_pago: Uuid,
}

/// Step 4 action (pagos): mark the payout completed with the provider's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmarPago {
    /// The payout.
    pub id_pago: Uuid,
    /// The provider's confirmation.
    pub id_confirmacion: String,
}

/// Step 4 compensation (pagos): take a completed payout back to processing, or leave a
/// tombstone; step 1's compensation then marks it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevertirConfirmacion {
    /// The payout.
    pub id_pago: Uuid,
}

// ---- Step outputs --------------------------------------------------------------------------

/// Step 1 output: the payout recorded, with its transactions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoRegistrado {
    /// The payout.
    pub id_pago: Uuid,
    /// Its transactions (the commission).
    pub transacciones: Vec<TransaccionPago>,
}

/// Step 2 output: the provider accepted the payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoEnviado {
    /// The provider's operation.
    pub id_operacion: Uuid,
    /// The provider's confirmation code.
    pub id_confirmacion: String,
    /// When the provider processed it.
    pub procesado_en: DateTime<Utc>,
}

/// Step 3 output: the client's totals after this payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoClienteRegistrado {
    /// The client.
    pub id_partner: String,
    /// How many payments the client has received.
    pub total_pagos: u32,
    /// When the last one was recorded.
    pub ultimo_pago: DateTime<Utc>,
}

/// Step 4 output: the payout is completed in pagos.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoConfirmado {
    /// The payout.
    pub id_pago: Uuid,
    /// When it was completed.
    pub completado_en: DateTime<Utc>,
}

avro_message!(
    Monto,
    MetodoPago,
    TransaccionPago,
    RegistrarPago,
    MarcarPagoFallido,
    EnviarPago,
    AnularPago,
    RegistrarPagoCliente,
    RevertirPagoCliente,
    ConfirmarPago,
    RevertirConfirmacion,
    PagoRegistrado,
    PagoEnviado,
    PagoClienteRegistrado,
    PagoConfirmado,
);

command_topic! {
    /// Envelope of topic `comandos.pagos`.
    ComandoPagos on "comandos.pagos",
    /// Body of a command for the pagos participant: it runs two steps (record, confirm).
    CuerpoPagos {
        RegistrarPago -> PagoRegistrado, MarcarPagoFallido;
        ConfirmarPago -> PagoConfirmado, RevertirConfirmacion
    }
}

command_topic! {
    /// Envelope of topic `comandos.proveedor`.
    ComandoProveedor on "comandos.proveedor",
    /// Body of a command for the payment provider participant.
    CuerpoProveedor { EnviarPago -> PagoEnviado, AnularPago }
}

command_topic! {
    /// Envelope of topic `comandos.cliente`.
    ComandoCliente on "comandos.cliente",
    /// Body of a command for the cliente participant.
    CuerpoCliente { RegistrarPagoCliente -> PagoClienteRegistrado, RevertirPagoCliente }
}

// ---- Events --------------------------------------------------------------------------------

/// A payout request as the public API took it, with the amount exact (`SolicitudPago.avsc`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SolicitudPago {
    /// `partner_id`.
    pub id_partner: String,
    /// `cycle_id`.
    pub id_ciclo: String,
    /// `total_amount` and `currency`.
    pub monto: Monto,
    /// `payment_method_type` and `payment_method_mask`.
    pub metodo_pago: MetodoPago,
}

/// Fat event: the payout is completed in every service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoCompletado {
    /// The payout.
    pub id_pago: Uuid,
    /// What was paid, to whom, for which cycle, how.
    pub solicitud: SolicitudPago,
    /// Its transactions.
    pub transacciones: Vec<TransaccionPago>,
    /// The provider's operation.
    pub id_operacion: Uuid,
    /// The provider's confirmation.
    pub id_confirmacion: String,
    /// The client's payment count after this one.
    pub total_pagos_cliente: u32,
    /// When the saga completed.
    pub ocurrido_en: DateTime<Utc>,
}

/// Event: the payout failed; every step done was compensated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PagoFallido {
    /// The payout id the request was given.
    pub id_pago: Uuid,
    /// The request.
    pub solicitud: SolicitudPago,
    /// Stable name of the step that failed.
    pub paso_fallido: String,
    /// Stable code of the failure.
    pub codigo: String,
    /// Human-readable reason.
    pub motivo: String,
    /// When the saga ended.
    pub ocurrido_en: DateTime<Utc>,
}

avro_message!(SolicitudPago, PagoCompletado, PagoFallido);

message_union! {
    /// An event about a payout.
    EventoDePago { PagoCompletado, PagoFallido }
}

/// Envelope of topic `eventos.pagos`: an integration event about a payout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventoPago {
    /// Id of this event; consumers deduplicate on it.
    pub id_evento: Uuid,
    /// The saga that produced the event.
    pub saga_id: Uuid,
    /// Simple Avro name of the event's record; must agree with `evento`.
    pub message_type: String,
    /// The event.
    pub evento: EventoDePago,
}

impl Sealed for EventoPago {}

impl AvroMessage for EventoPago {
    const NAME: &'static str = "EventoPago";

    fn check(&self) -> Result<(), SchemaError> {
        crate::eventos::check_event_type(Self::NAME, &self.message_type, self.evento.message_type())
    }
}

impl Envelope for EventoPago {
    const TOPIC: &'static str = "eventos.pagos";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_in_each_currencys_minor_unit() {
        assert_eq!(Monto::from_decimal(1500.5, Moneda::Usd), Ok(Monto { valor_menor: 150_050, moneda: Moneda::Usd }));
        assert_eq!(Monto::from_decimal(0.29, Moneda::Eur).map(|m| m.valor_menor), Ok(29));
        assert_eq!(Monto::from_decimal(1500.0, Moneda::Clp).map(|m| m.valor_menor), Ok(1500));
        assert_eq!(Monto::from_decimal(1500.5, Moneda::Clp), Err(ImporteInvalido::DemasiadosDecimales));
        assert_eq!(Monto::from_decimal(1.005, Moneda::Usd), Err(ImporteInvalido::DemasiadosDecimales));
        let m = Monto { valor_menor: 150_050, moneda: Moneda::Usd };
        assert_eq!(m.valor().to_string(), "1500.5");
        assert_eq!(m.to_string(), "1500.50 USD");
        assert_eq!(Monto { valor_menor: -5, moneda: Moneda::Usd }.to_string(), "-0.05 USD");
        assert_eq!(Monto { valor_menor: 1500, moneda: Moneda::Clp }.to_string(), "1500 CLP");
        assert_eq!(Monto { valor_menor: 13_424_443_102, moneda: Moneda::Usd }.valor().to_string(), "134244431.02");
    }

    #[test]
    fn percentages_round_half_away_from_zero() {
        let usd = |v| Monto { valor_menor: v, moneda: Moneda::Usd };
        assert_eq!(usd(150_050).porcentaje(10), usd(15_005));
        assert_eq!(usd(5).porcentaje(10), usd(1)); // 0.5 cents
        assert_eq!(usd(4).porcentaje(10), usd(0));
        assert_eq!(usd(-5).porcentaje(10), usd(-1));
        assert_eq!(usd(i64::MAX).porcentaje(10).valor_menor, (i128::from(i64::MAX) / 10) as i64 + 1);
    }

    #[test]
    fn currencies_are_their_iso_codes() {
        for m in Moneda::TODAS {
            assert_eq!(m.codigo().parse::<Moneda>(), Ok(m));
            assert_eq!(serde_json::to_value(m).expect("json"), serde_json::json!(m.codigo()));
        }
        assert!("usd".parse::<Moneda>().is_err());
        assert!(serde_json::from_value::<Moneda>(serde_json::json!("XXX")).is_err());
    }
}
