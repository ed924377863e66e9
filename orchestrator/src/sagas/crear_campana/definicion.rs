//! CrearCampaña's definition: its parameters and its steps, each with its action and
//! compensation.
//!
//! 1. marca: reserve the campaign's budget against the brand's available budget
//!    (compensation: release the reservation);
//! 2. influencer: book each influencer for the campaign's window (release the bookings);
//! 3. tracking: open the campaign's tracking context (close it).
//!
//! Steps 2 and 3 need nothing from each other: both depend on step 1 only, so they are in flight
//! together once the budget is reserved (version 2; version 1 ran the three in a row and stays
//! registered so sagas started on it finish on it).
//!
//! Every compensation is built from the saga's parameters alone (the action's output is used when
//! present), so it can run, and leave a tombstone, even when its action's reply never arrived.

use chrono::NaiveDateTime;
use saga_core::definition::{BuildError, SagaDefinition, SagaType, Step, StepCx, StepType};
use schemas::{
    AbrirTracking, Centavos, CerrarTracking, Influencer, LiberarInfluencers, LiberarPresupuesto, Marca,
    ReservarInfluencers, ReservarPresupuesto,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sagas::StepSettings;

// ---- Parameters -----------------------------------------------------------------------------

/// The saga type: its name in the log, its version, its parameters.
#[derive(Clone, Copy, Debug)]
pub struct SagaCrearCampana;

impl SagaType for SagaCrearCampana {
    const NAME: &'static str = "crear_campana";
    const VERSION: u32 = 2;
    type Params = CrearCampana;
}

/// The saga definition's name, as written in the saga log.
pub const SAGA_TYPE: &str = SagaCrearCampana::NAME;

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

/// The definition: marca first, then influencer and tracking in parallel.
pub fn definition(settings: &StepSettings) -> SagaDefinition {
    SagaDefinition::of::<SagaCrearCampana>()
        .step(settings.apply(Step::of(Presupuesto)))
        .step(settings.apply(Step::of(Influencers).after_step::<Presupuesto>()))
        .step(settings.apply(Step::of(Tracking).after_step::<Presupuesto>()))
}

/// Version 1, the three steps in a row: kept so that sagas started on it finish on it.
pub fn definition_v1(settings: &StepSettings) -> SagaDefinition {
    SagaDefinition::new(SAGA_TYPE, 1)
        .step(settings.apply(Step::of(Presupuesto)))
        .step(settings.apply(Step::of(Influencers).after_step::<Presupuesto>()))
        .step(settings.apply(Step::of(Tracking).after_step::<Influencers>()))
}

// ---- Step 1: marca ---------------------------------------------------------------------------

/// Reserves the campaign's budget; compensation releases it.
pub struct Presupuesto;

impl StepType for Presupuesto {
    type Saga = SagaCrearCampana;
    type Action = ReservarPresupuesto;
    type Compensation = LiberarPresupuesto;
    const NAME: &'static str = "reservar_presupuesto";

    fn action(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<ReservarPresupuesto, BuildError> {
        let p = cx.params;
        Ok(ReservarPresupuesto {
            id_campana: p.id_campana,
            id_marca: p.marca.id_marca,
            monto_centavos: p.presupuesto_centavos,
        })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<LiberarPresupuesto, BuildError> {
        let p = cx.params;
        Ok(LiberarPresupuesto {
            id_campana: p.id_campana,
            id_marca: p.marca.id_marca,
            id_reserva: cx.output::<Presupuesto>()?.map(|r| r.id_reserva),
        })
    }
}

// ---- Step 2: influencer ----------------------------------------------------------------------

/// Books each influencer for the campaign's window; compensation releases the bookings.
pub struct Influencers;

impl StepType for Influencers {
    type Saga = SagaCrearCampana;
    type Action = ReservarInfluencers;
    type Compensation = LiberarInfluencers;
    const NAME: &'static str = "reservar_influencers";

    fn action(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<ReservarInfluencers, BuildError> {
        let p = cx.params;
        Ok(ReservarInfluencers {
            id_campana: p.id_campana,
            fecha_inicio: p.fecha_inicio,
            fecha_fin: p.fecha_fin,
            influencers: p.influencers.clone(),
        })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<LiberarInfluencers, BuildError> {
        let p = cx.params;
        Ok(LiberarInfluencers { id_campana: p.id_campana, influencers: p.influencers.clone() })
    }
}

// ---- Step 3: tracking ------------------------------------------------------------------------

/// Opens the campaign's tracking context; compensation closes it.
pub struct Tracking;

impl StepType for Tracking {
    type Saga = SagaCrearCampana;
    type Action = AbrirTracking;
    type Compensation = CerrarTracking;
    const NAME: &'static str = "abrir_tracking";

    fn action(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<AbrirTracking, BuildError> {
        let p = cx.params;
        Ok(AbrirTracking {
            id_campana: p.id_campana,
            id_marca: p.marca.id_marca,
            fecha_inicio: p.fecha_inicio,
            fecha_fin: p.fecha_fin,
            influencers: p.influencers.clone(),
        })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaCrearCampana>) -> Result<CerrarTracking, BuildError> {
        Ok(CerrarTracking {
            id_campana: cx.params.id_campana,
            id_tracking: cx.output::<Tracking>()?.map(|t| t.id_tracking),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use saga_core::definition::StepContext;
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

    fn context<'a>(
        def: &'a SagaDefinition,
        step: usize,
        params: &'a serde_json::Value,
        outputs: &'a BTreeMap<String, serde_json::Value>,
    ) -> StepContext<'a> {
        StepContext { saga_id: SagaId::new(), step: &def.steps[step].name, params, outputs, visible: def.visible(step) }
    }

    /// Every command of every step builds from the parameters alone (compensations too, with no
    /// output: the tombstone case) and encodes with the topic's Avro envelope.
    #[test]
    fn every_command_builds_from_the_parameters_and_encodes_as_avro() {
        let def = definition(&StepSettings::default());
        assert_eq!(
            def.steps.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [Presupuesto::NAME, Influencers::NAME, Tracking::NAME]
        );
        let params = serde_json::to_value(campana()).expect("params");
        let outputs = BTreeMap::new();
        let codec = crate::sagas::codec();
        for (i, step) in def.steps.iter().enumerate() {
            let ctx = context(&def, i, &params, &outputs);
            for kind in [StepKind::Action, StepKind::Compensation] {
                let built = match kind {
                    StepKind::Action => step.commands.action(&ctx),
                    StepKind::Compensation => step.commands.compensation(&ctx),
                }
                .expect("builds");
                let command = Command {
                    correlation: Correlation {
                        saga_id: ctx.saga_id,
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
    fn influencer_and_tracking_depend_on_the_budget_only() {
        let def = definition(&StepSettings::default());
        assert_eq!(def.deps(0), &[] as &[usize]);
        assert_eq!(def.deps(1), &[0]);
        assert_eq!(def.deps(2), &[0]);
        let v1 = definition_v1(&StepSettings::default());
        assert_eq!(v1.deps(2), &[1], "version 1 stays sequential");
        assert_eq!(v1.step_names(), def.step_names());
    }

    #[test]
    fn compensations_use_the_actions_ids_when_they_are_known() {
        let def = definition(&StepSettings::default());
        let params = serde_json::to_value(campana()).expect("params");
        let id_reserva = Uuid::now_v7();
        let output = schemas::PresupuestoReservado {
            id_reserva,
            id_marca: Uuid::now_v7(),
            monto_centavos: Centavos(1_500_000),
            disponible_restante_centavos: Centavos(0),
        };
        let outputs = BTreeMap::from([(Presupuesto::NAME.to_owned(), serde_json::to_value(output).expect("json"))]);
        let liberar = def.steps[0].commands.compensation(&context(&def, 0, &params, &outputs)).expect("builds");
        assert_eq!(liberar.message_type, "LiberarPresupuesto");
        assert_eq!(liberar.body["id_reserva"], json!(id_reserva));
        let empty = BTreeMap::new();
        let liberar = def.steps[0].commands.compensation(&context(&def, 0, &params, &empty)).expect("builds");
        assert_eq!(liberar.body["id_reserva"], json!(null));
    }

    #[test]
    fn parameters_that_are_not_a_campaign_fail_to_build() {
        let def = definition(&StepSettings::default());
        let params = json!({ "nombre": "sin fechas" });
        let outputs = BTreeMap::new();
        assert!(def.steps[0].commands.action(&context(&def, 0, &params, &outputs)).is_err());
    }
}
