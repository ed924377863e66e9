//! The CrearCampaña orchestrator.
//!
//! Built so far: the saga definition ([`crear_campana`]): its parameters, its three steps and
//! their compensations, and the Avro codec that names their outputs. The daemon, its HTTP API
//! and the query side arrive with the CrearCampaña issue.

pub mod api;
pub mod crear_campana;
pub mod distribuido;
pub mod embebido;
pub mod eventos;
pub mod openapi;
pub mod proyector;
pub mod solicitud;
pub mod vista;
