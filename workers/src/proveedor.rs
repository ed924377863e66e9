//! proveedor: the payment provider, standing for the external gateway a payout is sent through
//! (step 2 of the payout saga), with its own database. Its rules are those of a gateway's test
//! mode, so every outcome of the saga can be produced on purpose:
//!
//! - `METODO_NO_SOPORTADO`: the method is not one of [`METODOS_SOPORTADOS`];
//! - `LIMITE_EXCEDIDO`: the amount is over [`LIMITE_POR_OPERACION`] minor units;
//! - `TARJETA_RECHAZADA`: the method's mask ends in [`MASCARA_RECHAZADA`] (declined);
//! - a mask ending in [`MASCARA_LENTA`] times out on the first attempt: the answer is
//!   transient, nothing is recorded, and the retried attempt goes through;
//! - `PAGO_DUPLICADO`: another saga already sent this payout (the payout id is the gateway's
//!   idempotency key: one operation per payout).
//!
//! Otherwise the operation is `AUTORIZADA` with a confirmation code `PRV-` and ten upper-case hex
//! digits taken from the operation id. Its compensation voids it (`ANULADA`) while it is younger
//! than [`LIQUIDACION`]; an older operation is deemed settled, and is refunded instead
//! (`REEMBOLSADA`, with a `reembolso` row for the amount).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{AnularPago, CompensacionConfirmada, CuerpoProveedor, EnviarPago, MessageUnion, PagoEnviado};
use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use crate::support::{ahora, body, output, refuse, wrong_kind};

/// Migrations of the proveedor database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/proveedor/postgres");
/// Migrations of the proveedor database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/proveedor/sqlite");

/// The payment method is not one the provider handles.
pub const METODO_NO_SOPORTADO: &str = "METODO_NO_SOPORTADO";
/// The card was declined.
pub const TARJETA_RECHAZADA: &str = "TARJETA_RECHAZADA";
/// The amount is over the per-operation limit.
pub const LIMITE_EXCEDIDO: &str = "LIMITE_EXCEDIDO";
/// Another saga already sent this payout.
pub const PAGO_DUPLICADO: &str = "PAGO_DUPLICADO";

/// The payment methods the provider handles (`MetodoPago::tipo`).
pub const METODOS_SOPORTADOS: [&str; 3] = ["BANK_TRANSFER", "PAYPAL", "CARD"];
/// The most one operation may carry, in minor units of its currency (100 000.00 in a currency
/// of two decimals): the gateway's test-mode limit.
pub const LIMITE_POR_OPERACION: i64 = 10_000_000;
/// A method whose mask ends in this is declined (the gateway's test card for a decline).
pub const MASCARA_RECHAZADA: &str = "0002";
/// A method whose mask ends in this times out on its first attempt (the gateway's test card for
/// a slow network).
pub const MASCARA_LENTA: &str = "0119";
/// How long an operation can still be voided: after this the gateway has settled it with the
/// bank, and undoing it is a refund.
pub const LIQUIDACION: Duration = Duration::from_secs(60);

/// The states of an operation.
pub mod estado {
    /// Accepted, not undone.
    pub const AUTORIZADA: &str = "AUTORIZADA";
    /// Undone before settlement.
    pub const ANULADA: &str = "ANULADA";
    /// Undone after settlement: the amount was refunded.
    pub const REEMBOLSADA: &str = "REEMBOLSADA";
}

/// The provider's confirmation code of an operation: `PRV-` and the last ten hex digits of its
/// id, upper case (the random end of a version 7 UUID).
pub fn id_confirmacion(id_operacion: Uuid) -> String {
    let hex = id_operacion.simple().to_string().to_uppercase();
    format!("PRV-{}", &hex[hex.len() - 10..])
}

/// Whether an operation created at `creada_en` is settled at `now`.
fn liquidada(creada_en: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    (now - creada_en).to_std().is_ok_and(|edad| edad >= LIQUIDACION)
}

/// The proveedor business rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Proveedor;

