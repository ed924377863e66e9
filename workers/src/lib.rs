//! The participants of CrearCampaña. Each owns its database and implements saga-core's
//! [`Handler`](saga_core::participant::Handler) for PostgreSQL (deployments) and SQLite (the
//! embedded mode); saga-core's participant module wraps it with deduplication, stored replies and
//! tombstones.
//!
//! Built so far: [`marca`] (reserve and release a brand's budget). The influencer and tracking
//! participants and the worker daemons arrive with the CrearCampaña issue.

pub mod marca;
