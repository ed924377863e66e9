//! The sagas this orchestrator runs: one folder each (definition, request validation, view,
//! routes, integration events), registered in [`modules`] with one line per saga.

pub mod crear_campana;
pub mod procesar_pago;

use std::sync::Arc;
use std::time::Duration;

use saga_core::definition::{Registry, RegistryError, RetryPolicy, SagaDefinition, Step};
use schemas::AvroCodec;

use crate::app::SagaModule;

/// How patiently every step is waited for and retried; configuration sets it for all sagas.
#[derive(Clone, Debug)]
pub struct StepSettings {
    /// Reply timeout of every step.
    pub timeout: Duration,
    /// Retries of actions.
    pub retry: RetryPolicy,
    /// Retries of compensations.
    pub compensation_retry: RetryPolicy,
}

impl Default for StepSettings {
    /// 10 s timeouts (a participant answers in milliseconds; 10 s rides out a restart); default
    /// retry policies.
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::default(),
        }
    }
}

impl StepSettings {
    /// `step` with these settings.
    pub fn apply(&self, step: Step) -> Step {
        step.timeout(self.timeout).retry(self.retry.clone()).compensation_retry(self.compensation_retry.clone())
    }
}

/// Every saga this orchestrator runs. A new saga adds its line here.
pub fn modules() -> Vec<Arc<dyn SagaModule>> {
    vec![Arc::new(crear_campana::Modulo), Arc::new(procesar_pago::Modulo)]
}

/// Every saga definition, every version still in use.
pub fn definitions(settings: &StepSettings) -> Vec<SagaDefinition> {
    modules().iter().flat_map(|m| m.definitions(settings)).collect()
}

/// The registry of every saga.
pub fn registry(settings: &StepSettings) -> Result<Registry, RegistryError> {
    let mut registry = Registry::new();
    for definition in definitions(settings) {
        registry.register(definition)?;
    }
    Ok(registry)
}

/// The Avro codec of every saga's topics, built from the definitions' own message types. The
/// orchestrator and the workers use the same one.
pub fn codec() -> AvroCodec {
    AvroCodec::for_definitions(&definitions(&StepSettings::default()))
}
