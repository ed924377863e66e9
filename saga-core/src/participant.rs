//! The participant side of a saga, for any worker: exactly-once effects over at-least-once
//! delivery, stored replies, and tombstones.
//!
//! For every command, in one local transaction: look the message id up (a redelivery gets the
//! stored reply), look the saga step up (a retried attempt with a new message id gets the first
//! attempt's reply: the effect happens once per step, not once per message), run the worker's
//! business change, and record the message, the step's status and the reply. A compensation that
//! finds no action leaves a tombstone, and the action that arrives late is refused.
//!
//! Commands that arrive together share one transaction (a group commit, as in the saga log):
//! each is handled as above, in arrival order, each seeing what the ones before it wrote, and one
//! commit (one fsync) records them all. If any command's changes must not be kept (the handler
//! answered transient, or a statement failed), the whole transaction is rolled back and every
//! command of it is handled again in a transaction of its own, so one command's trouble never
//! changes another's answer.
//!
//! Attempts of one step handled at the same time (a resent attempt while the first is still
//! running, a compensation overtaking its action) take turns on the step's record: the first
//! decides and writes, the others wait for its commit and then decide from what it wrote. So
//! "once per step" holds under concurrency, not only for attempts that arrive one after another.
//!
//! Both PostgreSQL and SQLite are supported with the same statements, as in [`crate::log::sql`],
//! except for how the step's record is locked (see [`PgParticipant`] and [`SqliteParticipant`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::json;
use sqlx::migrate::Migrator;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use tracing::{debug, error, info, warn};

pub use crate::group_commit::CommitStats;
use crate::group_commit::Group;
use crate::id::StepKind;
use crate::log::sql::migrate;
use crate::transport::{Command, Outcome, Receiver, Reply, Transport, TransportError};

/// Migrations of the participant tables on PostgreSQL (`migrations/participant/postgres`).
pub static PG_MIGRATOR: Migrator = sqlx::migrate!("migrations/participant/postgres");
/// Migrations of the participant tables on SQLite (`migrations/participant/sqlite`).
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("migrations/participant/sqlite");

/// The business code of an action refused because its compensation came first.
pub const COMPENSATED_FIRST: &str = "compensated_before_action";

/// What a worker's business code can fail with, other than a business failure (which is an
/// `Ok(Outcome::BusinessFailure)`).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The database failed; the command will be redelivered.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The command can never be handled (its body does not fit the message type).
    #[error("invalid command: {0}")]
    Invalid(String),
}

/// A worker's business logic for one database kind. It runs inside the participant's
/// transaction: whatever it writes commits together with the dedup record and the reply. Its
/// only effects are what it writes in that transaction: a transaction shared with other
/// commands may be rolled back and the command handled again alone.
#[async_trait]
pub trait Handler<DB: sqlx::Database>: Send + Sync + 'static {
    /// Applies the action. A refusal is `Ok(Outcome::BusinessFailure { .. })`.
    async fn action(&self, tx: &mut Transaction<'static, DB>, command: &Command) -> Result<Outcome, HandlerError>;
    /// Undoes the action. Called only when the action was applied here.
    async fn compensation(&self, tx: &mut Transaction<'static, DB>, command: &Command)
        -> Result<Outcome, HandlerError>;
}

/// How a command was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// The business handler ran and its result was recorded.
    Applied,
    /// The same message id was handled before: the stored reply, nothing changed.
    DuplicateMessage,
    /// Another attempt of the same step was handled before: its reply, nothing changed.
    DuplicateStep,
    /// A compensation for an action never applied: a tombstone was recorded.
    Tombstoned,
    /// An action whose compensation came first: refused.
    RefusedLate,
    /// The handler answered transient: nothing recorded, so a later attempt can succeed.
    NotRecorded,
}

/// The reply to send and how it came about.
#[derive(Clone, Debug, PartialEq)]
pub struct Handled {
    /// The reply (its correlation is the command's).
    pub reply: Reply,
    /// What happened.
    pub disposition: Disposition,
}

/// Why a command could not be handled now.
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// The database failed: leave the message unacknowledged so it comes back.
    #[error("participant database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The message can never be handled: dead-letter it.
    #[error("poison message: {0}")]
    Poison(String),
}

