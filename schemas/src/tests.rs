//! Round trips of every schema file, serde-shape checks against the schemas, and the
//! `(message_type, JSON)` mapping of every message type.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::Path;

use apache_avro::schema::{RecordSchema, Schema};
use apache_avro::writer::datum::GenericDatumWriter;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{DeserializeOwned, Visitor};
use serde::Serialize;
use uuid::Uuid;

use crate::registry::{self, V1};
use crate::*;

// ---- Samples: at least one per schema file, and one per union branch -----------------------

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}

fn local(text: &str) -> NaiveDateTime {
    text.parse().expect("sample date-time")
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("sample timestamp")
}

fn correlacion(message_type: &str, kind: TipoPaso, reply_to: Option<&str>) -> Correlacion {
    Correlacion {
        saga_id: id(1),
        saga_type: "crear_campana".into(),
        step: "reservar_presupuesto".into(),
        attempt: 3,
        kind,
        message_id: id(2),
        reply_to: reply_to.map(Into::into),
        message_type: message_type.into(),
    }
}

fn marca() -> Marca {
    Marca {
        id_marca: Uuid::parse_str("123e4567-e89b-12d3-a456-426614174000").expect("uuid"),
        nombre_marca: "Nike".into(),
    }
}

fn influencers() -> Vec<Influencer> {
    vec![
        Influencer {
            nombre: "Ana García".into(),
            plataforma: "Instagram".into(),
            seguidores: 150_000,
            categoria: "Fitness".into(),
        },
        Influencer {
            nombre: "Carlos López".into(),
            plataforma: "TikTok".into(),
            seguidores: 300_000,
            categoria: "Lifestyle".into(),
        },
    ]
}

fn reservar_presupuesto() -> ReservarPresupuesto {
    ReservarPresupuesto { id_campana: id(10), id_marca: marca().id_marca, monto_centavos: Centavos(1_500_000) }
}

fn liberar_presupuesto(id_reserva: Option<Uuid>) -> LiberarPresupuesto {
    LiberarPresupuesto { id_campana: id(10), id_marca: marca().id_marca, id_reserva }
}

fn reservar_influencers() -> ReservarInfluencers {
    ReservarInfluencers {
        id_campana: id(10),
        fecha_inicio: local("2025-01-01T00:00:00"),
        fecha_fin: local("2025-12-31T23:59:59"),
        influencers: influencers(),
    }
}

fn liberar_influencers() -> LiberarInfluencers {
    LiberarInfluencers { id_campana: id(10), influencers: influencers() }
}

fn abrir_tracking() -> AbrirTracking {
    AbrirTracking {
        id_campana: id(10),
        id_marca: marca().id_marca,
        fecha_inicio: local("2025-01-01T00:00:00"),
        fecha_fin: local("2025-12-31T23:59:59.250"),
        influencers: influencers(),
    }
}

fn cerrar_tracking(id_tracking: Option<Uuid>) -> CerrarTracking {
    CerrarTracking { id_campana: id(10), id_tracking }
}

fn presupuesto_reservado() -> PresupuestoReservado {
    PresupuestoReservado {
        id_reserva: id(20),
        id_marca: marca().id_marca,
        monto_centavos: Centavos(1_500_000),
        disponible_restante_centavos: Centavos(0),
    }
}

fn reserva_influencer(n: u128, influencer: &Influencer) -> ReservaInfluencer {
    ReservaInfluencer {
        nombre: influencer.nombre.clone(),
        plataforma: influencer.plataforma.clone(),
        id_influencer: id(30 + n),
        id_reserva: id(40 + n),
    }
}

fn influencers_reservados() -> InfluencersReservados {
    InfluencersReservados { reservas: (0..).zip(&influencers()).map(|(n, i)| reserva_influencer(n, i)).collect() }
}

fn enlace(influencer: &Influencer) -> EnlaceTracking {
    EnlaceTracking {
        nombre: influencer.nombre.clone(),
        plataforma: influencer.plataforma.clone(),
        codigo: format!("VERANO-{}", influencer.plataforma.to_uppercase()),
        url: format!("https://t.alpes.example/{}", influencer.plataforma.to_lowercase()),
    }
}

