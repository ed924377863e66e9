//! tracking: opens a campaign's tracking context (one code and link per influencer) and closes
//! it.
//!
//! Business failures (the saga compensates): `FECHAS_INVALIDAS` (the window is empty or reversed,
//! or longer than [`MAX_DIAS`] days), `CONTEXTO_CERRADO` (this campaign's context was already
//! closed: a closed context is never reopened), `CAMPANA_DUPLICADA` (another saga already opened
//! it).

use async_trait::async_trait;
use saga_core::participant::{Handler, HandlerError};
use saga_core::transport::{Command, Outcome};
use schemas::{
    AbrirTracking, CerrarTracking, CompensacionConfirmada, CuerpoTracking, EnlaceTracking, MessageUnion,
    TrackingAbierto,
};
use sqlx::migrate::Migrator;
use sqlx::{Postgres, Sqlite, Transaction};
use uuid::Uuid;

use crate::support::{body, output, refuse, wrong_kind};

/// Migrations of the tracking database on PostgreSQL.
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/tracking/postgres");
/// Migrations of the tracking database on SQLite.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/tracking/sqlite");

/// Dates that tracking cannot serve.
pub const FECHAS_INVALIDAS: &str = "FECHAS_INVALIDAS";
/// The campaign's context was already closed.
pub const CONTEXTO_CERRADO: &str = "CONTEXTO_CERRADO";
/// Another saga already opened this campaign's context.
pub const CAMPANA_DUPLICADA: &str = "CAMPANA_DUPLICADA";
/// The longest window a tracking context covers: two years, the retention of tracking data.
pub const MAX_DIAS: i64 = 731;

/// Where tracking links point.
pub const BASE_URL: &str = "https://trk.alpespartners.com/c/";

/// The tracking business rules.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tracking;

macro_rules! tracking_for {
    ($db:ty, $abrir:ident, $cerrar:ident) => {
        impl Tracking {
            async fn $abrir(&self, tx: &mut Transaction<'static, $db>, a: AbrirTracking) -> Result<Outcome, HandlerError> {
                if a.fecha_fin <= a.fecha_inicio {
                    return Ok(refuse(FECHAS_INVALIDAS, format!("la ventana {} – {} está vacía", a.fecha_inicio, a.fecha_fin)));
                }
                if (a.fecha_fin - a.fecha_inicio).num_days() > MAX_DIAS {
                    return Ok(refuse(FECHAS_INVALIDAS, format!("la ventana supera {MAX_DIAS} días")));
                }
                let estado: Option<String> = sqlx::query_scalar("SELECT estado FROM contexto_tracking WHERE id_campana = $1")
                    .bind(a.id_campana)
                    .fetch_optional(&mut **tx)
                    .await?;
                match estado.as_deref() {
                    Some("cerrado") => {
                        return Ok(refuse(CONTEXTO_CERRADO, format!("el tracking de la campaña {} ya se cerró", a.id_campana)))
                    }
                    Some(_) => return Ok(refuse(CAMPANA_DUPLICADA, format!("la campaña {} ya tiene tracking", a.id_campana))),
                    None => {}
                }
                let id_tracking = Uuid::now_v7();
                sqlx::query(
                    "INSERT INTO contexto_tracking (id_tracking, id_campana, id_marca, fecha_inicio, fecha_fin, estado) \
                     VALUES ($1, $2, $3, $4, $5, 'abierto')",
                )
                .bind(id_tracking)
                .bind(a.id_campana)
                .bind(a.id_marca)
                .bind(a.fecha_inicio)
                .bind(a.fecha_fin)
                .execute(&mut **tx)
                .await?;
                let mut enlaces = Vec::with_capacity(a.influencers.len());
                for i in &a.influencers {
                    // 12 hex digits of a random UUID: unique enough, checked by the primary key.
                    let codigo = Uuid::new_v4().simple().to_string()[..12].to_owned();
                    let url = format!("{BASE_URL}{codigo}");
                    sqlx::query("INSERT INTO enlace_tracking (codigo, id_tracking, nombre, plataforma, url) VALUES ($1, $2, $3, $4, $5)")
                        .bind(&codigo)
                        .bind(id_tracking)
                        .bind(&i.nombre)
                        .bind(&i.plataforma)
                        .bind(&url)
                        .execute(&mut **tx)
                        .await?;
                    enlaces.push(EnlaceTracking { nombre: i.nombre.clone(), plataforma: i.plataforma.clone(), codigo, url });
                }
                output(&TrackingAbierto { id_tracking, enlaces })
            }

            async fn $cerrar(&self, tx: &mut Transaction<'static, $db>, c: CerrarTracking) -> Result<Outcome, HandlerError> {
                sqlx::query("UPDATE contexto_tracking SET estado = 'cerrado' WHERE id_campana = $1")
                    .bind(c.id_campana)
                    .execute(&mut **tx)
                    .await?;
                output(&CompensacionConfirmada { lapida: false })
            }
        }

        #[async_trait]
        impl Handler<$db> for Tracking {
            async fn action(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoTracking>(command)? {
                    CuerpoTracking::AbrirTracking(a) => self.$abrir(tx, a).await,
                    other => Err(wrong_kind(other.message_type(), "an action")),
                }
            }

            async fn compensation(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Outcome, HandlerError> {
                match body::<CuerpoTracking>(command)? {
                    CuerpoTracking::CerrarTracking(c) => self.$cerrar(tx, c).await,
                    other => Err(wrong_kind(other.message_type(), "a compensation")),
                }
            }
        }
    };
}

tracking_for!(Postgres, abrir_pg, cerrar_pg);
tracking_for!(Sqlite, abrir_sqlite, cerrar_sqlite);
