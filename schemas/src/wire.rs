//! The Avro codec of the saga engine's messages: maps saga-core's commands and replies to the
//! topic envelopes of `schemas/v1` and back, so a broker transport carries Avro datums whose
//! schema the broker's registry holds.
//!
//! A command's body is `(message_type, JSON)` in the engine; here it becomes the typed union of
//! its topic. A success reply's output needs a record name too: for an action it comes from the
//! saga definitions themselves ([`AvroCodec::for_definitions`]: each typed step declares its
//! action's output record); every compensation answers [`CompensacionConfirmada`].
//!
//! The command topics are listed once, in the `command_topics!` invocation below: a new
//! participant adds its envelope and body there.

use std::collections::HashMap;

use saga_core::definition::SagaDefinition;
use saga_core::transport::codec::{Codec, CodecError, SchemaKind, WireSchema};
use saga_core::transport::{Command, Correlation, Outcome, Reply};
use saga_core::{MessageId, SagaId, StepKind};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    decode, encode, AvroMessage, ComandoCliente, ComandoInfluencer, ComandoMarca, ComandoPagos, ComandoProveedor,
    ComandoTracking, CompensacionConfirmada, Correlacion, CuerpoCliente, CuerpoInfluencer, CuerpoMarca, CuerpoPagos,
    CuerpoProveedor, CuerpoTracking, Envelope, ErrorTransitorio, Exito, FalloNegocio, MessageUnion, ParsedSchema,
    RespuestaAfiliaciones, Resultado, Salida, TipoPaso,
};

/// The Avro codec for the sagas' topics.
#[derive(Clone, Debug)]
pub struct AvroCodec {
    /// (saga type, step name) → the record its action's success carries.
    action_outputs: HashMap<(String, String), &'static str>,
}

fn err(e: impl std::fmt::Display) -> CodecError {
    CodecError(e.to_string())
}

fn tipo(kind: StepKind) -> TipoPaso {
    match kind {
        StepKind::Action => TipoPaso::Accion,
        StepKind::Compensation => TipoPaso::Compensacion,
    }
}

fn kind(tipo: TipoPaso) -> StepKind {
    match tipo {
        TipoPaso::Accion => StepKind::Action,
        TipoPaso::Compensacion => StepKind::Compensation,
    }
}

fn header(c: &Correlation, message_id: Uuid, reply_to: Option<String>, message_type: &str) -> Correlacion {
    Correlacion {
        saga_id: c.saga_id.0,
        saga_type: c.saga_type.clone(),
        step: c.step_name.clone(),
        attempt: c.attempt,
        kind: tipo(c.kind),
        message_id,
        reply_to,
        message_type: message_type.to_owned(),
    }
}

fn correlation(h: &Correlacion, message_id: Uuid) -> Correlation {
    Correlation {
        saga_id: SagaId(h.saga_id),
        saga_type: h.saga_type.clone(),
        step_name: h.step.clone(),
        attempt: h.attempt,
        kind: kind(h.kind),
        message_id: MessageId(message_id),
    }
}

fn schema_of<T: AvroMessage>() -> WireSchema {
    WireSchema { kind: SchemaKind::Avro, definition: ParsedSchema::of::<T>().json().to_owned() }
}

impl AvroCodec {
    /// The codec of the topics the given sagas use, with each typed step's output record.
    pub fn for_definitions<'a>(definitions: impl IntoIterator<Item = &'a SagaDefinition>) -> Self {
        let mut action_outputs = HashMap::new();
        for definition in definitions {
            for step in &definition.steps {
                if let Some(messages) = &step.messages {
                    action_outputs.insert((definition.name.clone(), step.name.clone()), messages.output);
                }
            }
        }
        Self { action_outputs }
    }

    /// A codec whose action outputs are named by `action_outputs`: (saga type, step name, output
    /// record), for example `("crear_campana", "reservar_presupuesto", "PresupuestoReservado")`.
    pub fn new<S: Into<String>, T: Into<String>>(
        action_outputs: impl IntoIterator<Item = (S, T, &'static str)>,
    ) -> Self {
        Self { action_outputs: action_outputs.into_iter().map(|(s, t, r)| ((s.into(), t.into()), r)).collect() }
    }

    fn salida(&self, c: &Correlation, output: &Value) -> Result<Salida, CodecError> {
        match c.kind {
            StepKind::Compensation => {
                // The participant module answers a tombstone with `{"tombstone": true}`.
                let lapida =
                    output.get("lapida").or_else(|| output.get("tombstone")).and_then(Value::as_bool).unwrap_or(false);
                Ok(Salida::CompensacionConfirmada(CompensacionConfirmada { lapida }))
            }
            StepKind::Action => {
                let key = (c.saga_type.clone(), c.step_name.clone());
                let record = self.action_outputs.get(&key).ok_or_else(|| {
                    CodecError(format!("no output record declared for step {:?} of {:?}", c.step_name, c.saga_type))
                })?;
                Salida::from_json(record, output.clone()).map_err(err)
            }
        }
    }
}