fn tracking_abierto() -> TrackingAbierto {
    TrackingAbierto { id_tracking: id(50), enlaces: influencers().iter().map(enlace).collect() }
}

fn salidas() -> Vec<Salida> {
    vec![
        presupuesto_reservado().into(),
        influencers_reservados().into(),
        tracking_abierto().into(),
        CompensacionConfirmada { lapida: true }.into(),
        pago_registrado().into(),
        pago_enviado().into(),
        pago_cliente_registrado().into(),
        pago_confirmado().into(),
    ]
}

fn usd(valor_menor: i64) -> Monto {
    Monto { valor_menor, moneda: Moneda::Usd }
}

fn metodo() -> MetodoPago {
    MetodoPago { tipo: "BANK_TRANSFER".into(), mascara: "****1234".into() }
}

fn comision() -> TransaccionPago {
    TransaccionPago { id_transaccion: id(70), tipo: "COMISION".into(), monto: usd(15_005), porcentaje: 10 }
}

fn registrar_pago() -> RegistrarPago {
    RegistrarPago {
        id_pago: id(60),
        id_partner: "partner-001".into(),
        id_ciclo: "2025-01".into(),
        monto: usd(150_050),
        metodo_pago: metodo(),
    }
}

fn enviar_pago() -> EnviarPago {
    EnviarPago { id_pago: id(60), id_partner: "partner-001".into(), monto: usd(150_050), metodo_pago: metodo() }
}

fn pago_registrado() -> PagoRegistrado {
    PagoRegistrado { id_pago: id(60), transacciones: vec![comision()] }
}

fn pago_enviado() -> PagoEnviado {
    PagoEnviado {
        id_operacion: id(61),
        id_confirmacion: "PRV-0001".into(),
        procesado_en: utc("2025-01-01T12:30:00.123Z"),
    }
}

fn pago_cliente_registrado() -> PagoClienteRegistrado {
    PagoClienteRegistrado {
        id_partner: "partner-001".into(),
        total_pagos: 3,
        ultimo_pago: utc("2025-01-01T12:30:00.123Z"),
    }
}

fn pago_confirmado() -> PagoConfirmado {
    PagoConfirmado { id_pago: id(60), completado_en: utc("2025-01-01T12:30:00.123Z") }
}

fn cuerpos_pagos() -> Vec<CuerpoPagos> {
    vec![
        registrar_pago().into(),
        MarcarPagoFallido { id_pago: id(60) }.into(),
        ConfirmarPago { id_pago: id(60), id_confirmacion: "PRV-0001".into() }.into(),
        RevertirConfirmacion { id_pago: id(60) }.into(),
    ]
}

fn cuerpos_proveedor() -> Vec<CuerpoProveedor> {
    vec![
        enviar_pago().into(),
        AnularPago { id_pago: id(60), id_operacion: Some(id(61)) }.into(),
        AnularPago { id_pago: id(60), id_operacion: None }.into(),
    ]
}

fn cuerpos_cliente() -> Vec<CuerpoCliente> {
    vec![
        RegistrarPagoCliente { id_partner: "partner-001".into(), id_pago: id(60), monto: usd(150_050) }.into(),
        RevertirPagoCliente { id_partner: "partner-001".into(), id_pago: id(60) }.into(),
    ]
}

fn solicitud_pago() -> SolicitudPago {
    SolicitudPago {
        id_partner: "partner-001".into(),
        id_ciclo: "2025-01".into(),
        monto: usd(150_050),
        metodo_pago: metodo(),
    }
}

fn eventos_pago() -> Vec<EventoDePago> {
    vec![
        PagoCompletado {
            id_pago: id(60),
            solicitud: solicitud_pago(),
            transacciones: vec![comision()],
            id_operacion: id(61),
            id_confirmacion: "PRV-0001".into(),
            total_pagos_cliente: 3,
            ocurrido_en: utc("2025-01-01T12:30:00.123Z"),
        }
        .into(),
        PagoFallido {
            id_pago: id(60),
            solicitud: solicitud_pago(),
            paso_fallido: "enviar_pago".into(),
            codigo: "TARJETA_RECHAZADA".into(),
            motivo: "el proveedor rechazó la tarjeta".into(),
            ocurrido_en: utc("2025-01-01T12:30:00.123Z"),
        }
        .into(),
    ]
}

