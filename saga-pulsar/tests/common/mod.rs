//! What the Pulsar tests share: the broker they run against (from the environment scripts/test.sh
//! exports; without it they fail, saying so), unique addresses, messages, a reader of any topic,
//! a tiny Avro codec, and scripts/pulsar.sh for the tests that stop the broker.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use saga_core::transport::codec::{Codec, CodecError, SchemaKind, WireSchema};
use saga_core::transport::{Command, Correlation, Delivery, Receiver, Reply};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::json;

pub const TENANT: &str = "alpes";
pub const NAMESPACE: &str = "afiliaciones";

pub fn pulsar_url() -> String {
    std::env::var("SAGA_TEST_PULSAR_URL").unwrap_or_else(|_| {
        panic!("SAGA_TEST_PULSAR_URL is not set: these tests need a real Apache Pulsar. Run scripts/test.sh (it starts one with scripts/pulsar.sh), or start one and export SAGA_TEST_PULSAR_URL and SAGA_TEST_PULSAR_ADMIN_URL")
    })
}

pub fn admin_url() -> String {
    std::env::var("SAGA_TEST_PULSAR_ADMIN_URL").unwrap_or_else(|_| {
        panic!("SAGA_TEST_PULSAR_ADMIN_URL is not set: run scripts/test.sh, or export it with SAGA_TEST_PULSAR_URL (scripts/pulsar.sh env prints both)")
    })
}

pub fn config(subscription: &str) -> PulsarConfig {
    PulsarConfig::new(pulsar_url(), TENANT, NAMESPACE, subscription)
}

pub fn pulsar(subscription: &str) -> Arc<PulsarTransport> {
    Arc::new(PulsarTransport::new(config(subscription), Arc::new(saga_core::transport::codec::JsonCodec)))
}

/// A unique address per test, so tests never see each other's messages.
pub fn address(name: &str) -> String {
    format!("test.{name}.{}", uuid::Uuid::new_v4().simple())
}

pub fn command(participant: &str, n: u32) -> Command {
    Command {
        correlation: Correlation {
            saga_id: SagaId::new(),
            saga_type: "prueba".into(),
            step_name: format!("paso-{n}"),
            attempt: n,
            kind: if n.is_multiple_of(2) { StepKind::Action } else { StepKind::Compensation },
            message_id: MessageId::new(),
        },
        participant: participant.to_owned(),
        reply_to: format!("{participant}.respuestas"),
        message_type: "Hacer".into(),
        body: json!({ "n": n, "texto": "campaña ñ", "lista": [1, 2.5, null, true] }),
    }
}

pub async fn next<M: Send>(r: &mut Box<dyn Receiver<M>>) -> Delivery<M> {
    tokio::time::timeout(Duration::from_secs(30), r.recv()).await.expect("a message within 30 s").unwrap()
}

pub async fn nothing<M: Send + std::fmt::Debug>(r: &mut Box<dyn Receiver<M>>, wait: Duration) {
    if let Ok(d) = tokio::time::timeout(wait, r.recv()).await {
        panic!("expected nothing, got {:?}", d.map(|d| d.message));
    }
}

/// A message as the broker holds it.
#[derive(Debug)]
pub struct RawMessage {
    pub payload: Vec<u8>,
    pub properties: HashMap<String, String>,
}

/// Reads `count` messages from the start of `address`'s topic with a raw client and a
/// subscription of its own (so it disturbs nothing), independently of the transport.
pub async fn read_topic(address: &str, count: usize) -> Vec<RawMessage> {
    let client = pulsar::Pulsar::builder(pulsar_url(), pulsar::TokioExecutor).build().await.unwrap();
    let mut consumer: pulsar::Consumer<Vec<u8>, _> = client
        .consumer()
        .with_topic(format!("persistent://{TENANT}/{NAMESPACE}/{address}"))
        .with_subscription(format!("lector-{}", uuid::Uuid::new_v4().simple()))
        .with_subscription_type(pulsar::SubType::Exclusive)
        .with_options(
            pulsar::ConsumerOptions::default().with_initial_position(pulsar::consumer::InitialPosition::Earliest),
        )
        .build()
        .await
        .unwrap();
    let mut out = Vec::new();
    while out.len() < count {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {count} messages in {address} after 30 s", out.len()))
            .unwrap()
            .unwrap();
        let properties = m.metadata().properties.iter().map(|kv| (kv.key.clone(), kv.value.clone())).collect();
        out.push(RawMessage { payload: m.payload.data.clone(), properties });
        consumer.ack(&m).await.unwrap();
    }
    out
}

