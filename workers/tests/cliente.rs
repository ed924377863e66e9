//! The cliente service on a real PostgreSQL and on SQLite: its HTTP routes called in-process
//! (registration, look-up, every error and its body, concurrent registrations of one email, a
//! database down), and its commands through saga-core's participant module (a payment moves the
//! client's totals, its compensation recomputes them, an unknown partner is refused).

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use common::{code, payout_command, pg_participant, sqlite_participant, Db};
use saga_core::participant::CommandHandler;
use saga_core::transport::{Command, Outcome};
use saga_core::{SagaId, StepKind};
use schemas::{Moneda, Monto, PagoClienteRegistrado, RegistrarPagoCliente, RevertirPagoCliente};
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;
use workers::cliente::{self, Clientes, Comandos, PgClientes, SqliteClientes, PAGO_DUPLICADO, PARTNER_NO_ENCONTRADO};

struct World {
    db: Db,
    participant: Arc<dyn CommandHandler>,
    clientes: Arc<dyn Clientes>,
    router: Router,
}

async fn postgres() -> World {
    let (db, participant) = pg_participant(&cliente::PG_MIGRATOR, Comandos).await;
    let Db::Pg(pool) = &db else { unreachable!() };
    let clientes: Arc<dyn Clientes> = Arc::new(PgClientes { pool: pool.clone() });
    World { router: cliente::router(clientes.clone()), db, participant, clientes }
}

async fn sqlite() -> World {
    let (db, participant) = sqlite_participant(&cliente::SQLITE_MIGRATOR, Comandos).await;
    let Db::Lite(pool) = &db else { unreachable!() };
    let clientes: Arc<dyn Clientes> = Arc::new(SqliteClientes { pool: pool.clone() });
    World { router: cliente::router(clientes.clone()), db, participant, clientes }
}

struct Answer {
    status: StatusCode,
    retry_after: Option<String>,
    body: Value,
}

fn ana(id: &str) -> Value {
    json!({ "id": id, "nombre": "Ana García", "email": "ana@example.com", "cedula": "1020304050",
            "fecha_nacimiento": "1990-05-17" })
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object().unwrap().keys().map(String::as_str).collect()
}

impl World {
    async fn call(&self, method: &str, uri: &str, body: Body) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(format!("{bytes:?}")));
        Answer { status, retry_after, body }
    }

    async fn registrar(&self, body: &Value) -> Answer {
        self.call("POST", "/cliente/registrar", Body::from(body.to_string())).await
    }

    async fn consultar(&self, id: &str) -> Answer {
        self.call("GET", &format!("/cliente/{id}"), Body::empty()).await
    }

    fn pago(&self, saga: SagaId, attempt: u32, id_partner: &str, id_pago: Uuid) -> Command {
        let r = RegistrarPagoCliente {
            id_partner: id_partner.into(),
            id_pago,
            monto: Monto { valor_menor: 150_050, moneda: Moneda::Usd },
        };
        let body = serde_json::to_value(r).unwrap();
        payout_command(
            "registrar_pago_cliente",
            "comandos.cliente",
            StepKind::Action,
            attempt,
            saga,
            "RegistrarPagoCliente",
            body,
        )
    }

    fn revertir(&self, saga: SagaId, id_partner: &str, id_pago: Uuid) -> Command {
        let body = serde_json::to_value(RevertirPagoCliente { id_partner: id_partner.into(), id_pago }).unwrap();
        payout_command(
            "registrar_pago_cliente",
            "comandos.cliente",
            StepKind::Compensation,
            1,
            saga,
            "RevertirPagoCliente",
            body,
        )
    }

    async fn send(&self, command: &Command) -> Outcome {
        self.participant.handle(command).await.unwrap().reply.outcome
    }

    /// The client's `(total_pagos, ultimo_pago)` as `GET /cliente/{id}` shows them.
    async fn totales(&self, id: &str) -> (i64, Value) {
        let a = self.consultar(id).await;
        assert_eq!(a.status, StatusCode::OK);
        (a.body["total_pagos"].as_i64().unwrap(), a.body["ultimo_pago"].clone())
    }
}

fn registrado(outcome: Outcome) -> PagoClienteRegistrado {
    match outcome {
        Outcome::Success { output } => serde_json::from_value(output).unwrap(),
        other => panic!("expected the payment recorded, got {other:?}"),
    }
}

