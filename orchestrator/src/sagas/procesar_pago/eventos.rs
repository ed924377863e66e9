//! The integration events of the payout saga, on `eventos.pagos`: `PagoCompletado` when the saga
//! completes, `PagoFallido` when it was compensated or abandoned. Fat events: the request, the
//! transactions, the provider's operation and the client's count, so no consumer calls back.
//! The view writes each one to its outbox with the payout's final state; the relay
//! ([`crate::outbox`]) publishes it.

use saga_core::{ActionMessage, SagaState, SagaStatus, StepType};
use schemas::{EventoDePago, EventoPago, MessageUnion, PagoCompletado, PagoFallido};
use uuid::Uuid;

use super::definicion::{AbonoCliente, Envio, ProcesarPago, Registro};
use super::vista::Final;

/// The topic of payout events.
pub const TOPICO: &str = <EventoPago as schemas::Envelope>::TOPIC;

fn output<T: StepType>(state: &SagaState) -> Result<<T::Action as ActionMessage>::Output, String> {
    state
        .output::<T>()
        .map_err(|e| format!("output of {}: {e}", T::NAME))?
        .ok_or_else(|| format!("no output of {}", T::NAME))
}

/// What the view records for a saga in its final state, if it is final.
pub fn final_de(state: &SagaState) -> Option<Final> {
    match state.status {
        SagaStatus::Completed => Some(Final::Completado),
        SagaStatus::Compensated | SagaStatus::Aborted => {
            let failure = state.failure.clone();
            Some(Final::Fallido {
                codigo: failure.as_ref().map_or_else(|| "ABORTADO".to_owned(), |f| f.code.clone()),
                motivo: failure.as_ref().map_or_else(|| "abandonado por un operador".to_owned(), |f| f.reason.clone()),
                paso: failure.and_then(|f| f.step),
            })
        }
        _ => None,
    }
}

/// The event of a finished payout saga; an error if it is not final or its outputs are missing.
pub fn de_saga(state: &SagaState) -> Result<EventoPago, String> {
    let p: ProcesarPago = serde_json::from_value(state.params.clone()).map_err(|e| format!("parameters: {e}"))?;
    let ocurrido_en = state.updated_at;
    let evento: EventoDePago = match final_de(state) {
        Some(Final::Completado) => {
            let registrado = output::<Registro>(state)?;
            let enviado = output::<Envio>(state)?;
            let cliente = output::<AbonoCliente>(state)?;
            PagoCompletado {
                id_pago: p.id_pago,
                solicitud: p.solicitud(),
                transacciones: registrado.transacciones,
                id_operacion: enviado.id_operacion,
                id_confirmacion: enviado.id_confirmacion,
                total_pagos_cliente: cliente.total_pagos,
                ocurrido_en,
            }
            .into()
        }
        Some(Final::Fallido { codigo, motivo, paso }) => PagoFallido {
            id_pago: p.id_pago,
            solicitud: p.solicitud(),
            paso_fallido: paso.unwrap_or_default(),
            codigo,
            motivo,
            ocurrido_en,
        }
        .into(),
        None => return Err(format!("saga {} has not ended ({})", state.id, state.status)),
    };
    // Derived from the saga's id: every replica and every catch-up pass builds the same event,
    // and the outbox keeps one.
    let id_evento = Uuid::new_v5(&state.id.0, b"evento-pago");
    Ok(EventoPago { id_evento, saga_id: state.id.0, message_type: evento.message_type().to_owned(), evento })
}