/// A test codec with an Avro schema: each message is an Avro record with one string field,
/// `json`, holding the engine's JSON. Real Avro (a string is its zig-zag varint length, then its
/// bytes), small enough to check by hand. `extra_field` declares a second, required `int` field:
/// a schema the registry must refuse as incompatible with the first under BACKWARD_TRANSITIVE.
pub struct TinyAvro {
    pub extra_field: bool,
}

impl TinyAvro {
    pub fn schema(&self, name: &str) -> String {
        let extra = if self.extra_field { r#",{"name":"extra","type":"int"}"# } else { "" };
        format!(
            r#"{{"type":"record","name":"{name}","namespace":"alpes.prueba","fields":[{{"name":"json","type":"string"}}{extra}]}}"#
        )
    }

    fn encode(&self, json: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::with_capacity(json.len() + 10);
        let mut n = ((json.len() as i64) << 1) as u64; // zig-zag of a non-negative length
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                break;
            }
            out.push(byte | 0x80);
        }
        out.extend(json);
        if self.extra_field {
            out.push(0);
        }
        out
    }

    fn decode<'a>(&self, bytes: &'a [u8]) -> Result<&'a [u8], CodecError> {
        let (mut n, mut shift, mut i) = (0u64, 0, 0);
        loop {
            let byte = *bytes.get(i).ok_or_else(|| CodecError("truncated length".into()))?;
            n |= u64::from(byte & 0x7f) << shift;
            i += 1;
            if byte & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(CodecError("length too long".into()));
            }
        }
        let len = (n >> 1) as i64 ^ -((n & 1) as i64);
        let end = i + usize::try_from(len).map_err(|_| CodecError("negative length".into()))?;
        let expected_end = if self.extra_field { end + 1 } else { end };
        if expected_end != bytes.len() {
            return Err(CodecError("length does not match the payload".into()));
        }
        Ok(&bytes[i..end])
    }
}

impl Codec for TinyAvro {
    fn command_schema(&self, _participant: &str) -> Option<WireSchema> {
        Some(WireSchema { kind: SchemaKind::Avro, definition: self.schema("ComandoPrueba") })
    }

    fn reply_schema(&self, _address: &str) -> Option<WireSchema> {
        Some(WireSchema { kind: SchemaKind::Avro, definition: self.schema("RespuestaPrueba") })
    }

    fn encode_command(&self, command: &Command) -> Result<Vec<u8>, CodecError> {
        Ok(self.encode(serde_json::to_vec(command).map_err(|e| CodecError(e.to_string()))?))
    }

    fn decode_command(&self, _participant: &str, payload: &[u8]) -> Result<Command, CodecError> {
        serde_json::from_slice(self.decode(payload)?).map_err(|e| CodecError(e.to_string()))
    }

    fn encode_reply(&self, _address: &str, reply: &Reply) -> Result<Vec<u8>, CodecError> {
        Ok(self.encode(serde_json::to_vec(reply).map_err(|e| CodecError(e.to_string()))?))
    }

    fn decode_reply(&self, _address: &str, payload: &[u8]) -> Result<Reply, CodecError> {
        serde_json::from_slice(self.decode(payload)?).map_err(|e| CodecError(e.to_string()))
    }
}

/// Runs scripts/pulsar.sh with this process's environment (the PULSAR_* variables the test
/// command was given, as scripts/test.sh exports them), after checking that it acts on the broker
/// SAGA_TEST_PULSAR_URL names: a test must never stop somebody else's broker.
pub fn pulsar_sh(cmd: &str) {
    run_pulsar_sh(cmd).unwrap_or_else(|e| panic!("{e}"));
}

/// Starts the broker again when dropped armed: a test that fails while the broker is down must
/// not leave it down for the tests after it.
pub struct RestartOnDrop {
    pub armed: bool,
}

impl Drop for RestartOnDrop {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = run_pulsar_sh("start") {
                eprintln!("could not restart the broker: {e}");
            }
        }
    }
}

fn run_pulsar_sh(cmd: &str) -> Result<(), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/pulsar.sh");
    let env =
        std::process::Command::new(script).arg("env").output().map_err(|e| format!("scripts/pulsar.sh env: {e}"))?;
    let printed = String::from_utf8_lossy(&env.stdout);
    let expected = format!("PULSAR_URL={}", pulsar_url());
    if !printed.lines().any(|l| l == expected) {
        return Err(format!(
            "scripts/pulsar.sh would act on another broker ({}) than SAGA_TEST_PULSAR_URL ({}): run the tests with the same PULSAR_* environment as the broker (scripts/test.sh exports it)",
            printed.lines().next().unwrap_or("?"),
            pulsar_url()
        ));
    }
    let out =
        std::process::Command::new(script).arg(cmd).output().map_err(|e| format!("scripts/pulsar.sh {cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("scripts/pulsar.sh {cmd} failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(())
}