/// Handles commands for one participant.
#[async_trait]
pub trait CommandHandler: Send + Sync + 'static {
    /// Handles one command, exactly once per saga step.
    async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError>;
}

/// The status of a saga step at this participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StepRecord {
    Applied,
    Refused,
    Compensated,
    Tombstone,
}

impl StepRecord {
    fn as_str(self) -> &'static str {
        match self {
            StepRecord::Applied => "applied",
            StepRecord::Refused => "refused",
            StepRecord::Compensated => "compensated",
            StepRecord::Tombstone => "tombstone",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "applied" => StepRecord::Applied,
            "refused" => StepRecord::Refused,
            "compensated" => StepRecord::Compensated,
            "tombstone" => StepRecord::Tombstone,
            _ => return None,
        })
    }
}

/// What the participant does after looking at its records, before any business code runs.
enum Plan {
    Reply(Outcome, Disposition, Option<StepRecord>),
    RunAction,
    RunCompensation,
}

/// Decides, from the step's record at this participant, what a command leads to. Pure.
fn plan(kind: StepKind, step: Option<(StepRecord, Option<Outcome>)>) -> Plan {
    match (kind, step) {
        (StepKind::Action, None) => Plan::RunAction,
        (StepKind::Action, Some((StepRecord::Applied | StepRecord::Refused, Some(reply)))) => {
            Plan::Reply(reply, Disposition::DuplicateStep, None)
        }
        (StepKind::Action, Some((StepRecord::Applied | StepRecord::Refused, None))) => Plan::RunAction,
        (StepKind::Action, Some((StepRecord::Compensated | StepRecord::Tombstone, _))) => Plan::Reply(
            Outcome::BusinessFailure {
                code: COMPENSATED_FIRST.into(),
                reason: "this saga step was already compensated; the late action is refused".into(),
            },
            Disposition::RefusedLate,
            None,
        ),
        (StepKind::Compensation, None) => Plan::Reply(
            Outcome::Success { output: json!({ "compensated": false, "tombstone": true }) },
            Disposition::Tombstoned,
            Some(StepRecord::Tombstone),
        ),
        (StepKind::Compensation, Some((StepRecord::Applied, _))) => Plan::RunCompensation,
        (StepKind::Compensation, Some((StepRecord::Refused, _))) => Plan::Reply(
            Outcome::Success {
                output: json!({ "compensated": false, "reason": "the action was refused: nothing to undo" }),
            },
            Disposition::DuplicateStep,
            Some(StepRecord::Compensated),
        ),
        (StepKind::Compensation, Some((StepRecord::Compensated | StepRecord::Tombstone, _))) => Plan::Reply(
            Outcome::Success { output: json!({ "compensated": true, "already": true }) },
            Disposition::DuplicateStep,
            None,
        ),
    }
}

