//! The worker daemon of every participant, over a real PostgreSQL (the in-process transport in
//! place of the broker): its `/openapi.json` describes every route it serves, with their error
//! bodies, and every route it describes is served.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use saga_core::log::sql::create_database;
use saga_core::transport::in_process::InProcessTransport;
use serde_json::{json, Value};
use workers::marca::MarcaSeed;
use workers::participants::{self, Options};

/// The routes each worker daemon serves: the common ones, and tracking's event intake.
fn served(participant: &str) -> Vec<(String, String)> {
    let mut routes = vec![("get", "/health"), ("get", "/metrics"), ("get", "/openapi.json")];
    if participant == "cliente" {
        routes.extend([("post", "/cliente/registrar"), ("get", "/cliente/{id}"), ("get", "/clientes")]);
    }
    if participant == "tracking" {
        routes.extend([
            ("post", "/tracking/evento"),
            ("get", "/tracking/eventos/{id_campana}"),
            ("get", "/tracking/eventos/{id_campana}/resumen"),
        ]);
    }
    let mut routes: Vec<_> = routes.into_iter().map(|(m, p)| (m.to_owned(), p.to_owned())).collect();
    routes.sort();
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_daemon_describes_every_route_it_serves_at_openapi_json() {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    let marcas: Vec<MarcaSeed> = serde_json::from_str(workers::marca::MARCAS_POR_DEFECTO).unwrap();
    let options = Options { marcas };
    let http = reqwest::Client::new();
    for participant in participants::ALL {
        let name = participant.name();
        let url = create_database(&admin, &format!("worker_server_test_{name}")).await.unwrap();
        let transport = Arc::new(InProcessTransport::new());
        let running = workers::server::start(
            *participant,
            &url,
            "127.0.0.1:0".parse().unwrap(),
            transport,
            &options,
            &daemon::access::Access::open(),
        )
        .await
        .unwrap();
        let base = format!("http://{}", running.addr);
        let doc: Value = http.get(format!("{base}/openapi.json")).send().await.unwrap().json().await.unwrap();
        assert!(doc["info"]["title"].as_str().unwrap().contains(name), "{}", doc["info"]);
        let mut described: Vec<(String, String)> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
            .collect();
        described.sort();
        assert_eq!(described, served(name), "{name}: the document describes exactly the routes served");
        for (method, path) in described {
            let responses = doc["paths"][&path][&method]["responses"].as_object().unwrap();
            if !matches!(path.as_str(), "/metrics" | "/openapi.json") {
                assert!(
                    responses.keys().any(|c| c.starts_with('4') || c.starts_with('5')),
                    "{name}: {method} {path} describes no error"
                );
            }
            let url = format!(
                "{base}{}",
                path.replace("{id_campana}", &uuid::Uuid::new_v4().to_string())
                    .replace("{id}", &uuid::Uuid::new_v4().to_string())
            );
            let res = match method.as_str() {
                "get" => http.get(url),
                "post" => http.post(url).json(&json!({})),
                other => panic!("unexpected method {other}"),
            }
            .send()
            .await
            .unwrap();
            let status = res.status();
            let body = res.text().await.unwrap();
            // The router's own 404 and 405 have no body; a handler's 404 says what is missing.
            assert_ne!(status, reqwest::StatusCode::METHOD_NOT_ALLOWED, "{name}: {method} {path}");
            assert!(
                status != reqwest::StatusCode::NOT_FOUND || !body.is_empty(),
                "{name}: {method} {path} is not served: {status} {body:?}"
            );
        }
        if name == "tracking" {
            for schema in ["SolicitudEvento", "EventoRegistrado", "Resumen", "Error", "Errores", "Salud"] {
                assert!(doc["components"]["schemas"][schema].is_object(), "{name}: schema {schema} missing");
            }
            let post = &doc["paths"]["/tracking/evento"]["post"]["responses"];
            for code in ["201", "400", "404", "409", "422"] {
                assert!(post[code].is_object(), "POST /tracking/evento lacks {code}");
            }
        }
        running.stop().await;
    }
}

/// Every worker daemon with a token: `/health` and `/metrics` open, every other route (its own
/// and `/openapi.json`) `401` without the token or with a wrong one, and served with it; an
/// unknown route and a wrong method are JSON errors like the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_daemon_requires_its_token_and_answers_errors_in_json() {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    let token = "worker-token-0c1d2e3f";
    let access = daemon::access::Access::bearer(token.into()).unwrap();
    let http = reqwest::Client::new();
    for participant in participants::ALL {
        let name = participant.name();
        let url = create_database(&admin, &format!("worker_access_test_{name}")).await.unwrap();
        let transport = Arc::new(InProcessTransport::new());
        let running = workers::server::start(
            *participant,
            &url,
            "127.0.0.1:0".parse().unwrap(),
            transport,
            &Options::default(),
            &access,
        )
        .await
        .unwrap();
        let base = format!("http://{}", running.addr);
        for path in ["/health", "/metrics"] {
            let res = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(res.status(), 200, "{name}: {path} stays open");
        }
        for (method, path) in served(name).into_iter().filter(|(_, p)| p != "/health" && p != "/metrics") {
            let path = path.replace("{id_campana}", &uuid::Uuid::new_v4().to_string()).replace("{id}", "x");
            let request = |bearer: Option<&str>| {
                let r = match method.as_str() {
                    "get" => http.get(format!("{base}{path}")),
                    _ => http.post(format!("{base}{path}")).json(&json!({})),
                };
                match bearer {
                    Some(t) => r.bearer_auth(t),
                    None => r,
                }
            };
            for bearer in [None, Some("wrong")] {
                let res = request(bearer).send().await.unwrap();
                assert_eq!(res.status(), 401, "{name}: {method} {path} with {bearer:?}");
                assert!(res.headers().contains_key("www-authenticate"));
                let body: Value = res.json().await.unwrap();
                assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {body}");
            }
            let res = request(Some(token)).send().await.unwrap();
            assert_ne!(res.status(), 401, "{name}: {method} {path} with the token");
        }
        for (method, path, status) in [("get", "/no/existe", 404), ("delete", "/health", 405)] {
            let res = http
                .request(method.to_uppercase().parse().unwrap(), format!("{base}{path}"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), status, "{name}: {method} {path}");
            let body: Value = res.json().await.unwrap();
            assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{name}: {body}");
        }
        running.stop().await;
    }
}
