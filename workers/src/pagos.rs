//! pagos: the payout ledger. Records a partner's payout for a payment cycle with the platform's
//! commission (step 1 of the payout saga), and completes it with the provider's confirmation once
//! the money was sent and recorded on the client (step 4).
//!
//! States of a payout: `PROCESANDO` (recorded), `COMPLETADO` (confirmed), `FALLIDO` (the saga
//! compensated it). Business failures (the saga compensates): `MONTO_INVALIDO` (an amount of
//! zero or less), `CICLO_YA_PAGADO` (another payout holds the partner's cycle; its reason names
//! it), `PAGO_DUPLICADO` (another saga already recorded this payout id), `PAGO_NO_CONFIRMABLE`
//! (confirming a payout that is not `PROCESANDO`, or unknown).
//!
//! A partner's cycle is paid at most once: `UNIQUE (id_partner, id_ciclo)`. A failed payout keeps
//! its cycle. Payouts registered at the same time insert with `ON CONFLICT DO NOTHING` (on
//! PostgreSQL a unique violation would abort the participant's transaction; the losing insert
//! waits for the winner's commit and then inserts nothing) and read back who owns the cycle.
//!
//! The commission is [`COMISION_PORCENTAJE`] percent of the payout, rounded half away from zero
//! to the currency's minor unit ([`Monto::porcentaje`]): 0.05 USD gives 0.01, 0.04 USD gives 0.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{
    CompensacionConfirmada, ConfirmarPago, CuerpoPagos, MarcarPagoFallido, MessageUnion, MetodoPago, Monto,
    PagoConfirmado, PagoRegistrado, RegistrarPago, RevertirConfirmacion, TransaccionPago,
};
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use uuid::Uuid;

use crate::support::{ahora, body, moneda, output, refuse, wrong_kind};

/// Migrations of the pagos database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/pagos/postgres");
/// Migrations of the pagos database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/pagos/sqlite");

/// The amount is zero or negative.
pub const MONTO_INVALIDO: &str = "MONTO_INVALIDO";
/// Another payout already holds this partner's cycle.
pub const CICLO_YA_PAGADO: &str = "CICLO_YA_PAGADO";
/// Another saga already recorded a payout with this id.
pub const PAGO_DUPLICADO: &str = "PAGO_DUPLICADO";
/// The payout cannot be confirmed: it is not `PROCESANDO` (or does not exist).
pub const PAGO_NO_CONFIRMABLE: &str = "PAGO_NO_CONFIRMABLE";

/// The platform's commission on every payout, in percent of its total.
pub const COMISION_PORCENTAJE: i64 = 10;
/// The kind of the commission's transaction.
pub const TIPO_COMISION: &str = "COMISION";

/// Where a payout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EstadoPago {
    /// Recorded; the money is on its way.
    Procesando,
    /// Confirmed by the provider and recorded on the client.
    Completado,
    /// The saga compensated it.
    Fallido,
}

impl EstadoPago {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            EstadoPago::Procesando => "PROCESANDO",
            EstadoPago::Completado => "COMPLETADO",
            EstadoPago::Fallido => "FALLIDO",
        }
    }

    fn parse(s: &str) -> Result<Self, sqlx::Error> {
        Ok(match s {
            "PROCESANDO" => EstadoPago::Procesando,
            "COMPLETADO" => EstadoPago::Completado,
            "FALLIDO" => EstadoPago::Fallido,
            other => return Err(sqlx::Error::Decode(format!("estado de pago desconocido {other:?}").into())),
        })
    }
}

/// A payout as recorded, with its transactions: what operators and tests read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pago {
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
    /// Where it is.
    pub estado: EstadoPago,
    /// The provider's confirmation, once completed.
    pub id_confirmacion: Option<String>,
    /// When it was recorded.
    pub creado_en: DateTime<Utc>,
    /// When its state last changed.
    pub actualizado_en: DateTime<Utc>,
    /// Its transactions (the commission), oldest first.
    pub transacciones: Vec<TransaccionPago>,
}

/// The pagos business rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pagos;

type FilaPago =
    (Uuid, String, String, i64, String, String, String, String, Option<String>, DateTime<Utc>, DateTime<Utc>);

