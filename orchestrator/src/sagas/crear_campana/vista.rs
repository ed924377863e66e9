//! The query side: campaigns as clients see them (`pendiente`, `activa`, `rechazada` with its
//! reason), read by the HTTP API instead of the saga log's internals, and the answers to
//! `Idempotency-Key`s. Kept in the orchestrator's database, beside the saga log; PostgreSQL and
//! SQLite run the same statements, as the saga log's stores do.

use std::str::FromStr;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga_core::log::sql::migrate;
use saga_core::SagaId;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::types::Json;
use sqlx::{PgPool, SqlitePool};
use uuid::Uuid;

use crate::outbox::{Outbox, PgOutbox, SqliteOutbox};
use crate::projector::{Cursor, Pending, Projection};
use crate::sagas::crear_campana::CrearCampana;
use schemas::EventoCampana;

/// Migrations of the campaign view on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("src/sagas/crear_campana/migrations/postgres");
/// Migrations of the campaign view on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("src/sagas/crear_campana/migrations/sqlite");

/// A campaign's state as clients see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Estado {
    /// Its saga is running (or waiting for an operator).
    Pendiente,
    /// Created in all three services.
    Activa,
    /// Refused; whatever was done was undone.
    Rechazada,
}

impl Estado {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Estado::Pendiente => "pendiente",
            Estado::Activa => "activa",
            Estado::Rechazada => "rechazada",
        }
    }
}

impl FromStr for Estado {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pendiente" => Ok(Estado::Pendiente),
            "activa" => Ok(Estado::Activa),
            "rechazada" => Ok(Estado::Rechazada),
            other => Err(format!("estado desconocido {other:?} (pendiente, activa, rechazada)")),
        }
    }
}

/// One campaign of the view, as stored (the HTTP API answers it in the public shape,
/// `api::VistaCampana`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Campana {
    /// The campaign.
    pub id_campana: Uuid,
    /// The saga that creates it.
    pub saga_id: SagaId,
    /// Where it is.
    pub estado: Estado,
    /// Why it was refused.
    pub motivo: Option<String>,
    /// The refusal's code.
    pub codigo: Option<String>,
    /// The step that refused it.
    pub paso_fallido: Option<String>,
    /// The accepted request (budget in minor units, `presupuesto_centavos`).
    pub solicitud: CrearCampana,
    /// What the services answered (budget reservation, bookings, tracking links), once active.
    pub resultado: Option<Value>,
    /// When it was requested.
    pub creada_en: DateTime<Utc>,
    /// When it last changed.
    pub actualizada_en: DateTime<Utc>,
}

/// A page of campaigns and how many match the filter in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Listado {
    /// The page, newest first.
    pub campanas: Vec<Campana>,
    /// Every campaign matching the filter, not only this page's (counted by the database).
    pub total: u64,
}

/// What `crear` did.
#[derive(Debug)]
pub enum Creada {
    /// A new campaign, `pendiente`.
    Nueva(Box<Campana>),
    /// The `Idempotency-Key` was seen before: the campaign it created.
    Existente(Box<Campana>),
}