fn db_err(e: sqlx::Error) -> ParticipantError {
    ParticipantError::Unavailable(e)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// What handling a command inside a transaction came to.
enum Handling {
    /// Its changes (if any) are to be committed; then this is its answer.
    Keep(Result<Handled, ParticipantError>),
    /// Its changes must be rolled back; then this is its answer.
    Undo(Result<Handled, ParticipantError>),
}

/// Most commands in one transaction of a participant's group commit.
pub const MAX_COMMANDS_PER_COMMIT: usize = 32;

/// A participant's group commit: one flusher, so that two batches never hold row locks in
/// opposite orders (a batch takes the locks of every business row its commands touch, in the
/// commands' order, and keeps them until it commits).
fn participant_group() -> Group<Command, Result<Handled, ParticipantError>> {
    Group::new(1, MAX_COMMANDS_PER_COMMIT, "participant_commands_per_commit", || {
        Err(ParticipantError::Unavailable(sqlx::Error::Protocol(
            "the transaction carrying this command was interrupted".into(),
        )))
    })
}

/// How many times a command is handled again after losing a race with another attempt (a
/// unique violation on the step or message record). Losing the insert of a new step record
/// costs one retry, which then finds the winner's record (the loser's insert fails only once
/// the winner has committed) and queues on its lock; the same message id racing itself can cost
/// one more. Three leaves a margin.
const RACE_RETRIES: u32 = 3;

macro_rules! sql_participant {
    ($(#[$meta:meta])* $name:ident, $db:ty, $pool:ty, $migrator:ident, $begin:literal, $lock_step:literal) => {
        $(#[$meta])*
        pub struct $name<H> {
            pool: $pool,
            handler: H,
            group: Group<Command, Result<Handled, ParticipantError>>,
        }

        impl<H: Handler<$db>> $name<H> {
            /// A participant over `pool`, running `handler` for the business change.
            pub fn new(pool: $pool, handler: H) -> Self {
                Self { pool, handler, group: participant_group() }
            }

            /// The group commit's counts: commands handled, and in how many transactions.
            pub fn commit_stats(&self) -> CommitStats {
                self.group.stats()
            }

            /// Applies the participant tables' migrations.
            pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
                migrate(&$migrator, &self.pool).await
            }

            /// The pool.
            pub fn pool(&self) -> &$pool {
                &self.pool
            }

            /// Handles `command` inside `tx`, without committing: what it wrote is kept only if
            /// the answer is [`Handling::Keep`].
            async fn handle_in(&self, tx: &mut Transaction<'static, $db>, command: &Command) -> Result<Handling, sqlx::Error> {
                let c = &command.correlation;
                let stored: Option<(Json<Outcome>,)> =
                    sqlx::query_as("SELECT reply FROM participant_message WHERE message_id = $1")
                        .bind(c.message_id.0)
                        .fetch_optional(&mut **tx)
                        .await?;
                if let Some((Json(outcome),)) = stored {
                    return Ok(Handling::Keep(Ok(Handled {
                        reply: Reply { correlation: c.clone(), outcome },
                        disposition: Disposition::DuplicateMessage,
                    })));
                }
                // The step's record is the serialization point of its attempts: what `plan`
                // decides from it must still hold when the status is written. An existing record
                // is locked here (`FOR UPDATE` on PostgreSQL, the database lock of `BEGIN IMMEDIATE`
                // on SQLite), so a racing attempt waits for this transaction and then reads what
                // it wrote: without the lock, under READ COMMITTED, two compensations both read
                // `applied` and both undo the action. A missing record cannot be locked; there,
                // the insert below is the serialization point: the loser's insert fails with a
                // unique violation once the winner commits, and `handle` runs it again.
                let step: Option<(String, Option<Json<Outcome>>)> = sqlx::query_as(concat!(
                    "SELECT status, action_reply FROM participant_step WHERE saga_id = $1 AND step = $2",
                    $lock_step
                ))
                .bind(c.saga_id.0)
                .bind(&c.step_name)
                .fetch_optional(&mut **tx)
                .await?;
                let step = match step {
                    None => None,
                    Some((status, reply)) => match StepRecord::parse(&status) {
                        Some(record) => Some((record, reply.map(|Json(r)| r))),
                        None => {
                            return Ok(Handling::Undo(Err(ParticipantError::Poison(format!(
                                "unknown step status {status:?}"
                            )))));
                        }
                    },
                };
                let existed = step.is_some();
                let (outcome, disposition, record) = match plan(c.kind, step) {
                    Plan::Reply(outcome, disposition, record) => (outcome, disposition, record),
                    Plan::RunAction | Plan::RunCompensation => {
                        let result = match c.kind {
                            StepKind::Action => self.handler.action(tx, command).await,
                            StepKind::Compensation => self.handler.compensation(tx, command).await,
                        };
                        let outcome = match result {
                            Ok(o) => o,
                            Err(HandlerError::Database(e)) => return Err(e),
                            Err(HandlerError::Invalid(why)) => return Ok(Handling::Undo(Err(ParticipantError::Poison(why)))),
                        };
                        match (&outcome, c.kind) {
                            (Outcome::Transient { .. }, _) | (Outcome::BusinessFailure { .. }, StepKind::Compensation) => {
                                return Ok(Handling::Undo(Ok(Handled {
                                    reply: Reply { correlation: c.clone(), outcome },
                                    disposition: Disposition::NotRecorded,
                                })));
                            }
                            (Outcome::Success { .. }, StepKind::Action) => (outcome, Disposition::Applied, Some(StepRecord::Applied)),
                            (Outcome::BusinessFailure { .. }, StepKind::Action) => {
                                (outcome, Disposition::Applied, Some(StepRecord::Refused))
                            }
                            (Outcome::Success { .. }, StepKind::Compensation) => {
                                (outcome, Disposition::Applied, Some(StepRecord::Compensated))
                            }
                        }
                    }
                };
                let now = Utc::now();
                if let Some(record) = record {
                    let action_reply = (c.kind == StepKind::Action).then(|| Json(&outcome));
                    if existed {
                        // An action run on a record without a stored reply stores its reply now:
                        // otherwise every later attempt would find no reply and run it again.
                        sqlx::query(
                            "UPDATE participant_step SET status = $3, action_reply = COALESCE($4, action_reply), \
                             updated_at = $5 WHERE saga_id = $1 AND step = $2",
                        )
                        .bind(c.saga_id.0)
                        .bind(&c.step_name)
                        .bind(record.as_str())
                        .bind(action_reply)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    } else {
                        sqlx::query(
                            "INSERT INTO participant_step (saga_id, step, status, action_reply, updated_at) VALUES ($1, $2, $3, $4, $5)",
                        )
                        .bind(c.saga_id.0)
                        .bind(&c.step_name)
                        .bind(record.as_str())
                        .bind(action_reply)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    }
                }
                sqlx::query(
                    "INSERT INTO participant_message (message_id, saga_id, step, kind, attempt, reply, recorded_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(c.message_id.0)
                .bind(c.saga_id.0)
                .bind(&c.step_name)
                .bind(c.kind.as_str())
                .bind(c.attempt as i32)
                .bind(Json(&outcome))
                .bind(now)
                .execute(&mut **tx)
                .await?;
                Ok(Handling::Keep(Ok(Handled { reply: Reply { correlation: c.clone(), outcome }, disposition })))
            }

            /// Handles `command` in a transaction of its own.
            async fn handle_once(&self, command: &Command) -> Result<Result<Handled, ParticipantError>, sqlx::Error> {
                let mut tx = self.pool.begin_with($begin).await?;
                match self.handle_in(&mut tx, command).await {
                    Ok(Handling::Keep(answer)) => {
                        tx.commit().await?;
                        Ok(answer)
                    }
                    Ok(Handling::Undo(answer)) => {
                        tx.rollback().await?;
                        Ok(answer)
                    }
                    Err(e) => {
                        // Roll back explicitly: a dropped transaction rolls back only when its
                        // connection is next used.
                        let _ = tx.rollback().await;
                        Err(e)
                    }
                }
            }

            /// Handles `command` alone, handling it again after a lost race (see
            /// [`RACE_RETRIES`]).
            async fn handle_alone(&self, command: &Command) -> Result<Handled, ParticipantError> {
                let mut tries = 0;
                loop {
                    match self.handle_once(command).await {
                        Ok(result) => return result,
                        Err(e) if is_unique_violation(&e) && tries < RACE_RETRIES => {
                            tries += 1;
                            debug!("lost a race with another instance; handling again");
                        }
                        Err(e) => return Err(db_err(e)),
                    }
                }
            }

            /// Handles a batch of the group commit in one transaction, each command answered on
            /// its own. When a command's changes must not be kept (the handler answered
            /// transient, or failed), or a statement or the commit fails, the transaction is
            /// rolled back and each command is handled alone: a commit that failed but landed
            /// leaves the commands' records, so handling them again finds their stored replies.
            async fn handle_batch(&self, commands: Vec<Command>) -> Vec<Result<Handled, ParticipantError>> {
                if let [one] = &commands[..] {
                    return vec![self.handle_alone(one).await];
                }
                match self.try_batch(&commands).await {
                    Some(answers) => answers,
                    None => {
                        metrics::counter!("participant_batches_split_total").increment(1);
                        let mut answers = Vec::with_capacity(commands.len());
                        for command in &commands {
                            answers.push(self.handle_alone(command).await);
                        }
                        answers
                    }
                }
            }

            /// The batch's answers if every command's changes were kept and committed.
            async fn try_batch(&self, commands: &[Command]) -> Option<Vec<Result<Handled, ParticipantError>>> {
                let mut tx = self.pool.begin_with($begin).await.ok()?;
                let mut answers = Vec::with_capacity(commands.len());
                for command in commands {
                    match self.handle_in(&mut tx, command).await {
                        Ok(Handling::Keep(answer)) => answers.push(answer),
                        Ok(Handling::Undo(_)) | Err(_) => {
                            let _ = tx.rollback().await;
                            return None;
                        }
                    }
                }
                tx.commit().await.ok()?;
                Some(answers)
            }
        }

        #[async_trait]
        impl<H: Handler<$db>> CommandHandler for $name<H> {
            #[tracing::instrument(skip_all, fields(saga_id = %command.correlation.saga_id, step = %command.correlation.step_name,
                kind = %command.correlation.kind, attempt = command.correlation.attempt))]
            async fn handle(&self, command: &Command) -> Result<Handled, ParticipantError> {
                self.group.submit(command.clone(), |batch| self.handle_batch(batch)).await
            }
        }
    };
}

