//! influencer: books each influencer of a campaign for the campaign's window, and releases the
//! bookings.
//!
//! Business failures (the saga compensates): `PLATAFORMA_DESCONOCIDA`, `AUDIENCIA_INSUFICIENTE`
//! (fewer followers than the platform's minimum), `INFLUENCER_OCUPADO` (already booked in an
//! overlapping window), `VENTANA_INVALIDA`, `CAMPANA_DUPLICADA` (another saga already booked for
//! this campaign id). The step is all or nothing: every influencer is checked before any is
//! booked. An influencer is known by name and platform (the public API gives no id).
//!
//! Concurrent bookings of one influencer are serialized by the upsert of its row (`ON CONFLICT
//! DO UPDATE` takes the row lock on PostgreSQL; SQLite participants hold the write lock from the
//! start), so two overlapping campaigns cannot both book it.

use async_trait::async_trait;
use chrono::NaiveDateTime;
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{
    CompensacionConfirmada, CuerpoInfluencer, InfluencersReservados, LiberarInfluencers, MessageUnion,
    ReservaInfluencer, ReservarInfluencers,
};
use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use crate::support::{body, output, refuse, wrong_kind};

/// Migrations of the influencer database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/influencer/postgres");
/// Migrations of the influencer database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/influencer/sqlite");

/// The platform is not one this service books on.
pub const PLATAFORMA_DESCONOCIDA: &str = "PLATAFORMA_DESCONOCIDA";
/// Below the platform's minimum audience.
pub const AUDIENCIA_INSUFICIENTE: &str = "AUDIENCIA_INSUFICIENTE";
/// Already booked in an overlapping window.
pub const INFLUENCER_OCUPADO: &str = "INFLUENCER_OCUPADO";
/// The window is empty or reversed.
pub const VENTANA_INVALIDA: &str = "VENTANA_INVALIDA";
/// Another saga already booked influencers for this campaign.
pub const CAMPANA_DUPLICADA: &str = "CAMPANA_DUPLICADA";

/// The influencer business rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Influencers;

/// The identity key of an influencer: trimmed, lower-case name and platform.
fn clave(nombre: &str, plataforma: &str) -> String {
    format!("{}@{}", nombre.trim().to_lowercase(), plataforma.trim().to_lowercase())
}

macro_rules! influencer_for {
    ($db:ty, $reservar:ident, $liberar:ident) => {
        impl Influencers {
            async fn $reservar(&self, tx: &mut Transaction<'static, $db>, r: ReservarInfluencers) -> Result<Outcome, HandlerError> {
                let (inicio, fin): (NaiveDateTime, NaiveDateTime) = (r.fecha_inicio, r.fecha_fin);
                if fin <= inicio {
                    return Ok(refuse(VENTANA_INVALIDA, format!("la ventana {inicio} – {fin} está vacía")));
                }
                let existing: Option<Uuid> =
                    sqlx::query_scalar("SELECT id_reserva FROM reserva_influencer WHERE id_campana = $1 LIMIT 1")
                        .bind(r.id_campana)
                        .fetch_optional(&mut **tx)
                        .await?;
                if existing.is_some() {
                    return Ok(refuse(CAMPANA_DUPLICADA, format!("la campaña {} ya tiene reservas", r.id_campana)));
                }
                // Check every influencer first: the step books all of them or none.
                let mut ids = Vec::with_capacity(r.influencers.len());
                for i in &r.influencers {
                    let plataforma = i.plataforma.trim().to_lowercase();
                    let minimo: Option<i64> = sqlx::query_scalar("SELECT seguidores_minimos FROM plataforma WHERE nombre = $1")
                        .bind(&plataforma)
                        .fetch_optional(&mut **tx)
                        .await?;
                    let Some(minimo) = minimo else {
                        return Ok(refuse(PLATAFORMA_DESCONOCIDA, format!("{}: plataforma {} desconocida", i.nombre, i.plataforma)));
                    };
                    if i64::from(i.seguidores) < minimo {
                        return Ok(refuse(
                            AUDIENCIA_INSUFICIENTE,
                            format!("{} tiene {} seguidores en {}; el mínimo es {minimo}", i.nombre, i.seguidores, i.plataforma),
                        ));
                    }
                    let id: Uuid = sqlx::query_scalar(
                        "INSERT INTO influencer (id_influencer, clave, nombre, plataforma) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (clave) DO UPDATE SET nombre = excluded.nombre RETURNING id_influencer",
                    )
                    .bind(Uuid::now_v7())
                    .bind(clave(&i.nombre, &i.plataforma))
                    .bind(i.nombre.trim())
                    .bind(&i.plataforma)
                    .fetch_one(&mut **tx)
                    .await?;
                    let busy: Option<Uuid> = sqlx::query_scalar(
                        "SELECT id_campana FROM reserva_influencer WHERE id_influencer = $1 AND estado = 'reservada' \
                         AND fecha_inicio < $3 AND $2 < fecha_fin LIMIT 1",
                    )
                    .bind(id)
                    .bind(inicio)
                    .bind(fin)
                    .fetch_optional(&mut **tx)
                    .await?;
                    if let Some(otra) = busy {
                        return Ok(refuse(INFLUENCER_OCUPADO, format!("{} ya está reservado para la campaña {otra}", i.nombre)));
                    }
                    if ids.contains(&id) {
                        return Ok(refuse(INFLUENCER_OCUPADO, format!("{} aparece dos veces en la campaña", i.nombre)));
                    }
                    ids.push(id);
                }
                let mut reservas = Vec::with_capacity(ids.len());
                for (i, id_influencer) in r.influencers.iter().zip(ids) {
                    let id_reserva = Uuid::now_v7();
                    sqlx::query(
                        "INSERT INTO reserva_influencer (id_reserva, id_campana, id_influencer, fecha_inicio, fecha_fin, estado) \
                         VALUES ($1, $2, $3, $4, $5, 'reservada')",
                    )
                    .bind(id_reserva)
                    .bind(r.id_campana)
                    .bind(id_influencer)
                    .bind(inicio)
                    .bind(fin)
                    .execute(&mut **tx)
                    .await?;
                    reservas.push(ReservaInfluencer { nombre: i.nombre.clone(), plataforma: i.plataforma.clone(), id_influencer, id_reserva });
                }
                output(&InfluencersReservados { reservas })
            }

            async fn $liberar(&self, tx: &mut Transaction<'static, $db>, l: LiberarInfluencers) -> Result<Outcome, HandlerError> {
                sqlx::query("UPDATE reserva_influencer SET estado = 'liberada' WHERE id_campana = $1 AND estado = 'reservada'")
                    .bind(l.id_campana)
                    .execute(&mut **tx)
                    .await?;
                output(&CompensacionConfirmada { lapida: false })
            }
        }

        #[async_trait]
        impl Handler<$db> for Influencers {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoInfluencer>(command)? {
                    CuerpoInfluencer::ReservarInfluencers(r) => self.$reservar(tx, r).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoInfluencer>(command)? {
                    CuerpoInfluencer::LiberarInfluencers(l) => self.$liberar(tx, l).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

influencer_for!(Postgres, reservar_pg, liberar_pg);
influencer_for!(Sqlite, reservar_sqlite, liberar_sqlite);
