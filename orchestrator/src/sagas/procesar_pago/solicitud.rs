//! The body of `POST /pagos/pagar`, as the public API documents it, and its validation: every
//! field error is collected, so a client fixes its request in one round trip; a valid request
//! becomes the saga's [`ProcesarPago`] parameters.
//!
//! | field | rule |
//! |---|---|
//! | `partner_id` | a client id: 1 to 64 of `A-Z a-z 0-9 . _ -` |
//! | `cycle_id` | 1 to 64 visible characters |
//! | `total_amount` | a number greater than zero, with at most the currency's decimals, at most [`MAX_MONTO_MENOR`] minor units |
//! | `currency` | an ISO 4217 code the platform pays in (`USD`, `EUR`, `COP`, `MXN`, `CLP`) |
//! | `payment_method_type` | 1 to 50 of `A-Z 0-9 _` (the provider decides which it supports) |
//! | `payment_method_mask` | 1 to 50 visible characters, e.g. `****1234` |
//! | `confirmation_id` | optional, up to 100 visible characters: the client's own reference |
//! | `processed_at`, `completed_at` | optional RFC 3339 times; kept with the request, never trusted as the payout's own |

use chrono::DateTime;
use schemas::{ImporteInvalido, MetodoPago, Moneda, Monto};
use serde_json::Value;
use uuid::Uuid;

use super::definicion::ProcesarPago;
use crate::sagas::crear_campana::solicitud::ErrorCampo;

/// Largest payout: 10^12 minor units, far beyond any commission, far below an overflow.
pub const MAX_MONTO_MENOR: i64 = 1_000_000_000_000;

