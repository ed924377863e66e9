//! How the daemons run each participant: its name, its command topic, its database set-up
//! (migrations, seeds) and its command handler, on SQLite (the embedded mode) or PostgreSQL (the
//! worker daemon). The embedded mode and the `worker` binary both go through [`ALL`], so a new
//! participant is one module and one line there.

use std::sync::Arc;

use anyhow::Context;
use async_trait::async_trait;
use axum::Router;
use saga_core::log::sql::migrate;
use saga_core::participant::{CommandHandler, PgParticipant, SqliteParticipant};
use schemas::{ComandoInfluencer, ComandoMarca, ComandoTracking, Envelope};
use sqlx::{PgPool, SqlitePool};
use utoipa::openapi::OpenApi;

use crate::marca::{Marca, MarcaSeed};
use crate::{cliente, pagos, proveedor};
use crate::{influencer, marca, tracking, tracking_eventos};
use schemas::{ComandoCliente, ComandoPagos, ComandoProveedor};

/// What a participant needs beyond its database (marca: the brands to seed).
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Brands to add when missing (marca only).
    pub marcas: Vec<MarcaSeed>,
}

/// A participant ready to serve: its command handler and the HTTP routes it adds (tracking's
/// event intake), with their description.
pub struct Ready {
    /// Handles its commands, exactly once per saga step.
    pub handler: Arc<dyn CommandHandler>,
    /// Routes served beside `/health` and `/metrics`.
    pub routes: Router,
    /// The OpenAPI description of `routes` (empty when there are none), merged into the
    /// `/openapi.json` of whichever server serves them.
    pub openapi: utoipa::openapi::OpenApi,
}

/// A participant as the daemons run it.
#[async_trait]
pub trait Participant: Send + Sync + 'static {
    /// Its name: the worker's argument, its database's and its subscription's name.
    fn name(&self) -> &'static str;
    /// Its command topic (from its envelope in `schemas`).
    fn topic(&self) -> &'static str;
    /// The worker daemon's default HTTP port.
    fn http_port(&self) -> u16;
    /// Configuration keys it reads beyond the common ones.
    fn extra_keys(&self) -> &'static [&'static str] {
        &[]
    }
    /// Migrates (and seeds) its SQLite database and builds its handler.
    async fn sqlite(&self, pool: SqlitePool, options: &Options) -> anyhow::Result<Ready>;
    /// Migrates (and seeds) its PostgreSQL database and builds its handler.
    async fn postgres(&self, pool: PgPool, options: &Options) -> anyhow::Result<Ready>;
}

impl std::fmt::Debug for dyn Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every participant. A new one adds its line here.
pub static ALL: &[&dyn Participant] = &[
    &MarcaParticipant,
    &InfluencerParticipant,
    &TrackingParticipant,
    &ClienteParticipant,
    &PagosParticipant,
    &ProveedorParticipant,
];

/// The participant named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Participant> {
    ALL.iter().copied().find(|p| p.name() == name)
}

/// Budgets.
struct MarcaParticipant;

