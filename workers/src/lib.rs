//! The marca, influencer and tracking worker daemons.
//!
//! Not built yet: the workers arrive with the CrearCampaña issue. The participant-side machinery
//! they will use (deduplication, stored replies, tombstones) already lives in
//! `saga_core::participant`. This crate exports nothing.
