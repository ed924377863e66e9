//! cliente: the partners who get paid. The service owns its database, registers and shows
//! clients over HTTP ([`api`]), and records each payout on its client (step 3 of the payout
//! saga).
//!
//! `RegistrarPagoCliente` records the payment and moves the client's totals: `total_pagos + 1`,
//! `ultimo_pago` now. Business failures (the saga compensates): `PARTNER_NO_ENCONTRADO` (no
//! client with that id), `PAGO_DUPLICADO` (another saga already recorded this payout id).
//! `RevertirPagoCliente` removes the payment and recomputes the totals from the payments that
//! remain (their count, and the latest one's time or `null`), so undoing one payment among
//! others, in any order, leaves the totals right.

pub mod api;
pub mod repositorio;
pub mod valores;

use async_trait::async_trait;
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{
    CompensacionConfirmada, CuerpoCliente, MessageUnion, PagoClienteRegistrado, RegistrarPagoCliente,
    RevertirPagoCliente,
};
use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite, Transaction};

pub use api::{openapi, router};
pub use repositorio::{Cliente, Clientes, NuevoCliente, PgClientes, Registro, SqliteClientes};
pub use valores::{Cedula, Email, IdCliente, Nombre};

use crate::support::{ahora, body, output, refuse, wrong_kind};

/// Migrations of the cliente database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/cliente/postgres");
/// Migrations of the cliente database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/cliente/sqlite");

/// No client with the payout's partner id.
pub const PARTNER_NO_ENCONTRADO: &str = "PARTNER_NO_ENCONTRADO";
/// Another saga already recorded this payout on a client.
pub const PAGO_DUPLICADO: &str = "PAGO_DUPLICADO";

/// cliente's command handler: the payout saga's step 3.
#[derive(Clone, Copy, Debug, Default)]
pub struct Comandos;

macro_rules! cliente_for {
    ($db:ty, $registrar:ident, $revertir:ident) => {
        impl Comandos {
            async fn $registrar(&self, tx: &mut Transaction<'static, $db>, r: RegistrarPagoCliente) -> Result<Outcome, HandlerError> {
                let existe: Option<String> = sqlx::query_scalar("SELECT id FROM cliente WHERE id = $1")
                    .bind(&r.id_partner)
                    .fetch_optional(&mut **tx)
                    .await?;
                if existe.is_none() {
                    return Ok(refuse(PARTNER_NO_ENCONTRADO, format!("no hay un cliente {:?}", r.id_partner)));
                }
                let now = ahora();
                let inserted = sqlx::query(
                    "INSERT INTO pago_cliente (id_pago, id_cliente, valor_menor, moneda, registrado_en) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id_pago) DO NOTHING",
                )
                .bind(r.id_pago)
                .bind(&r.id_partner)
                .bind(r.monto.valor_menor)
                .bind(r.monto.moneda.codigo())
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if inserted == 0 {
                    return Ok(refuse(PAGO_DUPLICADO, format!("el pago {} ya está registrado", r.id_pago)));
                }
                let total: i64 = sqlx::query_scalar(
                    "UPDATE cliente SET total_pagos = total_pagos + 1, ultimo_pago = $2 WHERE id = $1 RETURNING total_pagos",
                )
                .bind(&r.id_partner)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
                output(&PagoClienteRegistrado {
                    id_partner: r.id_partner,
                    total_pagos: u32::try_from(total).unwrap_or(u32::MAX),
                    ultimo_pago: now,
                })
            }

            async fn $revertir(&self, tx: &mut Transaction<'static, $db>, r: RevertirPagoCliente) -> Result<Outcome, HandlerError> {
                let id_cliente: Option<String> =
                    sqlx::query_scalar("DELETE FROM pago_cliente WHERE id_pago = $1 RETURNING id_cliente")
                        .bind(r.id_pago)
                        .fetch_optional(&mut **tx)
                        .await?;
                if let Some(id_cliente) = id_cliente {
                    // Lock the client first: the recount below then reads (on PostgreSQL, in
                    // its own snapshot) every payment committed before the lock, and a payment
                    // being recorded concurrently adds its +1 after this commits. Recounting in
                    // the statement that waits for the lock would miss that payment.
                    sqlx::query("UPDATE cliente SET total_pagos = total_pagos WHERE id = $1")
                        .bind(&id_cliente)
                        .execute(&mut **tx)
                        .await?;
                    sqlx::query(
                        "UPDATE cliente SET \
                         total_pagos = (SELECT COUNT(*) FROM pago_cliente WHERE id_cliente = $1), \
                         ultimo_pago = (SELECT MAX(registrado_en) FROM pago_cliente WHERE id_cliente = $1) \
                         WHERE id = $1",
                    )
                    .bind(&id_cliente)
                    .execute(&mut **tx)
                    .await?;
                }
                output(&CompensacionConfirmada { lapida: false })
            }
        }

        #[async_trait]
        impl Handler<$db> for Comandos {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoCliente>(command)? {
                    CuerpoCliente::RegistrarPagoCliente(r) => self.$registrar(tx, r).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoCliente>(command)? {
                    CuerpoCliente::RevertirPagoCliente(r) => self.$revertir(tx, r).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

cliente_for!(Postgres, registrar_pg, revertir_pg);
cliente_for!(Sqlite, registrar_sqlite, revertir_sqlite);
