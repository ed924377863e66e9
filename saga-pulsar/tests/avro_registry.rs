//! CrearCampaña's Avro on a real broker: a command our producer sent carries the schema the
//! registry now holds, its payload is plain Avro of that schema — read back by an independent
//! implementation (Python's fastavro, `scripts/avro_interop.py`) from the registry's schema and
//! the broker's copy of the message — and our consumer decodes it to the same command.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use saga_core::transport::{Command, Correlation, Transport};
use saga_core::{MessageId, SagaId, StepKind};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use schemas::{AvroCodec, Centavos, ReservarPresupuesto};
use serde_json::Value;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/test.sh (it starts Apache Pulsar)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_avro_is_in_the_registry_and_readable_by_fastavro() {
    let admin = env("SAGA_TEST_PULSAR_ADMIN_URL");
    let http = reqwest::Client::new();
    // A namespace of its own, with the project's compatibility rule, so the schema is fresh.
    let ns = format!("avro-{}", uuid::Uuid::new_v4().simple());
    let created =
        http.put(format!("{admin}/admin/v2/namespaces/alpes/{ns}")).json(&serde_json::json!({})).send().await.unwrap();
    assert!(created.status().is_success(), "namespace: {}", created.status());
    let strategy = http
        .put(format!("{admin}/admin/v2/namespaces/alpes/{ns}/schemaCompatibilityStrategy"))
        .json(&"BACKWARD_TRANSITIVE")
        .send()
        .await
        .unwrap();
    assert!(strategy.status().is_success(), "strategy: {}", strategy.status());
    // The topic and a subscription that keeps the message for the interop reader.
    let topic_path = format!("alpes/{ns}/comandos.marca");
    assert!(http.put(format!("{admin}/admin/v2/persistent/{topic_path}")).send().await.unwrap().status().is_success());
    let sub = http
        .put(format!("{admin}/admin/v2/persistent/{topic_path}/subscription/interop"))
        .json(&serde_json::json!({ "entryId": -1, "ledgerId": -1, "partitionIndex": -1 }))
        .send()
        .await
        .unwrap();
    assert!(sub.status().is_success(), "subscription: {}", sub.status());

    let codec = Arc::new(AvroCodec::new([("crear_campana", "reservar_presupuesto", "PresupuestoReservado")]));
    let transport =
        PulsarTransport::new(PulsarConfig::new(env("SAGA_TEST_PULSAR_URL"), "alpes", ns.clone(), "marca"), codec);
    let mut commands = transport.commands("comandos.marca").await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let id_campana = uuid::Uuid::now_v7();
    let body = ReservarPresupuesto { id_campana, id_marca: uuid::Uuid::now_v7(), monto_centavos: Centavos(1_500_000) };
    let sent = Command {
        correlation: Correlation {
            saga_id: SagaId::new(),
            saga_type: "crear_campana".into(),
            step_name: "reservar_presupuesto".into(),
            attempt: 1,
            kind: StepKind::Action,
            message_id: MessageId::new(),
        },
        participant: "comandos.marca".into(),
        reply_to: "respuestas.afiliaciones".into(),
        message_type: "ReservarPresupuesto".into(),
        body: serde_json::to_value(&body).unwrap(),
    };
    transport.send_command(&sent).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(30), commands.recv()).await.unwrap().unwrap();
    assert_eq!(got.message, sent, "our consumer decodes the Avro envelope back to the same command");
    got.ack().await.unwrap();

    // The registry holds the envelope's Avro schema.
    let schema: Value =
        http.get(format!("{admin}/admin/v2/schemas/{topic_path}/schema")).send().await.unwrap().json().await.unwrap();
    assert_eq!(schema["type"], "AVRO");
    let definition: Value = serde_json::from_str(schema["data"].as_str().unwrap()).unwrap();
    assert_eq!(definition["name"], "ComandoMarca");

    // fastavro reads the broker's copy with the registry's schema.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/avro_interop.py");
    let topic = format!("persistent://{topic_path}");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3").args([script, &admin, &topic, "interop"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "fastavro failed: {}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    let record = &read["record"];
    assert_eq!(record["correlacion"]["saga_id"], sent.correlation.saga_id.to_string());
    assert_eq!(record["correlacion"]["message_id"], sent.correlation.message_id.to_string());
    assert_eq!(record["correlacion"]["kind"], "ACCION");
    assert_eq!(record["correlacion"]["message_type"], "ReservarPresupuesto");
    assert_eq!(record["cuerpo"]["id_campana"], id_campana.to_string());
    assert_eq!(record["cuerpo"]["monto_centavos"], 1_500_000);
}