#[async_trait]
impl Participant for MarcaParticipant {
    fn name(&self) -> &'static str {
        "marca"
    }
    fn topic(&self) -> &'static str {
        ComandoMarca::TOPIC
    }
    fn http_port(&self) -> u16 {
        8001
    }
    fn extra_keys(&self) -> &'static [&'static str] {
        &["marcas"]
    }
    async fn sqlite(&self, pool: SqlitePool, options: &Options) -> anyhow::Result<Ready> {
        migrate(&marca::SQLITE_MIGRATOR, &pool).await.context("migrating marca")?;
        Marca::seed_sqlite(&pool, &options.marcas).await.context("seeding brands")?;
        let p = SqliteParticipant::new(pool, Marca);
        p.migrate().await.context("migrating marca's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
    async fn postgres(&self, pool: PgPool, options: &Options) -> anyhow::Result<Ready> {
        migrate(&marca::PG_MIGRATOR, &pool).await.context("migrating marca")?;
        Marca::seed_postgres(&pool, &options.marcas).await.context("seeding brands")?;
        let p = PgParticipant::new(pool, Marca);
        p.migrate().await.context("migrating marca's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
}

/// Bookings.
struct InfluencerParticipant;

#[async_trait]
impl Participant for InfluencerParticipant {
    fn name(&self) -> &'static str {
        "influencer"
    }
    fn topic(&self) -> &'static str {
        ComandoInfluencer::TOPIC
    }
    fn http_port(&self) -> u16 {
        8002
    }
    async fn sqlite(&self, pool: SqlitePool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&influencer::SQLITE_MIGRATOR, &pool).await.context("migrating influencer")?;
        let p = SqliteParticipant::new(pool, influencer::Influencers);
        p.migrate().await.context("migrating influencer's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
    async fn postgres(&self, pool: PgPool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&influencer::PG_MIGRATOR, &pool).await.context("migrating influencer")?;
        let p = PgParticipant::new(pool, influencer::Influencers);
        p.migrate().await.context("migrating influencer's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
}

/// Tracking contexts, and the intake of tracking events.
struct TrackingParticipant;

#[async_trait]
impl Participant for TrackingParticipant {
    fn name(&self) -> &'static str {
        "tracking"
    }
    fn topic(&self) -> &'static str {
        ComandoTracking::TOPIC
    }
    fn http_port(&self) -> u16 {
        8003
    }
    async fn sqlite(&self, pool: SqlitePool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&tracking::SQLITE_MIGRATOR, &pool).await.context("migrating tracking")?;
        let routes = tracking_eventos::router(Arc::new(tracking_eventos::SqliteEventos { pool: pool.clone() }));
        let p = SqliteParticipant::new(pool, tracking::Tracking);
        p.migrate().await.context("migrating tracking's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes, openapi: tracking_eventos::openapi() })
    }
    async fn postgres(&self, pool: PgPool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&tracking::PG_MIGRATOR, &pool).await.context("migrating tracking")?;
        let routes = tracking_eventos::router(Arc::new(tracking_eventos::PgEventos { pool: pool.clone() }));
        let p = PgParticipant::new(pool, tracking::Tracking);
        p.migrate().await.context("migrating tracking's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes, openapi: tracking_eventos::openapi() })
    }
}

/// The partners who get paid: their registration and look-up routes, and the payments recorded
/// on each (the payout saga's step 3).
struct ClienteParticipant;

#[async_trait]
impl Participant for ClienteParticipant {
    fn name(&self) -> &'static str {
        "cliente"
    }
    fn topic(&self) -> &'static str {
        ComandoCliente::TOPIC
    }
    fn http_port(&self) -> u16 {
        8004
    }
    async fn sqlite(&self, pool: SqlitePool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&cliente::SQLITE_MIGRATOR, &pool).await.context("migrating cliente")?;
        let routes = cliente::router(Arc::new(cliente::SqliteClientes { pool: pool.clone() }));
        let p = SqliteParticipant::new(pool, cliente::Comandos);
        p.migrate().await.context("migrating cliente's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes, openapi: cliente::openapi() })
    }
    async fn postgres(&self, pool: PgPool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&cliente::PG_MIGRATOR, &pool).await.context("migrating cliente")?;
        let routes = cliente::router(Arc::new(cliente::PgClientes { pool: pool.clone() }));
        let p = PgParticipant::new(pool, cliente::Comandos);
        p.migrate().await.context("migrating cliente's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes, openapi: cliente::openapi() })
    }
}

/// The payout ledger (the payout saga's steps 1 and 4).
struct PagosParticipant;

#[async_trait]
impl Participant for PagosParticipant {
    fn name(&self) -> &'static str {
        "pagos"
    }
    fn topic(&self) -> &'static str {
        ComandoPagos::TOPIC
    }
    fn http_port(&self) -> u16 {
        8005
    }
    async fn sqlite(&self, pool: SqlitePool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&pagos::SQLITE_MIGRATOR, &pool).await.context("migrating pagos")?;
        let p = SqliteParticipant::new(pool, pagos::Pagos);
        p.migrate().await.context("migrating pagos' participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
    async fn postgres(&self, pool: PgPool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&pagos::PG_MIGRATOR, &pool).await.context("migrating pagos")?;
        let p = PgParticipant::new(pool, pagos::Pagos);
        p.migrate().await.context("migrating pagos' participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
}

/// The payment provider, standing for the external gateway (the payout saga's step 2).
struct ProveedorParticipant;

#[async_trait]
impl Participant for ProveedorParticipant {
    fn name(&self) -> &'static str {
        "proveedor"
    }
    fn topic(&self) -> &'static str {
        ComandoProveedor::TOPIC
    }
    fn http_port(&self) -> u16 {
        8006
    }
    async fn sqlite(&self, pool: SqlitePool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&proveedor::SQLITE_MIGRATOR, &pool).await.context("migrating proveedor")?;
        let p = SqliteParticipant::new(pool, proveedor::Proveedor);
        p.migrate().await.context("migrating proveedor's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
    async fn postgres(&self, pool: PgPool, _: &Options) -> anyhow::Result<Ready> {
        migrate(&proveedor::PG_MIGRATOR, &pool).await.context("migrating proveedor")?;
        let p = PgParticipant::new(pool, proveedor::Proveedor);
        p.migrate().await.context("migrating proveedor's participant tables")?;
        Ok(Ready { handler: Arc::new(p), routes: Router::new(), openapi: OpenApi::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_topics_and_ports_are_distinct() {
        let mut names: Vec<_> = ALL.iter().map(|p| p.name()).collect();
        let mut topics: Vec<_> = ALL.iter().map(|p| p.topic()).collect();
        let mut ports: Vec<_> = ALL.iter().map(|p| p.http_port()).collect();
        for v in [&mut names, &mut topics] {
            v.sort_unstable();
            v.dedup();
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!((names.len(), topics.len(), ports.len()), (ALL.len(), ALL.len(), ALL.len()));
        assert_eq!(by_name("marca").map(|p| p.topic()), Some("comandos.marca"));
        assert!(by_name("nadie").is_none());
    }
}