macro_rules! comando {
    ($name:ident, $envelope:ident, $body:ident) => {
        fn $name(cuerpo: $body) -> $envelope {
            $envelope {
                correlacion: correlacion(cuerpo.message_type(), cuerpo.kind(), Some("respuestas.afiliaciones")),
                cuerpo,
            }
        }
    };
}

comando!(comando_pagos, ComandoPagos, CuerpoPagos);
comando!(comando_proveedor, ComandoProveedor, CuerpoProveedor);
comando!(comando_cliente, ComandoCliente, CuerpoCliente);

fn fallo() -> FalloNegocio {
    FalloNegocio { codigo: "PRESUPUESTO_INSUFICIENTE".into(), motivo: "la marca tiene 10000 disponibles".into() }
}

fn transitorio() -> ErrorTransitorio {
    ErrorTransitorio { motivo: "base de datos no disponible".into() }
}

fn resultados() -> Vec<Resultado> {
    let mut all: Vec<Resultado> = salidas().into_iter().map(|salida| Resultado::Exito(Exito { salida })).collect();
    all.push(Resultado::FalloNegocio(fallo()));
    all.push(Resultado::ErrorTransitorio(transitorio()));
    all
}

fn respuesta(resultado: Resultado) -> RespuestaAfiliaciones {
    let kind = match &resultado {
        Resultado::Exito(Exito { salida: Salida::CompensacionConfirmada(_) }) => TipoPaso::Compensacion,
        _ => TipoPaso::Accion,
    };
    RespuestaAfiliaciones {
        correlacion: correlacion(resultado.message_type(), kind, None),
        en_respuesta_a: id(2),
        resultado,
    }
}

fn comando_marca(cuerpo: CuerpoMarca) -> ComandoMarca {
    ComandoMarca {
        correlacion: correlacion(cuerpo.message_type(), cuerpo.kind(), Some("respuestas.afiliaciones")),
        cuerpo,
    }
}

fn comando_influencer(cuerpo: CuerpoInfluencer) -> ComandoInfluencer {
    ComandoInfluencer {
        correlacion: correlacion(cuerpo.message_type(), cuerpo.kind(), Some("respuestas.afiliaciones")),
        cuerpo,
    }
}

fn comando_tracking(cuerpo: CuerpoTracking) -> ComandoTracking {
    ComandoTracking {
        correlacion: correlacion(cuerpo.message_type(), cuerpo.kind(), Some("respuestas.afiliaciones")),
        cuerpo,
    }
}

fn solicitud() -> SolicitudCampana {
    SolicitudCampana {
        nombre: "Campaña de Verano 2024".into(),
        descripcion: "Promoción de productos de verano con influencers".into(),
        tipo: "influencer".into(),
        fecha_inicio: local("2025-01-01T00:00:00"),
        fecha_fin: local("2025-12-31T23:59:59"),
        presupuesto_centavos: Centavos(1_500_000),
        marca: marca(),
        influencers: influencers(),
    }
}

fn contratado(n: u128, influencer: &Influencer) -> InfluencerContratado {
    let reserva = reserva_influencer(n, influencer);
    let enlace = enlace(influencer);
    InfluencerContratado {
        nombre: influencer.nombre.clone(),
        plataforma: influencer.plataforma.clone(),
        seguidores: influencer.seguidores,
        categoria: influencer.categoria.clone(),
        id_influencer: reserva.id_influencer,
        id_reserva: reserva.id_reserva,
        codigo_tracking: enlace.codigo,
        url_tracking: enlace.url,
    }
}

fn campana_creada() -> CampanaCreada {
    let s = solicitud();
    CampanaCreada {
        id_campana: id(10),
        nombre: s.nombre,
        descripcion: s.descripcion,
        tipo: s.tipo,
        fecha_inicio: s.fecha_inicio,
        fecha_fin: s.fecha_fin,
        presupuesto_centavos: s.presupuesto_centavos,
        marca: s.marca,
        id_reserva_presupuesto: id(20),
        influencers: (0..).zip(&s.influencers).map(|(n, i)| contratado(n, i)).collect(),
        id_tracking: id(50),
        ocurrido_en: utc("2025-01-01T12:30:00.123Z"),
    }
}

