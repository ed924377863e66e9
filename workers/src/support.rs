//! What every participant's handler does the same way: read the command's typed body, answer a
//! refusal or an output; and the column conversions the payout participants share.

use chrono::{DateTime, SubsecRound, Utc};
use saga_core::participant::HandlerError;
use saga_core::transport::{Command, Outcome};
use schemas::{MessageUnion, Moneda};
use serde::Serialize;

/// The command's body as its topic's typed union; a body that does not fit is poison.
pub(crate) fn body<U: MessageUnion>(command: &Command) -> Result<U, HandlerError> {
    U::from_json(&command.message_type, command.body.clone()).map_err(|e| HandlerError::Invalid(e.to_string()))
}

/// A business refusal.
pub(crate) fn refuse(code: &str, reason: String) -> Outcome {
    Outcome::BusinessFailure { code: code.to_owned(), reason }
}

/// A success with a typed output.
pub(crate) fn output<T: Serialize>(value: &T) -> Result<Outcome, HandlerError> {
    serde_json::to_value(value)
        .map(|output| Outcome::Success { output })
        .map_err(|e| HandlerError::Invalid(e.to_string()))
}

/// The error for a body of the wrong kind (an action sent as a compensation, say).
pub(crate) fn wrong_kind(message_type: &str, expected: &str) -> HandlerError {
    HandlerError::Invalid(format!("{message_type} is not {expected}"))
}

/// The time now, to the microsecond: what PostgreSQL's `timestamptz` keeps, so a time answered
/// in a reply is the time read back later, on either database.
pub(crate) fn ahora() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A currency column read back; an unknown code is a corrupt row.
pub(crate) fn moneda(codigo: &str) -> Result<Moneda, sqlx::Error> {
    codigo.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
