//! CrearCampaña: create a campaign across three services, all or nothing.
//!
//! 1. marca: reserve the campaign's budget against the brand's available budget
//!    (compensation: release the reservation);
//! 2. influencer: book each influencer for the campaign's window (release the bookings);
//! 3. tracking: open the campaign's tracking context (close it).
//!
//! Every compensation is built from the saga's parameters alone (the action's output is used when
//! present), so it can run, and leave a tombstone, even when its action's reply never arrived.

use std::time::Duration;

use chrono::NaiveDateTime;
use saga_core::definition::{BuildError, CommandBody, RetryPolicy, SagaDefinition, Step, StepCommands, StepContext};
use schemas::wire::PASOS_CREAR_CAMPANA;
use schemas::{
    AbrirTracking, AvroCodec, Centavos, CerrarTracking, Influencer, LiberarInfluencers, LiberarPresupuesto, Marca,
    ReservarInfluencers, ReservarPresupuesto,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---- Parameters -----------------------------------------------------------------------------

/// The saga definition's name, as written in the saga log.
pub const SAGA_TYPE: &str = "crear_campana";
/// The definition's version: bump it when the steps change, and keep the old one registered.
pub const VERSION: u32 = 1;

/// Step 1's name.
pub const RESERVAR_PRESUPUESTO: &str = PASOS_CREAR_CAMPANA[0].0;
/// Step 2's name.
pub const RESERVAR_INFLUENCERS: &str = PASOS_CREAR_CAMPANA[1].0;
/// Step 3's name.
pub const ABRIR_TRACKING: &str = PASOS_CREAR_CAMPANA[2].0;

/// What a CrearCampaña saga starts with: the validated request, with the campaign's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrearCampana {
    /// The campaign, chosen when the request is accepted.
    pub id_campana: Uuid,
    /// Campaign name.
    pub nombre: String,
    /// Campaign description.
    pub descripcion: String,
    /// Campaign kind (e.g. `influencer`).
    pub tipo: String,
    /// Start, as the public API gives it (no zone).
    pub fecha_inicio: NaiveDateTime,
    /// End, after the start.
    pub fecha_fin: NaiveDateTime,
    /// Budget in minor units.
    pub presupuesto_centavos: Centavos,
    /// The brand that funds it.
    pub marca: Marca,
    /// The influencers to book, at least one.
    pub influencers: Vec<Influencer>,
}

/// Where each step's commands go and how patiently they are retried.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The marca participant's command topic.
    pub marca: String,
    /// The influencer participant's command topic.
    pub influencer: String,
    /// The tracking participant's command topic.
    pub tracking: String,
    /// Reply timeout of every step.
    pub timeout: Duration,
    /// Retries of actions.
    pub retry: RetryPolicy,
    /// Retries of compensations.
    pub compensation_retry: RetryPolicy,
}

impl Default for Topology {
    /// The topics of DESIGN.md; 10 s timeouts (a participant answers in milliseconds; 10 s rides
    /// out a restart); default retry policies.
    fn default() -> Self {
        Self {
            marca: "comandos.marca".into(),
            influencer: "comandos.influencer".into(),
            tracking: "comandos.tracking".into(),
            timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            compensation_retry: RetryPolicy::default(),
        }
    }
}

/// The definition, with its steps in order.
pub fn definition(topology: &Topology) -> SagaDefinition {
    let tune = |step: Step| {
        step.timeout(topology.timeout)
            .retry(topology.retry.clone())
            .compensation_retry(topology.compensation_retry.clone())
    };
    SagaDefinition::new(SAGA_TYPE, VERSION)
        .step(tune(Step::new(RESERVAR_PRESUPUESTO, topology.marca.clone(), Presupuesto)))
        .step(tune(Step::new(RESERVAR_INFLUENCERS, topology.influencer.clone(), Influencers)))
        .step(tune(Step::new(ABRIR_TRACKING, topology.tracking.clone(), Tracking)))
}

/// The Avro codec for this saga's topics, naming each action's output record (the step names
/// and their records come from one table, `schemas::wire::PASOS_CREAR_CAMPANA`).
pub fn codec() -> AvroCodec {
    AvroCodec::crear_campana()
}

fn params(ctx: &StepContext<'_>) -> Result<CrearCampana, BuildError> {
    serde_json::from_value(ctx.params.clone()).map_err(|e| BuildError(format!("invalid CrearCampaña parameters: {e}")))
}

fn body<T: Serialize>(message_type: &str, value: &T) -> Result<CommandBody, BuildError> {
    serde_json::to_value(value)
        .map(|v| CommandBody::new(message_type, v))
        .map_err(|e| BuildError(format!("{message_type}: {e}")))
}

/// An id from an earlier step's output, if that step answered.
fn output_id(ctx: &StepContext<'_>, step: &str, field: &str) -> Option<Uuid> {
    ctx.outputs.get(step)?.get(field)?.as_str()?.parse().ok()
}

// ---- Step 1: marca ---------------------------------------------------------------------------

struct Presupuesto;

impl StepCommands for Presupuesto {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body(
            "ReservarPresupuesto",
            &ReservarPresupuesto {
                id_campana: p.id_campana,
                id_marca: p.marca.id_marca,
                monto_centavos: p.presupuesto_centavos,
            },
        )
    }

    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body(
            "LiberarPresupuesto",
            &LiberarPresupuesto {
                id_campana: p.id_campana,
                id_marca: p.marca.id_marca,
                id_reserva: output_id(ctx, RESERVAR_PRESUPUESTO, "id_reserva"),
            },
        )
    }
}