fn campana_rechazada() -> CampanaRechazada {
    CampanaRechazada {
        id_campana: id(10),
        solicitud: solicitud(),
        paso_fallido: "reservar_influencers".into(),
        codigo: "INFLUENCER_OCUPADO".into(),
        motivo: "Ana García ya está reservada en esas fechas".into(),
        ocurrido_en: utc("2025-01-01T12:30:00Z"),
    }
}

fn evento(evento: Evento) -> EventoCampana {
    EventoCampana { id_evento: id(60), saga_id: id(1), message_type: evento.message_type().into(), evento }
}

fn cuerpos_marca() -> Vec<CuerpoMarca> {
    vec![reservar_presupuesto().into(), liberar_presupuesto(Some(id(20))).into(), liberar_presupuesto(None).into()]
}

fn cuerpos_influencer() -> Vec<CuerpoInfluencer> {
    vec![reservar_influencers().into(), liberar_influencers().into()]
}

fn cuerpos_tracking() -> Vec<CuerpoTracking> {
    vec![abrir_tracking().into(), cerrar_tracking(Some(id(50))).into(), cerrar_tracking(None).into()]
}

fn eventos() -> Vec<Evento> {
    vec![campana_creada().into(), campana_rechazada().into()]
}

/// A check run against one sample, keyed by its schema's name.
type Check = Box<dyn Fn() -> Result<(), String>>;

/// Every sample as a round-trip-and-shape check, keyed by its type's schema name.
fn checks() -> BTreeMap<&'static str, Vec<Check>> {
    let mut all: BTreeMap<&'static str, Vec<Check>> = BTreeMap::new();
    let mut add = |(name, check): (&'static str, Check)| all.entry(name).or_default().push(check);

    add(check(TipoPaso::Accion));
    add(check(TipoPaso::Compensacion));
    add(check(correlacion("X", TipoPaso::Accion, Some("respuestas.afiliaciones"))));
    add(check(correlacion("X", TipoPaso::Compensacion, None)));
    add(check(marca()));
    influencers().into_iter().for_each(|i| add(check(i)));
    add(check(reservar_presupuesto()));
    add(check(liberar_presupuesto(Some(id(20)))));
    add(check(liberar_presupuesto(None)));
    add(check(reservar_influencers()));
    add(check(liberar_influencers()));
    add(check(abrir_tracking()));
    add(check(cerrar_tracking(Some(id(50)))));
    add(check(cerrar_tracking(None)));
    add(check(presupuesto_reservado()));
    add(check(reserva_influencer(0, &influencers()[0])));
    add(check(influencers_reservados()));
    add(check(InfluencersReservados { reservas: vec![] }));
    add(check(enlace(&influencers()[1])));
    add(check(tracking_abierto()));
    add(check(CompensacionConfirmada { lapida: false }));
    add(check(CompensacionConfirmada { lapida: true }));
    salidas().into_iter().for_each(|salida| add(check(Exito { salida })));
    add(check(fallo()));
    add(check(transitorio()));
    add(check(solicitud()));
    add(check(contratado(1, &influencers()[1])));
    add(check(campana_creada()));
    add(check(campana_rechazada()));
    cuerpos_marca().into_iter().for_each(|c| add(check(comando_marca(c))));
    cuerpos_influencer().into_iter().for_each(|c| add(check(comando_influencer(c))));
    cuerpos_tracking().into_iter().for_each(|c| add(check(comando_tracking(c))));
    resultados().into_iter().for_each(|r| add(check(respuesta(r))));
    eventos().into_iter().for_each(|e| add(check(evento(e))));
    add(check(usd(150_050)));
    add(check(Monto { valor_menor: 1500, moneda: Moneda::Clp }));
    add(check(metodo()));
    add(check(comision()));
    add(check(solicitud_pago()));
    add(check(registrar_pago()));
    add(check(MarcarPagoFallido { id_pago: id(60) }));
    add(check(ConfirmarPago { id_pago: id(60), id_confirmacion: "PRV-0001".into() }));
    add(check(RevertirConfirmacion { id_pago: id(60) }));
    add(check(enviar_pago()));
    add(check(AnularPago { id_pago: id(60), id_operacion: None }));
    add(check(RegistrarPagoCliente { id_partner: "partner-001".into(), id_pago: id(60), monto: usd(1) }));
    add(check(RevertirPagoCliente { id_partner: "partner-001".into(), id_pago: id(60) }));
    add(check(pago_registrado()));
    add(check(pago_enviado()));
    add(check(pago_cliente_registrado()));
    add(check(pago_confirmado()));
    eventos_pago().into_iter().for_each(|e| match e {
        EventoDePago::PagoCompletado(c) => add(check(c)),
        EventoDePago::PagoFallido(f) => add(check(f)),
    });
    cuerpos_pagos().into_iter().for_each(|c| add(check(comando_pagos(c))));
    cuerpos_proveedor().into_iter().for_each(|c| add(check(comando_proveedor(c))));
    cuerpos_cliente().into_iter().for_each(|c| add(check(comando_cliente(c))));
    eventos_pago().into_iter().for_each(|e| {
        let message_type = e.message_type().to_owned();
        add(check(EventoPago { id_evento: id(3), saga_id: id(1), message_type, evento: e }));
    });
    all
}

