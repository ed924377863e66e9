//! Avro binary encoding of the message types: the raw datum, with no container-file header and no
//! single-object marker, which is what a Pulsar topic with schema type AVRO carries.

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::registry::ParsedSchema;
use crate::SchemaError;

mod sealed {
    /// Only this crate's types have an embedded schema.
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// A Rust type with an embedded Avro schema in `schemas/v1/`, whose serde shape matches it field
/// for field.
pub trait AvroMessage: Serialize + DeserializeOwned + Sealed {
    /// The Avro record's simple name, which is also the `message_type` that names it.
    const NAME: &'static str;

    /// Checks rules the schema cannot state (an envelope's header agreeing with its body). Runs on
    /// every encode and decode.
    fn check(&self) -> Result<(), SchemaError> {
        Ok(())
    }
}

/// A topic envelope: the one record type that its topic carries.
pub trait Envelope: AvroMessage {
    /// The topic's local name, inside the tenant and namespace that configuration gives.
    const TOPIC: &'static str;
}

/// Encodes `message` as a raw Avro datum of its v1 schema.
pub fn encode<T: AvroMessage>(message: &T) -> Result<Vec<u8>, SchemaError> {
    message.check()?;
    let encode_error = |source| SchemaError::Encode { name: T::NAME, source };
    // Serde types such as `Uuid` pick their form from `human_readable`; the schemas hold uuids
    // as strings, so ask for the string form whatever the library's global default is.
    GenericDatumWriter::builder(ParsedSchema::of::<T>().schema())
        .human_readable(true)
        .build()
        .and_then(|writer| writer.write_ser_to_vec(message))
        .map_err(encode_error)
}

/// Decodes a raw datum written with `T`'s own v1 schema.
pub fn decode<T: AvroMessage>(bytes: &[u8]) -> Result<T, SchemaError> {
    read(bytes, ParsedSchema::of::<T>().schema(), None)
}

/// Decodes a raw datum written with another version of `T`'s schema (the one the message's
/// schema version names on the broker), resolving it to `T`'s v1 schema by Avro's rules.
pub fn decode_from<T: AvroMessage>(bytes: &[u8], writer: &ParsedSchema) -> Result<T, SchemaError> {
    read(bytes, writer.schema(), Some(ParsedSchema::of::<T>().schema()))
}

/// Reads to a generic value, resolves it, and only then deserializes: apache-avro 0.22's direct
/// typed read panics when given a reader schema.
fn read<T: AvroMessage>(mut bytes: &[u8], writer: &Schema, reader: Option<&Schema>) -> Result<T, SchemaError> {
    let decode_error = |source| SchemaError::Decode { name: T::NAME, source };
    let value = GenericDatumReader::builder(writer)
        .maybe_reader_schema(reader)
        .build()
        .and_then(|datum_reader| datum_reader.read_value(&mut bytes))
        .map_err(decode_error)?;
    if !bytes.is_empty() {
        return Err(SchemaError::TrailingBytes { name: T::NAME, trailing: bytes.len() });
    }
    let message: T = apache_avro::from_value(&value).map_err(decode_error)?;
    message.check()?;
    Ok(message)
}

/// Implements [`AvroMessage`] for types whose Avro name is their Rust name.
macro_rules! avro_message {
    ($($ty:ident),+ $(,)?) => {
        $(
            impl $crate::codec::Sealed for $ty {}
            impl $crate::codec::AvroMessage for $ty {
                const NAME: &'static str = stringify!($ty);
            }
            // The saga engine names the type as Avro does: a step's message type is its record.
            impl saga_core::Message for $ty {
                const NAME: &'static str = stringify!($ty);
            }
        )+
    };
}
pub(crate) use avro_message;