/// A view operation that failed.
#[derive(Debug, thiserror::Error)]
#[error("campaign view: {0}")]
pub struct VistaError(#[from] pub sqlx::Error);

/// How a saga ended, for the view.
#[derive(Clone, Debug, PartialEq)]
pub enum Final {
    /// Completed, with the steps' outputs.
    Activa(Value),
    /// Compensated or abandoned.
    Rechazada {
        /// The failure's code.
        codigo: String,
        /// The failure's reason.
        motivo: String,
        /// The step that failed, if one did.
        paso: Option<String>,
    },
}

/// The campaign view.
#[async_trait]
pub trait Vista: Send + Sync + 'static {
    /// Records a new `pendiente` campaign (and its `Idempotency-Key`, if any) in one
    /// transaction. With a key seen before, records nothing and returns the earlier campaign.
    async fn crear(&self, campana: &CrearCampana, saga_id: SagaId, clave: Option<&str>) -> Result<Creada, VistaError>;
    /// One campaign.
    async fn obtener(&self, id: Uuid) -> Result<Option<Campana>, VistaError>;
    /// A page of campaigns, newest first, optionally in one state, with how many match.
    async fn listar(&self, filtro: &FiltroCampanas, limite: u32, desde: u32) -> Result<Listado, VistaError>;
    /// Campaigns still `pendiente` after `after`, in (creation time, id) order (for the
    /// projector's catch-up, page by page).
    async fn pendientes(&self, after: Option<Cursor>, limite: u32) -> Result<Vec<Campana>, VistaError>;
    /// Records how the saga ended, and its integration event in the outbox, in one
    /// transaction; a campaign already out of `pendiente` is left as it is.
    async fn terminar(&self, saga_id: SagaId, fin: &Final, evento: Option<&EventoCampana>) -> Result<bool, VistaError>;
    /// Events of the outbox not yet published, oldest first.
    async fn eventos_pendientes(&self, limite: u32) -> Result<Vec<EventoCampana>, VistaError>;
    /// Marks an event published.
    async fn marcar_publicado(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), VistaError>;
    /// Its outbox, for the relay.
    fn outbox(&self) -> Arc<dyn Outbox>;
    /// The outbox's event of a saga, with its publication time.
    async fn evento_de(&self, saga_id: SagaId) -> Result<Option<(EventoCampana, Option<DateTime<Utc>>)>, VistaError>;
}

/// Filters of [`Vista::listar`].
#[derive(Clone, Debug, Default)]
pub struct FiltroCampanas {
    /// Only this state.
    pub estado: Option<Estado>,
    /// Only those whose name contains this, ignoring case.
    pub buscar: Option<String>,
    /// Only those that book an influencer of this name, ignoring case.
    pub influencer: Option<String>,
}

/// The outbox table of this saga's integration events.
pub const OUTBOX: &str = "evento_saliente";

const COLUMNS: &str =
    "id_campana, saga_id, estado, motivo, codigo, paso_fallido, solicitud, resultado, creada_en, actualizada_en";

type Row = (
    Uuid,
    Uuid,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Json<CrearCampana>,
    Option<Json<Value>>,
    DateTime<Utc>,
    DateTime<Utc>,
);

