//! Avro unions as Rust enums, and their mapping to and from `(message_type, JSON)`, the form in
//! which the saga engine holds command bodies and step outputs.

use crate::SchemaError;

/// A Rust enum standing for an Avro union of records: one variant per record, in union order.
pub trait MessageUnion: Sized {
    /// The simple names of the union's records, in union order.
    const MESSAGE_TYPES: &'static [&'static str];

    /// The simple name of the record this value holds.
    fn message_type(&self) -> &'static str;

    /// Reads `json` as the record `message_type` names.
    ///
    /// Fails on a message type this union does not hold, or on a JSON shape that is not that
    /// record's (a missing or mistyped field; unknown fields are ignored, as Avro resolution
    /// ignores fields the reader does not know).
    fn from_json(message_type: &str, json: serde_json::Value) -> Result<Self, SchemaError>;

    /// The record as JSON, with field names equal to the Avro field names.
    fn to_json(&self) -> serde_json::Value;
}

/// Declares a [`MessageUnion`] enum whose variants are named after, and hold, the record types.
macro_rules! message_union {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $(
                #[doc = concat!("A [`", stringify!($variant), "`].")]
                $variant($variant),
            )+
        }

        impl $crate::union::MessageUnion for $name {
            const MESSAGE_TYPES: &'static [&'static str] = &[$(stringify!($variant)),+];

            fn message_type(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => stringify!($variant),)+
                }
            }

            fn from_json(
                message_type: &str,
                json: serde_json::Value,
            ) -> Result<Self, $crate::SchemaError> {
                match message_type {
                    $(
                        stringify!($variant) => serde_json::from_value(json)
                            .map(Self::$variant)
                            .map_err(|source| $crate::SchemaError::Json {
                                message_type: stringify!($variant),
                                source,
                            }),
                    )+
                    other => Err($crate::SchemaError::UnknownMessageType {
                        message_type: other.to_owned(),
                        expected: Self::MESSAGE_TYPES,
                    }),
                }
            }

            fn to_json(&self) -> serde_json::Value {
                // Plain records of strings, numbers, arrays and nested records: nothing in them
                // can fail to become JSON.
                match self {
                    $(Self::$variant(record) => serde_json::to_value(record),)+
                }
                .expect("a message record always renders as JSON")
            }
        }

        $(
            impl From<$variant> for $name {
                fn from(record: $variant) -> Self {
                    Self::$variant(record)
                }
            }
        )+
    };
}
pub(crate) use message_union;
