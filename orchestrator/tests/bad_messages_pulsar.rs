//! Bad messages, as a table, against the stack as deployed: the orchestrator and every worker as
//! separate processes over a real Apache Pulsar broker (see `e2e_pulsar.rs` for what it needs).
//! Each row publishes one message no daemon should act on to the reply topic or to marca's
//! command topic: garbage bytes, valid Avro of another topic's schema, a reply for a saga the log
//! does not hold, a finished saga's reply and command again (with and without their
//! properties). Each must end as the row says: dead-lettered (and listed by the orchestrator), or
//! ignored with its counter moved. Afterwards every daemon is up, nothing is left unacknowledged,
//! a new campaign completes, and each service holds each campaign's effects exactly once.

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
use saga_core::{Command, Correlation, MessageId, Outcome, Reply, SagaId};
use saga_pulsar::{PulsarConfig, PulsarTransport};
use serde_json::Value;

const REPLIES: &str = "respuestas.afiliaciones";
const MARCA: &str = "comandos.marca";

/// What must become of a row's message.
#[derive(Clone, Copy, Debug)]
enum Fate {
    /// Dead-lettered by its receiver and recorded by the orchestrator (linked to its saga when
    /// its properties name one).
    DeadLettered,
    /// Acknowledged and ignored; the Prometheus counter `name` (the sum of its samples whose
    /// labels contain `label`) moves by one on the daemon that received it.
    Ignored { daemon: &'static str, name: &'static str, label: &'static str },
}

struct Row {
    what: &'static str,
    topic: &'static str,
    payload: Vec<u8>,
    properties: HashMap<String, String>,
    fate: Fate,
}

async fn dead_letters(stack: &Stack) -> Vec<Value> {
    let (status, v) = stack.get("/dead-letters?limite=500").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["dead_letters"].as_array().unwrap().clone()
}

/// The saga's first command to `participant`, and the reply the saga accepted for it.
fn sent_and_answered(saga: &Value, participant: &str) -> (Command, Option<Reply>) {
    let historia = saga["historia"].as_array().unwrap();
    let sent = historia
        .iter()
        .find(|e| e["event"]["type"] == "command_sent" && e["event"]["command"]["participant"] == participant)
        .unwrap_or_else(|| panic!("no command to {participant}: {saga}"));
    let command: Command = serde_json::from_value(sent["event"]["command"].clone()).unwrap();
    let steps = saga["saga"]["steps"].as_array().unwrap();
    let index = steps.iter().position(|s| s["name"] == command.correlation.step_name.as_str()).unwrap();
    let reply = historia
        .iter()
        .find(|e| {
            e["event"]["type"] == "reply_accepted"
                && e["event"]["step"] == index
                && e["event"]["kind"] == "action"
                && e["event"]["attempt"] == command.correlation.attempt
        })
        .map(|e| Reply {
            correlation: command.correlation.clone(),
            outcome: serde_json::from_value::<Outcome>(e["event"]["outcome"].clone()).unwrap(),
        });
    (command, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_message_is_dead_lettered_or_ignored_and_changes_nothing() {
    let stack = Stack::start().await;
    let codec = Arc::new(orchestrator::sagas::codec());
    let pulsar = PulsarTransport::new(
        PulsarConfig::new(env("SAGA_TEST_PULSAR_URL"), "alpes", stack.namespace.clone(), "bad-messages-test"),
        codec.clone(),
    );

    // A finished saga, whose messages the rows replay.
    let (status, accepted) = stack.post(&ejemplo(15000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let first_id = accepted["id_campana"].as_str().unwrap().to_owned();
    let first = stack.settled(&first_id).await;
    assert_eq!(first["estado"], "activa", "{first}");
    let saga_id = accepted["saga_id"].as_str().unwrap().to_owned();
    let (_, saga) = stack.get(&format!("/sagas/{saga_id}")).await;
    let history_before = saga["historia"].as_array().unwrap().len();
    let (marca_command, marca_reply) = sent_and_answered(&saga, MARCA);
    let marca_reply = marca_reply.expect("marca's reply accepted");
    let (influencer_command, _) = sent_and_answered(&saga, "comandos.influencer");
    let properties_of = |c: &Correlation, message_type: &str| -> HashMap<String, String> {
        correlation_properties(c, None, message_type).into_iter().collect()
    };
    let unknown = Reply {
        correlation: Correlation {
            saga_id: SagaId::new(),
            message_id: MessageId::new(),
            ..marca_reply.correlation.clone()
        },
        outcome: marca_reply.outcome.clone(),
    };

    let reply_bytes = codec.encode_reply(REPLIES, &marca_reply).unwrap();
    let table = vec![
        Row {
            what: "garbage on the reply topic",
            topic: REPLIES,
            payload: b"\x02\x04 not avro at all".to_vec(),
            properties: HashMap::new(),
            fate: Fate::DeadLettered,
        },
        Row {
            what: "a marca command (valid Avro of another schema) on the reply topic",
            topic: REPLIES,
            payload: codec.encode_command(&marca_command).unwrap(),
            properties: properties_of(&marca_command.correlation, &marca_command.message_type),
            fate: Fate::DeadLettered,
        },
        Row {
            what: "a reply for a saga the log does not hold",
            topic: REPLIES,
            payload: codec.encode_reply(REPLIES, &unknown).unwrap(),
            properties: properties_of(&unknown.correlation, "RespuestaAfiliaciones"),
            fate: Fate::Ignored {
                daemon: "orchestrator",
                name: "saga_replies_unmatched_total",
                label: "reason=\"unknown_saga\"",
            },
        },
        Row {
            what: "a finished saga's reply again",
            topic: REPLIES,
            payload: reply_bytes.clone(),
            properties: properties_of(&marca_reply.correlation, "RespuestaAfiliaciones"),
            fate: Fate::Ignored { daemon: "orchestrator", name: "saga_replies_ignored_total", label: "" },
        },
        Row {
            what: "a finished saga's reply again, without properties",
            topic: REPLIES,
            payload: reply_bytes,
            properties: HashMap::new(),
            fate: Fate::Ignored { daemon: "orchestrator", name: "saga_replies_ignored_total", label: "" },
        },
        Row {
            what: "garbage on marca's command topic",
            topic: MARCA,
            payload: vec![0xff; 64],
            properties: HashMap::new(),
            fate: Fate::DeadLettered,
        },
        Row {
            what: "an influencer command (valid Avro of another schema) on marca's topic",
            topic: MARCA,
            payload: codec.encode_command(&influencer_command).unwrap(),
            properties: properties_of(&influencer_command.correlation, &influencer_command.message_type),
            fate: Fate::DeadLettered,
        },
        Row {
            what: "a finished saga's marca command again, without properties",
            topic: MARCA,
            payload: codec.encode_command(&marca_command).unwrap(),
            properties: HashMap::new(),
            fate: Fate::Ignored {
                daemon: "marca",
                name: "participant_commands_total",
                label: "disposition=\"duplicatemessage\"",
            },
        },
    ];

    let mut failures = Vec::new();
    for row in &table {
        let dead_before = dead_letters(&stack).await.len();
        let counted_before = match row.fate {
            Fate::Ignored { daemon, name, label } => stack.metric(daemon, name, label).await,
            Fate::DeadLettered => 0.0,
        };
        pulsar.publish(row.topic, None, row.payload.clone(), row.properties.clone()).await.unwrap();
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let settled = match row.fate {
                    Fate::DeadLettered => {
                        // Newest first.
                        let dead = dead_letters(&stack).await;
                        dead.len() > dead_before && dead[0]["topic"] == row.topic
                    }
                    Fate::Ignored { daemon, name, label } => {
                        stack.metric(daemon, name, label).await >= counted_before + 1.0
                    }
                };
                if settled {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
        if outcome.is_err() {
            failures.push(format!("{} on {}: not {:?} within 30 s", row.what, row.topic, row.fate));
            continue;
        }
        // Never both: an ignored message is not dead-lettered too, and one dead letter per row.
        let dead_after = dead_letters(&stack).await.len();
        let expected = dead_before + usize::from(matches!(row.fate, Fate::DeadLettered));
        if dead_after != expected {
            failures.push(format!("{}: {dead_after} dead letters, not {expected}", row.what));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), table.len(), failures.join("\n"));

    // The finished saga is as it was, but for the replies it ignored: the two rows' and marca's
    // answer to the duplicate command, each logged (a saga at rest logs its first three) and
    // counted.
    let path = format!("/sagas/{saga_id}");
    wait_for(Duration::from_secs(30), "three replies ignored by the finished saga", || async {
        stack.get(&path).await.1["resumen"]["replies_ignored"] == 3
    })
    .await;
    let (_, after) = stack.get(&path).await;
    assert_eq!(after["saga"]["status"], "completed");
    let added: Vec<&Value> = after["historia"].as_array().unwrap()[history_before..].iter().collect();
    assert_eq!(added.len(), 3, "{added:#?}");
    assert!(added.iter().all(|e| e["event"]["type"] == "reply_ignored"), "{added:#?}");

    // Every daemon is up, and goes on: a new campaign completes.
    for d in stack.workers.iter().chain([&stack.orchestrator]) {
        let res = stack.http.get(format!("{}/health", d.url())).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{} is not healthy:\n{}", d.name, d.logs());
    }
    let (status, accepted) = stack.post(&ejemplo(20000), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let second_id = accepted["id_campana"].as_str().unwrap().to_owned();
    let second = stack.settled(&second_id).await;
    assert_eq!(second["estado"], "activa", "{second}");

    // Each campaign's effects once, in every service; nothing left unacknowledged.
    stack.check_effects(&[(first_id, first, 1_500_000, 2), (second_id, second, 2_000_000, 2)]).await;
    wait_for(Duration::from_secs(30), "every subscription's backlog at zero", || async {
        stack.topics().await.0.values().all(|n| *n == 0)
    })
    .await;
    let dead = dead_letters(&stack).await;
    assert_eq!(dead.len(), 4, "one dead letter per row that dead-letters: {dead:#?}");
    let linked = dead.iter().filter(|d| d["saga_id"] == saga_id.as_str()).count();
    assert_eq!(linked, 2, "the two of another schema are linked to their saga by their properties: {dead:#?}");
}
