//! Bad input on every route of every service, as a table: the embedded mode serves the
//! orchestrator's routes (sagas, campaigns, payouts) and every participant's (cliente, tracking)
//! on one address, through the same routers and layers the daemons use. Each row is one request
//! that must be refused: malformed JSON, wrong types, missing fields, huge bodies and arrays,
//! negative and absurd numbers, invalid dates, invalid UTF-8 (in the body and in the path),
//! unknown ids, unknown routes and methods. Each must get a 4xx with a JSON body whose `error` is
//! a non-empty message; afterwards nothing was started or recorded, and the server still answers
//! `/health`. Fields and query parameters a route does not take are refused too (README_SAGA,
//! "Choices"); a test of its own checks that the answer names each of them.
//!
//! Then a time-bounded property test: arbitrary bytes posted to every body route are refused the
//! same way.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> Running {
    let config = embedded::Config {
        data_dir: std::env::temp_dir().join(format!("alpes-bad-input-{}", uuid::Uuid::new_v4().simple())),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
        access: Default::default(),
    };
    embedded::start(config, None).await.unwrap()
}

fn campana() -> Value {
    json!({
        "nombre": "Campaña de Verano 2024", "descripcion": "Promoción", "tipo": "influencer",
        "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59", "presupuesto": 1500,
        "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
        "influencers": [ { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" } ]
    })
}

fn cliente() -> Value {
    json!({ "id": "partner-malo", "nombre": "Juan Pérez", "email": "juan.malo@example.com",
            "cedula": "1234567890", "fecha_nacimiento": "1990-05-15" })
}

fn pago() -> Value {
    json!({ "partner_id": "partner-malo", "cycle_id": "2025-06", "total_amount": 100.5, "currency": "USD",
            "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234",
            "confirmation_id": "conf-malo", "processed_at": null, "completed_at": null })
}

fn evento() -> Value {
    json!({ "id_campana": "01900000-0000-7000-8000-000000000000", "tipo_evento": "clic", "datos": {} })
}

/// `base` with `key` set to `value` (`null` removes it); `key` may be `a.b` or `a.0.b`.
fn with(mut base: Value, key: &str, value: Value) -> Value {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap();
    let mut at = &mut base;
    for p in parts {
        at = match p.parse::<usize>() {
            Ok(i) => &mut at[i],
            Err(_) => &mut at[p],
        };
    }
    match (at, value) {
        (Value::Object(m), Value::Null) => {
            m.remove(last);
        }
        (Value::Object(m), v) => {
            m.insert(last.to_owned(), v);
        }
        (other, _) => panic!("{key}: not an object: {other}"),
    }
    base
}

#[derive(Debug)]
enum Body {
    None,
    Json(Value),
    Raw(Vec<u8>),
}

/// One request that must be refused, and the status it must get.
struct Case {
    what: &'static str,
    method: Method,
    path: String,
    body: Body,
    status: u16,
}

fn case(what: &'static str, method: Method, path: &str, body: Body, status: u16) -> Case {
    Case { what, method, path: path.to_owned(), body, status }
}

const UNKNOWN: &str = "01900000-0000-7000-8000-000000000000";

/// Every bad request of every route. Statuses: 400 the body is not JSON (or a path or query
/// parameter is malformed), 404 an unknown id or route, 405 a method the route does not take,
/// 413 a body over the route's limit, 422 a JSON body with field errors.
fn table() -> Vec<Case> {
    use Body::{Json, Raw};
    let post = Method::POST;
    let get = Method::GET;
    let big = |n: usize| Raw(format!("{{\"x\": \"{}\"}}", "a".repeat(n)).into_bytes());
    let not_utf8 = |prefix: &str| {
        let mut b = format!("{prefix}\"").into_bytes();
        b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
        b.extend_from_slice(b"\"}");
        Raw(b)
    };
    let mut t = vec![];
    // ---- POST /afiliaciones/campana
    let r = "/afiliaciones/campana";
    t.extend([
        case("campana: malformed JSON", post.clone(), r, Raw(b"{\"nombre\": ".to_vec()), 400),
        case("campana: empty body", post.clone(), r, Raw(vec![]), 400),
        case("campana: not UTF-8", post.clone(), r, not_utf8("{\"nombre\": "), 400),
        case("campana: an array", post.clone(), r, Json(json!([campana()])), 422),
        case("campana: null", post.clone(), r, Json(Value::Null), 422),
        case("campana: empty object", post.clone(), r, Json(json!({})), 422),
        case("campana: missing marca", post.clone(), r, Json(with(campana(), "marca", Value::Null)), 422),
        case(
            "campana: presupuesto as text",
            post.clone(),
            r,
            Json(with(campana(), "presupuesto", json!("mucho"))),
            422,
        ),
        case("campana: negative presupuesto", post.clone(), r, Json(with(campana(), "presupuesto", json!(-5))), 422),
        case("campana: absurd presupuesto", post.clone(), r, Json(with(campana(), "presupuesto", json!(1e300))), 422),
        case(
            "campana: presupuesto with 3 decimals",
            post.clone(),
            r,
            Json(with(campana(), "presupuesto", json!(1.005))),
            422,
        ),
        case(
            "campana: negative seguidores",
            post.clone(),
            r,
            Json(with(campana(), "influencers.0.seguidores", json!(-1))),
            422,
        ),
        case(
            "campana: absurd seguidores",
            post.clone(),
            r,
            Json(with(campana(), "influencers.0.seguidores", json!(1e20))),
            422,
        ),
        case("campana: marca as text", post.clone(), r, Json(with(campana(), "marca", json!("Nike"))), 422),
        case(
            "campana: id_marca not a UUID",
            post.clone(),
            r,
            Json(with(campana(), "marca.id_marca", json!("nike"))),
            422,
        ),
        case("campana: influencers as object", post.clone(), r, Json(with(campana(), "influencers", json!({}))), 422),
        case(
            "campana: 10 000 influencers",
            post.clone(),
            r,
            Json(with(campana(), "influencers", json!(vec![json!({"nombre": "a"}); 10_000]))),
            422,
        ),
        case(
            "campana: invalid date",
            post.clone(),
            r,
            Json(with(campana(), "fecha_inicio", json!("2025-13-45T00:00:00"))),
            422,
        ),
        case("campana: date as number", post.clone(), r, Json(with(campana(), "fecha_inicio", json!(20250101))), 422),
        case(
            "campana: reversed dates",
            post.clone(),
            r,
            Json(with(campana(), "fecha_fin", json!("2024-01-01T00:00:00"))),
            422,
        ),
        case(
            "campana: nombre of 10 000 characters",
            post.clone(),
            r,
            Json(with(campana(), "nombre", json!("ñ".repeat(10_000)))),
            422,
        ),
        case("campana: body over 256 KiB", post.clone(), r, big(300 * 1024), 413),
        case("campana: unknown id", get.clone(), &format!("/afiliaciones/campana/{UNKNOWN}"), Body::None, 404),
        case("campana: id not a UUID", get.clone(), "/afiliaciones/campana/nope", Body::None, 400),
        case("campana: id not UTF-8", get.clone(), "/afiliaciones/campana/%FF%FE", Body::None, 400),
        case("campanas: negative limite", get.clone(), "/afiliaciones/campanas?limite=-1", Body::None, 400),
        case(
            "campanas: absurd limite",
            get.clone(),
            "/afiliaciones/campanas?limite=99999999999999999999",
            Body::None,
            400,
        ),
        case("campanas: unknown estado", get.clone(), "/afiliaciones/campanas?estado=feliz", Body::None, 400),
    ]);
    // ---- POST /pagos/pagar, GET /pagos, GET /pagos/{id}
    let r = "/pagos/pagar";
    t.extend([
        case("pagar: malformed JSON", post.clone(), r, Raw(b"{\"partner_id\"".to_vec()), 400),
        case("pagar: not UTF-8", post.clone(), r, not_utf8("{\"partner_id\": "), 400),
        case("pagar: empty object", post.clone(), r, Json(json!({})), 422),
        case("pagar: amount as text", post.clone(), r, Json(with(pago(), "total_amount", json!("cien"))), 422),
        case("pagar: negative amount", post.clone(), r, Json(with(pago(), "total_amount", json!(-100))), 422),
        case("pagar: zero amount", post.clone(), r, Json(with(pago(), "total_amount", json!(0))), 422),
        case("pagar: absurd amount", post.clone(), r, Json(with(pago(), "total_amount", json!(1e308))), 422),
        case("pagar: unknown currency", post.clone(), r, Json(with(pago(), "currency", json!("DOGE"))), 422),
        case(
            "pagar: method not A-Z 0-9 _",
            post.clone(),
            r,
            Json(with(pago(), "payment_method_type", json!("gold card!"))),
            422,
        ),
        case(
            "pagar: invalid processed_at",
            post.clone(),
            r,
            Json(with(pago(), "processed_at", json!("2025-02-30T00:00:00Z"))),
            422,
        ),
        case("pagar: missing partner_id", post.clone(), r, Json(with(pago(), "partner_id", Value::Null)), 422),
        case("pagar: partner_id as array", post.clone(), r, Json(with(pago(), "partner_id", json!(["a"]))), 422),
        case("pagar: unknown partner", post.clone(), r, Json(pago()), 400),
        case("pagar: body over 256 KiB", post.clone(), r, big(300 * 1024), 413),
        case("pagos: unknown id", get.clone(), &format!("/pagos/payout-{UNKNOWN}"), Body::None, 404),
        case("pagos: id not a payout id", get.clone(), "/pagos/payout-nope", Body::None, 400),
        case("pagos: negative limite", get.clone(), "/pagos?limite=-1", Body::None, 400),
        case("pagos: unknown estado", get.clone(), "/pagos?estado=REGALADO", Body::None, 400),
    ]);
    // ---- POST /cliente/registrar, GET /cliente/{id}
    let r = "/cliente/registrar";
    t.extend([
        case("cliente: malformed JSON", post.clone(), r, Raw(b"{{".to_vec()), 400),
        case("cliente: not UTF-8", post.clone(), r, not_utf8("{\"id\": "), 400),
        case("cliente: empty object", post.clone(), r, Json(json!({})), 422),
        case("cliente: cedula negative", post.clone(), r, Json(with(cliente(), "cedula", json!(-5))), 422),
        case("cliente: cedula absurd", post.clone(), r, Json(with(cliente(), "cedula", json!(1e30))), 422),
        case("cliente: cedula as object", post.clone(), r, Json(with(cliente(), "cedula", json!({}))), 422),
        case(
            "cliente: invalid birth date",
            post.clone(),
            r,
            Json(with(cliente(), "fecha_nacimiento", json!("1990-02-30"))),
            422,
        ),
        case(
            "cliente: birth date in the future",
            post.clone(),
            r,
            Json(with(cliente(), "fecha_nacimiento", json!("2990-01-01"))),
            422,
        ),
        case("cliente: email as number", post.clone(), r, Json(with(cliente(), "email", json!(5))), 422),
        case("cliente: missing id", post.clone(), r, Json(with(cliente(), "id", Value::Null)), 422),
        case("cliente: body over 64 KiB", post.clone(), r, big(80 * 1024), 413),
        case("cliente: unknown id", get.clone(), "/cliente/nadie-conocido", Body::None, 404),
        case("cliente: id not UTF-8", get.clone(), "/cliente/%FF", Body::None, 400),
    ]);
    // ---- POST /tracking/evento, GET /tracking/eventos/{id}[/resumen]
    let r = "/tracking/evento";
    t.extend([
        case("evento: malformed JSON", post.clone(), r, Raw(b"{\"id_campana\": 1,".to_vec()), 400),
        case("evento: not UTF-8", post.clone(), r, not_utf8("{\"tipo_evento\": "), 400),
        case("evento: empty object", post.clone(), r, Json(json!({})), 422),
        case("evento: id_campana as number", post.clone(), r, Json(with(evento(), "id_campana", json!(5))), 422),
        case("evento: empty tipo", post.clone(), r, Json(with(evento(), "tipo_evento", json!(""))), 422),
        case("evento: datos as array", post.clone(), r, Json(with(evento(), "datos", json!([1, 2]))), 422),
        case(
            "evento: negative valor",
            post.clone(),
            r,
            Json(with(with(evento(), "tipo_evento", json!("conversion")), "valor", json!(-1))),
            422,
        ),
        case(
            "evento: absurd valor",
            post.clone(),
            r,
            Json(with(with(evento(), "tipo_evento", json!("conversion")), "valor", json!(1e300))),
            422,
        ),
        case("evento: unknown campaign", post.clone(), r, Json(evento()), 404),
        case("evento: body over 16 KiB", post.clone(), r, big(20 * 1024), 413),
        case("eventos: unknown campaign", get.clone(), &format!("/tracking/eventos/{UNKNOWN}"), Body::None, 404),
        case("eventos: id not a UUID", get.clone(), "/tracking/eventos/nope", Body::None, 400),
        case(
            "eventos: negative limite",
            get.clone(),
            &format!("/tracking/eventos/{UNKNOWN}?limite=-1"),
            Body::None,
            400,
        ),
        case(
            "resumen: unknown campaign",
            get.clone(),
            &format!("/tracking/eventos/{UNKNOWN}/resumen"),
            Body::None,
            404,
        ),
    ]);
    // ---- The sagas and the operator's actions
    t.extend([
        case("sagas: unknown id", get.clone(), &format!("/sagas/{UNKNOWN}"), Body::None, 404),
        case("sagas: id not a UUID", get.clone(), "/sagas/nope", Body::None, 400),
        case("sagas: id not UTF-8", get.clone(), "/sagas/%C3%28", Body::None, 400),
        case("sagas: negative limite", get.clone(), "/sagas?limite=-1", Body::None, 400),
        case("sagas: unknown estado", get.clone(), "/sagas?estado=dormida", Body::None, 400),
        case("retry: unknown saga", post.clone(), &format!("/sagas/{UNKNOWN}/retry"), Json(json!({"nota": "x"})), 404),
        case("retry: malformed body", post.clone(), &format!("/sagas/{UNKNOWN}/retry"), Raw(b"{nota".to_vec()), 400),
        case("retry: nota as number", post.clone(), &format!("/sagas/{UNKNOWN}/retry"), Json(json!({"nota": 5})), 400),
        case("abort: not a UUID", post.clone(), "/sagas/nope/abort", Json(json!({})), 400),
        case("abort: body over 256 KiB", post.clone(), &format!("/sagas/{UNKNOWN}/abort"), big(300 * 1024), 413),
        case(
            "retry: an unknown field",
            post.clone(),
            &format!("/sagas/{UNKNOWN}/retry"),
            Json(json!({"nota": "x", "forzar": true})),
            400,
        ),
        // ---- Dead letters
        case(
            "redrive: an unknown field",
            post.clone(),
            &format!("/dead-letters/{UNKNOWN}/redrive"),
            Json(json!({"nota": "x", "todo": 1})),
            400,
        ),
        case(
            "redrive: unknown dead letter",
            post.clone(),
            &format!("/dead-letters/{UNKNOWN}/redrive"),
            Json(json!({"nota": "x"})),
            404,
        ),
        case("redrive topic: no topic", post.clone(), "/dead-letters/redrive", Body::None, 400),
        case("dead letters: unknown parameter", get.clone(), "/dead-letters?topico=comandos.marca", Body::None, 400),
        // ---- Fields and parameters a route does not take
        case(
            "campana: an unknown field",
            post.clone(),
            "/afiliaciones/campana",
            Json(with(campana(), "estado", json!("activa"))),
            422,
        ),
        case(
            "campana: an unknown field in marca",
            post.clone(),
            "/afiliaciones/campana",
            Json(with(campana(), "marca.pais", json!("CO"))),
            422,
        ),
        case(
            "campana: an unknown field in an influencer",
            post.clone(),
            "/afiliaciones/campana",
            Json(with(campana(), "influencers.0.id_reserva", json!(UNKNOWN))),
            422,
        ),
        case(
            "pago: an unknown field",
            post.clone(),
            "/pagos/pagar",
            Json(with(pago(), "id_pago", json!(UNKNOWN))),
            422,
        ),
        case(
            "cliente: an unknown field",
            post.clone(),
            "/cliente/registrar",
            Json(with(cliente(), "saldo", json!(100))),
            422,
        ),
        case(
            "evento: an unknown field",
            post.clone(),
            "/tracking/evento",
            Json(with(evento(), "fecha_evento", json!("2025-01-01T00:00:00Z"))),
            422,
        ),
        case("sagas: unknown parameter", get.clone(), "/sagas?estdo=running", Body::None, 400),
        case("campanas: unknown parameter", get.clone(), "/afiliaciones/campanas?limit=5", Body::None, 400),
        case("pagos: unknown parameter", get.clone(), "/pagos?page=2", Body::None, 400),
        case("clientes: unknown parameter", get.clone(), "/clientes?search=ana", Body::None, 400),
        case(
            "eventos: unknown parameter",
            get.clone(),
            &format!("/tracking/eventos/{UNKNOWN}?page=2"),
            Body::None,
            400,
        ),
        // ---- Routes and methods that do not exist
        case("unknown route", get.clone(), "/no/existe", Body::None, 404),
        case("wrong method", Method::DELETE, "/sagas", Body::None, 405),
        case("wrong method on a start route", get.clone(), "/afiliaciones/campana", Body::None, 405),
    ]);
    t
}

async fn send(
    http: &reqwest::Client,
    base: &str,
    method: Method,
    path: &str,
    body: &Body,
) -> (StatusCode, String, String) {
    let mut request = http.request(method, format!("{base}{path}"));
    request = match body {
        Body::None => request,
        Body::Json(v) => request.json(v),
        Body::Raw(bytes) => request.header("content-type", "application/json").body(bytes.clone()),
    };
    let response = request.send().await.unwrap();
    let status = response.status();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_owned()).unwrap_or_default();
    (status, content_type, response.text().await.unwrap())
}

/// The refusal's body: JSON with a non-empty `error`, or why not.
fn clear_message(content_type: &str, text: &str) -> Result<String, String> {
    if !content_type.starts_with("application/json") {
        return Err(format!("content-type {content_type:?}, body {text:?}"));
    }
    let v: Value = serde_json::from_str(text).map_err(|_| format!("not JSON: {text:?}"))?;
    // cliente's documented 404 is `{"message": "No encontrado"}`.
    match v["error"].as_str().or(v["message"].as_str()) {
        Some(m) if !m.trim().is_empty() => Ok(m.to_owned()),
        _ => Err(format!("no message: {v}")),
    }
}

/// Nothing was started or recorded by refused requests.
async fn assert_nothing_started(http: &reqwest::Client, base: &str) {
    let get = |path: &'static str| {
        let (http, base) = (http.clone(), base.to_owned());
        async move {
            let r = http.get(format!("{base}{path}")).send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (_, sagas) = get("/sagas").await;
    assert_eq!(sagas["sagas"], json!([]), "a refused request started a saga");
    let (_, campanas) = get("/afiliaciones/campanas").await;
    assert_eq!(campanas["total"], 0, "a refused request recorded a campaign: {campanas}");
    let (_, pagos) = get("/pagos").await;
    assert_eq!(pagos["total"], 0, "a refused request recorded a payout: {pagos}");
    let (status, _) = get("/cliente/partner-malo").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "a refused registration was recorded");
    let (status, health) = get("/health").await;
    assert_eq!(status, StatusCode::OK, "the server stays up: {health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_request_is_a_4xx_with_a_clear_message_and_starts_nothing() {
    let running = start().await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    let table = table();
    for c in &table {
        let (status, content_type, text) = send(&http, &base, c.method.clone(), &c.path, &c.body).await;
        if status.as_u16() != c.status {
            failures.push(format!("{}: {} {} answered {status}, not {}: {text}", c.what, c.method, c.path, c.status));
        } else if let Err(why) = clear_message(&content_type, &text) {
            failures.push(format!("{}: {} {} ({status}): {why}", c.what, c.method, c.path));
        }
    }
    assert!(failures.is_empty(), "{} of {} rows failed:\n{}", failures.len(), table.len(), failures.join("\n"));
    assert_nothing_started(&http, &base).await;
    running.stop().await;
}

/// A field a route does not take is refused by name, beside the request's other errors, and
/// nothing is recorded: a client cannot choose the campaign's id, its state or its saga, and a
/// misspelt optional field is not dropped without a word.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_fields_are_refused_by_name_and_never_honoured() {
    let running = start().await;
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let chosen = "01900000-0000-7000-8000-00000000abcd";
    let body = with(
        with(with(with(campana(), "id", json!(chosen)), "estado", json!("activa")), "presupuesto", json!(-1)),
        "influencers.0.id_reserva",
        json!(chosen),
    );
    let (status, _, text) = send(&http, &base, Method::POST, "/afiliaciones/campana", &Body::Json(body)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    let mut campos: Vec<&str> =
        answer["errores"].as_array().unwrap().iter().map(|e| e["campo"].as_str().unwrap()).collect();
    campos.sort_unstable();
    assert_eq!(campos, ["estado", "id", "influencers[0].id_reserva", "presupuesto"], "{answer}");
    for e in answer["errores"].as_array().unwrap() {
        if e["campo"] != "presupuesto" {
            assert_eq!(e["error"], daemon::UNKNOWN_FIELD, "{answer}");
        }
    }
    assert_nothing_started(&http, &base).await;
    running.stop().await;
}

/// Arbitrary bytes and arbitrary JSON posted to every body route: never a 2xx or a 5xx, always
/// a JSON error, nothing started, the server up. Time-bounded by its number of cases.
#[test]
fn arbitrary_bodies_are_refused_cleanly() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let running = runtime.block_on(start());
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let routes = [
        "/afiliaciones/campana",
        "/pagos/pagar",
        "/cliente/registrar",
        "/tracking/evento",
        &format!("/sagas/{UNKNOWN}/retry"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,20}".prop_map(Value::from),
    ];
    let arbitrary_json = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("nombre".to_owned()),
                    Just("marca".to_owned()),
                    Just("presupuesto".to_owned()),
                    Just("partner_id".to_owned()),
                    Just("total_amount".to_owned()),
                    Just("id".to_owned()),
                    Just("id_campana".to_owned()),
                    Just("tipo_evento".to_owned()),
                    Just("nota".to_owned()),
                    ".{0,8}"
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::Raw),
        arbitrary_json.prop_map(Body::Json),
    ];
    let config = ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(route in 0..routes.len(), body in body)| {
        let (status, content_type, text) =
            runtime.block_on(send(&http, &base, Method::POST, routes[route], &body));
        prop_assert!(status.is_client_error(), "{} answered {status}: {text}", routes[route]);
        prop_assert!(clear_message(&content_type, &text).is_ok(), "{}: {text}", routes[route]);
    });
    runtime.block_on(assert_nothing_started(&http, &base));
    runtime.block_on(running.stop());
}
