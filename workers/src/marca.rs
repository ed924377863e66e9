//! marca: reserves a campaign's budget against its brand's available budget, and releases it.
//!
//! Business failures (the saga compensates): `MARCA_DESCONOCIDA` (no such brand),
//! `MARCA_INACTIVA`, `PRESUPUESTO_INSUFICIENTE` (the budget exceeds what is available),
//! `CAMPANA_DUPLICADA` (another saga already reserved for this campaign id).
//! The reservation is one conditional `UPDATE`, so concurrent campaigns never overdraw a brand,
//! on PostgreSQL (row lock) as on SQLite (the participant's `BEGIN IMMEDIATE`).

use async_trait::async_trait;
use chrono::Utc;
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{
    Centavos, CompensacionConfirmada, CuerpoMarca, LiberarPresupuesto, MessageUnion, PresupuestoReservado,
    ReservarPresupuesto,
};

use crate::support::{body, output, refuse, wrong_kind};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

/// Migrations of the marca database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/marca/postgres");
/// Migrations of the marca database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/marca/sqlite");

/// Unknown brand.
pub const MARCA_DESCONOCIDA: &str = "MARCA_DESCONOCIDA";
/// Inactive brand.
pub const MARCA_INACTIVA: &str = "MARCA_INACTIVA";
/// Not enough budget available.
pub const PRESUPUESTO_INSUFICIENTE: &str = "PRESUPUESTO_INSUFICIENTE";
/// Another saga already reserved budget for this campaign.
pub const CAMPANA_DUPLICADA: &str = "CAMPANA_DUPLICADA";

/// A brand as seeded (from a JSON file: a list of these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarcaSeed {
    /// The brand's id, as the public API sends it.
    pub id_marca: Uuid,
    /// Its name.
    pub nombre: String,
    /// Inactive brands refuse every reservation.
    pub activa: bool,
    /// Budget available for new campaigns, in minor units.
    pub presupuesto_disponible_centavos: i64,
}

/// The brands seeded when no file is given: `workers/seed/marcas.json`.
pub const MARCAS_POR_DEFECTO: &str = include_str!("../seed/marcas.json");

/// The marca business rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Marca;

macro_rules! marca_for {
    ($db:ty, $reservar:ident, $liberar:ident, $seed:ident) => {
        impl Marca {
            async fn $reservar(&self, tx: &mut Transaction<'static, $db>, r: ReservarPresupuesto) -> Result<Outcome, HandlerError> {
                let monto = r.monto_centavos.0;
                let existing: Option<Uuid> = sqlx::query_scalar("SELECT id_reserva FROM reserva_presupuesto WHERE id_campana = $1")
                    .bind(r.id_campana)
                    .fetch_optional(&mut **tx)
                    .await?;
                if let Some(id_reserva) = existing {
                    return Ok(refuse(CAMPANA_DUPLICADA, format!("la campaña {} ya tiene la reserva {id_reserva}", r.id_campana)));
                }
                let left: Option<(i64,)> = sqlx::query_as(
                    "UPDATE marca SET presupuesto_disponible_centavos = presupuesto_disponible_centavos - $2 \
                     WHERE id_marca = $1 AND activa AND presupuesto_disponible_centavos >= $2 \
                     RETURNING presupuesto_disponible_centavos",
                )
                .bind(r.id_marca)
                .bind(monto)
                .fetch_optional(&mut **tx)
                .await?;
                let Some((left,)) = left else {
                    // Say why: read the brand as it is.
                    let brand: Option<(bool, i64)> =
                        sqlx::query_as("SELECT activa, presupuesto_disponible_centavos FROM marca WHERE id_marca = $1")
                            .bind(r.id_marca)
                            .fetch_optional(&mut **tx)
                            .await?;
                    return Ok(match brand {
                        None => refuse(MARCA_DESCONOCIDA, format!("la marca {} no existe", r.id_marca)),
                        Some((false, _)) => refuse(MARCA_INACTIVA, format!("la marca {} no está activa", r.id_marca)),
                        Some((true, disponible)) => refuse(
                            PRESUPUESTO_INSUFICIENTE,
                            format!("presupuesto {monto} centavos, disponible {disponible} centavos"),
                        ),
                    });
                };
                let id_reserva = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO reserva_presupuesto (id_reserva, id_campana, id_marca, monto_centavos, estado, creada_en) \
                     VALUES ($1, $2, $3, $4, 'reservada', $5)",
                )
                .bind(id_reserva)
                .bind(r.id_campana)
                .bind(r.id_marca)
                .bind(monto)
                .bind(Utc::now())
                .execute(&mut **tx)
                .await?;
                output(&PresupuestoReservado {
                    id_reserva,
                    id_marca: r.id_marca,
                    monto_centavos: r.monto_centavos,
                    disponible_restante_centavos: Centavos(left),
                })
            }

            async fn $liberar(&self, tx: &mut Transaction<'static, $db>, l: LiberarPresupuesto) -> Result<Outcome, HandlerError> {
                let released: Option<(Uuid, i64)> = sqlx::query_as(
                    "UPDATE reserva_presupuesto SET estado = 'liberada', liberada_en = $2 \
                     WHERE id_campana = $1 AND estado = 'reservada' RETURNING id_marca, monto_centavos",
                )
                .bind(l.id_campana)
                .bind(Utc::now())
                .fetch_optional(&mut **tx)
                .await?;
                if let Some((id_marca, monto)) = released {
                    sqlx::query(
                        "UPDATE marca SET presupuesto_disponible_centavos = presupuesto_disponible_centavos + $2 WHERE id_marca = $1",
                    )
                    .bind(id_marca)
                    .bind(monto)
                    .execute(&mut **tx)
                    .await?;
                }
                output(&CompensacionConfirmada { lapida: false })
            }

            /// Inserts the brands not yet known (the seed file's content). A brand already in the
            /// database keeps its state: re-seeding on every start must not undo reservations.
            pub async fn $seed(pool: &sqlx::Pool<$db>, marcas: &[MarcaSeed]) -> Result<(), sqlx::Error> {
                for m in marcas {
                    sqlx::query(
                        "INSERT INTO marca (id_marca, nombre, activa, presupuesto_disponible_centavos) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (id_marca) DO NOTHING",
                    )
                    .bind(m.id_marca)
                    .bind(&m.nombre)
                    .bind(m.activa)
                    .bind(m.presupuesto_disponible_centavos)
                    .execute(pool)
                    .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Handler<$db> for Marca {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoMarca>(command)? {
                    CuerpoMarca::ReservarPresupuesto(r) => self.$reservar(tx, r).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoMarca>(command)? {
                    CuerpoMarca::LiberarPresupuesto(l) => self.$liberar(tx, l).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

marca_for!(Postgres, reservar_pg, liberar_pg, seed_postgres);
marca_for!(Sqlite, reservar_sqlite, liberar_sqlite, seed_sqlite);
