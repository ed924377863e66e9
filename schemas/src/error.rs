//! The one error type of this crate.

/// Why a message could not be mapped, encoded, decoded, or a schema accepted.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A `message_type` that the union it was given to does not hold.
    #[error("unknown message type `{message_type}`; expected one of {expected:?}")]
    UnknownMessageType {
        /// The message type received.
        message_type: String,
        /// The message types that union holds, in Avro union order.
        expected: &'static [&'static str],
    },

    /// A JSON body whose shape is not that of its message type.
    #[error("JSON body does not fit `{message_type}`: {source}")]
    Json {
        /// The message type the body was read as.
        message_type: &'static str,
        /// What serde found wrong.
        source: serde_json::Error,
    },

    /// A value the schema refused (a bug in this crate's types, or an invariant broken by the caller).
    #[error("cannot encode `{name}` as Avro: {source}")]
    Encode {
        /// The Avro record's simple name.
        name: &'static str,
        /// The Avro library's error.
        source: apache_avro::Error,
    },

    /// Bytes that are not a datum of the writer schema, or that the reader schema cannot resolve.
    #[error("cannot decode `{name}` from Avro: {source}")]
    Decode {
        /// The Avro record's simple name.
        name: &'static str,
        /// The Avro library's error.
        source: apache_avro::Error,
    },

    /// A datum followed by bytes that no field accounts for: read with the wrong writer schema.
    #[error("{trailing} bytes left after decoding `{name}`: wrong writer schema?")]
    TrailingBytes {
        /// The Avro record's simple name.
        name: &'static str,
        /// How many bytes were left.
        trailing: usize,
    },

    /// An envelope whose header contradicts its body.
    #[error("envelope `{envelope}`: {problem}")]
    Inconsistent {
        /// The envelope's simple name.
        envelope: &'static str,
        /// Which header field disagrees with the body, and how.
        problem: String,
    },

    /// Text that is not a valid, self-contained Avro schema.
    #[error("invalid Avro schema: {0}")]
    InvalidSchema(#[source] apache_avro::Error),

    /// A reader schema that cannot read every datum of a writer schema.
    #[error("schema `{reader}` cannot read every datum written with `{writer}`: {reason}")]
    Incompatible {
        /// The reader schema's full name.
        reader: String,
        /// The writer schema's full name.
        writer: String,
        /// The checker's explanation.
        reason: String,
    },
}
