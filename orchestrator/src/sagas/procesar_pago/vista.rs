//! The query side of the payout saga: payouts as clients see them (`PENDIENTE`, then
//! `COMPLETADO` or `FALLIDO` with the reason), with the outbox of their integration events. Kept
//! in the orchestrator's database beside the saga log; PostgreSQL and SQLite run the same
//! statements.
//!
//! One live payout per `(partner, cycle)`: a unique index over the payouts not `FALLIDO` decides
//! between concurrent requests, so a cycle is paid at most once whatever the retries and the
//! concurrency; a failed payout paid nothing and frees its cycle for a new request.

use std::str::FromStr;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_core::log::sql::migrate;
use saga_core::{SagaId, SagaState};
use serde::{Deserialize, Serialize};
use sqlx::migrate::Migrator;
use sqlx::types::Json;
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use super::definicion::ProcesarPago;
use super::eventos;
use crate::outbox::{Outbox, PgOutbox, SqliteOutbox};
use crate::projector::{Cursor, Pending, Projection};
use schemas::EventoPago;

/// Migrations of the payout view on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("src/sagas/procesar_pago/migrations/postgres");
/// Migrations of the payout view on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("src/sagas/procesar_pago/migrations/sqlite");

/// A payout's state as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EstadoPago {
    /// Its saga is running (or waiting for an operator).
    Pendiente,
    /// Paid, and recorded in every service.
    Completado,
    /// Not paid; whatever was done was undone.
    Fallido,
}

impl EstadoPago {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            EstadoPago::Pendiente => "PENDIENTE",
            EstadoPago::Completado => "COMPLETADO",
            EstadoPago::Fallido => "FALLIDO",
        }
    }
}

impl FromStr for EstadoPago {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "PENDIENTE" => Ok(EstadoPago::Pendiente),
            "COMPLETADO" => Ok(EstadoPago::Completado),
            "FALLIDO" => Ok(EstadoPago::Fallido),
            other => Err(format!("estado desconocido {other:?} (PENDIENTE, COMPLETADO, FALLIDO)")),
        }
    }
}

/// One payout of the view.
#[derive(Clone, Debug, PartialEq)]
pub struct Pago {
    /// The payout.
    pub id_pago: Uuid,
    /// The saga that carries it out.
    pub saga_id: SagaId,
    /// Where it is.
    pub estado: EstadoPago,
    /// The failure's code.
    pub codigo: Option<String>,
    /// The failure's reason.
    pub motivo: Option<String>,
    /// The step that failed.
    pub paso_fallido: Option<String>,
    /// The accepted request.
    pub solicitud: ProcesarPago,
    /// When it was requested.
    pub fecha_creacion: DateTime<Utc>,
    /// When it last changed.
    pub fecha_actualizacion: DateTime<Utc>,
}

/// What [`VistaPagos::registrar`] did.
#[derive(Debug)]
pub enum Registrado {
    /// A new payout, `PENDIENTE`: its saga is to be started.
    Nuevo(Box<Pago>),
    /// The partner's cycle already has this payout.
    Existente(Box<Pago>),
}

/// A view operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("payout view: {0}")]
pub struct VistaError(#[from] pub sqlx::Error);

/// How a saga ended, for the view.
#[derive(Clone, Debug, PartialEq)]
pub enum Final {
    /// Completed.
    Completado,
    /// Compensated or abandoned.
    Fallido {
        /// The failure's code.
        codigo: String,
        /// The failure's reason.
        motivo: String,
        /// The step that failed, if one did.
        paso: Option<String>,
    },
}

/// Filters of [`VistaPagos::listar`] and [`VistaPagos::agregar`].
#[derive(Clone, Debug, Default)]
pub struct Filtro {
    /// Only this state.
    pub estado: Option<EstadoPago>,
    /// Only this partner's.
    pub id_partner: Option<String>,
    /// Only those created at or after this.
    pub creado_desde: Option<DateTime<Utc>>,
    /// Only those created at or before this.
    pub creado_hasta: Option<DateTime<Utc>>,
    /// Only those of at least this amount, in units of their currency.
    pub monto_min: Option<f64>,
    /// Only those of at most this amount, in units of their currency.
    pub monto_max: Option<f64>,
    /// Only those whose partner or cycle contains this, ignoring case.
    pub buscar: Option<String>,
}

impl Filtro {
    fn patron(&self) -> Option<String> {
        self.buscar.as_deref().and_then(daemon::like_pattern)
    }
}

/// The payouts of one state in one currency, among those a [`Filtro`] selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agregado {
    /// The state.
    pub estado: EstadoPago,
    /// The currency (ISO 4217).
    pub moneda: String,
    /// How many.
    pub pagos: u64,
    /// Their sum, in minor units of `moneda`.
    pub monto_menor: i64,
}

