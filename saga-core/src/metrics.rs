//! Prometheus-style metrics of sagas, through the `metrics` facade (the daemon installs the
//! exporter). Names follow Prometheus conventions; labels take small fixed sets of values (saga
//! type, step name, kind, outcome), never ids.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `saga_started_total` | counter | saga | sagas started |
//! | `saga_finished_total` | counter | saga, outcome (`completed`, `compensated`, `aborted`) | sagas that reached a final state |
//! | `saga_stuck_total` | counter | saga | sagas that became stuck (an operator is needed) |
//! | `saga_duration_seconds` | histogram | saga, outcome | start to final state |
//! | `saga_step_duration_seconds` | histogram | saga, step, kind, outcome | command written to its reply applied |
//! | `saga_retries_total` | counter | saga, step, kind | attempts scheduled after an unknown outcome |
//! | `saga_timeouts_total` | counter | saga, step, kind | attempts that got no reply in time |
//! | `saga_replies_ignored_total` | counter | saga | stale, duplicate or late replies ignored (logged, or only counted for a saga at rest) |
//! | `saga_operator_actions_total` | counter | saga, action (`retry`, `abort`) | operator actions |
//! | `sagas_active` | gauge | status (`running`, `compensating`) | sagas the engine is driving |
//! | `sagas_stuck` | gauge | | sagas waiting for an operator |
//! | `saga_oldest_unfinished_age_seconds` | gauge | | age of the oldest saga not in a final state |
//! | `saga_engine_task_panics_total` | counter | task (`recovery`, `timer`, `replies`) | panics of the engine's supervised tasks (each restarted) |
//! | `saga_transition_failures_total` | counter | pass (`timer`, `recovery`), reason | sagas a pass could not drive (the timer defers them) |
//! | `sagas_failing` | gauge | | sagas the timer could not drive at its last look (flagged, backing off) |
//! | `saga_log_writes_per_commit` | histogram | | creates and appends the SQL saga log wrote per transaction (its group commit) |
//! | `participant_commands_total` | counter | participant, kind, disposition, outcome | commands a participant handled |
//! | `participant_commands_per_commit` | histogram | | commands a SQL participant handled per transaction (its group commit) |
//! | `participant_batches_split_total` | counter | | participant transactions rolled back and their commands handled one by one |
//! | `transport_messages_published_total` | counter | transport, topic | messages the broker (or queue) accepted |
//! | `transport_messages_consumed_total` | counter | transport, topic | messages handed to the application |
//! | `transport_messages_redelivered_total` | counter | transport, topic | of those, deliveries of a message seen before (after a nack, a crash, a lost ack) |
//! | `transport_messages_dead_lettered_total` | counter | transport, topic | messages moved to the dead-letter topic (topic = where they came from) |
//! | `transport_send_retries_total` | counter | transport, topic | send attempts after a failed or timed-out one |
//! | `transport_send_failures_total` | counter | transport, topic | sends that gave up |
//! | `saga_dead_letters_pending` | gauge | topic | dead letters recorded and not redriven, by original address |
//! | `saga_dead_letters_recorded_total` | counter | topic | dead letters recorded (once each, however often the transport delivers them) |
//! | `saga_dead_letter_redrives_total` | counter | topic | dead letters published again to their address by an operator |

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::engine::EngineObserver;
use crate::log::SagaStore;
use crate::participant::Handled;
use crate::saga::{LogEntry, SagaEvent, SagaState, SagaStatus};
use crate::transport::Command;

/// Records the saga metrics from the engine's transitions.
#[derive(Clone, Copy, Debug, Default)]
pub struct MetricsObserver;

impl EngineObserver for MetricsObserver {
    fn on_reply_counted(&self, state: &SagaState) {
        counter!("saga_replies_ignored_total", "saga" => state.saga_type.clone()).increment(1);
    }

    fn on_events(&self, before: Option<&SagaState>, after: &SagaState, entries: &[LogEntry]) {
        let saga = after.saga_type.clone();
        let step_name = |i: &u32| after.steps.get(*i as usize).map_or_else(|| "?".to_owned(), |s| s.name.clone());
        if before.is_none() {
            counter!("saga_started_total", "saga" => saga.clone()).increment(1);
        }
        for entry in entries {
            match &entry.event {
                SagaEvent::ReplyAccepted { step, kind, outcome, .. } => {
                    let name = step_name(step);
                    let sent =
                        before.and_then(|b| b.in_flight_for(&name)).filter(|f| f.command.correlation.kind == *kind);
                    if let Some(f) = sent {
                        let c = &f.command.correlation;
                        let secs = (entry.at - f.sent_at).to_std().unwrap_or_default().as_secs_f64();
                        histogram!("saga_step_duration_seconds", "saga" => saga.clone(), "step" => c.step_name.clone(),
                            "kind" => c.kind.as_str(), "outcome" => outcome.label())
                        .record(secs);
                    }
                }
                SagaEvent::RetryScheduled { step, kind, .. } => {
                    counter!("saga_retries_total", "saga" => saga.clone(), "step" => step_name(step), "kind" => kind.as_str())
                        .increment(1);
                }
                SagaEvent::TimedOut { step, kind, .. } => {
                    counter!("saga_timeouts_total", "saga" => saga.clone(), "step" => step_name(step), "kind" => kind.as_str())
                        .increment(1);
                }
                SagaEvent::ReplyIgnored { .. } => {
                    counter!("saga_replies_ignored_total", "saga" => saga.clone()).increment(1)
                }
                SagaEvent::Stuck { .. } => counter!("saga_stuck_total", "saga" => saga.clone()).increment(1),
                SagaEvent::OperatorRetried { .. } => {
                    counter!("saga_operator_actions_total", "saga" => saga.clone(), "action" => "retry").increment(1)
                }
                SagaEvent::OperatorAborted { .. } => {
                    counter!("saga_operator_actions_total", "saga" => saga.clone(), "action" => "abort").increment(1)
                }
                SagaEvent::Completed | SagaEvent::Compensated | SagaEvent::Aborted => {
                    let outcome = after.status.as_str();
                    counter!("saga_finished_total", "saga" => saga.clone(), "outcome" => outcome).increment(1);
                    let secs = (entry.at - after.created_at).to_std().unwrap_or_default().as_secs_f64();
                    histogram!("saga_duration_seconds", "saga" => saga.clone(), "outcome" => outcome).record(secs);
                }
                _ => {}
            }
        }
    }
}

