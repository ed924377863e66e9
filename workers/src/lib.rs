//! The participants of CrearCampaña. Each owns its database and implements saga-core's
//! [`Handler`](saga_core::participant::Handler) for PostgreSQL (deployments) and SQLite (the
//! embedded mode); saga-core's participant module wraps it with deduplication, stored replies and
//! tombstones, so a handler only states its business rules.
//!
//! Built so far: the business rules of [`marca`], [`influencer`] and [`tracking`] with their
//! migrations. The worker daemons (consuming their topics) and tracking's HTTP endpoints arrive
//! with the CrearCampaña issue.

pub mod influencer;
pub mod marca;
pub mod servidor;
mod support;
pub mod tracking;
pub mod tracking_eventos;
