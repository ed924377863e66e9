//! The participants of CrearCampaña and of the payout saga. Each owns its database and implements
//! saga-core's [`Handler`](saga_core::participant::Handler) for PostgreSQL (deployments) and SQLite
//! (the embedded mode); saga-core's participant module wraps it with deduplication, stored replies
//! and tombstones, so a handler only states its business rules.
//!
//! Here: the business rules of [`marca`], [`influencer`] and [`tracking`] (CrearCampaña) and of
//! [`pagos`], [`proveedor`] and [`cliente`] (the payout saga) with their migrations, tracking's
//! event intake ([`tracking_eventos`]) and cliente's routes ([`cliente::api`]), the table the
//! daemons run them from ([`participants`]), and the worker daemon ([`server`]: its
//! configuration, `/health`, `/metrics`), which the `worker` binary (`worker` package, `pulsar`
//! feature) runs over Apache Pulsar.

pub mod cliente;
pub mod influencer;
pub mod marca;
pub mod pagos;
pub mod participants;
pub mod proveedor;
pub mod server;
mod support;
pub mod tracking;
pub mod tracking_eventos;