macro_rules! proveedor_for {
    ($db:ty, $enviar:ident, $anular:ident) => {
        impl Proveedor {
            async fn $enviar(
                &self,
                tx: &mut Transaction<'static, $db>,
                command: &Command,
                e: EnviarPago,
            ) -> Result<Outcome, HandlerError> {
                let metodo = &e.metodo_pago;
                if !METODOS_SOPORTADOS.contains(&metodo.tipo.as_str()) {
                    return Ok(refuse(
                        METODO_NO_SOPORTADO,
                        format!("el método {:?} no se admite ({})", metodo.tipo, METODOS_SOPORTADOS.join(", ")),
                    ));
                }
                if e.monto.valor_menor > LIMITE_POR_OPERACION {
                    return Ok(refuse(
                        LIMITE_EXCEDIDO,
                        format!("{} supera el límite por operación de {LIMITE_POR_OPERACION} unidades menores", e.monto),
                    ));
                }
                if metodo.mascara.ends_with(MASCARA_RECHAZADA) {
                    return Ok(refuse(TARJETA_RECHAZADA, format!("la tarjeta {} fue rechazada", metodo.mascara)));
                }
                if metodo.mascara.ends_with(MASCARA_LENTA) && command.correlation.attempt == 1 {
                    return Ok(Outcome::Transient { reason: "el proveedor no respondió a tiempo".into() });
                }
                let id_operacion = Uuid::now_v7();
                let id_confirmacion = id_confirmacion(id_operacion);
                let now = ahora();
                let inserted = sqlx::query(
                    "INSERT INTO operacion (id_operacion, id_pago, id_partner, valor_menor, moneda, metodo_tipo, \
                     metodo_mascara, estado, id_confirmacion, creada_en, actualizada_en) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'AUTORIZADA', $8, $9, $9) ON CONFLICT (id_pago) DO NOTHING",
                )
                .bind(id_operacion)
                .bind(e.id_pago)
                .bind(&e.id_partner)
                .bind(e.monto.valor_menor)
                .bind(e.monto.moneda.codigo())
                .bind(&metodo.tipo)
                .bind(&metodo.mascara)
                .bind(&id_confirmacion)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    let otra: Option<Uuid> = sqlx::query_scalar("SELECT id_operacion FROM operacion WHERE id_pago = $1")
                        .bind(e.id_pago)
                        .fetch_optional(&mut **tx)
                        .await?;
                    let otra = otra.map_or_else(|| "otra".to_owned(), |id| id.to_string());
                    return Ok(refuse(PAGO_DUPLICADO, format!("el pago {} ya se envió (operación {otra})", e.id_pago)));
                }
                output(&PagoEnviado { id_operacion, id_confirmacion, procesado_en: now })
            }

            async fn $anular(&self, tx: &mut Transaction<'static, $db>, a: AnularPago) -> Result<Outcome, HandlerError> {
                let operacion: Option<(Uuid, String, i64, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT id_operacion, estado, valor_menor, moneda, creada_en FROM operacion WHERE id_pago = $1",
                )
                .bind(a.id_pago)
                .fetch_optional(&mut **tx)
                .await?;
                let now = ahora();
                if let Some((id_operacion, estado, valor_menor, moneda, creada_en)) = operacion {
                    if estado == estado::AUTORIZADA {
                        let nuevo = if liquidada(creada_en, now) {
                            sqlx::query(
                                "INSERT INTO reembolso (id_reembolso, id_operacion, valor_menor, moneda, creado_en) \
                                 VALUES ($1, $2, $3, $4, $5)",
                            )
                            .bind(Uuid::now_v7())
                            .bind(id_operacion)
                            .bind(valor_menor)
                            .bind(&moneda)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                            estado::REEMBOLSADA
                        } else {
                            estado::ANULADA
                        };
                        sqlx::query("UPDATE operacion SET estado = $2, actualizada_en = $3 WHERE id_operacion = $1")
                            .bind(id_operacion)
                            .bind(nuevo)
                            .bind(now)
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                output(&CompensacionConfirmada { lapida: false })
            }
        }

        #[async_trait]
        impl Handler<$db> for Proveedor {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoProveedor>(command)? {
                    CuerpoProveedor::EnviarPago(e) => self.$enviar(tx, command, e).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoProveedor>(command)? {
                    CuerpoProveedor::AnularPago(a) => self.$anular(tx, a).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

proveedor_for!(Postgres, enviar_pg, anular_pg);
proveedor_for!(Sqlite, enviar_sqlite, anular_sqlite);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmation_codes_are_prv_and_ten_upper_hex_digits() {
        let id = Uuid::parse_str("0190f5a2-7c1e-7abc-9def-0123456789ab").expect("uuid");
        assert_eq!(id_confirmacion(id), "PRV-23456789AB");
    }

    #[test]
    fn an_operation_settles_after_liquidacion() {
        let now = Utc::now();
        let edad = chrono::TimeDelta::from_std(LIQUIDACION).expect("delta");
        assert!(!liquidada(now, now));
        assert!(!liquidada(now - edad + chrono::TimeDelta::milliseconds(1), now));
        assert!(liquidada(now - edad, now));
        assert!(!liquidada(now + edad, now), "a clock behind the row's time is not settled");
    }
}