fn rfc3339(v: &Value) -> DateTime<Utc> {
    let s = v.as_str().unwrap();
    assert!(s.ends_with('Z'), "a UTC time: {s}");
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn registers_a_client_and_shows_it(w: World) {
    let before = Utc::now();
    let mut body = ana("partner-1");
    body["email"] = json!("  Ana@Example.COM ");
    body["cedula"] = json!(1_020_304_050_u64);
    let mut extra = body.clone();
    extra["campo_desconocido"] = json!("x");
    let refused = w.registrar(&extra).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", refused.body);
    assert_eq!(refused.body["errores"][0]["campo"], "campo_desconocido", "{:?}", refused.body);
    let a = w.registrar(&body).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(
        keys(&a.body),
        BTreeSet::from([
            "id",
            "nombre",
            "email",
            "cedula",
            "fecha_nacimiento",
            "fecha_registro",
            "total_pagos",
            "ultimo_pago"
        ])
    );
    assert_eq!(a.body["id"], "partner-1");
    assert_eq!(a.body["nombre"], "Ana García");
    assert_eq!(a.body["email"], "ana@example.com", "trimmed, lower case");
    assert_eq!(a.body["cedula"], "1020304050", "an integer cédula is kept as its digits");
    assert_eq!(a.body["fecha_nacimiento"], "1990-05-17");
    assert_eq!(a.body["total_pagos"], 0);
    assert_eq!(a.body["ultimo_pago"], Value::Null);
    let registro = rfc3339(&a.body["fecha_registro"]);
    assert!(registro >= before - chrono::TimeDelta::seconds(1) && registro <= Utc::now());

    let g = w.consultar("partner-1").await;
    assert_eq!(g.status, StatusCode::OK);
    assert_eq!(
        keys(&g.body),
        BTreeSet::from(["id", "nombre", "email", "fecha_registro", "total_pagos", "ultimo_pago"])
    );
    assert_eq!(g.body["email"], "ana@example.com");
    assert_eq!(g.body["fecha_registro"], a.body["fecha_registro"], "the time answered is the time stored");
    assert_eq!(g.body["ultimo_pago"], Value::Null);
    // The repository the orchestrator may use in-process sees the same client.
    let c = w.clientes.buscar("partner-1").await.unwrap().unwrap();
    assert_eq!((c.email.as_str(), c.cedula.as_str(), c.total_pagos), ("ana@example.com", "1020304050", 0));
    assert!(w.clientes.buscar("nadie").await.unwrap().is_none());
}

async fn an_email_already_registered_is_refused(w: World) {
    assert_eq!(w.registrar(&ana("partner-1")).await.status, StatusCode::CREATED);
    let mut otro = ana("partner-2");
    otro["email"] = json!("ANA@example.com");
    let a = w.registrar(&otro).await;
    assert_eq!((a.status, a.body), (StatusCode::BAD_REQUEST, json!({ "error": "Email ya existe en el sistema" })));
    assert_eq!(w.consultar("partner-2").await.status, StatusCode::NOT_FOUND);
}

async fn an_unknown_client_is_not_found(w: World) {
    for id in ["nadie", "no%20valido", &"x".repeat(65)] {
        let a = w.consultar(id).await;
        assert_eq!((a.status, a.body), (StatusCode::NOT_FOUND, json!({ "message": "No encontrado" })), "{id}");
    }
}

async fn every_bad_field_is_named_at_once(w: World) {
    let body = json!({ "nombre": "Ana", "email": "ana@", "cedula": "12a45", "fecha_nacimiento": "1990-02-30" });
    let a = w.registrar(&body).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", a.body);
    assert!(a.body["error"].is_string());
    let errores = a.body["errores"].as_array().unwrap();
    let campos: BTreeSet<&str> = errores.iter().map(|e| e["campo"].as_str().unwrap()).collect();
    assert_eq!(campos, BTreeSet::from(["id", "email", "cedula", "fecha_nacimiento"]));
    assert!(errores.iter().all(|e| e["mensaje"].as_str().is_some_and(|m| !m.is_empty())), "{errores:?}");

    let manana = (Utc::now().date_naive() + chrono::Days::new(1)).format("%Y-%m-%d").to_string();
    let bad = [
        ("nombre", json!(5)),
        ("nombre", json!("   ")),
        ("nombre", json!("n".repeat(201))),
        ("email", json!("ana garcia@example.com")),
        ("email", json!("ana@example")),
        ("email", json!(null)),
        ("cedula", json!(1234)),
        ("cedula", json!(-12345)),
        ("cedula", json!(true)),
        ("fecha_nacimiento", json!(manana)),
        ("fecha_nacimiento", json!("17/05/1990")),
        ("fecha_nacimiento", json!("1990-5-17")),
        ("id", json!("a b")),
    ];
    for (campo, valor) in bad {
        let mut body = ana("partner-1");
        body[campo] = valor.clone();
        let a = w.registrar(&body).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{campo} = {valor}");
        let campos: Vec<&str> =
            a.body["errores"].as_array().unwrap().iter().map(|e| e["campo"].as_str().unwrap()).collect();
        assert_eq!(campos, vec![campo], "{campo} = {valor}");
    }
    assert_eq!(w.consultar("partner-1").await.status, StatusCode::NOT_FOUND, "nothing was registered");
    let mut hoy = ana("partner-1");
    hoy["fecha_nacimiento"] = json!(Utc::now().date_naive().format("%Y-%m-%d").to_string());
    assert_eq!(w.registrar(&hoy).await.status, StatusCode::CREATED, "born today is not in the future");
}

async fn malformed_and_oversized_bodies_are_refused(w: World) {
    let a = w.call("POST", "/cliente/registrar", Body::from("{\"id\": ")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].is_string(), "{:?}", a.body);
    let a = w.call("POST", "/cliente/registrar", Body::from("[1, 2]")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body["error"].is_string(), "{:?}", a.body);
    let mut big = ana("partner-1");
    big["relleno"] = json!("x".repeat(cliente::api::MAX_CUERPO));
    let a = w.registrar(&big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.body["error"].is_string(), "{:?}", a.body);
    // Padded with JSON whitespace to exactly the limit: a body of 64 KiB is taken.
    let mut just_under = ana("partner-1").to_string();
    just_under.push_str(&" ".repeat(cliente::api::MAX_CUERPO - just_under.len()));
    assert_eq!(just_under.len(), cliente::api::MAX_CUERPO);
    let a = w.call("POST", "/cliente/registrar", Body::from(just_under)).await;
    assert_eq!(a.status, StatusCode::CREATED, "64 KiB exactly is taken: {:?}", a.body);
}

