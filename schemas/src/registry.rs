//! The embedded `v1/*.avsc` files, parsed once, and schemas met at run time (a writer's schema
//! fetched from the broker, a candidate new version).
//!
//! One file holds one named type and is named after it; files refer to each other by name. Pulsar
//! needs one self-contained schema per topic, so every type is also kept "denormalized": with each
//! type it refers to inlined at its first use. That form is what [`ParsedSchema::json`] gives.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::schema_compatibility::{Compatibility, SchemaCompatibility};
use apache_avro::Schema;

use crate::codec::AvroMessage;
use crate::SchemaError;

/// Lists the embedded files by type name; each must be `v1/<name>.avsc`. A test compares this list
/// with the folder, so a file added there and forgotten here fails the build's tests.
macro_rules! embedded {
    ($($name:literal),+ $(,)?) => {
        &[$(($name, include_str!(concat!("../v1/", $name, ".avsc")))),+]
    };
}

/// `(type name, .avsc text)` of every file in `schemas/v1/`.
pub(crate) const V1: &[(&str, &str)] = embedded!(
    // Shared
    "TipoPaso",
    "Correlacion",
    "Marca",
    "Influencer",
    "Monto",
    "MetodoPago",
    "TransaccionPago",
    // Commands
    "ReservarPresupuesto",
    "LiberarPresupuesto",
    "ReservarInfluencers",
    "LiberarInfluencers",
    "AbrirTracking",
    "CerrarTracking",
    "RegistrarPago",
    "MarcarPagoFallido",
    "EnviarPago",
    "AnularPago",
    "RegistrarPagoCliente",
    "RevertirPagoCliente",
    "ConfirmarPago",
    "RevertirConfirmacion",
    // Step outputs
    "PresupuestoReservado",
    "ReservaInfluencer",
    "InfluencersReservados",
    "EnlaceTracking",
    "TrackingAbierto",
    "CompensacionConfirmada",
    "PagoRegistrado",
    "PagoEnviado",
    "PagoClienteRegistrado",
    "PagoConfirmado",
    // Outcomes
    "Exito",
    "FalloNegocio",
    "ErrorTransitorio",
    // Events
    "SolicitudCampana",
    "InfluencerContratado",
    "CampanaCreada",
    "CampanaRechazada",
    "SolicitudPago",
    "PagoCompletado",
    "PagoFallido",
    // Topic envelopes
    "ComandoMarca",
    "ComandoInfluencer",
    "ComandoTracking",
    "RespuestaAfiliaciones",
    "EventoCampana",
    "ComandoPagos",
    "ComandoProveedor",
    "ComandoCliente",
    "EventoPago",
);

/// The embedded schemas by simple name. The files are compiled in and a test parses them, so a
/// failure here is a build defect, not a run-time condition: it panics with the file's name.
static REGISTRY: LazyLock<HashMap<&'static str, ParsedSchema>> = LazyLock::new(|| {
    let parsed = Schema::parse_list(V1.iter().map(|(_, text)| *text))
        .unwrap_or_else(|e| panic!("embedded schemas/v1 do not parse: {e}"));
    V1.iter()
        .zip(&parsed)
        .map(|((name, _), schema)| {
            let simple = schema.name().map(|n| n.name());
            assert_eq!(simple, Some(*name), "schemas/v1/{name}.avsc defines another name");
            let schema =
                ParsedSchema::standalone(schema, &parsed).unwrap_or_else(|e| panic!("schemas/v1/{name}.avsc: {e}"));
            (*name, schema)
        })
        .collect()
});

/// The embedded schema of the type with this simple name.
pub(crate) fn embedded(name: &str) -> Option<&'static ParsedSchema> {
    REGISTRY.get(name)
}

/// A self-contained Avro schema, with the minified JSON text that defines it.
#[derive(Debug, Clone)]
pub struct ParsedSchema {
    schema: Schema,
    json: String,
}

impl ParsedSchema {
    /// The embedded v1 schema of `T`.
    pub fn of<T: AvroMessage>() -> &'static ParsedSchema {
        // Every `AvroMessage` impl is in this crate and a test encodes each one.
        embedded(T::NAME).unwrap_or_else(|| panic!("no embedded schema for {}", T::NAME))
    }

    /// Parses a self-contained schema: the JSON a producer attached, as the broker's registry
    /// returns it for a message's schema version.
    pub fn parse(json: &str) -> Result<Self, SchemaError> {
        let schema = Schema::parse_str(json).map_err(SchemaError::InvalidSchema)?;
        Self::standalone(&schema, &[])
    }

    /// Parses a set of schemas that refer to each other by name (a folder like `schemas/v1/`),
    /// and returns each one self-contained, in input order.
    pub fn parse_set<'a>(texts: impl IntoIterator<Item = &'a str>) -> Result<Vec<Self>, SchemaError> {
        let parsed = Schema::parse_list(texts).map_err(SchemaError::InvalidSchema)?;
        parsed.iter().map(|s| Self::standalone(s, &parsed)).collect()
    }

    /// The full name of the schema's type, e.g. `com.alpespartners.afiliaciones.ComandoMarca`.
    pub fn full_name(&self) -> String {
        self.schema.name().map_or_else(|| self.schema.canonical_form(), |n| n.fullname(None))
    }

    /// The self-contained schema as minified JSON: what a Pulsar producer attaches to its topic
    /// (schema type AVRO).
    pub fn json(&self) -> &str {
        &self.json
    }

    /// Checks that `self`, as the reader's schema, can read every datum written with `writer`,
    /// following Avro's resolution rules. A reader that can read only some datums (say, a union
    /// missing one of the writer's branches) is incompatible, as it is for the broker's check.
    pub fn check_can_read(&self, writer: &ParsedSchema) -> Result<(), SchemaError> {
        let incompatible =
            |reason: String| SchemaError::Incompatible { reader: self.full_name(), writer: writer.full_name(), reason };
        match SchemaCompatibility::can_read(&writer.schema, &self.schema) {
            Ok(Compatibility::Full) => Ok(()),
            Ok(Compatibility::Partial) => Err(incompatible(
                "only some datums can be resolved (a union or enum lacks a writer's branch or symbol)".to_owned(),
            )),
            Err(e) => Err(incompatible(e.to_string())),
        }
    }

    /// The Avro library's form, for the codec.
    pub(crate) fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Inlines every type `schema` refers to, taken from `set`, and renders it as JSON.
    fn standalone(schema: &Schema, set: &[Schema]) -> Result<Self, SchemaError> {
        let mut schema = schema.clone();
        schema.denormalize(set).map_err(SchemaError::InvalidSchema)?;
        // A `Schema` renders as JSON the way `canonical_form` relies on: it cannot fail.
        let json = serde_json::to_string(&schema).expect("an Avro schema renders as JSON");
        Ok(Self { schema, json })
    }
}