/// Records one command handled by a participant.
pub fn record_handled(command: &Command, handled: &Handled) {
    counter!("participant_commands_total",
        "participant" => command.participant.clone(),
        "kind" => command.correlation.kind.as_str(),
        "disposition" => format!("{:?}", handled.disposition).to_lowercase(),
        "outcome" => handled.reply.outcome.label())
    .increment(1);
}

/// Sets the gauges from the store's counts every `every`, until the task is dropped.
pub async fn poll_store_gauges(store: Arc<dyn SagaStore>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        match store.stats().await {
            Ok(stats) => {
                for (status, n) in &stats.by_status {
                    match status {
                        SagaStatus::Running | SagaStatus::Compensating => {
                            gauge!("sagas_active", "status" => status.as_str()).set(*n as f64)
                        }
                        SagaStatus::Stuck => gauge!("sagas_stuck").set(*n as f64),
                        _ => {}
                    }
                }
                let age = stats
                    .oldest_unfinished
                    .map_or(0.0, |t| (chrono::Utc::now() - t).to_std().unwrap_or_default().as_secs_f64());
                gauge!("saga_oldest_unfinished_age_seconds").set(age);
                gauge!("sagas_failing").set(stats.failing as f64);
            }
            Err(e) => tracing::warn!(error = %e, "saga gauges not updated"),
        }
    }
}

/// The engine's own health: what its supervisor records.
pub mod engine {
    use metrics::counter;

    /// A supervised task of the engine panicked (it is restarted).
    pub fn task_panicked(task: &'static str) {
        counter!("saga_engine_task_panics_total", "task" => task).increment(1);
    }

    /// The `pass` (`timer`, `recovery`) could not drive a saga, for `reason`
    /// (`unknown_saga_type`, `corrupt`, `panic`, `other`, `unavailable`).
    pub fn transition_failed(pass: &'static str, reason: &'static str) {
        counter!("saga_transition_failures_total", "pass" => pass, "reason" => reason).increment(1);
    }

    /// A reply that matched no saga this engine can drive, for `reason`: `unknown_saga` (the
    /// log does not hold it: acknowledged), `unknown_saga_type` (handed back for another
    /// replica), `unknown_saga_type_dead_lettered` (no replica took it).
    pub fn reply_unmatched(reason: &'static str) {
        counter!("saga_replies_unmatched_total", "reason" => reason).increment(1);
    }
}

/// Transport metrics: both transports record the same names, labelled by transport (`pulsar`,
/// `in_process`) and topic (for Pulsar the full topic name; for the in-process transport the
/// address). Topics are a small fixed set per deployment.
pub mod transport {
    use metrics::counter;

    /// A message the broker (or queue) accepted.
    pub fn published(transport: &'static str, topic: &str) {
        counter!("transport_messages_published_total", "transport" => transport, "topic" => topic.to_owned())
            .increment(1);
    }

    /// A message handed to the application; `redelivered` when this receiver saw it before.
    pub fn consumed(transport: &'static str, topic: &str, redelivered: bool) {
        counter!("transport_messages_consumed_total", "transport" => transport, "topic" => topic.to_owned())
            .increment(1);
        if redelivered {
            counter!("transport_messages_redelivered_total", "transport" => transport, "topic" => topic.to_owned())
                .increment(1);
        }
    }

    /// A message moved from `topic` to its dead-letter topic.
    pub fn dead_lettered(transport: &'static str, topic: &str) {
        counter!("transport_messages_dead_lettered_total", "transport" => transport, "topic" => topic.to_owned())
            .increment(1);
    }

    /// A send attempt after a failed one.
    pub fn send_retried(transport: &'static str, topic: &str) {
        counter!("transport_send_retries_total", "transport" => transport, "topic" => topic.to_owned()).increment(1);
    }

    /// A send that gave up.
    pub fn send_failed(transport: &'static str, topic: &str) {
        counter!("transport_send_failures_total", "transport" => transport, "topic" => topic.to_owned()).increment(1);
    }
}

/// Dead letters recorded for operators ([`crate::dead_letters`]), labelled by the address they
/// were dead-lettered from (a small fixed set per deployment).
pub mod dead_letters {
    use metrics::{counter, gauge};

    /// Dead letters of `topic` recorded and not redriven.
    pub fn pending(topic: &str, n: u64) {
        gauge!("saga_dead_letters_pending", "topic" => topic.to_owned()).set(n as f64);
    }

    /// A dead letter of `topic` recorded.
    pub fn recorded(topic: &str) {
        counter!("saga_dead_letters_recorded_total", "topic" => topic.to_owned()).increment(1);
    }

    /// A dead letter of `topic` redriven.
    pub fn redriven(topic: &str) {
        counter!("saga_dead_letter_redrives_total", "topic" => topic.to_owned()).increment(1);
    }
}
