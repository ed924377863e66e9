//! The CrearCampaña orchestrator: the saga definition ([`crear_campana`]), request validation
//! ([`solicitud`]), the HTTP API ([`api`]), the campaign view and its projector ([`vista`],
//! [`proyector`]), integration events through an outbox ([`eventos`]), and the two ways to run
//! it: [`embebido`] (one process, SQLite, in-process transport) and [`distribuido`] (PostgreSQL,
//! Apache Pulsar with the `pulsar` feature; the workers run as the `worker` binary).

pub mod api;
pub mod crear_campana;
pub mod distribuido;
pub mod embebido;
pub mod eventos;
pub mod openapi;
pub mod proyector;
pub mod solicitud;
pub mod vista;