fn campana(row: Row) -> Result<Campana, VistaError> {
    let (
        id_campana,
        saga_id,
        estado,
        motivo,
        codigo,
        paso_fallido,
        Json(solicitud),
        resultado,
        creada_en,
        actualizada_en,
    ) = row;
    Ok(Campana {
        id_campana,
        saga_id: SagaId(saga_id),
        estado: estado.parse().map_err(|e: String| VistaError(sqlx::Error::Decode(e.into())))?,
        motivo,
        codigo,
        paso_fallido,
        solicitud,
        resultado: resultado.map(|Json(v)| v),
        creada_en,
        actualizada_en,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

macro_rules! sql_vista {
    ($(#[$meta:meta])* $name:ident, $pool:ty, $migrator:ident, $outbox:ident, $books_influencer:expr) => {
        $(#[$meta])*
        #[derive(Clone)]
        pub struct $name {
            pool: $pool,
            outbox: $outbox<EventoCampana>,
        }

        impl $name {
            /// The view over `pool`, migrated.
            pub async fn new(pool: $pool) -> Result<Self, sqlx::migrate::MigrateError> {
                migrate(&$migrator, &pool).await?;
                Ok(Self { outbox: $outbox::new(pool.clone(), OUTBOX), pool })
            }

            async fn by_key(&self, clave: &str) -> Result<Option<Campana>, VistaError> {
                let row: Option<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM campana WHERE id_campana = (SELECT id_campana FROM idempotencia WHERE clave = $1)"
                ))
                .bind(clave)
                .fetch_optional(&self.pool)
                .await?;
                row.map(campana).transpose()
            }
        }

        #[async_trait]
        impl Vista for $name {
            async fn crear(&self, c: &CrearCampana, saga_id: SagaId, clave: Option<&str>) -> Result<Creada, VistaError> {
                if let Some(clave) = clave {
                    if let Some(existing) = self.by_key(clave).await? {
                        return Ok(Creada::Existente(Box::new(existing)));
                    }
                }
                let now = saga_core::clock::Clock::now(&saga_core::clock::SystemClock);
                let mut tx = self.pool.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO campana ({COLUMNS}, nombre) VALUES ($1, $2, 'pendiente', NULL, NULL, NULL, $3, NULL, $4, $4, $5)"
                ))
                .bind(c.id_campana)
                .bind(saga_id.0)
                .bind(Json(c))
                .bind(now)
                .bind(&c.nombre)
                .execute(&mut *tx)
                .await?;
                if let Some(clave) = clave {
                    let inserted = sqlx::query("INSERT INTO idempotencia (clave, id_campana, creada_en) VALUES ($1, $2, $3)")
                        .bind(clave)
                        .bind(c.id_campana)
                        .bind(now)
                        .execute(&mut *tx)
                        .await;
                    match inserted {
                        Ok(_) => {}
                        // Another request with this key won the race: answer with its campaign.
                        Err(e) if is_unique_violation(&e) => {
                            tx.rollback().await?;
                            return match self.by_key(clave).await? {
                                Some(existing) => Ok(Creada::Existente(Box::new(existing))),
                                None => Err(VistaError(e)),
                            };
                        }
                        Err(e) => return Err(VistaError(e)),
                    }
                }
                tx.commit().await?;
                let created = self.obtener(c.id_campana).await?.ok_or(VistaError(sqlx::Error::RowNotFound))?;
                Ok(Creada::Nueva(Box::new(created)))
            }

            async fn obtener(&self, id: Uuid) -> Result<Option<Campana>, VistaError> {
                let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM campana WHERE id_campana = $1"))
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(campana).transpose()
            }

            async fn listar(&self, f: &FiltroCampanas, limite: u32, desde: u32) -> Result<Listado, VistaError> {
                let where_ = format!(
                    "($1 IS NULL OR estado = $1) AND ($2 IS NULL OR lower(nombre) LIKE $2 ESCAPE '\\') \
                     AND ($3 IS NULL OR {})",
                    $books_influencer
                );
                let estado = f.estado.map(Estado::as_str);
                let patron = f.buscar.as_deref().and_then(daemon::like_pattern);
                let influencer = f.influencer.as_deref().map(str::trim).filter(|i| !i.is_empty()).map(str::to_lowercase);
                let rows: Vec<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM campana WHERE {where_} \
                     ORDER BY creada_en DESC, id_campana DESC LIMIT $4 OFFSET $5"
                ))
                .bind(estado)
                .bind(patron.as_deref())
                .bind(influencer.as_deref())
                .bind(i64::from(limite.clamp(1, 500)))
                .bind(i64::from(desde))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM campana WHERE {where_}"))
                    .bind(estado)
                    .bind(patron.as_deref())
                    .bind(influencer.as_deref())
                    .fetch_one(&self.pool)
                    .await?;
                Ok(Listado {
                    campanas: rows.into_iter().map(campana).collect::<Result<_, _>>()?,
                    total: u64::try_from(total).unwrap_or_default(),
                })
            }

            async fn pendientes(&self, after: Option<Cursor>, limite: u32) -> Result<Vec<Campana>, VistaError> {
                let rows: Vec<Row> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM campana WHERE estado = 'pendiente' \
                     AND ($1 IS NULL OR creada_en > $1 OR (creada_en = $1 AND id_campana > $2)) \
                     ORDER BY creada_en, id_campana LIMIT $3"
                ))
                .bind(after.map(|(at, _)| at))
                .bind(after.map(|(_, id)| id))
                .bind(i64::from(limite))
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter().map(campana).collect()
            }

            async fn terminar(&self, saga_id: SagaId, fin: &Final, evento: Option<&EventoCampana>) -> Result<bool, VistaError> {
                let now = saga_core::clock::Clock::now(&saga_core::clock::SystemClock);
                let (estado, codigo, motivo, paso, resultado) = match fin {
                    Final::Activa(resultado) => (Estado::Activa, None, None, None, Some(Json(resultado.clone()))),
                    Final::Rechazada { codigo, motivo, paso } => {
                        (Estado::Rechazada, Some(codigo.clone()), Some(motivo.clone()), paso.clone(), None)
                    }
                };
                let mut tx = self.pool.begin().await?;
                let done = sqlx::query(
                    "UPDATE campana SET estado = $2, codigo = $3, motivo = $4, paso_fallido = $5, resultado = $6, actualizada_en = $7 \
                     WHERE saga_id = $1 AND estado = 'pendiente'",
                )
                .bind(saga_id.0)
                .bind(estado.as_str())
                .bind(codigo)
                .bind(motivo)
                .bind(paso)
                .bind(resultado)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if let Some(e) = evento {
                    self.outbox.insert(&mut tx, e, now).await?;
                }
                tx.commit().await?;
                Ok(done > 0)
            }

            async fn eventos_pendientes(&self, limite: u32) -> Result<Vec<EventoCampana>, VistaError> {
                Ok(self.outbox.pending(limite).await?)
            }

            async fn marcar_publicado(&self, id_evento: Uuid, at: DateTime<Utc>) -> Result<(), VistaError> {
                Ok(self.outbox.mark(id_evento, at).await?)
            }

            async fn evento_de(&self, saga_id: SagaId) -> Result<Option<(EventoCampana, Option<DateTime<Utc>>)>, VistaError> {
                Ok(self.outbox.of_saga(saga_id.0).await?)
            }

            fn outbox(&self) -> Arc<dyn Outbox> {
                Arc::new(self.outbox.clone())
            }
        }
    };
}

