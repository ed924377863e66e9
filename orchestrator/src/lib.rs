//! The Alpes orchestrator: the sagas it runs ([`sagas`], one folder each: definition, request
//! validation, view, routes, integration events), the HTTP API every saga shares ([`api`]), the
//! one function that builds it ([`app`]), and the two ways to run it:
//! [`embedded`] (one process, SQLite, in-process transport) and [`distributed`] (PostgreSQL,
//! Apache Pulsar with the `pulsar` feature; the workers run as the `worker` binary).

pub mod api;
pub mod app;
pub mod dead_letters;
pub mod distributed;
pub mod embedded;
pub mod openapi;
pub mod outbox;
pub mod projector;
pub mod sagas;
