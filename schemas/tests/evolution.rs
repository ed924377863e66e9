//! Schema evolution: data written with a v2 schema read by v1 code and the reverse, following
//! Avro's resolution rules, and a breaking change caught by the compatibility checker.
//!
//! A version is a folder of `.avsc` files. The test-only versions under `tests/fixtures/` hold only
//! the files they change; the rest comes from `schemas/v1/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::writer::datum::GenericDatumWriter;
use apache_avro::Schema;
use schemas::{
    decode_from, encode, AvroMessage, Centavos, ComandoMarca, CompensacionConfirmada, Correlacion, CuerpoMarca, Exito,
    LiberarPresupuesto, ParsedSchema, ReservarPresupuesto, RespuestaAfiliaciones, Resultado, Salida, SchemaError,
    TipoPaso,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

// ---- Versions on disk ----------------------------------------------------------------------

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `.avsc` files of `dir` by type name.
fn files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .map(|path| {
            let name = path.file_stem().expect("file name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).expect("readable schema"))
        })
        .collect()
}

/// Every type of a version, self-contained, by name: `v1` with each overlay's files replacing its own.
fn version(overlays: &[&str]) -> BTreeMap<String, ParsedSchema> {
    let mut texts = files(&crate_dir().join("v1"));
    for overlay in overlays {
        texts.extend(files(&crate_dir().join("tests/fixtures").join(overlay)));
    }
    let parsed = ParsedSchema::parse_set(texts.values().map(String::as_str)).expect("the version parses as a set");
    texts.into_keys().zip(parsed).collect()
}

fn schema<'a>(version: &'a BTreeMap<String, ParsedSchema>, name: &str) -> &'a ParsedSchema {
    version.get(name).unwrap_or_else(|| panic!("no {name} in this version"))
}

/// The Avro library's form of a schema, for writing or reading datums of test-only versions.
fn avro(schema: &ParsedSchema) -> Schema {
    Schema::parse_str(schema.json()).expect("self-contained JSON parses")
}

// ---- Test-only Rust types of v2 ------------------------------------------------------------

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ReservarPresupuesto")]
struct ReservarPresupuestoV2 {
    id_campana: Uuid,
    id_marca: Uuid,
    monto_centavos: Centavos,
    moneda: String,
    nota: Option<String>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "LiberarPresupuesto")]
struct LiberarPresupuestoV2 {
    id_campana: Uuid,
    id_marca: Uuid,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "CuerpoMarca")]
enum CuerpoMarcaV2 {
    ReservarPresupuesto(ReservarPresupuestoV2),
    LiberarPresupuesto(LiberarPresupuestoV2),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "ComandoMarca")]
struct ComandoMarcaV2 {
    correlacion: Correlacion,
    cuerpo: CuerpoMarcaV2,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename = "RespuestaAfiliaciones")]
struct RespuestaAfiliacionesV2 {
    correlacion: Correlacion,
    en_respuesta_a: Uuid,
    resultado: Resultado,
    duracion_ms: Option<i64>,
}

/// Writes a raw datum of a test-only schema, as a producer built on v2 would.
fn write<T: Serialize>(schema: &ParsedSchema, value: &T) -> Vec<u8> {
    GenericDatumWriter::builder(&avro(schema))
        .human_readable(true)
        .build()
        .and_then(|writer| writer.write_ser_to_vec(value))
        .expect("v2 datum encodes")
}

/// Reads a datum written with `writer` as `reader`, as a consumer built on v2 would.
fn read_as<T: serde::de::DeserializeOwned>(bytes: &[u8], writer: &ParsedSchema, reader: &ParsedSchema) -> T {
    let (writer, reader) = (avro(writer), avro(reader));
    let value = GenericDatumReader::builder(&writer)
        .reader_schema(&reader)
        .build()
        .and_then(|datum_reader| datum_reader.read_value(&mut &bytes[..]))
        .expect("resolves to the reader schema");
    apache_avro::from_value(&value).expect("fits the v2 Rust type")
}

// ---- Samples -------------------------------------------------------------------------------

fn correlacion(message_type: &str, kind: TipoPaso, reply_to: Option<&str>) -> Correlacion {
    Correlacion {
        saga_id: Uuid::from_u128(1),
        saga_type: "crear_campana".into(),
        step: "reservar_presupuesto".into(),
        attempt: 1,
        kind,
        message_id: Uuid::from_u128(2),
        reply_to: reply_to.map(Into::into),
        message_type: message_type.into(),
    }
}

const CAMPANA: Uuid = Uuid::from_u128(10);
const MARCA: Uuid = Uuid::from_u128(11);
const RESERVA: Uuid = Uuid::from_u128(12);

fn respuesta_v1() -> RespuestaAfiliaciones {
    RespuestaAfiliaciones {
        correlacion: correlacion("CompensacionConfirmada", TipoPaso::Compensacion, None),
        en_respuesta_a: Uuid::from_u128(3),
        resultado: Resultado::Exito(Exito {
            salida: Salida::CompensacionConfirmada(CompensacionConfirmada { lapida: true }),
        }),
    }
}