/// The payout view.
#[async_trait]
pub trait VistaPagos: Send + Sync + 'static {
    /// Records a new `PENDIENTE` payout; when its partner's cycle already has one not
    /// `FALLIDO`, records nothing and returns that one.
    async fn registrar(&self, pago: &ProcesarPago, saga_id: SagaId) -> Result<Registrado, VistaError>;
    /// One payout.
    async fn obtener(&self, id: Uuid) -> Result<Option<Pago>, VistaError>;
    /// Payouts, newest first, and how many match the filter.
    async fn listar(&self, filtro: &Filtro, limite: u32, desde: u32) -> Result<(Vec<Pago>, u64), VistaError>;
    /// How many payouts the filter selects, and their sum, per state and currency (in SQL).
    async fn agregar(&self, filtro: &Filtro) -> Result<Vec<Agregado>, VistaError>;
    /// Payouts still `PENDIENTE` after `after`, in (creation time, id) order.
    async fn pendientes(&self, after: Option<Cursor>, limite: u32) -> Result<Vec<Pago>, VistaError>;
    /// Records how the saga ended and its event in the outbox, in one transaction; a payout
    /// already out of `PENDIENTE` is left as it is.
    async fn terminar(&self, saga_id: SagaId, fin: &Final, evento: &EventoPago) -> Result<bool, VistaError>;
    /// Events of the outbox not yet published, oldest first.
    async fn eventos_pendientes(&self, limite: u32) -> Result<Vec<EventoPago>, VistaError>;
    /// Marks an event published.
    async fn marcar_publicado(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), VistaError>;
    /// Its outbox, for the relay.
    fn outbox(&self) -> Arc<dyn Outbox>;
    /// The outbox's event of a saga, with its publication time.
    async fn evento_de(&self, saga_id: SagaId) -> Result<Option<(EventoPago, Option<DateTime<Utc>>)>, VistaError>;
}

/// The outbox table of this saga's integration events.
pub const OUTBOX: &str = "evento_pago_saliente";

const COLUMNS: &str =
    "id_pago, saga_id, estado, codigo, motivo, paso_fallido, solicitud, fecha_creacion, fecha_actualizacion";

type Row = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Json<ProcesarPago>,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn pago(row: Row) -> Result<Pago, VistaError> {
    let (id_pago, saga_id, estado, codigo, motivo, paso_fallido, Json(solicitud), fecha_creacion, fecha_actualizacion) =
        row;
    Ok(Pago {
        id_pago,
        saga_id: SagaId(saga_id),
        estado: estado.parse().map_err(|e: String| VistaError(sqlx::Error::Decode(e.into())))?,
        codigo,
        motivo,
        paso_fallido,
        solicitud,
        fecha_creacion,
        fecha_actualizacion,
    })
}

/// What a [`Filtro`] selects; its parameters are bound by [`bind_filtro!`], in this order.
const WHERE: &str = "($1 IS NULL OR estado = $1) AND ($2 IS NULL OR id_partner = $2) \
     AND ($3 IS NULL OR fecha_creacion >= $3) AND ($4 IS NULL OR fecha_creacion <= $4) \
     AND ($5 IS NULL OR monto_menor >= $5 * escala) AND ($6 IS NULL OR monto_menor <= $6 * escala) \
     AND ($7 IS NULL OR lower(id_partner) LIKE $7 ESCAPE '\\' OR lower(id_ciclo) LIKE $7 ESCAPE '\\')";