macro_rules! pagos_for {
    ($db:ty, $pool:ty, $registrar:ident, $fallido:ident, $confirmar:ident, $revertir:ident, $leer:ident) => {
        impl Pagos {
            async fn $registrar(&self, tx: &mut Transaction<'static, $db>, r: RegistrarPago) -> Result<Outcome, HandlerError> {
                if r.monto.valor_menor <= 0 {
                    return Ok(refuse(MONTO_INVALIDO, format!("el monto del pago debe ser positivo, no {}", r.monto)));
                }
                let titular = |otro: Uuid| {
                    refuse(CICLO_YA_PAGADO, format!("el ciclo {} del partner {} ya lo paga el pago {otro}", r.id_ciclo, r.id_partner))
                };
                let owner: Option<Uuid> = sqlx::query_scalar("SELECT id_pago FROM pago WHERE id_partner = $1 AND id_ciclo = $2")
                    .bind(&r.id_partner)
                    .bind(&r.id_ciclo)
                    .fetch_optional(&mut **tx)
                    .await?;
                if let Some(otro) = owner {
                    return Ok(titular(otro));
                }
                let now = ahora();
                // Whatever constraint a concurrent payout won (the cycle, or this id), nothing is
                // inserted here and the transaction stays usable: read back who won.
                let inserted = sqlx::query(
                    "INSERT INTO pago (id_pago, id_partner, id_ciclo, valor_menor, moneda, metodo_tipo, metodo_mascara, \
                     estado, creado_en, actualizado_en) VALUES ($1, $2, $3, $4, $5, $6, $7, 'PROCESANDO', $8, $8) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(r.id_pago)
                .bind(&r.id_partner)
                .bind(&r.id_ciclo)
                .bind(r.monto.valor_menor)
                .bind(r.monto.moneda.codigo())
                .bind(&r.metodo_pago.tipo)
                .bind(&r.metodo_pago.mascara)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    let owner: Option<Uuid> =
                        sqlx::query_scalar("SELECT id_pago FROM pago WHERE id_partner = $1 AND id_ciclo = $2")
                            .bind(&r.id_partner)
                            .bind(&r.id_ciclo)
                            .fetch_optional(&mut **tx)
                            .await?;
                    return Ok(match owner {
                        Some(otro) => titular(otro),
                        None => refuse(PAGO_DUPLICADO, format!("el pago {} ya existe para otro ciclo", r.id_pago)),
                    });
                }
                let comision = TransaccionPago {
                    id_transaccion: Uuid::now_v7(),
                    tipo: TIPO_COMISION.to_owned(),
                    monto: r.monto.porcentaje(COMISION_PORCENTAJE),
                    porcentaje: COMISION_PORCENTAJE,
                };
                sqlx::query(
                    "INSERT INTO transaccion_pago (id_transaccion, id_pago, tipo, valor_menor, moneda, porcentaje, creada_en) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(comision.id_transaccion)
                .bind(r.id_pago)
                .bind(&comision.tipo)
                .bind(comision.monto.valor_menor)
                .bind(comision.monto.moneda.codigo())
                .bind(comision.porcentaje)
                .bind(now)
                .execute(&mut **tx)
                .await?;
                output(&PagoRegistrado { id_pago: r.id_pago, transacciones: vec![comision] })
            }

            async fn $fallido(&self, tx: &mut Transaction<'static, $db>, m: MarcarPagoFallido) -> Result<Outcome, HandlerError> {
                sqlx::query("UPDATE pago SET estado = 'FALLIDO', actualizado_en = $2 WHERE id_pago = $1")
                    .bind(m.id_pago)
                    .bind(ahora())
                    .execute(&mut **tx)
                    .await?;
                output(&CompensacionConfirmada { lapida: false })
            }

            async fn $confirmar(&self, tx: &mut Transaction<'static, $db>, c: ConfirmarPago) -> Result<Outcome, HandlerError> {
                let now = ahora();
                let done = sqlx::query(
                    "UPDATE pago SET estado = 'COMPLETADO', id_confirmacion = $2, actualizado_en = $3 \
                     WHERE id_pago = $1 AND estado = 'PROCESANDO'",
                )
                .bind(c.id_pago)
                .bind(&c.id_confirmacion)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if done == 0 {
                    let estado: Option<String> = sqlx::query_scalar("SELECT estado FROM pago WHERE id_pago = $1")
                        .bind(c.id_pago)
                        .fetch_optional(&mut **tx)
                        .await?;
                    let reason = match estado {
                        Some(estado) => format!("el pago {} está {estado}, no PROCESANDO", c.id_pago),
                        None => format!("el pago {} no existe", c.id_pago),
                    };
                    return Ok(refuse(PAGO_NO_CONFIRMABLE, reason));
                }
                output(&PagoConfirmado { id_pago: c.id_pago, completado_en: now })
            }

            async fn $revertir(&self, tx: &mut Transaction<'static, $db>, r: RevertirConfirmacion) -> Result<Outcome, HandlerError> {
                // The confirmation is cleared: the provider's operation is being undone, so the
                // payout no longer has one that holds.
                sqlx::query(
                    "UPDATE pago SET estado = 'PROCESANDO', id_confirmacion = NULL, actualizado_en = $2 \
                     WHERE id_pago = $1 AND estado = 'COMPLETADO'",
                )
                .bind(r.id_pago)
                .bind(ahora())
                .execute(&mut **tx)
                .await?;
                output(&CompensacionConfirmada { lapida: false })
            }

            /// The payout `id_pago` with its transactions, if recorded.
            pub async fn $leer(pool: &$pool, id_pago: Uuid) -> Result<Option<Pago>, sqlx::Error> {
                let fila: Option<FilaPago> = sqlx::query_as(
                    "SELECT id_pago, id_partner, id_ciclo, valor_menor, moneda, metodo_tipo, metodo_mascara, estado, \
                     id_confirmacion, creado_en, actualizado_en FROM pago WHERE id_pago = $1",
                )
                .bind(id_pago)
                .fetch_optional(pool)
                .await?;
                let Some((id_pago, id_partner, id_ciclo, valor, codigo, tipo, mascara, estado, id_confirmacion, creado_en, actualizado_en)) = fila
                else {
                    return Ok(None);
                };
                let filas: Vec<(Uuid, String, i64, String, i64)> = sqlx::query_as(
                    "SELECT id_transaccion, tipo, valor_menor, moneda, porcentaje FROM transaccion_pago \
                     WHERE id_pago = $1 ORDER BY creada_en, id_transaccion",
                )
                .bind(id_pago)
                .fetch_all(pool)
                .await?;
                let mut transacciones = Vec::with_capacity(filas.len());
                for (id_transaccion, tipo, valor_menor, codigo, porcentaje) in filas {
                    transacciones.push(TransaccionPago {
                        id_transaccion,
                        tipo,
                        monto: Monto { valor_menor, moneda: moneda(&codigo)? },
                        porcentaje,
                    });
                }
                Ok(Some(Pago {
                    id_pago,
                    id_partner,
                    id_ciclo,
                    monto: Monto { valor_menor: valor, moneda: moneda(&codigo)? },
                    metodo_pago: MetodoPago { tipo, mascara },
                    estado: EstadoPago::parse(&estado)?,
                    id_confirmacion,
                    creado_en,
                    actualizado_en,
                    transacciones,
                }))
            }
        }

        #[async_trait]
        impl Handler<$db> for Pagos {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoPagos>(command)? {
                    CuerpoPagos::RegistrarPago(r) => self.$registrar(tx, r).await,
                    CuerpoPagos::ConfirmarPago(c) => self.$confirmar(tx, c).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoPagos>(command)? {
                    CuerpoPagos::MarcarPagoFallido(m) => self.$fallido(tx, m).await,
                    CuerpoPagos::RevertirConfirmacion(r) => self.$revertir(tx, r).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

pagos_for!(Postgres, PgPool, registrar_pg, fallido_pg, confirmar_pg, revertir_pg, pago_postgres);
pagos_for!(Sqlite, SqlitePool, registrar_sqlite, fallido_sqlite, confirmar_sqlite, revertir_sqlite, pago_sqlite);