sql_participant!(
    /// A participant whose records live in PostgreSQL. Transactions run at the default READ
    /// COMMITTED; the step's record is read `FOR UPDATE`, so attempts of one step take turns
    /// while attempts of different steps run side by side.
    PgParticipant,
    Postgres,
    PgPool,
    PG_MIGRATOR,
    "BEGIN",
    " FOR UPDATE"
);

sql_participant!(
    /// A participant whose records live in SQLite. Transactions take the write lock up front
    /// (`BEGIN IMMEDIATE`), so two handlers never both read and then race to write; SQLite has
    /// no row locks (nor `FOR UPDATE`) and needs none.
    SqliteParticipant,
    Sqlite,
    SqlitePool,
    SQLITE_MIGRATOR,
    "BEGIN IMMEDIATE",
    ""
);

/// How many commands [`serve`] handles at once: also the most a SQL participant's group commit
/// can put in one transaction. Waiting for their turn, they hold no database connection.
pub const DEFAULT_CONCURRENCY: usize = MAX_COMMANDS_PER_COMMIT;

/// Consumes `participant`'s commands until `shutdown`, [`DEFAULT_CONCURRENCY`] at a time: see
/// [`serve_with`].
pub async fn serve(
    handler: Arc<dyn CommandHandler>,
    transport: Arc<dyn Transport>,
    participant: String,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    serve_with(handler, transport, participant, DEFAULT_CONCURRENCY, shutdown).await
}

