//! A participant served over the real broker whose reply cannot be encoded (the codec refuses
//! it): the command goes to `{topic}.dlq` with the reason, once, instead of being redelivered
//! every 200 ms for ever, and the participant goes on serving.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use saga_core::participant::{serve_on, CommandHandler, Disposition, Handled, ParticipantError};
use saga_core::transport::codec::{Codec, CodecError, JsonCodec, WireSchema};
use saga_core::transport::{Command, Outcome, Reply, Transport};
use saga_pulsar::{property, PulsarTransport};
use serde_json::json;

/// JSON, except that a reply to attempt 9 cannot be encoded (as a reply that does not fit its
/// topic's schema).
struct RefusesAttempt9 {
    refused: AtomicU32,
}

impl Codec for RefusesAttempt9 {
    fn command_schema(&self, participant: &str) -> Option<WireSchema> {
        JsonCodec.command_schema(participant)
    }
    fn reply_schema(&self, address: &str) -> Option<WireSchema> {
        JsonCodec.reply_schema(address)
    }
    fn encode_command(&self, command: &Command) -> Result<Vec<u8>, CodecError> {
        JsonCodec.encode_command(command)
    }
    fn decode_command(&self, participant: &str, payload: &[u8]) -> Result<Command, CodecError> {
        JsonCodec.decode_command(participant, payload)
    }
    fn encode_reply(&self, address: &str, reply: &Reply) -> Result<Vec<u8>, CodecError> {
        if reply.correlation.attempt == 9 {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(CodecError("the reply does not fit its schema".into()));
        }
        JsonCodec.encode_reply(address, reply)
    }
    fn decode_reply(&self, address: &str, payload: &[u8]) -> Result<Reply, CodecError> {
        JsonCodec.decode_reply(address, payload)
    }
}

/// Answers every command with success (its effect, were there one, would be committed).
struct Succeeds;

#[async_trait]
impl CommandHandler for Succeeds {
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
        Ok(Handled {
            reply: Reply { correlation: command.correlation.clone(), outcome: Outcome::Success { output: json!({}) } },
            disposition: Disposition::Applied,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_cannot_be_encoded_dead_letters_its_command_on_the_broker() {
    let addr = address("sin_codificar");
    let codec = Arc::new(RefusesAttempt9 { refused: AtomicU32::new(0) });
    let transport = Arc::new(PulsarTransport::new(config("participante"), codec.clone()));
    let mut unencodable = command(&addr, 9);
    unencodable.reply_to = format!("{addr}.respuestas");
    let mut good = command(&addr, 2);
    good.reply_to = unencodable.reply_to.clone();
    let mut replies = transport.replies(&good.reply_to).await.unwrap();
    let commands = transport.commands(&addr).await.unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // The loop `participant::serve` runs, on a subscription made before anything is sent.
    let server = tokio::spawn(serve_on(Arc::new(Succeeds), transport.clone(), commands, 2, async {
        let _ = stop_rx.await;
    }));

    transport.send_command(&unencodable).await.unwrap();
    transport.send_command(&good).await.unwrap();
    let reply = next(&mut replies).await;
    assert_eq!(reply.message.correlation, good.correlation, "the participant goes on serving");
    reply.ack().await.unwrap();

    let dead = read_topic(&format!("{addr}{}", saga_pulsar::DEAD_LETTER_SUFFIX), 1).await;
    let command = JsonCodec.decode_command(&addr, &dead[0].payload).unwrap();
    assert_eq!(command.correlation, unencodable.correlation);
    let reason = &dead[0].properties[property::DEAD_LETTER_REASON];
    assert!(reason.contains("does not fit its schema"), "{reason}");
    assert_eq!(dead[0].properties[property::SAGA_ID], unencodable.correlation.saga_id.to_string());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(codec.refused.load(Ordering::SeqCst), 1, "handled once, not redelivered in a loop");
    assert!(!server.is_finished());
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}
