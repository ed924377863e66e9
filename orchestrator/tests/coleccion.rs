//! The request collection (`collections/alpes.postman_collection.json`, Postman v2.1) run against
//! the embedded mode, started here: every request in order, with the conventions its description
//! states (variables, capture, `wait:`), each answer checked against the request's first saved
//! example (status, and the example body's keys with their JSON types). Generic: a request added
//! to the collection is run and checked with nothing to change here.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orchestrator::embedded::{self, MARCAS_POR_DEFECTO};
use serde_json::{json, Value};

const COLECCION: &str = include_str!("../../collections/alpes.postman_collection.json");
/// The JSON schema every Postman v2.1 collection names.
const ESQUEMA_V21: &str = "https://schema.getpostman.com/json/collection/v2.1.0/collection.json";
/// How long a `wait:` request is repeated before the test fails.
const ESPERA: Duration = Duration::from_secs(30);

/// A request of the collection, flattened in run order, with its folder path in `name`.
struct Peticion {
    name: String,
    item: Value,
}

fn peticiones(items: &Value, prefix: &str, out: &mut Vec<Peticion>) {
    for item in items.as_array().expect("`item` is a list") {
        let name = format!("{prefix}{}", item["name"].as_str().expect("every item has a name"));
        if let Some(children) = item.get("item") {
            peticiones(children, &format!("{name} / "), out);
        } else {
            out.push(Peticion { name, item: item.clone() });
        }
    }
}

/// Replaces every `{{name}}` in `text` by its variable; an unknown one is an error naming it.
fn sustituir(text: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let end = rest[start..].find("}}").ok_or_else(|| format!("unclosed {{{{ in {text:?}"))? + start;
        let name = &rest[start + 2..end];
        let value =
            vars.get(name).filter(|v| !v.is_empty()).ok_or_else(|| format!("variable {name:?} has no value"))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn tipo(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Where `answer` does not have the shape of `example`: every key of an example object present
/// with the same JSON type, recursively; an array's first element against the answer's first;
/// an example `null` accepts anything.
fn diferencias(example: &Value, answer: &Value, at: &str, out: &mut Vec<String>) {
    match (example, answer) {
        (Value::Null, _) => {}
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let path = format!("{at}.{key}");
                match a.get(key) {
                    None => out.push(format!("{path} is missing")),
                    Some(av) => diferencias(ev, av, &path, out),
                }
            }
        }
        (Value::Array(e), Value::Array(a)) => match (e.first(), a.first()) {
            (Some(ev), Some(av)) => diferencias(ev, av, &format!("{at}[0]"), out),
            (Some(_), None) => out.push(format!("{at} is empty; the example has an element")),
            (None, _) => {}
        },
        (e, a) if tipo(e) == tipo(a) => {}
        (e, a) => out.push(format!("{at} is {} ({a}), the example's is {}", tipo(a), tipo(e))),
    }
}

/// The value at a dotted path (`estado`, `marca.nombre_marca`, `campanas.0.estado`).
fn en<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| match v {
        Value::Array(a) => a.get(key.parse::<usize>().ok()?),
        _ => v.get(key),
    })
}

/// The `wait: FIELD == VALUE` line of a request's description, if any.
fn espera(request: &Value) -> Option<(String, String)> {
    let description = request["description"].as_str()?;
    let line = description.lines().find_map(|l| l.trim().strip_prefix("wait:"))?;
    let (field, value) = line.split_once("==").expect("a wait line is `wait: FIELD == VALUE`");
    Some((field.trim().to_owned(), value.trim().to_owned()))
}

fn texto(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// Sends a request once: its status and its body (JSON, or `null` when not JSON).
async fn enviar(
    http: &reqwest::Client,
    request: &Value,
    vars: &BTreeMap<String, String>,
) -> Result<(u16, Value), String> {
    let raw = request["url"].get("raw").or(Some(&request["url"])).and_then(Value::as_str).ok_or("no url")?;
    let url = sustituir(raw, vars)?;
    let method = reqwest::Method::from_bytes(request["method"].as_str().ok_or("no method")?.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut req = http.request(method, url);
    for h in request["header"].as_array().into_iter().flatten() {
        if h["disabled"] != json!(true) {
            req = req.header(
                h["key"].as_str().ok_or("header without key")?,
                sustituir(h["value"].as_str().unwrap_or(""), vars)?,
            );
        }
    }
    if let Some(raw) = request["body"]["raw"].as_str() {
        req = req.body(sustituir(raw, vars)?);
    }
    let res = req.send().await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(|e| e.to_string())?;
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::Null)))
}