/// Encodes, decodes and compares `sample`, and compares its serde shape with its schema.
fn check<T: AvroMessage + PartialEq + Debug + 'static>(sample: T) -> (&'static str, Check) {
    (
        T::NAME,
        Box::new(move || {
            let bytes = encode(&sample).map_err(|e| e.to_string())?;
            let back: T = decode(&bytes).map_err(|e| e.to_string())?;
            if back != sample {
                return Err(format!("decoded {back:?}\n  differs from {sample:?}"));
            }
            let expected = schema_shape(ParsedSchema::of::<T>().schema());
            let actual = serde_shape::<T>();
            if actual != expected {
                return Err(format!("serde shape {actual:?} is not the schema's {expected:?}"));
            }
            Ok(())
        }),
    )
}

// ---- Serde shape, read from the derived `Deserialize` --------------------------------------

/// The names a type shows serde: a struct's fields or an enum's variants, in order.
#[derive(Debug, PartialEq)]
enum Shape {
    Record(Vec<String>),
    Enum(Vec<String>),
    Other,
}

fn schema_shape(schema: &Schema) -> Shape {
    match schema {
        Schema::Record(RecordSchema { fields, .. }) => Shape::Record(fields.iter().map(|f| f.name.clone()).collect()),
        Schema::Enum(e) => Shape::Enum(e.symbols.clone()),
        Schema::Union(u) => Shape::Enum(
            u.variants().iter().map(|v| v.name().map_or_else(String::new, |n| n.name().to_owned())).collect(),
        ),
        _ => Shape::Other,
    }
}

/// The field or variant names `T`'s derived `Deserialize` asks for.
fn serde_shape<T: DeserializeOwned>() -> Shape {
    let mut shape = Shape::Other;
    // The introspector always fails after recording the names, so the result carries nothing.
    let _ = T::deserialize(Introspect(&mut shape));
    shape
}

struct Introspect<'a>(&'a mut Shape);