async fn the_same_id_again_is_a_retry_or_a_conflict(w: World) {
    let first = w.registrar(&ana("partner-1")).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let mut same = ana("partner-1");
    same["email"] = json!("ANA@EXAMPLE.COM"); // the same address, typed otherwise
    let retry = w.registrar(&same).await;
    assert_eq!(retry.status, StatusCode::OK, "{:?}", retry.body);
    assert_eq!(retry.body, first.body, "the existing client, as registered");
    for (campo, valor) in [("nombre", json!("Otra")), ("cedula", json!("99999")), ("email", json!("otra@example.com"))]
    {
        let mut other = ana("partner-1");
        other[campo] = valor;
        let a = w.registrar(&other).await;
        assert_eq!((a.status, a.body), (StatusCode::CONFLICT, json!({ "error": "Cliente ya existe" })), "{campo}");
    }
}

async fn concurrent_registrations_of_one_email_register_one(w: World) {
    let w = Arc::new(w);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move { w.registrar(&ana(&format!("partner-{i}"))).await }));
    }
    let mut created = 0;
    for task in tasks {
        let a = task.await.unwrap();
        match a.status {
            StatusCode::CREATED => created += 1,
            _ => assert_eq!(
                (a.status, a.body),
                (StatusCode::BAD_REQUEST, json!({ "error": "Email ya existe en el sistema" }))
            ),
        }
    }
    assert_eq!(created, 1);
    let n: i64 = match &w.db {
        Db::Pg(p) => sqlx::query_scalar("SELECT COUNT(*) FROM cliente").fetch_one(p).await.unwrap(),
        Db::Lite(p) => sqlx::query_scalar("SELECT COUNT(*) FROM cliente").fetch_one(p).await.unwrap(),
    };
    assert_eq!(n, 1);
}