/// Consumes `participant`'s commands until `shutdown`, up to `concurrency` at once: handles
/// each, publishes the reply, and only then acknowledges it. A database outage, or a reply the
/// broker did not take, leaves the command unacknowledged (paced, so a down database is not
/// hammered); a poison message, or one whose reply cannot be encoded (a permanent
/// [`TransportError::Codec`]), goes to the dead-letter queue with the reason, linked to its saga,
/// and the loop goes on.
///
/// Handling commands concurrently is safe because the handler is: the engine sends one command
/// per saga at a time, and what can still overlap (a resent attempt while the first is queued, a
/// compensation overtaking its action) is what the dedup and tombstone rules settle, tested with
/// racing attempts. On shutdown, commands being handled are dropped unacknowledged: their
/// transactions roll back and the broker redelivers them.
pub async fn serve_with(
    handler: Arc<dyn CommandHandler>,
    transport: Arc<dyn Transport>,
    participant: String,
    concurrency: usize,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    let subscribe = async {
        loop {
            match transport.commands(&participant).await {
                Ok(r) => return r,
                Err(e) => {
                    warn!(participant = %participant, error = %e, "cannot subscribe to commands yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let commands = tokio::select! {
        r = subscribe => r,
        _ = &mut shutdown => return Ok(()),
    };
    info!(participant = %participant, concurrency, "participant serving");
    serve_on(handler, transport, commands, concurrency, shutdown).await
}

/// [`serve_with`] on a subscription the caller made (a daemon subscribes before it reports
/// itself ready, so nothing sent to it afterwards is missed). A command whose handling panics (a
/// bug) is dead-lettered rather than redelivered in a loop.
pub async fn serve_on(
    handler: Arc<dyn CommandHandler>,
    transport: Arc<dyn Transport>,
    commands: Box<dyn Receiver<Command>>,
    concurrency: usize,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), TransportError> {
    let work = crate::transport::serve_concurrently(
        commands,
        concurrency,
        // The saga's ids came in the message (properties and envelope): this span continues
        // the orchestrator's saga/step/attempt in this process's logs.
        |command: &Command| {
            tracing::info_span!("command", saga_id = %command.correlation.saga_id,
                step = %command.correlation.step_name, attempt = command.correlation.attempt,
                message_id = %command.correlation.message_id)
        },
        move |command: Command| {
            let handler = handler.clone();
            async move { handler.handle(&command).await }
        },
        move |delivery: crate::transport::Delivery<Command>, handled: Result<Handled, ParticipantError>| {
            let transport = transport.clone();
            async move {
                match handled {
                    Ok(handled) => {
                        let command = &delivery.message;
                        crate::metrics::record_handled(command, &handled);
                        info!(kind = command.correlation.kind.as_str(), disposition = ?handled.disposition,
                            outcome = handled.reply.outcome.label(), "command handled");
                        match transport.send_reply(&command.reply_to, &handled.reply).await {
                            Ok(()) => delivery.ack().await,
                            // Encoding it again gives the same error: redelivering would only
                            // repeat it for ever. The effect is committed and its reply stored;
                            // the saga's step times out, and the dead letter says why.
                            Err(e @ TransportError::Codec(_)) => {
                                error!(error = %e, "reply cannot be encoded; dead-lettering its command");
                                delivery.dead_letter(&format!("its reply cannot be encoded: {e}")).await
                            }
                            Err(e) => {
                                // The reply is stored: the redelivered command gets it again.
                                warn!(error = %e, "reply not sent; command will be redelivered");
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                delivery.nack().await
                            }
                        }
                    }
                    Err(ParticipantError::Unavailable(e)) => {
                        warn!(error = %e, "database unavailable; command will be redelivered");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        delivery.nack().await
                    }
                    Err(ParticipantError::Poison(why)) => {
                        error!(reason = %why, "poison command dead-lettered");
                        delivery.dead_letter(&why).await
                    }
                }
            }
        },
    );
    tokio::select! {
        _ = work => Ok(()),
        _ = shutdown => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success() -> Outcome {
        Outcome::Success { output: json!({"id": 1}) }
    }

    #[test]
    fn first_action_runs_and_a_retry_gets_the_stored_reply() {
        assert!(matches!(plan(StepKind::Action, None), Plan::RunAction));
        match plan(StepKind::Action, Some((StepRecord::Applied, Some(success())))) {
            Plan::Reply(o, Disposition::DuplicateStep, None) => assert_eq!(o, success()),
            _ => panic!("a retried action must get the stored reply"),
        }
    }

    #[test]
    fn compensation_first_leaves_a_tombstone_and_refuses_the_late_action() {
        assert!(matches!(
            plan(StepKind::Compensation, None),
            Plan::Reply(Outcome::Success { .. }, Disposition::Tombstoned, Some(StepRecord::Tombstone))
        ));
        match plan(StepKind::Action, Some((StepRecord::Tombstone, None))) {
            Plan::Reply(Outcome::BusinessFailure { code, .. }, Disposition::RefusedLate, None) => {
                assert_eq!(code, COMPENSATED_FIRST)
            }
            _ => panic!("a late action must be refused"),
        }
    }

    #[test]
    fn compensation_runs_only_for_an_applied_action() {
        assert!(matches!(plan(StepKind::Compensation, Some((StepRecord::Applied, None))), Plan::RunCompensation));
        assert!(matches!(
            plan(StepKind::Compensation, Some((StepRecord::Refused, None))),
            Plan::Reply(Outcome::Success { .. }, _, Some(StepRecord::Compensated))
        ));
        assert!(matches!(
            plan(StepKind::Compensation, Some((StepRecord::Compensated, None))),
            Plan::Reply(Outcome::Success { .. }, Disposition::DuplicateStep, None)
        ));
    }
}
