//! Property tests of what reads untrusted input: the message codecs (the Avro codec every daemon
//! decodes broker messages with, and saga-core's JSON codec) fed arbitrary bytes and mutated
//! valid messages, and the request validators of every body route fed arbitrary JSON. None may
//! panic; a refusal is an error with a message saying what is wrong. Each property runs a fixed
//! number of cases (`CASES`), so the whole file takes a few seconds.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use chrono::NaiveDate;
use proptest::prelude::*;
use saga_core::transport::codec::{Codec, JsonCodec};
use saga_core::transport::{Command, Correlation, Outcome, Reply};
use saga_core::{MessageId, SagaId, StepKind};
use serde_json::{json, Value};
use uuid::Uuid;

/// Cases per property: each is microseconds, so this stays well under a second a property.
const CASES: u32 = 2_000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() }
}

const REPLIES: &str = "respuestas.afiliaciones";

fn topics() -> Vec<&'static str> {
    workers::participants::ALL.iter().map(|p| p.topic()).collect()
}

fn correlation() -> Correlation {
    Correlation {
        saga_id: SagaId::new(),
        saga_type: "crear_campana".into(),
        step_name: "abrir_tracking".into(),
        attempt: 1,
        kind: StepKind::Compensation,
        message_id: MessageId::new(),
    }
}

fn command() -> Command {
    Command {
        correlation: correlation(),
        participant: "comandos.tracking".into(),
        reply_to: REPLIES.into(),
        message_type: "CerrarTracking".into(),
        body: json!({ "id_campana": Uuid::now_v7(), "id_tracking": null }),
    }
}

fn reply() -> Reply {
    Reply {
        correlation: correlation(),
        outcome: Outcome::BusinessFailure { code: "CONTEXTO_CERRADO".into(), reason: "cerrado".into() },
    }
}

/// A refusal must say something.
fn clear<T>(r: Result<T, saga_core::transport::codec::CodecError>) -> Result<(), TestCaseError> {
    if let Err(e) = r {
        prop_assert!(!e.0.trim().is_empty(), "an empty decoding error");
    }
    Ok(())
}

/// `bytes` changed by `edits`: (position, new byte or removal), then cut at `cut`.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, Option<u8>)], cut: Option<usize>) -> Vec<u8> {
    for (at, byte) in edits {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        match byte {
            Some(b) => bytes[at] = *b,
            None => {
                bytes.remove(at);
            }
        }
    }
    if let Some(cut) = cut {
        bytes.truncate(cut % (bytes.len() + 1));
    }
    bytes
}

fn edits() -> impl Strategy<Value = (Vec<(usize, Option<u8>)>, Option<usize>)> {
    (prop::collection::vec((any::<usize>(), any::<Option<u8>>()), 1..6), any::<Option<usize>>())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn avro_decoding_of_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), topic in 0..6usize) {
        let codec = orchestrator::sagas::codec();
        let topics = topics();
        clear(codec.decode_command(topics[topic % topics.len()], &bytes))?;
        clear(codec.decode_reply(REPLIES, &bytes))?;
    }

    #[test]
    fn avro_decoding_of_mutated_messages_never_panics((edits, cut) in edits()) {
        let codec = orchestrator::sagas::codec();
        let command = codec.encode_command(&command()).unwrap();
        clear(codec.decode_command("comandos.tracking", &mutate(command.clone(), &edits, cut)))?;
        // A valid message of another topic's schema.
        clear(codec.decode_command("comandos.marca", &command))?;
        let reply = codec.encode_reply(REPLIES, &reply()).unwrap();
        clear(codec.decode_reply(REPLIES, &mutate(reply, &edits, cut)))?;
    }

    #[test]
    fn json_decoding_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), (edits, cut) in edits()) {
        let codec = JsonCodec;
        clear(codec.decode_command("comandos.tracking", &bytes))?;
        clear(codec.decode_reply(REPLIES, &bytes))?;
        let command = codec.encode_command(&command()).unwrap();
        clear(codec.decode_command("comandos.tracking", &mutate(command, &edits, cut)))?;
        let reply = codec.encode_reply(REPLIES, &reply()).unwrap();
        clear(codec.decode_reply(REPLIES, &mutate(reply, &edits, cut)))?;
    }

    #[test]
    fn request_validators_never_panic_and_name_every_error(body in arbitrary_request()) {
        use orchestrator::sagas::{crear_campana, procesar_pago};
        let hoy = NaiveDate::from_ymd_opt(2025, 6, 1).unwrap();
        let mut lists: Vec<Value> = Vec::new();
        if let Err(e) = crear_campana::solicitud::validar(&body, Uuid::now_v7()) {
            lists.push(serde_json::to_value(e).unwrap());
        }
        if let Err(e) = procesar_pago::solicitud::validar(&body, Uuid::now_v7()) {
            lists.push(serde_json::to_value(e).unwrap());
        }
        if let Err(e) = workers::cliente::api::validar(&body, hoy) {
            lists.push(serde_json::to_value(e).unwrap());
        }
        if let Err(e) = workers::tracking_eventos::validar(&body) {
            lists.push(Value::Array(e));
        }
        for list in lists {
            let errors = list.as_array().unwrap();
            prop_assert!(!errors.is_empty(), "refused without a reason");
            for e in errors {
                let message = e.get("error").or_else(|| e.get("mensaje")).and_then(Value::as_str).unwrap_or("");
                prop_assert!(!message.trim().is_empty(), "an error without a message: {e}");
            }
        }
    }
}

/// JSON shaped like the requests: objects keyed by their fields' names (and others), with values
/// of every type, nested.
fn arbitrary_request() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        Just(Value::from("2025-01-01T00:00:00")),
        Just(Value::from("123e4567-e89b-12d3-a456-426614174000")),
    ];
    let keys = prop_oneof![
        Just("nombre"),
        Just("descripcion"),
        Just("tipo"),
        Just("fecha_inicio"),
        Just("fecha_fin"),
        Just("presupuesto"),
        Just("marca"),
        Just("id_marca"),
        Just("influencers"),
        Just("seguidores"),
        Just("partner_id"),
        Just("cycle_id"),
        Just("total_amount"),
        Just("currency"),
        Just("payment_method_type"),
        Just("processed_at"),
        Just("id"),
        Just("email"),
        Just("cedula"),
        Just("fecha_nacimiento"),
        Just("id_campana"),
        Just("tipo_evento"),
        Just("datos"),
        Just("valor"),
        Just("codigo"),
    ]
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 64, 10, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..12)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}