sql_vista!(
    /// The campaign view in PostgreSQL.
    PgVista,
    PgPool,
    PG_MIGRATOR,
    PgOutbox,
    "EXISTS (SELECT 1 FROM jsonb_array_elements(solicitud -> 'influencers') AS i WHERE lower(i ->> 'nombre') = $3)"
);

sql_vista!(
    /// The campaign view in SQLite (the embedded mode).
    SqliteVista,
    SqlitePool,
    SQLITE_MIGRATOR,
    SqliteOutbox,
    "EXISTS (SELECT 1 FROM json_each(solicitud, '$.influencers') AS i \
     WHERE lower(json_extract(i.value, '$.nombre')) = $3)"
);

/// The view as the projector and the relay see it.
pub struct Proyeccion(pub Arc<dyn Vista>);

#[async_trait]
impl Projection for Proyeccion {
    fn saga_type(&self) -> &'static str {
        super::SAGA_TYPE
    }

    async fn finish(&self, state: &saga_core::SagaState) -> Result<bool, String> {
        let Some(fin) = super::projector::final_de(state) else { return Ok(false) };
        // An event that cannot be built leaves the campaign pending: the catch-up retries it,
        // and the projector counts the failure, rather than the outcome going out without it.
        let evento = super::eventos::de_saga(state)?;
        self.0.terminar(state.id, &fin, evento.as_ref()).await.map_err(|e| e.to_string())
    }

    async fn pending(&self, after: Option<Cursor>, limit: u32) -> Result<Vec<Pending>, String> {
        let campanas = self.0.pendientes(after, limit).await.map_err(|e| e.to_string())?;
        campanas
            .into_iter()
            .map(|c| {
                Ok(Pending {
                    cursor: (c.creada_en, c.id_campana),
                    saga_id: c.saga_id,
                    params: serde_json::to_value(&c.solicitud).map_err(|e| e.to_string())?,
                })
            })
            .collect()
    }
}