// ---- v2 writer, v1 reader ------------------------------------------------------------------

#[test]
fn v1_code_reads_a_v2_command_ignoring_added_fields_and_defaulting_removed_ones() {
    let v2 = version(&["v2"]);
    let writer = schema(&v2, "ComandoMarca");

    let reservar = ComandoMarcaV2 {
        correlacion: correlacion("ReservarPresupuesto", TipoPaso::Accion, Some("respuestas")),
        cuerpo: CuerpoMarcaV2::ReservarPresupuesto(ReservarPresupuestoV2 {
            id_campana: CAMPANA,
            id_marca: MARCA,
            monto_centavos: Centavos(1_500_000),
            moneda: "USD".into(),
            nota: Some("verano".into()),
        }),
    };
    let read: ComandoMarca = decode_from(&write(writer, &reservar), writer).expect("v1 reads v2");
    assert_eq!(
        read.cuerpo,
        CuerpoMarca::ReservarPresupuesto(ReservarPresupuesto {
            id_campana: CAMPANA,
            id_marca: MARCA,
            monto_centavos: Centavos(1_500_000),
        })
    );
    assert_eq!(read.correlacion, reservar.correlacion);

    // v2 dropped `id_reserva`; v1 fills in its default.
    let liberar = ComandoMarcaV2 {
        correlacion: correlacion("LiberarPresupuesto", TipoPaso::Compensacion, Some("respuestas")),
        cuerpo: CuerpoMarcaV2::LiberarPresupuesto(LiberarPresupuestoV2 { id_campana: CAMPANA, id_marca: MARCA }),
    };
    let read: ComandoMarca = decode_from(&write(writer, &liberar), writer).expect("v1 reads v2");
    assert_eq!(
        read.cuerpo,
        CuerpoMarca::LiberarPresupuesto(LiberarPresupuesto { id_campana: CAMPANA, id_marca: MARCA, id_reserva: None })
    );
}

#[test]
fn v1_code_reads_a_v2_reply_ignoring_the_added_field() {
    let v2 = version(&["v2"]);
    let writer = schema(&v2, "RespuestaAfiliaciones");
    let v1 = respuesta_v1();
    let sent = RespuestaAfiliacionesV2 {
        correlacion: v1.correlacion.clone(),
        en_respuesta_a: v1.en_respuesta_a,
        resultado: v1.resultado.clone(),
        duracion_ms: Some(42),
    };
    let read: RespuestaAfiliaciones = decode_from(&write(writer, &sent), writer).expect("v1 reads v2");
    assert_eq!(read, v1);
}

// ---- v1 writer, v2 reader ------------------------------------------------------------------

#[test]
fn v2_code_reads_a_v1_command_filling_defaults_and_dropping_removed_fields() {
    let v2 = version(&["v2"]);
    let (writer, reader) = (ParsedSchema::of::<ComandoMarca>(), schema(&v2, "ComandoMarca"));

    let reservar = ComandoMarca {
        correlacion: correlacion("ReservarPresupuesto", TipoPaso::Accion, Some("respuestas")),
        cuerpo: CuerpoMarca::ReservarPresupuesto(ReservarPresupuesto {
            id_campana: CAMPANA,
            id_marca: MARCA,
            monto_centavos: Centavos(99),
        }),
    };
    let read: ComandoMarcaV2 = read_as(&encode(&reservar).expect("v1 encodes"), writer, reader);
    assert_eq!(
        read.cuerpo,
        CuerpoMarcaV2::ReservarPresupuesto(ReservarPresupuestoV2 {
            id_campana: CAMPANA,
            id_marca: MARCA,
            monto_centavos: Centavos(99),
            moneda: "COP".into(),
            nota: None,
        })
    );

    let liberar = ComandoMarca {
        correlacion: correlacion("LiberarPresupuesto", TipoPaso::Compensacion, Some("respuestas")),
        cuerpo: CuerpoMarca::LiberarPresupuesto(LiberarPresupuesto {
            id_campana: CAMPANA,
            id_marca: MARCA,
            id_reserva: Some(RESERVA),
        }),
    };
    let read: ComandoMarcaV2 = read_as(&encode(&liberar).expect("v1 encodes"), writer, reader);
    assert_eq!(
        read.cuerpo,
        CuerpoMarcaV2::LiberarPresupuesto(LiberarPresupuestoV2 { id_campana: CAMPANA, id_marca: MARCA })
    );
}

#[test]
fn v2_code_reads_a_v1_reply_filling_the_default() {
    let v2 = version(&["v2"]);
    let (writer, reader) = (ParsedSchema::of::<RespuestaAfiliaciones>(), schema(&v2, "RespuestaAfiliaciones"));
    let v1 = respuesta_v1();
    let read: RespuestaAfiliacionesV2 = read_as(&encode(&v1).expect("v1 encodes"), writer, reader);
    assert_eq!(read.duracion_ms, None);
    assert_eq!(read.resultado, v1.resultado);
    assert_eq!(read.correlacion, v1.correlacion);
}