impl<'de> serde::Deserializer<'de> for Introspect<'_> {
    type Error = serde::de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("neither a struct nor an enum"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Shape::Record(fields.iter().map(|f| (*f).to_owned()).collect());
        Err(serde::de::Error::custom("recorded"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = Shape::Enum(variants.iter().map(|v| (*v).to_owned()).collect());
        Err(serde::de::Error::custom("recorded"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map identifier ignored_any
    }
}

/// The schema of `field` in record `T`.
fn field_schema<T: AvroMessage>(field: &str) -> Schema {
    match ParsedSchema::of::<T>().schema() {
        Schema::Record(r) => r
            .fields
            .iter()
            .find(|f| f.name == field)
            .map(|f| f.schema.clone())
            .unwrap_or_else(|| panic!("{} has no field {field}", T::NAME)),
        other => panic!("{} is not a record: {other:?}", T::NAME),
    }
}

// ---- Every file ----------------------------------------------------------------------------

fn v1_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("v1")
}

/// `(stem, text)` of every `.avsc` file in a folder, read now.
fn read_dir(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "avsc"))
        .map(|path| {
            let stem = path.file_stem().expect("file name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable schema file");
            (stem, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_file_in_v1_is_embedded_parses_and_round_trips_its_rust_type() {
    let files = read_dir(&v1_dir());
    assert!(files.len() >= 28, "expected the whole v1 set, found {}", files.len());

    let on_disk: BTreeSet<&str> = files.iter().map(|(stem, _)| stem.as_str()).collect();
    let embedded: BTreeSet<&str> = V1.iter().map(|(name, _)| *name).collect();
    assert_eq!(on_disk, embedded, "registry::V1 must list exactly the files of schemas/v1");

    let parsed =
        ParsedSchema::parse_set(files.iter().map(|(_, text)| text.as_str())).expect("schemas/v1 parses as a set");
    let checks = checks();
    let mut failures = Vec::new();
    for ((stem, _), schema) in files.iter().zip(&parsed) {
        let full_name = schema.full_name();
        assert_eq!(
            full_name,
            format!("com.alpespartners.afiliaciones.{stem}"),
            "{stem}.avsc must define the type it is named after"
        );
        // The file on disk is the file compiled in.
        let compiled = registry::embedded(stem).expect("embedded").json();
        assert_eq!(schema.json(), compiled, "{stem}.avsc changed since the build");

        match checks.get(stem.as_str()) {
            None => failures.push(format!("{stem}: no Rust type with a sample in tests.rs")),
            Some(checks) => {
                for check in checks {
                    if let Err(e) = check() {
                        failures.push(format!("{stem}: {e}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn union_enums_list_the_branches_of_their_schema_in_order() {
    fn same<U: DeserializeOwned>(rust: &str, schema: Schema) {
        assert_eq!(serde_shape::<U>(), schema_shape(&schema), "{rust}");
    }
    same::<CuerpoMarca>("CuerpoMarca", field_schema::<ComandoMarca>("cuerpo"));
    same::<CuerpoInfluencer>("CuerpoInfluencer", field_schema::<ComandoInfluencer>("cuerpo"));
    same::<CuerpoTracking>("CuerpoTracking", field_schema::<ComandoTracking>("cuerpo"));
    same::<Salida>("Salida", field_schema::<Exito>("salida"));
    same::<Resultado>("Resultado", field_schema::<RespuestaAfiliaciones>("resultado"));
    same::<Evento>("Evento", field_schema::<EventoCampana>("evento"));

    assert_eq!(
        schema_shape(&field_schema::<ComandoMarca>("cuerpo")),
        Shape::Enum(CuerpoMarca::MESSAGE_TYPES.iter().map(|s| (*s).to_owned()).collect())
    );
}

#[test]
fn a_rust_shape_that_differs_from_the_schema_does_not_encode() {
    // What the round trip relies on: the schema-aware writer refuses a missing required field,
    // an unknown field and a mistyped field.
    #[derive(Serialize)]
    struct Missing {
        id_campana: Uuid,
        id_marca: Uuid,
    }
    #[derive(Serialize)]
    struct Unknown {
        id_campana: Uuid,
        id_marca: Uuid,
        monto_centavos: i64,
        moneda: String,
    }
    #[derive(Serialize)]
    struct Mistyped {
        id_campana: Uuid,
        id_marca: Uuid,
        monto_centavos: String,
    }
    let schema = ParsedSchema::of::<ReservarPresupuesto>().schema();
    let writer = GenericDatumWriter::builder(schema).human_readable(true).build().expect("writer");
    let ok = reservar_presupuesto();
    assert!(writer.write_ser_to_vec(&ok).is_ok());
    let missing = Missing { id_campana: ok.id_campana, id_marca: ok.id_marca };
    assert!(writer.write_ser_to_vec(&missing).is_err(), "missing field accepted");
    let unknown = Unknown { id_campana: ok.id_campana, id_marca: ok.id_marca, monto_centavos: 1, moneda: "COP".into() };
    assert!(writer.write_ser_to_vec(&unknown).is_err(), "unknown field accepted");
    let mistyped = Mistyped { id_campana: ok.id_campana, id_marca: ok.id_marca, monto_centavos: "1".into() };
    assert!(writer.write_ser_to_vec(&mistyped).is_err(), "mistyped field accepted");
}

// ---- Pulsar-facing schema JSON -------------------------------------------------------------

#[test]
fn each_envelope_json_is_minified_self_contained_and_keeps_defaults() {
    fn standalone<T: Envelope>() {
        let parsed = ParsedSchema::of::<T>();
        let json = parsed.json();
        assert!(!json.contains('\n'), "{} JSON is not minified", T::NAME);
        // Parsing alone, with no other file, proves every referenced type is inlined.
        let alone = Schema::parse_str(json).unwrap_or_else(|e| panic!("{} JSON is not self-contained: {e}", T::NAME));
        assert_eq!(alone.canonical_form(), parsed.schema().canonical_form(), "{}", T::NAME);
        let again = ParsedSchema::parse(json).expect("parses");
        assert_eq!(again.json(), json, "{} JSON does not survive a re-parse", T::NAME);
        assert!(json.contains(r#""logicalType":"uuid""#), "{} lost uuid logical types", T::NAME);
    }
    standalone::<ComandoMarca>();
    standalone::<ComandoInfluencer>();
    standalone::<ComandoTracking>();
    standalone::<RespuestaAfiliaciones>();
    standalone::<EventoCampana>();

    // Defaults decide compatibility on the broker: they must reach the attached JSON.
    let json: serde_json::Value = serde_json::from_str(ParsedSchema::of::<ComandoMarca>().json()).expect("json");
    let reply_to = &json["fields"][0]["type"]["fields"][6];
    assert_eq!(reply_to["name"], "reply_to");
    assert_eq!(reply_to["default"], serde_json::Value::Null);
    assert!(reply_to.as_object().is_some_and(|f| f.contains_key("default")));
}

#[test]
fn topics_are_the_design_names() {
    assert_eq!(ComandoMarca::TOPIC, "comandos.marca");
    assert_eq!(ComandoInfluencer::TOPIC, "comandos.influencer");
    assert_eq!(ComandoTracking::TOPIC, "comandos.tracking");
    assert_eq!(RespuestaAfiliaciones::TOPIC, "respuestas.afiliaciones");
    assert_eq!(EventoCampana::TOPIC, "eventos.campanas");
}

// ---- Codec errors --------------------------------------------------------------------------

#[test]
fn an_envelope_whose_header_contradicts_its_body_neither_encodes_nor_decodes() {
    let mut wrong_type = comando_marca(reservar_presupuesto().into());
    wrong_type.correlacion.message_type = "LiberarPresupuesto".into();
    assert!(matches!(encode(&wrong_type), Err(SchemaError::Inconsistent { .. })));

    let mut wrong_kind = comando_marca(reservar_presupuesto().into());
    wrong_kind.correlacion.kind = TipoPaso::Compensacion;
    assert!(matches!(encode(&wrong_kind), Err(SchemaError::Inconsistent { .. })));

    let mut wrong_reply = respuesta(Resultado::FalloNegocio(fallo()));
    wrong_reply.correlacion.message_type = "Exito".into();
    assert!(matches!(encode(&wrong_reply), Err(SchemaError::Inconsistent { .. })));

    let mut wrong_event = evento(campana_creada().into());
    wrong_event.message_type = "CampanaRechazada".into();
    assert!(matches!(encode(&wrong_event), Err(SchemaError::Inconsistent { .. })));

    // A foreign producer that skips the check: the consumer refuses it on decode.
    let bytes = GenericDatumWriter::builder(ParsedSchema::of::<ComandoMarca>().schema())
        .human_readable(true)
        .build()
        .and_then(|w| w.write_ser_to_vec(&wrong_type))
        .expect("raw write");
    assert!(matches!(decode::<ComandoMarca>(&bytes), Err(SchemaError::Inconsistent { .. })));
}

#[test]
fn bytes_of_another_schema_or_with_a_tail_are_refused() {
    let bytes = encode(&reservar_presupuesto()).expect("encodes");
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(decode::<ReservarPresupuesto>(&longer), Err(SchemaError::TrailingBytes { trailing: 1, .. })));
    assert!(decode::<ReservarPresupuesto>(&bytes[..bytes.len() - 1]).is_err());

    let marca = encode(&comando_marca(reservar_presupuesto().into())).expect("encodes");
    assert!(decode::<ComandoTracking>(&marca).is_err());
    assert!(decode::<RespuestaAfiliaciones>(&marca).is_err());
}

#[test]
fn the_datum_is_raw_with_no_header() {
    // A raw Avro datum starts with the first field. A container file would start with `Obj\x01`,
    // a single-object encoding with `\xC3\x01`; Pulsar's AVRO schema type carries neither.
    let bytes = encode(&CompensacionConfirmada { lapida: true }).expect("encodes");
    assert_eq!(bytes, vec![1]);
    let bytes = encode(&reservar_presupuesto()).expect("encodes");
    // A uuid with logicalType uuid is a string: its length (36, zigzag-encoded as 72), then text.
    assert_eq!(bytes[0], 72);
    assert_eq!(&bytes[1..37], id(10).to_string().as_bytes());
}

// ---- (message_type, JSON) ------------------------------------------------------------------

/// Maps every sample to `(message_type, JSON)` and back, and checks that the samples cover every
/// message type of the union.
fn json_round_trip<U: MessageUnion + PartialEq + Debug>(samples: Vec<U>) {
    let mut seen = BTreeSet::new();
    for sample in samples {
        let message_type = sample.message_type();
        let json = sample.to_json();
        let back = U::from_json(message_type, json.clone()).unwrap_or_else(|e| panic!("{message_type}: {e}\n{json}"));
        assert_eq!(back, sample);
        seen.insert(message_type);
    }
    let all: BTreeSet<&str> = U::MESSAGE_TYPES.iter().copied().collect();
    assert_eq!(seen, all, "samples must cover every message type");
}

#[test]
fn every_message_type_maps_to_json_and_back() {
    json_round_trip(cuerpos_marca());
    json_round_trip(cuerpos_influencer());
    json_round_trip(cuerpos_tracking());
    json_round_trip(salidas());
    json_round_trip(eventos());
    json_round_trip(cuerpos_pagos());
    json_round_trip(cuerpos_proveedor());
    json_round_trip(cuerpos_cliente());
    json_round_trip(eventos_pago());
}

#[test]
fn json_mapping_refuses_unknown_types_and_wrong_shapes() {
    let json = reservar_presupuesto().into();
    let json = CuerpoMarca::to_json(&json);

    match CuerpoMarca::from_json("AbrirTracking", json.clone()) {
        Err(SchemaError::UnknownMessageType { message_type, expected }) => {
            assert_eq!(message_type, "AbrirTracking");
            assert_eq!(expected, ["ReservarPresupuesto", "LiberarPresupuesto"]);
        }
        other => panic!("expected UnknownMessageType, got {other:?}"),
    }

    let mut missing = json.clone();
    missing.as_object_mut().expect("object").remove("monto_centavos");
    assert!(matches!(
        CuerpoMarca::from_json("ReservarPresupuesto", missing),
        Err(SchemaError::Json { message_type: "ReservarPresupuesto", .. })
    ));

    let mut mistyped = json.clone();
    mistyped["id_marca"] = serde_json::json!("not-a-uuid");
    assert!(matches!(CuerpoMarca::from_json("ReservarPresupuesto", mistyped), Err(SchemaError::Json { .. })));

    // The same JSON read as the other branch lacks its fields.
    assert!(CuerpoMarca::from_json("LiberarPresupuesto", json)
        .is_ok_and(|c| matches!(c, CuerpoMarca::LiberarPresupuesto(LiberarPresupuesto { id_reserva: None, .. }))));
}

#[test]
fn json_form_is_the_public_api_form() {
    let json = CuerpoInfluencer::from(reservar_influencers()).to_json();
    assert_eq!(json["fecha_inicio"], "2025-01-01T00:00:00");
    assert_eq!(json["influencers"][0]["seguidores"], 150_000);
    assert_eq!(Salida::from(presupuesto_reservado()).to_json()["monto_centavos"], 1_500_000);
    assert_eq!(Evento::from(campana_creada()).to_json()["ocurrido_en"], "2025-01-01T12:30:00.123Z");

    // The `marca` and `influencers` of the public request body read as they are.
    let request = serde_json::json!({
        "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
        "influencers": [
            { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
            { "nombre": "Carlos López", "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" }
        ]
    });
    let marca_leida: Marca = serde_json::from_value(request["marca"].clone()).expect("marca");
    let leidos: Vec<Influencer> = serde_json::from_value(request["influencers"].clone()).expect("influencers");
    assert_eq!(marca_leida, marca());
    assert_eq!(leidos, influencers());
}
