//! The payout saga's definition: its parameters and its four steps.
//!
//! 1. pagos: record the payout and its commission transactions (compensation: mark it failed);
//! 2. proveedor: send it through the payment provider (compensation: void it, or refund it once
//!    settled);
//! 3. cliente: record the payment on the client, `total_pagos` and `ultimo_pago` (compensation:
//!    remove it);
//! 4. pagos: mark the payout completed with the provider's confirmation (compensation: take it
//!    back to processing; step 1's compensation then marks it failed).
//!
//! Steps 2 and 3 need nothing from each other: both depend on step 1 only and are in flight
//! together; step 4 waits for both. Every compensation builds from the parameters alone.

use saga_core::definition::{BuildError, SagaDefinition, SagaType, Step, StepCx, StepType};
use schemas::{
    AnularPago, ConfirmarPago, EnviarPago, MarcarPagoFallido, MetodoPago, Monto, RegistrarPago, RegistrarPagoCliente,
    RevertirConfirmacion, RevertirPagoCliente, SolicitudPago,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::sagas::StepSettings;

/// The saga type: its name in the log, its version, its parameters.
#[derive(Clone, Copy, Debug)]
pub struct SagaProcesarPago;

impl SagaType for SagaProcesarPago {
    const NAME: &'static str = "procesar_pago";
    const VERSION: u32 = 1;
    type Params = ProcesarPago;
}

/// The saga definition's name, as written in the saga log.
pub const SAGA_TYPE: &str = SagaProcesarPago::NAME;

/// What a payout saga starts with: the validated request, with the payout's id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcesarPago {
    /// The payout, chosen when the request is accepted.
    pub id_pago: Uuid,
    /// The partner paid: a registered client.
    pub id_partner: String,
    /// The payment cycle; one cycle of one partner is paid at most once.
    pub id_ciclo: String,
    /// The total, exact.
    pub monto: Monto,
    /// How it is paid.
    pub metodo_pago: MetodoPago,
    /// The client's own reference for the payout (`confirmation_id`), if it gave one.
    pub referencia: Option<String>,
}

impl ProcesarPago {
    /// The request as the integration events carry it.
    pub fn solicitud(&self) -> SolicitudPago {
        SolicitudPago {
            id_partner: self.id_partner.clone(),
            id_ciclo: self.id_ciclo.clone(),
            monto: self.monto,
            metodo_pago: self.metodo_pago.clone(),
        }
    }
}

/// The definition: record, then send and credit the client in parallel, then confirm.
pub fn definition(settings: &StepSettings) -> SagaDefinition {
    SagaDefinition::of::<SagaProcesarPago>()
        .step(settings.apply(Step::of(Registro)))
        .step(settings.apply(Step::of(Envio).after_step::<Registro>()))
        .step(settings.apply(Step::of(AbonoCliente).after_step::<Registro>()))
        .step(settings.apply(Step::of(Confirmacion).after_step::<Envio>().after_step::<AbonoCliente>()))
}

/// Step 1 (pagos): records the payout and its commission; compensation marks it failed.
pub struct Registro;

impl StepType for Registro {
    type Saga = SagaProcesarPago;
    type Action = RegistrarPago;
    type Compensation = MarcarPagoFallido;
    const NAME: &'static str = "registrar_pago";

