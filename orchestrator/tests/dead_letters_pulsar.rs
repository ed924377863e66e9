//! Dead letters as deployed: the orchestrator and every worker as separate processes over a real
//! Apache Pulsar broker (see `e2e_pulsar.rs` for what it needs). Garbage bytes published to
//! marca's command topic are dead-lettered by marca and listed by the orchestrator without a
//! saga; a saga's command found on `comandos.marca.dlq` is listed with its saga and redriven
//! twice, and marca answers both from its records: the budget is reserved once.

#![cfg(feature = "pulsar")]
// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;
mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{ejemplo, env, wait_for, Stack};
use reqwest::StatusCode;
use saga_core::transport::codec::Codec;
use saga_core::transport::dead_letter::correlation_properties;
use saga_core::transport::{property, Command};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::{json, Value};

async fn dead_letters(stack: &Stack, query: &str) -> Value {
    let (status, v) = stack.get(&format!("/dead-letters{query}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// `participant_commands_total` of marca's commands handled with `disposition`, from its metrics.
async fn handled(stack: &Stack, disposition: &str) -> u64 {
    stack.metric("marca", "participant_commands_total", &format!("disposition=\"{disposition}\"")).await as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_listed_without_a_saga_and_a_sagas_dead_letter_is_redriven_safely() {
    let stack = Stack::start().await;
    let config = PulsarConfig::new(env("SAGA_TEST_PULSAR_URL"), "alpes", stack.namespace.clone(), "dead-letter-test");
    let codec = Arc::new(orchestrator::sagas::codec());
    let pulsar = PulsarTransport::new(config, codec.clone());

    // Garbage on marca's command topic: marca dead-letters it; the orchestrator records it.
    pulsar.publish("comandos.marca", None, b"\x00\x01 not avro".to_vec(), HashMap::new()).await.unwrap();
    wait_for(Duration::from_secs(30), "the garbage listed", || async {
        dead_letters(&stack, "?topic=comandos.marca").await["total"] == 1
    })
    .await;
    let garbage = dead_letters(&stack, "?topic=comandos.marca").await["dead_letters"][0].clone();
    assert_eq!(
        (garbage["saga_id"].clone(), garbage["step"].clone(), garbage["kind"].clone()),
        (Value::Null, Value::Null, Value::Null)
    );
    assert!(garbage["reason"].as_str().unwrap().starts_with("undecodable"), "{garbage}");
    assert!(garbage["dead_letter_topic"].as_str().unwrap().ends_with("/comandos.marca.dlq"), "{garbage}");
    assert_eq!(garbage["estado"], "pending");

    // A campaign, then its marca command as if marca had dead-lettered it.
    let (status, accepted) = stack.post(&ejemplo(15000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let c = stack.settled(accepted["id_campana"].as_str().unwrap()).await;
    assert_eq!(c["estado"], "activa", "{c}");
    let saga = accepted["saga_id"].as_str().unwrap().to_owned();
    let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
    let sent = s["historia"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["type"] == "command_sent" && e["event"]["command"]["participant"] == "comandos.marca")
        .unwrap();
    let command: Command = serde_json::from_value(sent["event"]["command"].clone()).unwrap();
    let mut properties: HashMap<String, String> =
        correlation_properties(&command.correlation, Some(&command.reply_to), &command.message_type)
            .into_iter()
            .collect();
    properties.insert(property::DEAD_LETTER_REASON.into(), "its reply could not be sent".into());
    properties.insert(property::DEAD_LETTER_FROM.into(), pulsar.config().topic("comandos.marca"));
    properties.insert(property::DEAD_LETTER_MESSAGE_ID.into(), "test:1:-1".into());
    let payload = codec.encode_command(&command).unwrap();
    // Published twice, as a dead letter the broker delivers again: recorded once.
    for _ in 0..2 {
        pulsar.publish("comandos.marca.dlq", None, payload.clone(), properties.clone()).await.unwrap();
    }
    let of_saga = format!("?saga_id={saga}");
    wait_for(Duration::from_secs(30), "the saga's dead letter listed", || async {
        dead_letters(&stack, &of_saga).await["total"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(dead_letters(&stack, "").await["total"], 2, "the second copy was not recorded again");
    let dl = dead_letters(&stack, &of_saga).await["dead_letters"][0].clone();
    assert_eq!((dl["step"].clone(), dl["kind"].clone()), (json!("reservar_presupuesto"), json!("action")));
    assert_eq!(dl["message_id"], json!(command.correlation.message_id.to_string()));
    let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
    assert_eq!(s["dead_letters"][0]["id"], dl["id"]);

    // Redriven twice: marca finds the message id in its records both times.
    let id = dl["id"].as_str().unwrap();
    let duplicates = handled(&stack, "duplicatemessage").await;
    for n in 1..=2 {
        let res =
            stack.http.post(format!("{}/dead-letters/{id}/redrive", stack.orchestrator.url())).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let r: Value = res.json().await.unwrap();
        assert_eq!(
            (r["dead_letter"]["redrives"].clone(), r["dead_letter"]["estado"].clone()),
            (json!(n), json!("redriven"))
        );
    }
    wait_for(Duration::from_secs(30), "marca handled both redrives", || async {
        handled(&stack, "duplicatemessage").await >= duplicates + 2
    })
    .await;
    let marca = stack.db("marca").await;
    let reservas: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reserva_presupuesto WHERE id_campana = $1")
        .bind(uuid::Uuid::parse_str(accepted["id_campana"].as_str().unwrap()).unwrap())
        .fetch_one(&marca)
        .await
        .unwrap();
    assert_eq!(reservas, 1, "the budget reserved once");
    stack.check_effects(&[(accepted["id_campana"].as_str().unwrap().to_owned(), c, 1_500_000, 2)]).await;
    let (_, s) = stack.get(&format!("/sagas/{saga}")).await;
    assert_eq!(s["saga"]["status"], "completed");

    // The garbage redriven: marca dead-letters it again, a new pending dead letter.
    let res = stack
        .http
        .post(format!("{}/dead-letters/redrive?topic=comandos.marca", stack.orchestrator.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.json::<Value>().await.unwrap(), json!({ "redriven": 1 }));
    wait_for(Duration::from_secs(30), "the garbage dead-lettered again", || async {
        dead_letters(&stack, "?estado=pending").await["total"] == 1
    })
    .await;
    assert_eq!(dead_letters(&stack, "").await["total"], 3);
    let metrics = reqwest::get(format!("{}/metrics", stack.orchestrator.url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("saga_dead_letter_redrives_total{topic=\"comandos.marca\"} 3"), "{metrics}");
    assert!(metrics.contains("saga_dead_letters_pending{topic=\"comandos.marca\"} 1"), "{metrics}");
}
