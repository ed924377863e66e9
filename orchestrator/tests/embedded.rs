//! CrearCampaña end to end in the embedded mode, over HTTP: the orchestrator and the three
//! participants in one process with their own SQLite files, exactly as `cargo run` starts them.
//! A campaign that completes; each business failure compensating exactly the steps done, in
//! reverse order; Idempotency-Key; every validation error; a restart keeping everything.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod casos;

use std::time::Duration;

use casos::pair;

use orchestrator::embedded::{self, Running, MARCAS_POR_DEFECTO};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn start(dir: &std::path::Path) -> Running {
    let config = embedded::Config {
        data_dir: dir.to_owned(),
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
        access: Default::default(),
    };
    embedded::start(config, None).await.unwrap()
}

fn data_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("alpes-embedded-{}", uuid::Uuid::new_v4().simple()))
}

/// The public API's documented example request.
fn ejemplo() -> Value {
    json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
      "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59",
      "presupuesto": 15000, "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
      "influencers": [ { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                       { "nombre": "Carlos López", "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] })
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(running: &Running) -> Self {
        Self { base: format!("http://{}", running.addr), http: reqwest::Client::new() }
    }

    async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: Vec<u8>) -> (StatusCode, Value) {
        let res = self.http.post(format!("{}{path}", self.base)).body(body).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let res = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        (res.status(), res.json().await.unwrap_or(Value::Null))
    }

    /// Polls a campaign until it leaves `pendiente`.
    async fn settled(&self, id: &str) -> Value {
        for _ in 0..200 {
            let (status, c) = self.get(&format!("/afiliaciones/campana/{id}")).await;
            assert_eq!(status, StatusCode::OK);
            if c["estado"] != "pendiente" {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("campaign {id} still pending after 10 s");
    }

    /// The (step, kind) of every command the saga sent, in order, without retries.
    async fn commands(&self, saga: &str) -> Vec<(String, String)> {
        let (status, s) = self.get(&format!("/sagas/{saga}")).await;
        assert_eq!(status, StatusCode::OK);
        casos::comandos(&s)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_completes_in_all_three_services() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (status, accepted) = api.post("/afiliaciones/campana", &ejemplo(), None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(accepted["estado"], "pendiente");
    let c = api.settled(accepted["id_campana"].as_str().unwrap()).await;
    assert_eq!(c["estado"], "activa", "{c}");
    assert_eq!(c["resultado"]["reservar_presupuesto"]["monto_centavos"], 1_500_000);
    assert_eq!(c["resultado"]["reservar_influencers"]["reservas"].as_array().unwrap().len(), 2);
    assert_eq!(c["resultado"]["abrir_tracking"]["enlaces"].as_array().unwrap().len(), 2);
    // The documented shape: the request's fields as it gave them, the id, state and creation time.
    let request = ejemplo();
    for field in ["nombre", "descripcion", "tipo", "fecha_inicio", "fecha_fin", "presupuesto", "marca"] {
        assert_eq!(c[field], request[field], "{field}: {c}");
    }
    assert_eq!(c["presupuesto"].to_string(), "15000", "a JSON number in currency units");
    assert_eq!(c["id"], accepted["id_campana"]);
    assert_eq!(c["id_campana"], accepted["id_campana"]);
    assert!(c["fecha_creacion"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok(), "{c}");
    for (n, i) in request["influencers"].as_array().unwrap().iter().enumerate() {
        let answered = &c["influencers"][n];
        for field in ["nombre", "plataforma", "seguidores", "categoria"] {
            assert_eq!(answered[field], i[field], "influencers[{n}].{field}");
        }
        // What the saga learned: the booking and the tracking link of this influencer.
        let enlace = &c["resultado"]["abrir_tracking"]["enlaces"][n];
        assert_eq!(answered["codigo_tracking"], enlace["codigo"]);
        assert_eq!(answered["url_tracking"], enlace["url"]);
        assert_eq!(answered["id_reserva"], c["resultado"]["reservar_influencers"]["reservas"][n]["id_reserva"]);
    }
    let (_, list) = api.get("/afiliaciones/campanas").await;
    assert_eq!(list["campanas"][0], c);
    assert_eq!(list["total"], 1);
    let saga = accepted["saga_id"].as_str().unwrap();
    assert_eq!(
        api.commands(saga).await,
        vec![
            pair("reservar_presupuesto", "action"),
            pair("reservar_influencers", "action"),
            pair("abrir_tracking", "action")
        ]
    );
    let (_, s) = api.get(&format!("/sagas/{saga}")).await;
    assert_eq!(s["saga"]["status"], "completed");

    // The fat CampanaCreada event is in the outbox and gets published.
    let evento = published(&running, saga).await;
    assert_eq!(evento.message_type, "CampanaCreada");
    let schemas::Evento::CampanaCreada(creada) = evento.evento else { panic!("expected CampanaCreada") };
    assert_eq!(creada.id_campana.to_string(), accepted["id_campana"].as_str().unwrap());
    assert_eq!(creada.marca.nombre_marca, "Nike");
    assert_eq!(creada.presupuesto_centavos, schemas::Centavos(1_500_000));
    assert_eq!(creada.influencers.len(), 2);
    assert_eq!(creada.influencers[1].nombre, "Carlos López");
    assert!(!creada.influencers[0].codigo_tracking.is_empty());
    schemas::encode(&schemas::EventoCampana {
        id_evento: uuid::Uuid::new_v4(),
        saga_id: uuid::Uuid::new_v4(),
        message_type: "CampanaCreada".into(),
        evento: schemas::Evento::CampanaCreada(creada),
    })
    .expect("the event is valid Avro of schemas/v1");
    running.stop().await;
}

/// Waits for the relay to publish the saga's event, and returns it.
async fn published(running: &Running, saga: &str) -> schemas::EventoCampana {
    use orchestrator::sagas::crear_campana::vista::{SqliteVista, Vista};
    let id = saga_core::SagaId(saga.parse().unwrap());
    let url = format!("sqlite://{}", running.data_dir.join("orquestador.sqlite").display());
    let vista = SqliteVista::new(saga_core::log::sql::sqlite_pool(&url).await.unwrap()).await.unwrap();
    for _ in 0..100 {
        if let Some((evento, Some(_))) = vista.evento_de(id).await.unwrap() {
            return evento;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no published event for saga {saga}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_business_failure_compensates_exactly_the_steps_done_in_reverse() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    for casos::Fallo { solicitud: body, paso: step, codigo: code, compensaciones: compensations } in
        casos::fallos(ejemplo)
    {
        let (status, accepted) = api.post("/afiliaciones/campana", &body, None).await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let c = api.settled(accepted["id_campana"].as_str().unwrap()).await;
        assert_eq!(c["estado"], "rechazada", "{c}");
        assert_eq!(c["codigo"], code);
        assert_eq!(c["paso_fallido"], step);
        let sent = api.commands(accepted["saga_id"].as_str().unwrap()).await;
        let sent_compensations: Vec<_> = sent.into_iter().filter(|(_, k)| k == "compensation").collect();
        assert_eq!(sent_compensations, compensations, "failure at {step}");
        let evento = published(&running, accepted["saga_id"].as_str().unwrap()).await;
        let schemas::Evento::CampanaRechazada(rechazada) = evento.evento else { panic!("expected CampanaRechazada") };
        assert_eq!((rechazada.paso_fallido.as_str(), rechazada.codigo.as_str()), (step, code));
        assert_eq!(rechazada.solicitud.influencers.len(), 2);
    }
    // The budget reserved by the compensated campaigns was released: the whole example budget
    // (15000 of Nike's 100000) is still there for six campaigns of 15000.
    for _ in 0..6 {
        let mut body = ejemplo();
        body["influencers"] = json!([{ "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "YouTube", "seguidores": 9000, "categoria": "x" }]);
        let (_, accepted) = api.post("/afiliaciones/campana", &body, None).await;
        let c = api.settled(accepted["id_campana"].as_str().unwrap()).await;
        assert_eq!(c["estado"], "activa", "{c}");
    }
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_post_with_the_same_idempotency_key_starts_one_saga() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (s1, first) = api.post("/afiliaciones/campana", &ejemplo(), Some("pedido-42")).await;
    let (s2, second) = api.post("/afiliaciones/campana", &ejemplo(), Some("pedido-42")).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(first["id_campana"], second["id_campana"]);
    assert_eq!(first["saga_id"], second["saga_id"]);
    let (_, list) = api.get("/afiliaciones/campanas").await;
    assert_eq!(list["campanas"].as_array().unwrap().len(), 1);
    assert_eq!(list["total"], 1);
    let (_, sagas) = api.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 1);
    let (s3, third) = api.post("/afiliaciones/campana", &ejemplo(), Some("pedido-43")).await;
    assert_eq!(s3, StatusCode::ACCEPTED);
    assert_ne!(third["id_campana"], first["id_campana"]);
    // The same key on another request is refused, and starts nothing.
    let mut otra = ejemplo();
    otra["presupuesto"] = json!(16000);
    let (s4, refused) = api.post("/afiliaciones/campana", &otra, Some("pedido-42")).await;
    assert_eq!(s4, StatusCode::UNPROCESSABLE_ENTITY, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("Idempotency-Key"), "{refused}");
    assert_eq!(refused["errores"][0]["campo"], "Idempotency-Key", "{refused}");
    let (_, sagas) = api.get("/sagas").await;
    assert_eq!(sagas["sagas"].as_array().unwrap().len(), 2);
    running.stop().await;
}

/// A first request that recorded its campaign and died before its saga was in the log (a crash
/// or a 503 between the two), then retried with the same key: the retry's 202 comes with the saga
/// in the log, not ten seconds later from the projector's catch-up. The state is made by hand:
/// the saga taken out of the log, the campaign put back to `pendiente`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_key_answers_once_the_saga_is_in_the_log() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let (status, first) = api.post("/afiliaciones/campana", &ejemplo(), Some("pedido-perdido")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let campana = first["id_campana"].as_str().unwrap().to_owned();
    api.settled(&campana).await;
    let saga: uuid::Uuid = first["saga_id"].as_str().unwrap().parse().unwrap();
    let url = format!("sqlite://{}", dir.join("orquestador.sqlite").display());
    let db = saga_core::log::sql::sqlite_pool(&url).await.unwrap();
    // The log is append-only by a trigger; this test's copy drops it to take the saga out.
    sqlx::query("DROP TRIGGER saga_log_no_delete").execute(&db).await.unwrap();
    for sql in [
        "DELETE FROM saga_log WHERE saga_id = $1",
        "DELETE FROM saga WHERE saga_id = $1",
        "UPDATE campana SET estado = 'pendiente', resultado = NULL WHERE saga_id = $1",
    ] {
        sqlx::query(sql).bind(saga).execute(&db).await.unwrap();
    }
    db.close().await;
    assert_eq!(api.get(&format!("/sagas/{saga}")).await.0, StatusCode::NOT_FOUND);

    let (status, again) = api.post("/afiliaciones/campana", &ejemplo(), Some("pedido-perdido")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    assert_eq!(again["saga_id"], first["saga_id"]);
    let (status, s) = api.get(&format!("/sagas/{saga}")).await;
    assert_eq!(status, StatusCode::OK, "the 202 came before the saga was in the log: {s}");
    assert_eq!(api.settled(&campana).await["estado"], "activa");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_4xx_that_says_what_is_wrong_and_start_nothing() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let field_errors = |v: &Value| -> Vec<String> {
        v["errores"].as_array().unwrap().iter().map(|e| e["campo"].as_str().unwrap().to_owned()).collect()
    };
    let mut cases: Vec<(Value, Vec<&str>)> = Vec::new();
    for field in ["nombre", "tipo", "fecha_inicio", "fecha_fin", "presupuesto", "marca", "influencers"] {
        let mut b = ejemplo();
        b.as_object_mut().unwrap().remove(field);
        cases.push((b, vec![field]));
    }
    let mut b = ejemplo();
    b["fecha_fin"] = json!("2024-01-01T00:00:00");
    cases.push((b, vec!["fecha_fin"]));
    let mut b = ejemplo();
    b["presupuesto"] = json!(-1);
    cases.push((b, vec!["presupuesto"]));
    let mut b = ejemplo();
    b["presupuesto"] = json!("mucho");
    cases.push((b, vec!["presupuesto"]));
    let mut b = ejemplo();
    b["influencers"] = json!([]);
    cases.push((b, vec!["influencers"]));
    let mut b = ejemplo();
    b["marca"]["id_marca"] = json!("nike");
    cases.push((b, vec!["marca.id_marca"]));
    let mut b = ejemplo();
    b["influencers"][1]["seguidores"] = json!("muchos");
    b["influencers"][0]["nombre"] = json!("");
    cases.push((b, vec!["influencers[0].nombre", "influencers[1].seguidores"]));
    let mut b = ejemplo();
    b["fecha_inicio"] = json!("01/01/2025");
    cases.push((b, vec!["fecha_inicio"]));
    for (body, expected) in cases {
        let (status, answer) = api.post("/afiliaciones/campana", &body, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(field_errors(&answer), expected);
    }
    let (status, answer) = api.post_raw("/afiliaciones/campana", b"{\"nombre\": ".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("JSON"));
    let (status, _) = api.post_raw("/afiliaciones/campana", vec![b' '; 300 * 1024]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, answer) = api.post("/afiliaciones/campana", &ejemplo(), Some(&"k".repeat(300))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("Idempotency-Key"));
    // Nothing was started by any of them.
    let (_, sagas) = api.get("/sagas").await;
    assert!(sagas["sagas"].as_array().unwrap().is_empty());

    let (status, _) = api.get("/afiliaciones/campana/no-es-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get(&format!("/afiliaciones/campana/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = api.get("/afiliaciones/campanas?estado=perdida").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].as_str().unwrap().contains("perdida"));
    for path in ["/afiliaciones/campanas?limite=muchos", "/sagas?desde=-1"] {
        let (status, answer) = api.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(answer["error"].is_string(), "{path}: the API's error shape, not axum's text: {answer}");
    }
    let (status, _) = api.get(&format!("/sagas/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_cannot_retry_or_abort_a_finished_saga_and_health_answers() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (_, accepted) = api.post("/afiliaciones/campana", &ejemplo(), None).await;
    api.settled(accepted["id_campana"].as_str().unwrap()).await;
    let saga = accepted["saga_id"].as_str().unwrap();
    let (status, answer) = api.post(&format!("/sagas/{saga}/abort"), &json!({ "nota": "prueba" }), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(answer["error"].as_str().unwrap().contains("completed"));
    let (status, _) = api.post(&format!("/sagas/{saga}/retry"), &json!({}), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, health) = api.get("/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(health["database"], "ok");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_every_campaign_and_saga() {
    let dir = data_dir();
    let running = start(&dir).await;
    let api = Api::new(&running);
    let (_, accepted) = api.post("/afiliaciones/campana", &ejemplo(), Some("persistente")).await;
    let id = accepted["id_campana"].as_str().unwrap().to_owned();
    api.settled(&id).await;
    running.stop().await;

    let running = start(&dir).await;
    let api = Api::new(&running);
    let c = api.settled(&id).await;
    assert_eq!(c["estado"], "activa");
    let (_, again) = api.post("/afiliaciones/campana", &ejemplo(), Some("persistente")).await;
    assert_eq!(again["id_campana"], json!(id), "the Idempotency-Key survives a restart");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_with_cents_answers_as_it_was_given_and_the_list_counts_every_match() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let mut body = ejemplo();
    body["presupuesto"] = json!(15000.5);
    let (_, accepted) = api.post("/afiliaciones/campana", &body, None).await;
    let c = api.settled(accepted["id_campana"].as_str().unwrap()).await;
    assert_eq!(c["presupuesto"].to_string(), "15000.5");
    assert_eq!(c["resultado"]["reservar_presupuesto"]["monto_centavos"], 1_500_050, "exact minor units inside");
    for _ in 0..2 {
        let mut b = ejemplo();
        b["marca"]["id_marca"] = json!("999e4567-e89b-12d3-a456-426614174000"); // unknown: refused
        let (_, a) = api.post("/afiliaciones/campana", &b, None).await;
        api.settled(a["id_campana"].as_str().unwrap()).await;
    }
    let (_, page) = api.get("/afiliaciones/campanas?limite=1").await;
    assert_eq!((page["campanas"].as_array().unwrap().len(), &page["total"]), (1, &json!(3)), "{page}");
    let (_, page) = api.get("/afiliaciones/campanas?estado=rechazada&limite=1&desde=1").await;
    assert_eq!((page["campanas"].as_array().unwrap().len(), &page["total"]), (1, &json!(2)), "{page}");
    assert_eq!(page["campanas"][0]["estado"], "rechazada");
    let (_, page) = api.get("/afiliaciones/campanas?estado=activa&desde=5").await;
    assert_eq!((page["campanas"].as_array().unwrap().len(), &page["total"]), (0, &json!(1)), "{page}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracking_lists_and_counts_events_of_an_active_campaign_and_refuses_others() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (_, accepted) = api.post("/afiliaciones/campana", &ejemplo(), None).await;
    let id = accepted["id_campana"].as_str().unwrap();
    let c = api.settled(id).await;
    let codigo = c["influencers"][0]["codigo_tracking"].as_str().unwrap();
    let bodies = [
        // The documented body.
        json!({ "id_campana": id, "tipo_evento": "vista", "datos": { "pagina": "/verano", "dispositivo": "movil" } }),
        // The older body.
        json!({ "id_campana": id, "tipo": "clic", "codigo": codigo }),
        json!({ "id_campana": id, "tipo_evento": "conversion", "codigo": codigo, "valor": 49.90, "datos": { "pedido": 7 } }),
        // A kind the summary does not name.
        json!({ "id_campana": id, "tipo_evento": "compartir", "datos": {} }),
    ];
    let mut ids = Vec::new();
    for body in &bodies {
        let (status, answer) = api.post("/tracking/evento", body, None).await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
        assert_eq!(answer["id"], answer["id_evento"]);
        ids.push(answer["id"].clone());
    }
    let res = api.http.get(format!("{}/tracking/eventos/{id}", api.base)).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-total-count"], "4");
    let eventos: Value = res.json().await.unwrap();
    let eventos = eventos.as_array().unwrap();
    assert_eq!(eventos.iter().map(|e| e["id"].clone()).collect::<Vec<_>>(), ids, "oldest first");
    assert_eq!(eventos[0]["tipo_evento"], "vista");
    assert_eq!(eventos[0]["datos"], bodies[0]["datos"], "datos kept as given");
    assert_eq!(eventos[1]["tipo_evento"], "clic");
    assert_eq!(eventos[1]["datos"], json!({}));
    assert_eq!(eventos[2]["valor"], 49.9);
    for e in eventos {
        assert_eq!(e["id_campana"], json!(id));
        assert!(e["fecha_evento"].as_str().unwrap().parse::<chrono::DateTime<chrono::Utc>>().is_ok(), "{e}");
    }
    let (_, page) = api.get(&format!("/tracking/eventos/{id}?limite=2&desde=1")).await;
    assert_eq!(page.as_array().unwrap().iter().map(|e| e["id"].clone()).collect::<Vec<_>>(), ids[1..3].to_vec());
    let (status, answer) = api.get(&format!("/tracking/eventos/{id}?limite=muchos")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(answer["error"].is_string(), "{answer}");

    let (status, r) = api.get(&format!("/tracking/eventos/{id}/resumen")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!((r["vistas"].as_i64(), r["clics"].as_i64(), r["conversiones"].as_i64()), (Some(1), Some(1), Some(1)));
    assert_eq!(r["valor_centavos"], 4990);
    assert_eq!((&r["por_tipo"]["compartir"], &r["total"]), (&json!(1), &json!(4)));
    assert_eq!(r["recientes"][0]["id"], ids[3], "newest first");

    let unknown = uuid::Uuid::new_v4();
    let (status, answer) =
        api.post("/tracking/evento", &json!({ "id_campana": unknown, "tipo_evento": "vista" }), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(answer["error"].as_str().unwrap().contains(&unknown.to_string()));
    let (status, _) = api.get(&format!("/tracking/eventos/{unknown}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, answer) = api
        .post("/tracking/evento", &json!({ "id_campana": id, "tipo_evento": "", "valor": -1, "datos": [1] }), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let campos: Vec<_> = answer["errores"].as_array().unwrap().iter().map(|e| e["campo"].clone()).collect();
    assert_eq!(campos, [json!("tipo_evento"), json!("datos"), json!("valor")], "{answer}");
    let (status, _) = api
        .post("/tracking/evento", &json!({ "id_campana": id, "tipo_evento": "clic", "codigo": "ajeno" }), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, r) = api.get(&format!("/tracking/eventos/{id}/resumen")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(r["total"], 4, "refused events recorded nothing");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_described_at_openapi_json() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for (path, method) in [
        ("/afiliaciones/campana", "post"),
        ("/afiliaciones/campana/{id}", "get"),
        ("/afiliaciones/campanas", "get"),
        ("/sagas", "get"),
        ("/sagas/{id}", "get"),
        ("/sagas/{id}/retry", "post"),
        ("/sagas/{id}/abort", "post"),
        ("/health", "get"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not described");
    }
    let post = &doc["paths"]["/afiliaciones/campana"]["post"];
    for code in ["202", "400", "422"] {
        assert!(post["responses"][code].is_object(), "POST /afiliaciones/campana lacks {code}");
    }
    let request = &doc["components"]["schemas"]["SolicitudCampana"]["properties"];
    for field in ["nombre", "fecha_inicio", "fecha_fin", "presupuesto", "marca", "influencers"] {
        assert!(request[field].is_object(), "request field {field} not described");
    }
    running.stop().await;
}

/// Every route the embedded server serves, as its routers register them (the orchestrator's
/// shared routes, each saga's, the daemons' common ones, and the participants' own: tracking's
/// event intake, cliente's API).
const SERVED: [(&str, &str); 23] = [
    ("post", "/pagos/pagar"),
    ("get", "/pagos/{id}"),
    ("get", "/pagos"),
    ("post", "/cliente/registrar"),
    ("get", "/cliente/{id}"),
    ("get", "/clientes"),
    ("post", "/afiliaciones/campana"),
    ("get", "/afiliaciones/campana/{id}"),
    ("get", "/afiliaciones/campanas"),
    ("get", "/sagas"),
    ("get", "/sagas/{id}"),
    ("post", "/sagas/{id}/retry"),
    ("post", "/sagas/{id}/abort"),
    ("get", "/dead-letters"),
    ("get", "/dead-letters/{id}"),
    ("post", "/dead-letters/{id}/redrive"),
    ("post", "/dead-letters/redrive"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    ("post", "/tracking/evento"),
    ("get", "/tracking/eventos/{id_campana}"),
    ("get", "/tracking/eventos/{id_campana}/resumen"),
];

/// The (method, path) of every operation in an OpenAPI document, sorted.
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops: Vec<_> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |m| (m.clone(), path.clone())))
        .collect();
    ops.sort();
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_served_is_in_openapi_json_with_its_errors_and_every_route_there_is_served() {
    let running = start(&data_dir()).await;
    let api = Api::new(&running);
    let (status, doc) = api.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut served: Vec<_> = SERVED.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    served.sort();
    assert_eq!(operations(&doc), served, "the document describes exactly the routes served");
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][&method];
        let responses = op["responses"].as_object().unwrap();
        if !matches!(path.as_str(), "/metrics" | "/openapi.json") {
            assert!(
                responses.keys().any(|code| code.starts_with('4') || code.starts_with('5')),
                "{method} {path} describes no error"
            );
        }
        for (code, r) in responses {
            if code.starts_with('4') && r.get("content").is_some() {
                // An error body names a schema the document has.
                let schema = r["content"]["application/json"]["schema"]["$ref"].as_str().unwrap_or_default();
                let name = schema.strip_prefix("#/components/schemas/").unwrap_or_default();
                assert!(doc["components"]["schemas"][name].is_object(), "{method} {path} {code}: body {schema:?}");
            }
        }
        // Served: the router answers it (a handler's 404 says what is missing; the router's
        // own 404 and 405 have no body).
        let url = format!(
            "{}{}",
            api.base,
            path.replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{id_campana}", &uuid::Uuid::new_v4().to_string())
        );
        let req = match method.as_str() {
            "get" => api.http.get(url),
            "post" => api.http.post(url).json(&json!({})),
            other => panic!("unexpected method {other}"),
        };
        let res = req.send().await.unwrap();
        let status = res.status();
        let body = res.text().await.unwrap();
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            status != StatusCode::NOT_FOUND || !body.is_empty(),
            "{method} {path} is not served: {status} {body:?}"
        );
    }
    for schema in
        ["Campana", "ListaCampanas", "EventoRegistrado", "SolicitudEvento", "Resumen", "Error", "Errores", "Salud"]
    {
        assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
    }
    let campana = &doc["components"]["schemas"]["Campana"]["properties"];
    for field in [
        "id",
        "marca",
        "nombre",
        "descripcion",
        "tipo",
        "estado",
        "fecha_creacion",
        "fecha_inicio",
        "fecha_fin",
        "presupuesto",
        "influencers",
        "saga_id",
        "paso_fallido",
        "motivo",
        "codigo",
        "resultado",
        "id_campana",
    ] {
        assert!(campana[field].is_object(), "Campana.{field} not described");
    }
    running.stop().await;
}
