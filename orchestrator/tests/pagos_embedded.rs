//! The payout saga in the embedded mode, over HTTP: the orchestrator and every participant in one
//! process with their own SQLite files, exactly as `cargo run` starts them, beside CrearCampaña.
//! A client registered and paid; each refusal of the provider compensating in reverse; an
//! unregistered partner refused before any saga; one payout per cycle; the request's errors;
//! a restart keeping payouts and clients.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;

use std::time::Duration;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(dir: &std::path::Path) -> Running {
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: orchestrator::sagas::StepSettings {
            retry: saga_core::definition::RetryPolicy {
                initial_backoff: Duration::from_millis(20),
                ..Default::default()
            },
            ..Default::default()
        },
        faults: saga_core::inject::FaultPlan::none(),
        access: Default::default(),
    };
    embedded::start(config, None).await.unwrap()
}

fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("alpes-pagos-{}", uuid::Uuid::new_v4().simple()))
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(running: &Running) -> Self {
        Self { base: format!("http://{}", running.addr), http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let res = self.http.post(format!("{}{path}", self.base)).json(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn cliente(&self) -> String {
        let (id, body) = casos::cliente();
        let (status, c) = self.post("/cliente/registrar", &body).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        id
    }

    async fn pagar(&self, body: &Value) -> Value {
        let (status, accepted) = self.post("/pagos/pagar", body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
        accepted
    }

    async fn settled(&self, id: &str) -> Value {
        for _ in 0..400 {
            let (status, p) = self.get(&format!("/pagos/{id}")).await;
            assert_eq!(status, StatusCode::OK, "{p}");
            if p["estado"] != "PENDIENTE" {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("payout {id} still pending");
    }

    async fn commands(&self, saga: &str) -> Vec<(String, String)> {
        let (_, s) = self.get(&format!("/sagas/{saga}")).await;
        casos::comandos(&s)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_partner_is_paid_and_the_client_counts_it() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let partner = api.cliente().await;
    let (_, antes) = api.get(&format!("/cliente/{partner}")).await;
    assert_eq!((antes["total_pagos"].clone(), antes["ultimo_pago"].clone()), (json!(0), Value::Null), "{antes}");

    let accepted = api.pagar(&casos::pago(&partner)).await;
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["existente"], false);
    let p = api.settled(&id).await;
    assert_eq!(p["estado"], "COMPLETADO", "{p}");
    assert_eq!(p["monto_total"]["valor"], json!(1500.5));
    assert_eq!(p["monto_total"]["moneda"], "USD");
    assert_eq!(p["transacciones"][0]["tipo"], "COMISION");
    assert_eq!(p["transacciones"][0]["monto"]["valor"], json!(150.05));
    assert!(p["proveedor"]["id_confirmacion"].as_str().unwrap().starts_with("PRV-"), "{p}");
    assert!(casos::pasos_pago_completo(&api.commands(p["saga_id"].as_str().unwrap()).await));
    let (_, despues) = api.get(&format!("/cliente/{partner}")).await;
    assert_eq!(despues["total_pagos"], 1, "{despues}");
    assert!(despues["ultimo_pago"].is_string(), "{despues}");

    // The list shows it, with the total counted in SQL.
    let (_, lista) = api.get(&format!("/pagos?partner_id={partner}")).await;
    assert_eq!(lista["total"], 1, "{lista}");
    assert_eq!(lista["pagos"][0]["id"], json!(id));
    let (_, completados) = api.get("/pagos?estado=COMPLETADO").await;
    assert_eq!(completados["total"], 1);
    let (status, _) = api.get("/pagos?estado=pagado").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_refusal_compensates_the_credit_then_the_payout() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let partner = api.cliente().await;
    for casos::Fallo { solicitud, paso, codigo, compensaciones } in casos::fallos_pago(|| casos::pago(&partner)) {
        let accepted = api.pagar(&solicitud).await;
        let p = api.settled(accepted["id"].as_str().unwrap()).await;
        assert_eq!(p["estado"], "FALLIDO", "{p}");
        assert_eq!((p["paso_fallido"].as_str(), p["codigo"].as_str()), (Some(paso), Some(codigo)), "{p}");
        let undone: Vec<_> = api
            .commands(p["saga_id"].as_str().unwrap())
            .await
            .into_iter()
            .filter(|(_, k)| k == "compensation")
            .collect();
        assert_eq!(undone, compensaciones, "{codigo}");
        assert!(p["auditoria"].as_array().unwrap().iter().any(|e| e["evento"] == "compensated"), "{p}");
    }
    let (_, c) = api.get(&format!("/cliente/{partner}")).await;
    assert_eq!(c["total_pagos"], 0, "every credit reverted: {c}");

    // A failed payout paid nothing: the same cycle, asked again with a card that works, is a
    // new payout, and it completes.
    let mut rechazado = casos::pago(&partner);
    rechazado["payment_method_mask"] = json!("****0002");
    let fallido = api.pagar(&rechazado).await;
    assert_eq!(api.settled(fallido["id"].as_str().unwrap()).await["estado"], "FALLIDO");
    rechazado["payment_method_mask"] = json!("****1234");
    let nuevo = api.pagar(&rechazado).await;
    assert_ne!(nuevo["id"], fallido["id"]);
    assert_eq!(nuevo["existente"], false);
    assert_eq!(api.settled(nuevo["id"].as_str().unwrap()).await["estado"], "COMPLETADO");
    let (_, c) = api.get(&format!("/cliente/{partner}")).await;
    assert_eq!(c["total_pagos"], 1, "{c}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payout_requests_get_a_4xx_and_start_nothing() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let partner = api.cliente().await;

    let (status, e) = api.post("/pagos/pagar", &casos::pago("nadie")).await;
    assert_eq!((status, e), (StatusCode::BAD_REQUEST, json!({ "error": "Partner no encontrado" })));
    let res = api.http.post(format!("{}/pagos/pagar", api.base)).body("{no es json").send().await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let (status, e) =
        api.post("/pagos/pagar", &json!({ "partner_id": partner, "total_amount": -5, "currency": "XYZ" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let campos: Vec<&str> = e["errores"].as_array().unwrap().iter().map(|f| f["campo"].as_str().unwrap()).collect();
    assert_eq!(campos, ["cycle_id", "currency", "payment_method_type", "payment_method_mask"], "{e}");
    let (status, e) = api.get("/pagos/payout-no-es-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, e) = api.get(&format!("/pagos/payout-{}", uuid::Uuid::new_v4())).await;
    assert_eq!((status, e), (StatusCode::NOT_FOUND, json!({ "message": "No encontrado" })));
    let (_, sagas) = api.get("/sagas").await;
    assert_eq!(sagas["sagas"], json!([]), "{sagas}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cycle_one_payout_and_a_restart_keeps_it() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let partner = api.cliente().await;
    let body = casos::pago(&partner);
    let first = api.pagar(&body).await;
    let again = api.pagar(&body).await;
    assert_eq!((&again["id"], &again["existente"]), (&first["id"], &json!(true)), "{again}");
    let mut other = body.clone();
    other["payment_method_type"] = json!("PAYPAL");
    let (status, e) = api.post("/pagos/pagar", &other).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    let id = first["id"].as_str().unwrap().to_owned();
    api.settled(&id).await;
    running.stop().await;

    let running = start(&dir).await;
    let api = Api::new(&running);
    let p = api.settled(&id).await;
    assert_eq!(p["estado"], "COMPLETADO");
    let again = api.pagar(&body).await;
    assert_eq!((&again["id"], &again["existente"]), (&first["id"], &json!(true)), "after a restart: {again}");
    let (_, c) = api.get(&format!("/cliente/{partner}")).await;
    assert_eq!(c["total_pagos"], 1, "{c}");
    let (_, sagas) = api.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1);
    running.stop().await;
}