/// Binds a [`Filtro`]'s seven parameters of [`WHERE`] to a query.
macro_rules! bind_filtro {
    ($query:expr, $f:expr, $patron:expr) => {
        $query
            .bind($f.estado.map(EstadoPago::as_str))
            .bind($f.id_partner.as_deref())
            .bind($f.creado_desde)
            .bind($f.creado_hasta)
            .bind($f.monto_min)
            .bind($f.monto_max)
            .bind($patron)
    };
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! sql_vista {
    ($(#[$meta:meta])* $name:ident, $pool:ty, $migrator:ident, $outbox:ident) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            pool: $pool,
            outbox: $outbox<EventoPago>,
        }

        impl $name {
            /// The view over `pool`, migrated.
            pub async fn new(pool: $pool) -> Result<Self, sqlx::migrate::MigrateError> {
                migrate(&$migrator, &pool).await?;
                Ok(Self { outbox: $outbox::new(pool.clone(), OUTBOX), pool })
            }

            async fn by_cycle(&self, id_partner: &str, id_ciclo: &str) -> Result<Option<Pago>, VistaError> {
                let row: Option<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM vista_pago WHERE id_partner = $1 AND id_ciclo = $2 AND estado <> 'FALLIDO'"
                ))
                .bind(id_partner)
                .bind(id_ciclo)
                .fetch_optional(&self.pool)
                .await?;
                row.map(pago).transpose()
            }
        }

        #[async_trait]
        impl VistaPagos for $name {
            async fn registrar(&self, p: &ProcesarPago, saga_id: SagaId) -> Result<Registrado, VistaError> {
                if let Some(existing) = self.by_cycle(&p.id_partner, &p.id_ciclo).await? {
                    return Ok(Registrado::Existente(Box::new(existing)));
                }
                let now = Utc::now();
                let inserted = sqlx::query(&format!(
                    "INSERT INTO vista_pago ({COLUMNS}, id_partner, id_ciclo, monto_menor, moneda, escala) \
                     VALUES ($1, $2, 'PENDIENTE', NULL, NULL, NULL, $3, $4, $4, $5, $6, $7, $8, $9)"
                ))
                .bind(p.id_pago)
                .bind(saga_id.0)
                .bind(Json(p))
                .bind(now)
                .bind(&p.id_partner)
                .bind(&p.id_ciclo)
                .bind(p.monto.valor_menor)
                .bind(p.monto.moneda.codigo())
                .bind(10_i64.pow(p.monto.moneda.decimales()))
                .execute(&self.pool)
                .await;
                match inserted {
                    Ok(_) => {}
                    // Another request for this cycle won the race: answer with its payout.
                    Err(e) if is_unique_violation(&e) => {
                        return match self.by_cycle(&p.id_partner, &p.id_ciclo).await? {
                            Some(existing) => Ok(Registrado::Existente(Box::new(existing))),
                            None => Err(VistaError(e)),
                        };
                    }
                    Err(e) => return Err(VistaError(e)),
                }
                let created = self.obtener(p.id_pago).await?.ok_or(VistaError(sqlx::Error::RowNotFound))?;
                Ok(Registrado::Nuevo(Box::new(created)))
            }

            async fn obtener(&self, id: Uuid) -> Result<Option<Pago>, VistaError> {
                let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM vista_pago WHERE id_pago = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(pago).transpose()
            }

            async fn listar(&self, f: &Filtro, limite: u32, desde: u32) -> Result<(Vec<Pago>, u64), VistaError> {
                let patron = f.patron();
                let sql = format!(
                    "SELECT {COLUMNS} FROM vista_pago WHERE {WHERE} \
                     ORDER BY fecha_creacion DESC, id_pago DESC LIMIT $8 OFFSET $9"
                );
                let rows: Vec<Row> = bind_filtro!(sqlx::query_as(&sql), f, patron.as_deref())
                    .bind(i64::from(limite.clamp(1, 500)))
                    .bind(i64::from(desde))
                    .fetch_all(&self.pool)
                    .await?;
                let sql = format!("SELECT COUNT(*) FROM vista_pago WHERE {WHERE}");
                let total: i64 =
                    bind_filtro!(sqlx::query_scalar(&sql), f, patron.as_deref()).fetch_one(&self.pool).await?;
                let pagos = rows.into_iter().map(pago).collect::<Result<_, _>>()?;
                Ok((pagos, u64::try_from(total).unwrap_or(0)))
            }

            async fn agregar(&self, f: &Filtro) -> Result<Vec<Agregado>, VistaError> {
                let patron = f.patron();
                let sql = format!(
                    "SELECT estado, moneda, COUNT(*), CAST(COALESCE(SUM(monto_menor), 0) AS BIGINT) \
                     FROM vista_pago WHERE {WHERE} GROUP BY estado, moneda ORDER BY estado, moneda"
                );
                let rows: Vec<(String, String, i64, i64)> =
                    bind_filtro!(sqlx::query_as(&sql), f, patron.as_deref()).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|(estado, moneda, pagos, monto_menor)| {
                        Ok(Agregado {
                            estado: estado.parse().map_err(|e: String| VistaError(sqlx::Error::Decode(e.into())))?,
                            moneda,
                            pagos: u64::try_from(pagos).unwrap_or(0),
                            monto_menor,
                        })
                    })
                    .collect()
            }

            async fn pendientes(&self, after: Option<Cursor>, limite: u32) -> Result<Vec<Pago>, VistaError> {
                let rows: Vec<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM vista_pago WHERE estado = 'PENDIENTE' \
                     AND ($1 IS NULL OR fecha_creacion > $1 OR (fecha_creacion = $1 AND id_pago > $2)) \
                     ORDER BY fecha_creacion, id_pago LIMIT $3"
                ))
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .bind(i64::from(limite))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(pago).collect()
            }

            async fn terminar(&self, saga_id: SagaId, fin: &Final, evento: &EventoPago) -> Result<bool, VistaError> {
                let now = Utc::now();
                let (estado, codigo, motivo, paso) = match fin {
                    Final::Completado => (EstadoPago::Completado, None, None, None),
                    Final::Fallido { codigo, motivo, paso } => {
                        (EstadoPago::Fallido, Some(codigo.clone()), Some(motivo.clone()), paso.clone())
                    }
                };
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE vista_pago SET estado = $2, codigo = $3, motivo = $4, paso_fallido = $5, fecha_actualizacion = $6 \
                     WHERE saga_id = $1 AND estado = 'PENDIENTE'",
                )
                .bind(saga_id.0)
                .bind(estado.as_str())
                .bind(codigo)
                .bind(motivo)
                .bind(paso)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                self.outbox.insert(&mut tx, evento, now).await?;
                tx.commit().await?;
                Ok(done > 0)
            }

            async fn eventos_pendientes(&self, limite: u32) -> Result<Vec<EventoPago>, VistaError> {
                Ok(self.outbox.pending(limite).await?)
            }

            async fn marcar_publicado(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), VistaError> {
                Ok(self.outbox.mark(id_evento, at).await?)
            }

            async fn evento_de(&self, saga_id: SagaId) -> Result<Option<(EventoPago, Option<DateTime<Utc>>)>, VistaError> {
                Ok(self.outbox.of_saga(saga_id.0).await?)
            }

            fn outbox(&self) -> Arc<dyn Outbox> {
                Arc::new(self.outbox.clone())
            }
        }
    };
}