// ---- Step 2: influencer ----------------------------------------------------------------------

struct Influencers;

impl StepCommands for Influencers {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body(
            "ReservarInfluencers",
            &ReservarInfluencers {
                id_campana: p.id_campana,
                fecha_inicio: p.fecha_inicio,
                fecha_fin: p.fecha_fin,
                influencers: p.influencers,
            },
        )
    }

    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body("LiberarInfluencers", &LiberarInfluencers { id_campana: p.id_campana, influencers: p.influencers })
    }
}

// ---- Step 3: tracking ------------------------------------------------------------------------

struct Tracking;

impl StepCommands for Tracking {
    fn action(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body(
            "AbrirTracking",
            &AbrirTracking {
                id_campana: p.id_campana,
                id_marca: p.marca.id_marca,
                fecha_inicio: p.fecha_inicio,
                fecha_fin: p.fecha_fin,
                influencers: p.influencers,
            },
        )
    }

    fn compensation(&self, ctx: &StepContext<'_>) -> Result<CommandBody, BuildError> {
        let p = params(ctx)?;
        body(
            "CerrarTracking",
            &CerrarTracking { id_campana: p.id_campana, id_tracking: output_id(ctx, ABRIR_TRACKING, "id_tracking") },
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use saga_core::transport::codec::Codec;
    use saga_core::transport::{Command, Correlation};
    use saga_core::{MessageId, SagaId, StepKind};
    use serde_json::json;

    use super::*;

    fn campana() -> CrearCampana {
        CrearCampana {
            id_campana: Uuid::now_v7(),
            nombre: "Campaña de Verano 2024".into(),
            descripcion: "Promoción de productos de verano con influencers".into(),
            tipo: "influencer".into(),
            fecha_inicio: "2025-01-01T00:00:00".parse().expect("date"),
            fecha_fin: "2025-12-31T23:59:59".parse().expect("date"),
            presupuesto_centavos: Centavos(1_500_000),
            marca: Marca {
                id_marca: "123e4567-e89b-12d3-a456-426614174000".parse().expect("uuid"),
                nombre_marca: "Nike".into(),
            },
            influencers: vec![Influencer {
                nombre: "Ana García".into(),
                plataforma: "Instagram".into(),
                seguidores: 150_000,
                categoria: "Fitness".into(),
            }],
        }
    }

    /// Every command of every step builds from the parameters alone (compensations too, with no
    /// output: the tombstone case) and encodes with the topic's Avro envelope.
    #[test]
    fn every_command_builds_from_the_parameters_and_encodes_as_avro() {
        let topology = Topology::default();
        let def = definition(&topology);
        assert_eq!(
            def.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [RESERVAR_PRESUPUESTO, RESERVAR_INFLUENCERS, ABRIR_TRACKING]
        );
        let params = serde_json::to_value(campana()).expect("params");
        let outputs = BTreeMap::new();
        let saga_id = SagaId::new();
        let ctx = StepContext { saga_id, params: &params, outputs: &outputs };
        let codec = codec();
        for step in &def.steps {
            for kind in [StepKind::Action, StepKind::Compensation] {
                let built = match kind {
                    StepKind::Action => step.commands.action(&ctx),
                    StepKind::Compensation => step.commands.compensation(&ctx),
                }
                .expect("builds");
                let command = Command {
                    correlation: Correlation {
                        saga_id,
                        saga_type: SAGA_TYPE.into(),
                        step_name: step.name.clone(),
                        attempt: 1,
                        kind,
                        message_id: MessageId::new(),
                    },
                    participant: step.participant.clone(),
                    reply_to: "respuestas.afiliaciones".into(),
                    message_type: built.message_type,
                    body: built.body,
                };
                let bytes = codec.encode_command(&command).unwrap_or_else(|e| panic!("{} {kind}: {e}", step.name));
                assert_eq!(codec.decode_command(&step.participant, &bytes).expect("decode"), command);
            }
        }
    }

    #[test]
    fn compensations_use_the_actions_ids_when_they_are_known() {
        let params = serde_json::to_value(campana()).expect("params");
        let id_reserva = Uuid::now_v7();
        let outputs = BTreeMap::from([(RESERVAR_PRESUPUESTO.to_owned(), json!({ "id_reserva": id_reserva }))]);
        let ctx = StepContext { saga_id: SagaId::new(), params: &params, outputs: &outputs };
        let liberar = Presupuesto.compensation(&ctx).expect("builds");
        assert_eq!(liberar.body["id_reserva"], json!(id_reserva));
        let empty = BTreeMap::new();
        let ctx = StepContext { saga_id: SagaId::new(), params: &params, outputs: &empty };
        assert_eq!(Presupuesto.compensation(&ctx).expect("builds").body["id_reserva"], json!(null));
    }

    #[test]
    fn parameters_that_are_not_a_campaign_fail_to_build() {
        let params = json!({ "nombre": "sin fechas" });
        let outputs = BTreeMap::new();
        let ctx = StepContext { saga_id: SagaId::new(), params: &params, outputs: &outputs };
        assert!(Presupuesto.action(&ctx).is_err());
    }
}