/// Runs the collection against `base`: `Err` lists every request that did not answer as its
/// example says.
async fn correr(coleccion: &Value, base: &str) -> Result<usize, Vec<String>> {
    let mut vars: BTreeMap<String, String> = coleccion["variable"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["key"].as_str().unwrap().to_owned(), texto(&v["value"])))
        .collect();
    vars.insert("baseUrl".into(), base.to_owned());
    let mut lista = Vec::new();
    peticiones(&coleccion["item"], "", &mut lista);
    let http = reqwest::Client::new();
    let mut fallos = Vec::new();
    for Peticion { name, item } in &lista {
        let request = &item["request"];
        let ejemplo = &item["response"][0];
        let code = ejemplo["code"].as_u64().unwrap_or(0);
        let esperado: Value = match ejemplo["body"].as_str() {
            Some(b) if !b.trim().is_empty() => serde_json::from_str(b).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        let wait = espera(request);
        let deadline = Instant::now() + ESPERA;
        let (status, body) = loop {
            let (status, body) = match enviar(&http, request, &vars).await {
                Ok(answer) => answer,
                Err(e) => {
                    fallos.push(format!("{name}: {e}"));
                    break (0, Value::Null);
                }
            };
            let listo = match &wait {
                None => true,
                Some((field, value)) => {
                    u64::from(status) == code && en(&body, field).is_some_and(|v| texto(v) == *value)
                }
            };
            if listo || Instant::now() > deadline {
                break (status, body);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if status == 0 {
            continue;
        }
        if u64::from(status) != code {
            fallos.push(format!("{name}: status {status}, the example's is {code}: {body}"));
            continue;
        }
        if let Some((field, value)) = &wait {
            if en(&body, field).is_none_or(|v| texto(v) != *value) {
                fallos.push(format!("{name}: {field} is not {value} after {ESPERA:?}: {body}"));
            }
        }
        let mut d = Vec::new();
        diferencias(&esperado, &body, "$", &mut d);
        if !d.is_empty() {
            fallos.push(format!("{name}: {}; the answer: {body}", d.join("; ")));
        }
        if let Value::Object(fields) = &body {
            for (key, value) in vars.iter_mut() {
                if let Some(v) = fields.get(key).filter(|v| v.is_string() || v.is_number()) {
                    *value = texto(v);
                }
            }
        }
    }
    if fallos.is_empty() {
        Ok(lista.len())
    } else {
        Err(fallos)
    }
}

/// What Postman needs to import a v2.1 collection, and what the runner relies on.
fn valida_v21(c: &Value) {
    assert_eq!(c["info"]["schema"], ESQUEMA_V21);
    assert!(c["info"]["name"].is_string() && c["info"]["_postman_id"].is_string());
    let mut lista = Vec::new();
    peticiones(&c["item"], "", &mut lista);
    for Peticion { name, item } in &lista {
        let r = &item["request"];
        assert!(r["method"].is_string(), "{name}: no method");
        let raw = r["url"]["raw"].as_str().unwrap_or_else(|| panic!("{name}: no url.raw"));
        assert!(raw.starts_with("{{baseUrl}}/"), "{name}: the url starts at {{{{baseUrl}}}}");
        if let Some(body) = r.get("body") {
            assert_eq!(body["mode"], "raw", "{name}");
        }
        let responses = item["response"].as_array().unwrap_or_else(|| panic!("{name}: no response list"));
        assert!(!responses.is_empty(), "{name}: no saved example");
        for e in responses {
            assert!(e["code"].is_u64() && e["name"].is_string(), "{name}: an example without code or name");
            let body: Value = serde_json::from_str(e["body"].as_str().unwrap())
                .unwrap_or_else(|err| panic!("{name}: the example's body is not JSON: {err}"));
            assert!(body.is_object() || body.is_array(), "{name}");
        }
    }
}

#[test]
fn the_runner_finds_what_differs_from_an_example() {
    let example = json!({ "id": "x", "n": 1, "marca": { "nombre_marca": "Nike" }, "l": [{ "a": true }], "o": null });
    let mut d = Vec::new();
    diferencias(
        &example,
        &json!({ "id": "y", "n": 2.5, "marca": { "nombre_marca": "A" }, "l": [{ "a": false }], "o": "any", "extra": 1 }),
        "$",
        &mut d,
    );
    assert!(d.is_empty(), "{d:?}");
    diferencias(&example, &json!({ "id": 3, "marca": {}, "l": [{ "a": "si" }], "o": 4 }), "$", &mut d);
    assert_eq!(
        d,
        [
            "$.id is number (3), the example's is string",
            "$.l[0].a is string (\"si\"), the example's is boolean",
            "$.marca.nombre_marca is missing",
            "$.n is missing"
        ]
    );
    d.clear();
    diferencias(&json!([{ "a": 1 }]), &json!([]), "$", &mut d);
    assert_eq!(d, ["$ is empty; the example has an element"]);
    let vars = BTreeMap::from([("baseUrl".to_owned(), "http://h".to_owned()), ("id".to_owned(), String::new())]);
    assert_eq!(sustituir("{{baseUrl}}/a", &vars).unwrap(), "http://h/a");
    assert!(sustituir("{{baseUrl}}/{{id}}", &vars).unwrap_err().contains("\"id\""));
    assert_eq!(en(&json!({ "a": [{ "b": 2 }] }), "a.0.b"), Some(&json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_the_collection_answers_as_its_example() {
    let coleccion: Value = serde_json::from_str(COLECCION).expect("the collection is JSON");
    valida_v21(&coleccion);
    let dir = std::env::temp_dir().join(format!("alpes-coleccion-{}", uuid::Uuid::new_v4().simple()));
    let config = embedded::Config {
        data_dir: dir,
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
        access: Default::default(),
    };
    let running = embedded::start(config, None).await.unwrap();
    let result = correr(&coleccion, &format!("http://{}", running.addr)).await;
    running.stop().await;
    match result {
        // The documented routes at least: CrearCampaña, its queries, tracking, the errors.
        Ok(n) => assert!(n >= 10, "only {n} requests ran"),
        Err(fallos) => panic!("{} request(s) did not answer as their example:\n{}", fallos.len(), fallos.join("\n")),
    }
}