sql_vista!(
    /// The payout view in PostgreSQL.
    PgVistaPagos,
    PgPool,
    PG_MIGRATOR,
    PgOutbox
);

sql_vista!(
    /// The payout view in SQLite (the embedded mode).
    SqliteVistaPagos,
    SqlitePool,
    SQLITE_MIGRATOR,
    SqliteOutbox
);

/// The view as the projector and the relay see it.
pub struct Proyeccion(pub Arc<dyn VistaPagos>);

#[async_trait]
impl Projection for Proyeccion {
    fn saga_type(&self) -> &'static str {
        super::SAGA_TYPE
    }

    async fn finish(&self, state: &SagaState) -> Result<bool, String> {
        let Some(fin) = eventos::final_de(state) else { return Ok(false) };
        let evento = eventos::de_saga(state)?;
        self.0.terminar(state.id, &fin, &evento).await.map_err(|e| e.to_string())
    }

    async fn pending(&self, after: Option<Cursor>, limit: u32) -> Result<Vec<Pending>, String> {
        let pagos = self.0.pendientes(after, limit).await.map_err(|e| e.to_string())?;
        pagos
            .into_iter()
            .map(|p| {
                Ok(Pending {
                    cursor: (p.fecha_creacion, p.id_pago),
                    saga_id: p.saga_id,
                    params: serde_json::to_value(&p.solicitud).map_err(|e| e.to_string())?,
                })
            })
            .collect()
    }
}
