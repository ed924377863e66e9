//! The engine on its own, embedded: a three-step saga over the in-process transport with its log
//! in a SQLite file, and three participants with their own SQLite databases. Runs one saga that
//! completes and one whose last step is refused (so the first two are compensated), then prints
//! both histories from the log.
//!
//!     cargo run -p saga-core --example demo
//!
//! Data goes to `.data/demo/` (delete it to start over). This shows saga-core alone, not
//! CrearCampaña (for that: `cargo run -p orchestrator -- embedded`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use saga_core::definition::{BuildError, CommandBody, Registry, SagaDefinition, Step, StepCommands, StepContext};
use saga_core::engine::{Engine, EngineConfig};
use saga_core::log::sql::{sqlite_pool, SqliteStore};
use saga_core::participant::{serve, Handler, HandlerError, SqliteParticipant};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaEvent, SagaId, SagaStatus, StepKind};
use serde_json::json;
use sqlx::{Sqlite, Transaction};

const STEPS: [&str; 3] = ["reservar", "contratar", "abrir"];

struct Build(&'static str);

impl StepCommands for Build {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new(format!("{}.hacer", self.0), json!({ "pedido": ctx.params })))
    }
    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        Ok(CommandBody::new(format!("{}.deshacer", self.0), json!({ "saga": ctx.saga_id })))
    }
}

/// Refuses `abrir` when the order says so; otherwise applies.
struct Demo;

#[async_trait]
impl Handler<Sqlite> for Demo {
    async fn action(&self, _tx: &mut Transaction<'static, Sqlite>, command: &Command) -> Result<Outcome, HandlerError> {
        let refuse = command.body["pedido"]["rechazar"].as_str() == Some(command.correlation.step_name.as_str());
        Ok(if refuse {
            Outcome::BusinessFailure { code: "rechazado".into(), reason: "the demo order asks for a refusal".into() }
        } else {
            Outcome::Success { output: json!({ "hecho": command.correlation.step_name }) }
        })
    }
    async fn compensation(
        &self,
        _tx: &mut Transaction<'static, Sqlite>,
        _c: &Command,
    ) -> Result<Outcome, HandlerError> {
        Ok(Outcome::Success { output: json!({ "deshecho": true }) })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(".data/demo")?;
    let transport = InProcessTransport::new();
    let mut definition = SagaDefinition::new("demo", 1);
    for step in STEPS {
        definition =
            definition.step(Step::new(step, format!("comandos.{step}"), Build(step)).timeout(Duration::from_secs(5)));
    }
    let mut registry = Registry::new();
    registry.register(definition)?;
    let store = SqliteStore::connect("sqlite://.data/demo/saga.sqlite").await?;
    let engine = Engine::builder(Arc::new(store), Arc::new(registry), Arc::new(transport.clone()))
        .config(EngineConfig { reply_to: "respuestas.demo".into(), ..EngineConfig::default() })
        .build();

    for step in STEPS {
        let pool = sqlite_pool(&format!("sqlite://.data/demo/{step}.sqlite")).await?;
        let participant = SqliteParticipant::new(pool, Demo);
        participant.migrate().await?;
        let transport = Arc::new(transport.clone());
        tokio::spawn(serve(Arc::new(participant), transport, format!("comandos.{step}"), std::future::pending()));
    }
    tokio::spawn(engine.clone().run(std::future::pending()));

    for (label, order) in [("completes", json!({ "rechazar": null })), ("compensates", json!({ "rechazar": "abrir" }))]
    {
        let id = SagaId::new();
        engine.start("demo", id, order).await?;
        let state = loop {
            let state = engine.get(id).await?.ok_or("saga vanished")?;
            if !state.status.is_active() {
                break state;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        println!("\nsaga {id} ({label}): {}", state.status);
        for entry in engine.history(id).await? {
            println!("  {:>2}  {}  {}", entry.seq, entry.at.format("%H:%M:%S%.3f"), describe(&entry.event));
        }
        let expected = if label == "completes" { SagaStatus::Completed } else { SagaStatus::Compensated };
        if state.status != expected {
            return Err(format!("expected {expected}, got {}", state.status).into());
        }
    }
    Ok(())
}

fn describe(event: &SagaEvent) -> String {
    match event {
        SagaEvent::CommandSent { command, .. } => {
            let c = &command.correlation;
            let arrow = if c.kind == StepKind::Action { "→" } else { "↩" };
            format!("{arrow} {} {} (attempt {})", c.step_name, c.kind, c.attempt)
        }
        SagaEvent::ReplyAccepted { outcome, kind, .. } => format!("  reply to {kind}: {}", outcome.label()),
        SagaEvent::CompensationStarted { failure } => format!("compensating: {} ({})", failure.reason, failure.code),
        other => other.name().to_owned(),
    }
}