macro_rules! command_codec {
    ($command:expr, $envelope:ident, $body:ident) => {{
        let c = &$command.correlation;
        let cuerpo = $body::from_json(&$command.message_type, $command.body.clone()).map_err(err)?;
        let envelope = $envelope {
            correlacion: header(c, c.message_id.0, Some($command.reply_to.clone()), &$command.message_type),
            cuerpo,
        };
        encode(&envelope).map_err(err)
    }};
}

macro_rules! decode_command {
    ($participant:expr, $payload:expr, $envelope:ty) => {{
        let envelope: $envelope = decode($payload).map_err(err)?;
        let h = &envelope.correlacion;
        Command {
            correlation: correlation(h, h.message_id),
            participant: $participant.to_owned(),
            reply_to: h.reply_to.clone().ok_or_else(|| CodecError("a command without reply_to".into()))?,
            message_type: envelope.cuerpo.message_type().to_owned(),
            body: envelope.cuerpo.to_json(),
        }
    }};
}

/// The command topics: each envelope with its body union. Everything the codec does with a
/// command is generated from this one list.
macro_rules! command_topics {
    ($($envelope:ident => $body:ident),+ $(,)?) => {
        fn command_schema_of(participant: &str) -> Option<WireSchema> {
            match participant {
                $($envelope::TOPIC => Some(schema_of::<$envelope>()),)+
                _ => None,
            }
        }

        fn encode_command_of(command: &Command) -> Result<Vec<u8>, CodecError> {
            match command.participant.as_str() {
                $($envelope::TOPIC => command_codec!(command, $envelope, $body),)+
                other => Err(CodecError(format!("no Avro schema for command topic {other:?}"))),
            }
        }

        fn decode_command_of(participant: &str, payload: &[u8]) -> Result<Command, CodecError> {
            Ok(match participant {
                $($envelope::TOPIC => decode_command!(participant, payload, $envelope),)+
                other => return Err(CodecError(format!("no Avro schema for command topic {other:?}"))),
            })
        }
    };
}

command_topics! {
    ComandoMarca => CuerpoMarca,
    ComandoInfluencer => CuerpoInfluencer,
    ComandoTracking => CuerpoTracking,
    ComandoPagos => CuerpoPagos,
    ComandoProveedor => CuerpoProveedor,
    ComandoCliente => CuerpoCliente,
}

impl Codec for AvroCodec {
    fn command_schema(&self, participant: &str) -> Option<WireSchema> {
        command_schema_of(participant)
    }

    fn reply_schema(&self, address: &str) -> Option<WireSchema> {
        (address == RespuestaAfiliaciones::TOPIC).then(schema_of::<RespuestaAfiliaciones>)
    }

    fn encode_command(&self, command: &Command) -> Result<Vec<u8>, CodecError> {
        encode_command_of(command)
    }

    fn decode_command(&self, participant: &str, payload: &[u8]) -> Result<Command, CodecError> {
        decode_command_of(participant, payload)
    }

    fn encode_reply(&self, address: &str, reply: &Reply) -> Result<Vec<u8>, CodecError> {
        if address != RespuestaAfiliaciones::TOPIC {
            return Err(CodecError(format!("no Avro schema for reply topic {address:?}")));
        }
        let c = &reply.correlation;
        let resultado = match &reply.outcome {
            Outcome::Success { output } => Resultado::Exito(Exito { salida: self.salida(c, output)? }),
            Outcome::BusinessFailure { code, reason } => {
                Resultado::FalloNegocio(FalloNegocio { codigo: code.clone(), motivo: reason.clone() })
            }
            Outcome::Transient { reason } => Resultado::ErrorTransitorio(ErrorTransitorio { motivo: reason.clone() }),
        };
        // The reply's own id is fresh; the command's travels in `en_respuesta_a`.
        let envelope = RespuestaAfiliaciones {
            correlacion: header(c, Uuid::now_v7(), None, resultado.message_type()),
            en_respuesta_a: c.message_id.0,
            resultado,
        };
        encode(&envelope).map_err(err)
    }