    fn action(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<RegistrarPago, BuildError> {
        let p = cx.params;
        Ok(RegistrarPago {
            id_pago: p.id_pago,
            id_partner: p.id_partner.clone(),
            id_ciclo: p.id_ciclo.clone(),
            monto: p.monto,
            metodo_pago: p.metodo_pago.clone(),
        })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<MarcarPagoFallido, BuildError> {
        Ok(MarcarPagoFallido { id_pago: cx.params.id_pago })
    }
}

/// Step 2 (proveedor): sends the payout; compensation voids or refunds it.
pub struct Envio;

impl StepType for Envio {
    type Saga = SagaProcesarPago;
    type Action = EnviarPago;
    type Compensation = AnularPago;
    const NAME: &'static str = "enviar_pago";

    fn action(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<EnviarPago, BuildError> {
        let p = cx.params;
        Ok(EnviarPago {
            id_pago: p.id_pago,
            id_partner: p.id_partner.clone(),
            monto: p.monto,
            metodo_pago: p.metodo_pago.clone(),
        })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<AnularPago, BuildError> {
        Ok(AnularPago { id_pago: cx.params.id_pago, id_operacion: cx.output::<Envio>()?.map(|e| e.id_operacion) })
    }
}

/// Step 3 (cliente): records the payment on the client; compensation removes it.
pub struct AbonoCliente;

impl StepType for AbonoCliente {
    type Saga = SagaProcesarPago;
    type Action = RegistrarPagoCliente;
    type Compensation = RevertirPagoCliente;
    const NAME: &'static str = "registrar_pago_cliente";

    fn action(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<RegistrarPagoCliente, BuildError> {
        let p = cx.params;
        Ok(RegistrarPagoCliente { id_partner: p.id_partner.clone(), id_pago: p.id_pago, monto: p.monto })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<RevertirPagoCliente, BuildError> {
        Ok(RevertirPagoCliente { id_partner: cx.params.id_partner.clone(), id_pago: cx.params.id_pago })
    }
}

/// Step 4 (pagos): completes the payout with the provider's confirmation; compensation takes it
/// back to processing.
pub struct Confirmacion;

impl StepType for Confirmacion {
    type Saga = SagaProcesarPago;
    type Action = ConfirmarPago;
    type Compensation = RevertirConfirmacion;
    const NAME: &'static str = "confirmar_pago";

    fn action(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<ConfirmarPago, BuildError> {
        let enviado = cx
            .output::<Envio>()?
            .ok_or_else(|| BuildError(format!("{} has no output of {}", Self::NAME, Envio::NAME)))?;
        Ok(ConfirmarPago { id_pago: cx.params.id_pago, id_confirmacion: enviado.id_confirmacion })
    }

    fn compensation(&self, cx: &StepCx<'_, SagaProcesarPago>) -> Result<RevertirConfirmacion, BuildError> {
        Ok(RevertirConfirmacion { id_pago: cx.params.id_pago })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use saga_core::definition::StepContext;
    use saga_core::transport::codec::Codec;
    use saga_core::transport::{Command, Correlation};
    use saga_core::{MessageId, SagaId, StepKind};
    use schemas::{Moneda, PagoEnviado};
    use serde_json::json;

    use super::*;

    fn pago() -> ProcesarPago {
        ProcesarPago {
            id_pago: Uuid::now_v7(),
            id_partner: "partner-001".into(),
            id_ciclo: "2025-01".into(),
            monto: Monto { valor_menor: 150_050, moneda: Moneda::Usd },
            metodo_pago: MetodoPago { tipo: "BANK_TRANSFER".into(), mascara: "****1234".into() },
            referencia: None,
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

    #[test]
    fn sending_and_crediting_run_in_parallel_and_confirmation_waits_for_both() {
        let def = definition(&StepSettings::default());
        assert_eq!(def.step_names(), [Registro::NAME, Envio::NAME, AbonoCliente::NAME, Confirmacion::NAME]);
        assert_eq!(def.deps(1), &[0]);
        assert_eq!(def.deps(2), &[0]);
        assert_eq!(def.deps(3), &[1, 2]);
        assert_eq!(
            def.steps.iter().map(|s| s.participant.as_str()).collect::<Vec<_>>(),
            ["comandos.pagos", "comandos.proveedor", "comandos.cliente", "comandos.pagos"]
        );
    }

    /// Every command builds (compensations from the parameters alone: the tombstone case) and
    /// encodes with its topic's Avro envelope; confirmation needs the provider's answer.
    #[test]
    fn every_command_builds_and_encodes_as_avro() {
        let def = definition(&StepSettings::default());
        let params = serde_json::to_value(pago()).expect("params");
        let enviado = PagoEnviado {
            id_operacion: Uuid::now_v7(),
            id_confirmacion: "PRV-0123456789".into(),
            procesado_en: chrono::Utc::now(),
        };
        let with_output = BTreeMap::from([(Envio::NAME.to_owned(), serde_json::to_value(&enviado).expect("json"))]);
        let empty = BTreeMap::new();
        let codec = crate::sagas::codec();
        for (i, step) in def.steps.iter().enumerate() {
            for kind in [StepKind::Action, StepKind::Compensation] {
                let outputs = if kind == StepKind::Action && i == 3 { &with_output } else { &empty };
                let ctx = context(&def, i, &params, outputs);
                let built = match kind {
                    StepKind::Action => step.commands.action(&ctx),
                    StepKind::Compensation => step.commands.compensation(&ctx),
                }
                .unwrap_or_else(|e| panic!("{} {kind}: {e:?}", step.name));
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
        let confirmar = def.steps[3].commands.action(&context(&def, 3, &params, &with_output)).expect("builds");
        assert_eq!(confirmar.body["id_confirmacion"], json!("PRV-0123456789"));
        assert!(def.steps[3].commands.action(&context(&def, 3, &params, &empty)).is_err());
    }
}