async fn payments_move_the_totals_and_reverting_recomputes_them(w: World) {
    assert_eq!(w.registrar(&ana("partner-1")).await.status, StatusCode::CREATED);
    let (s1, p1) = (SagaId::new(), Uuid::now_v7());
    let r1 = registrado(w.send(&w.pago(s1, 1, "partner-1", p1)).await);
    assert_eq!((r1.id_partner.as_str(), r1.total_pagos), ("partner-1", 1));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let (s2, p2) = (SagaId::new(), Uuid::now_v7());
    let r2 = registrado(w.send(&w.pago(s2, 1, "partner-1", p2)).await);
    assert_eq!(r2.total_pagos, 2);
    assert!(r2.ultimo_pago > r1.ultimo_pago);
    let (total, ultimo) = w.totales("partner-1").await;
    assert_eq!((total, rfc3339(&ultimo)), (2, r2.ultimo_pago), "the reply's time is the stored one");
    // A retried attempt of the same step counts nothing more.
    assert_eq!(registrado(w.send(&w.pago(s2, 2, "partner-1", p2)).await), r2);
    assert_eq!(w.totales("partner-1").await.0, 2);
    // Undo the latest payment: the one before is the last again.
    w.send(&w.revertir(s2, "partner-1", p2)).await;
    let (total, ultimo) = w.totales("partner-1").await;
    assert_eq!((total, rfc3339(&ultimo)), (1, r1.ultimo_pago));
    // Undo the first: none left.
    w.send(&w.revertir(s1, "partner-1", p1)).await;
    assert_eq!(w.totales("partner-1").await, (0, Value::Null));

    // Undoing an older payment keeps the latest one's time.
    let (s3, p3) = (SagaId::new(), Uuid::now_v7());
    let r3 = registrado(w.send(&w.pago(s3, 1, "partner-1", p3)).await);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let r4 = registrado(w.send(&w.pago(SagaId::new(), 1, "partner-1", Uuid::now_v7())).await);
    assert!(r4.ultimo_pago > r3.ultimo_pago);
    w.send(&w.revertir(s3, "partner-1", p3)).await;
    let (total, ultimo) = w.totales("partner-1").await;
    assert_eq!((total, rfc3339(&ultimo)), (1, r4.ultimo_pago));
    // Another saga with a payout id already recorded.
    let again = w.send(&w.pago(SagaId::new(), 1, "partner-1", p3)).await;
    assert!(matches!(again, Outcome::Success { .. }), "p3 was reverted, so it can be recorded again: {again:?}");
    assert_eq!(code(&w.send(&w.pago(SagaId::new(), 1, "partner-1", p3)).await), PAGO_DUPLICADO);
    assert_eq!(w.totales("partner-1").await.0, 2);
}

async fn an_unknown_partner_is_refused(w: World) {
    let outcome = w.send(&w.pago(SagaId::new(), 1, "nadie", Uuid::now_v7())).await;
    assert_eq!(code(&outcome), PARTNER_NO_ENCONTRADO);
}

async fn a_database_down_is_503_with_retry_after(w: World) {
    assert_eq!(w.registrar(&ana("partner-1")).await.status, StatusCode::CREATED);
    match &w.db {
        Db::Pg(p) => p.close().await,
        Db::Lite(p) => p.close().await,
    }
    for a in [w.registrar(&ana("partner-2")).await, w.consultar("partner-1").await] {
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.body["error"].is_string(), "{:?}", a.body);
        assert_eq!(a.retry_after.as_deref(), Some("5"));
    }
}

#[test]
fn the_openapi_document_describes_both_routes_and_their_errors() {
    let doc = serde_json::to_value(cliente::openapi()).unwrap();
    let registrar = &doc["paths"]["/cliente/registrar"]["post"]["responses"];
    let codes: BTreeSet<&str> = registrar.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(codes, BTreeSet::from(["200", "201", "400", "409", "413", "422", "503"]));
    let consultar = &doc["paths"]["/cliente/{id}"]["get"]["responses"];
    let codes: BTreeSet<&str> = consultar.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(codes, BTreeSet::from(["200", "404", "503"]));
    for schema in ["Cliente", "ClienteConsultado", "ErroresRegistro", "NoEncontrado", "SolicitudRegistro"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
}

macro_rules! suite {
    ($db:ident) => {
        mod $db {
            use super::*;

            #[tokio::test]
            async fn registers_a_client_and_shows_it() {
                super::registers_a_client_and_shows_it($db().await).await
            }
            #[tokio::test]
            async fn an_email_already_registered_is_refused() {
                super::an_email_already_registered_is_refused($db().await).await
            }
            #[tokio::test]
            async fn an_unknown_client_is_not_found() {
                super::an_unknown_client_is_not_found($db().await).await
            }
            #[tokio::test]
            async fn every_bad_field_is_named_at_once() {
                super::every_bad_field_is_named_at_once($db().await).await
            }
            #[tokio::test]
            async fn malformed_and_oversized_bodies_are_refused() {
                super::malformed_and_oversized_bodies_are_refused($db().await).await
            }
            #[tokio::test]
            async fn the_same_id_again_is_a_retry_or_a_conflict() {
                super::the_same_id_again_is_a_retry_or_a_conflict($db().await).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_registrations_of_one_email_register_one() {
                super::concurrent_registrations_of_one_email_register_one($db().await).await
            }
            #[tokio::test]
            async fn payments_move_the_totals_and_reverting_recomputes_them() {
                super::payments_move_the_totals_and_reverting_recomputes_them($db().await).await
            }
            #[tokio::test]
            async fn an_unknown_partner_is_refused() {
                super::an_unknown_partner_is_refused($db().await).await
            }
            #[tokio::test]
            async fn a_database_down_is_503_with_retry_after() {
                super::a_database_down_is_503_with_retry_after($db().await).await
            }
        }
    };
}

suite!(postgres);
suite!(sqlite);