/// Whether `id` is a well-formed client id (what `partner_id` must be).
pub fn es_id_cliente(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

struct Check {
    errors: Vec<ErrorCampo>,
}

impl Check {
    fn fail(&mut self, campo: &str, error: impl Into<String>) {
        self.errors.push(ErrorCampo { campo: campo.to_owned(), error: error.into() });
    }

    /// A visible text of 1 to `max` characters, `None` (and an error) otherwise; `optional`
    /// texts may be absent or null.
    fn text(&mut self, body: &Value, campo: &str, max: usize, optional: bool) -> Option<String> {
        match body.get(campo) {
            None | Some(Value::Null) if optional => None,
            None | Some(Value::Null) => {
                self.fail(campo, "es obligatorio");
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.fail(campo, "no puede estar vacío");
                None
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                self.fail(campo, format!("admite a lo sumo {max} caracteres"));
                None
            }
            Some(Value::String(s)) if s.chars().any(char::is_control) => {
                self.fail(campo, "no admite caracteres de control");
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_owned()),
            Some(_) => {
                self.fail(campo, "debe ser un texto");
                None
            }
        }
    }

    fn time(&mut self, body: &Value, campo: &str) {
        if let Some(t) = self.text(body, campo, 40, true) {
            if DateTime::parse_from_rfc3339(&t).is_err() {
                self.fail(campo, "debe ser una fecha y hora RFC 3339, p. ej. 2025-01-31T12:00:00Z");
            }
        }
    }
}

/// The fields the body takes; any other is an error.
pub const CAMPOS: &[&str] = &[
    "partner_id",
    "cycle_id",
    "total_amount",
    "currency",
    "payment_method_type",
    "payment_method_mask",
    "confirmation_id",
    "processed_at",
    "completed_at",
];

/// Validates a request body (already parsed as JSON) and builds the saga's parameters with the
/// payout id `id_pago`. `Err` lists every field error.
pub fn validar(body: &Value, id_pago: Uuid) -> Result<ProcesarPago, Vec<ErrorCampo>> {
    let mut c = Check { errors: Vec::new() };
    if !body.is_object() {
        c.fail("", "el cuerpo debe ser un objeto JSON");
        return Err(c.errors);
    }
    for campo in daemon::unknown_fields(body, CAMPOS) {
        c.fail(campo, daemon::UNKNOWN_FIELD);
    }
    let partner = c.text(body, "partner_id", 64, false);
    if let Some(p) = &partner {
        if !es_id_cliente(p) {
            c.fail("partner_id", "admite de 1 a 64 caracteres A-Z, a-z, 0-9, '.', '_' y '-'");
        }
    }
    let ciclo = c.text(body, "cycle_id", 64, false);
    let moneda = match c.text(body, "currency", 3, false) {
        Some(code) => match code.parse::<Moneda>() {
            Ok(m) => Some(m),
            Err(e) => {
                c.fail("currency", e.to_string());
                None
            }
        },
        None => None,
    };
    let monto = match body.get("total_amount") {
        None | Some(Value::Null) => {
            c.fail("total_amount", "es obligatorio");
            None
        }
        Some(Value::Number(n)) => match (n.as_f64(), moneda) {
            (Some(v), Some(moneda)) => match Monto::from_decimal(v, moneda) {
                Ok(m) if m.valor_menor <= 0 => {
                    c.fail("total_amount", "debe ser mayor que cero");
                    None
                }
                Ok(m) if m.valor_menor > MAX_MONTO_MENOR => {
                    c.fail("total_amount", format!("admite a lo sumo {MAX_MONTO_MENOR} unidades menores"));
                    None
                }
                Ok(m) => Some(m),
                Err(ImporteInvalido::DemasiadosDecimales) => {
                    c.fail("total_amount", format!("admite a lo sumo {} decimales en {moneda}", moneda.decimales()));
                    None
                }
                Err(ImporteInvalido::FueraDeRango) => {
                    c.fail("total_amount", "está fuera de rango");
                    None
                }
            },
            // The currency's own error is reported; the amount cannot be read without it.
            (Some(_), None) => None,
            (None, _) => {
                c.fail("total_amount", "está fuera de rango");
                None
            }
        },
        Some(_) => {
            c.fail("total_amount", "debe ser un número");
            None
        }
    };
    let tipo = c.text(body, "payment_method_type", 50, false);
    if let Some(t) = &tipo {
        if !t.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_') {
            c.fail("payment_method_type", "admite A-Z, 0-9 y '_', p. ej. BANK_TRANSFER");
        }
    }
    let mascara = c.text(body, "payment_method_mask", 50, false);
    let referencia = c.text(body, "confirmation_id", 100, true);
    c.time(body, "processed_at");
    c.time(body, "completed_at");
    match (partner, ciclo, monto, tipo, mascara) {
        (Some(id_partner), Some(id_ciclo), Some(monto), Some(tipo), Some(mascara)) if c.errors.is_empty() => {
            Ok(ProcesarPago {
                id_pago,
                id_partner,
                id_ciclo,
                monto,
                metodo_pago: MetodoPago { tipo, mascara },
                referencia,
            })
        }
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body() -> Value {
        json!({
            "partner_id": "partner-001", "cycle_id": "2025-01", "total_amount": 1500.5, "currency": "USD",
            "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234",
            "confirmation_id": "conf-123", "processed_at": "2025-01-31T12:00:00Z", "completed_at": null
        })
    }

    #[test]
    fn the_documented_body_is_accepted_with_its_amount_exact() {
        let p = validar(&body(), Uuid::nil()).expect("valid");
        assert_eq!(p.monto, Monto { valor_menor: 150_050, moneda: Moneda::Usd });
        assert_eq!(p.id_partner, "partner-001");
        assert_eq!(p.metodo_pago.mascara, "****1234");
        assert_eq!(p.referencia.as_deref(), Some("conf-123"));
    }

    #[test]
    fn every_field_error_is_reported_at_once() {
        let bad = json!({
            "partner_id": "no válido", "total_amount": 10.005, "currency": "USD",
            "payment_method_type": "bank transfer", "payment_method_mask": 1234, "processed_at": "ayer"
        });
        let campos: Vec<String> =
            validar(&bad, Uuid::nil()).expect_err("invalid").into_iter().map(|e| e.campo).collect();
        assert_eq!(
            campos,
            ["partner_id", "cycle_id", "total_amount", "payment_method_type", "payment_method_mask", "processed_at"]
        );
        let mut zero = body();
        zero["total_amount"] = json!(0);
        assert_eq!(validar(&zero, Uuid::nil()).expect_err("zero")[0].campo, "total_amount");
        let mut currency = body();
        currency["currency"] = json!("XXX");
        let errors = validar(&currency, Uuid::nil()).expect_err("currency");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].campo, "currency");
        let mut clp = body();
        clp["currency"] = json!("CLP");
        assert_eq!(validar(&clp, Uuid::nil()).expect_err("decimals")[0].campo, "total_amount");
        assert!(validar(&json!([]), Uuid::nil()).is_err());
    }
}