    fn decode_reply(&self, address: &str, payload: &[u8]) -> Result<Reply, CodecError> {
        if address != RespuestaAfiliaciones::TOPIC {
            return Err(CodecError(format!("no Avro schema for reply topic {address:?}")));
        }
        let envelope: RespuestaAfiliaciones = decode(payload).map_err(err)?;
        let outcome = match envelope.resultado {
            Resultado::Exito(Exito { salida }) => Outcome::Success {
                output: match salida {
                    Salida::CompensacionConfirmada(c) => json!({ "lapida": c.lapida }),
                    other => other.to_json(),
                },
            },
            Resultado::FalloNegocio(f) => Outcome::BusinessFailure { code: f.codigo, reason: f.motivo },
            Resultado::ErrorTransitorio(e) => Outcome::Transient { reason: e.motivo },
        };
        Ok(Reply { correlation: correlation(&envelope.correlacion, envelope.en_respuesta_a), outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Centavos, LiberarPresupuesto, PresupuestoReservado, ReservarPresupuesto};

    fn codec() -> AvroCodec {
        AvroCodec::new([("crear_campana", "reservar_presupuesto", "PresupuestoReservado")])
    }

    fn correlation(kind: StepKind) -> Correlation {
        Correlation {
            saga_id: SagaId::new(),
            saga_type: "crear_campana".into(),
            step_name: "reservar_presupuesto".into(),
            attempt: 3,
            kind,
            message_id: MessageId::new(),
        }
    }

    fn reservar() -> Command {
        let body = ReservarPresupuesto {
            id_campana: Uuid::now_v7(),
            id_marca: Uuid::now_v7(),
            monto_centavos: Centavos(1_500_000),
        };
        Command {
            correlation: correlation(StepKind::Action),
            participant: "comandos.marca".into(),
            reply_to: "respuestas.afiliaciones".into(),
            message_type: "ReservarPresupuesto".into(),
            body: serde_json::to_value(body).expect("json"),
        }
    }

    #[test]
    fn a_command_round_trips_through_its_topic_envelope() {
        let codec = codec();
        let command = reservar();
        let bytes = codec.encode_command(&command).expect("encode");
        assert_eq!(codec.decode_command("comandos.marca", &bytes).expect("decode"), command);
        // Read as another participant's envelope, the datum is refused rather than misread.
        assert!(codec.decode_command("comandos.tracking", &bytes).is_err());
        assert!(codec.decode_command("comandos.marca", b"\x02garbage").is_err());
    }

    #[test]
    fn a_body_that_does_not_fit_its_message_type_is_refused() {
        let codec = codec();
        let mut wrong = reservar();
        wrong.body = json!({ "id_campana": "not a uuid" });
        assert!(codec.encode_command(&wrong).is_err());
        let mut kind = reservar();
        kind.correlation.kind = StepKind::Compensation;
        assert!(codec.encode_command(&kind).is_err(), "an action body sent as a compensation");
        let mut topic = reservar();
        topic.participant = "comandos.otro".into();
        assert!(codec.encode_command(&topic).is_err());
    }

    #[test]
    fn replies_round_trip_with_every_outcome() {
        let codec = codec();
        let output = serde_json::to_value(PresupuestoReservado {
            id_reserva: Uuid::now_v7(),
            id_marca: Uuid::now_v7(),
            monto_centavos: Centavos(1_500_000),
            disponible_restante_centavos: Centavos(500),
        })
        .expect("json");
        let cases = [
            Reply { correlation: correlation(StepKind::Action), outcome: Outcome::Success { output } },
            Reply {
                correlation: correlation(StepKind::Action),
                outcome: Outcome::BusinessFailure {
                    code: "PRESUPUESTO_INSUFICIENTE".into(),
                    reason: "no alcanza".into(),
                },
            },
            Reply { correlation: correlation(StepKind::Action), outcome: Outcome::Transient { reason: "db".into() } },
            Reply {
                correlation: correlation(StepKind::Compensation),
                outcome: Outcome::Success { output: json!({ "lapida": true }) },
            },
        ];
        for reply in cases {
            let bytes = codec.encode_reply("respuestas.afiliaciones", &reply).expect("encode");
            assert_eq!(codec.decode_reply("respuestas.afiliaciones", &bytes).expect("decode"), reply);
        }
    }

    #[test]
    fn the_participant_modules_tombstone_reply_becomes_a_lapida() {
        let codec = codec();
        let reply = Reply {
            correlation: correlation(StepKind::Compensation),
            outcome: Outcome::Success { output: json!({ "compensated": false, "tombstone": true }) },
        };
        let bytes = codec.encode_reply("respuestas.afiliaciones", &reply).expect("encode");
        let back = codec.decode_reply("respuestas.afiliaciones", &bytes).expect("decode");
        assert_eq!(back.outcome, Outcome::Success { output: json!({ "lapida": true }) });
        let _ = LiberarPresupuesto::NAME;
    }

    #[test]
    fn an_action_output_without_a_declared_record_is_refused() {
        let codec = AvroCodec::new::<String, String>([]);
        let reply =
            Reply { correlation: correlation(StepKind::Action), outcome: Outcome::Success { output: json!({}) } };
        assert!(codec.encode_reply("respuestas.afiliaciones", &reply).is_err());
    }

    #[test]
    fn schemas_are_declared_for_the_four_topics_only() {
        let codec = codec();
        for topic in ["comandos.marca", "comandos.influencer", "comandos.tracking"] {
            let schema = codec.command_schema(topic).expect("schema");
            assert_eq!(schema.kind, SchemaKind::Avro);
            assert!(schema.definition.contains("\"Correlacion\""));
        }
        assert!(codec.reply_schema("respuestas.afiliaciones").is_some());
        assert!(codec.command_schema("comandos.otro").is_none());
    }
}
