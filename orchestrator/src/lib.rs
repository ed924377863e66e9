//! The CrearCampaña orchestrator daemon.
//!
//! Not built yet: the daemon, its HTTP API and the CrearCampaña saga definition arrive with the
//! CrearCampaña issue. This crate exists so the workspace has its final shape; it exports nothing.