// ---- Compatibility checks ------------------------------------------------------------------

/// BACKWARD_TRANSITIVE, the broker's rule: each version's schema of a type can read data written
/// with the same type's schema in every earlier version.
fn check_backward_transitive(versions: &[BTreeMap<String, ParsedSchema>]) -> Result<(), SchemaError> {
    for (later, newer) in versions.iter().enumerate() {
        for older in &versions[..later] {
            for (name, reader) in newer {
                if let Some(writer) = older.get(name) {
                    reader.check_can_read(writer)?;
                }
            }
        }
    }
    Ok(())
}

#[test]
fn the_v2_fixture_is_backward_and_forward_compatible_with_v1() {
    let (v1, v2) = (version(&[]), version(&["v2"]));
    check_backward_transitive(&[v1.clone(), v2.clone()]).expect("v2 reads v1");
    check_backward_transitive(&[v2, v1]).expect("v1 reads v2");
}

#[test]
fn a_new_field_without_default_is_incompatible() {
    let v1 = version(&[]);
    let breaking = version(&["v2_incompatible"]);
    let (old, new) = (schema(&v1, "ReservarPresupuesto"), schema(&breaking, "ReservarPresupuesto"));

    // The library's checker, directly: the new reader cannot read old data.
    assert!(SchemaCompatibility::can_read(&avro(old), &avro(new)).is_err());
    // Old readers can still read new data (the added field is ignored): forward compatible only.
    assert!(SchemaCompatibility::can_read(&avro(new), &avro(old)).is_ok());

    match new.check_can_read(old) {
        Err(SchemaError::Incompatible { reader, writer, reason }) => {
            assert_eq!(reader, "com.alpespartners.afiliaciones.ReservarPresupuesto");
            assert_eq!(writer, reader);
            assert!(reason.contains("moneda"), "reason names the field: {reason}");
        }
        other => panic!("expected Incompatible, got {other:?}"),
    }
    // The break reaches the topic envelope that holds the command.
    assert!(matches!(
        schema(&breaking, "ComandoMarca").check_can_read(ParsedSchema::of::<ComandoMarca>()),
        Err(SchemaError::Incompatible { .. })
    ));
    assert!(check_backward_transitive(&[v1.clone(), version(&["v2"]), breaking.clone()]).is_err());

    // And the data shows it: v1 bytes do not resolve to the breaking reader.
    let v1_bytes = encode(&ReservarPresupuesto { id_campana: CAMPANA, id_marca: MARCA, monto_centavos: Centavos(1) })
        .expect("encodes");
    let (writer, reader) = (avro(old), avro(new));
    let resolved = GenericDatumReader::builder(&writer)
        .reader_schema(&reader)
        .build()
        .and_then(|r| r.read_value(&mut &v1_bytes[..]));
    assert!(resolved.is_err(), "a missing field without default must not resolve");
}

#[test]
fn a_reader_missing_a_union_branch_is_incompatible() {
    // Partial compatibility (some datums resolve, some do not) is refused, as the broker refuses it.
    let narrow = ParsedSchema::parse(
        r#"{"type":"record","name":"Exito","namespace":"com.alpespartners.afiliaciones","fields":[
            {"name":"salida","type":[{"type":"record","name":"CompensacionConfirmada","fields":[
                {"name":"lapida","type":"boolean"}]}]}]}"#,
    )
    .expect("parses");
    assert!(narrow.check_can_read(ParsedSchema::of::<Exito>()).is_err());
    assert!(ParsedSchema::of::<Exito>().check_can_read(&narrow).is_ok());
}

#[test]
fn every_version_in_the_repository_is_backward_transitive() {
    // Today only v1 exists; a `schemas/v2/` holding a whole set is checked against it here.
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(crate_dir())
        .expect("crate dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| {
            path.is_dir()
                && path.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with('v') && n[1..].parse::<u32>().is_ok()
                })
        })
        .collect();
    dirs.sort_by_key(|p| p.file_name().map(|n| n.to_string_lossy()[1..].parse::<u32>().unwrap_or(0)));
    assert_eq!(dirs.first(), Some(&crate_dir().join("v1")));
    let versions: Vec<BTreeMap<String, ParsedSchema>> = dirs
        .iter()
        .map(|dir| {
            let texts = files(dir);
            let parsed = ParsedSchema::parse_set(texts.values().map(String::as_str))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            texts.into_keys().zip(parsed).collect()
        })
        .collect();
    check_backward_transitive(&versions).expect("BACKWARD_TRANSITIVE across schemas/v*");
    assert!(versions[0].contains_key(ComandoMarca::NAME));
}
