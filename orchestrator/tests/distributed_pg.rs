//! The distributed mode's daemons on PostgreSQL: the orchestrator and the three workers, each
//! with its own database, started through the same entry points the daemons use, connected here
//! by the in-process transport (the Pulsar transport's own tests prove the broker). A campaign
//! completes; a refused one compensates; the brand's budget moves only for the first.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use orchestrator::distributed::{self, Config};
use saga_core::log::sql::{create_database, pg_pool};
use saga_core::transport::in_process::InProcessTransport;
use saga_core::transport::Transport;
use serde_json::{json, Value};
use workers::marca::MarcaSeed;
use workers::participants::{self, Options};
use workers::server;

async fn fresh_database(name: &str) -> String {
    let admin = std::env::var("SAGA_TEST_DATABASE_URL")
        .expect("SAGA_TEST_DATABASE_URL is not set: run scripts/test.sh, which installs and starts PostgreSQL");
    create_database(&admin, &format!("worker_test_{name}")).await.expect("create a database on PostgreSQL")
}

fn ejemplo(id_marca: &str) -> Value {
    json!({ "nombre": "Campaña", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-02-01T00:00:00",
      "presupuesto": 1000, "marca": { "id_marca": id_marca, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": format!("Inf {}", uuid::Uuid::new_v4()), "plataforma": "Instagram", "seguidores": 150000, "categoria": "x" } ] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daemons_on_postgres_complete_and_compensate_campaigns() {
    let transport: Arc<dyn Transport> = Arc::new(InProcessTransport::new());
    let nike = uuid::Uuid::now_v7();
    let marcas = vec![MarcaSeed {
        id_marca: nike,
        nombre: "Nike".into(),
        activa: true,
        presupuesto_disponible_centavos: 500_000,
    }];
    let options = Options { marcas };
    let mut marca_db = String::new();
    let mut workers = Vec::new();
    for participant in participants::ALL {
        let db = fresh_database(participant.name()).await;
        if participant.name() == "marca" {
            marca_db = db.clone();
        }
        let w = server::start(
            *participant,
            &db,
            "127.0.0.1:0".parse().unwrap(),
            transport.clone(),
            &options,
            &daemon::access::Access::open(),
        )
        .await
        .unwrap();
        workers.push(w);
    }
    std::env::set_var("ALPES__DATABASE_URL", fresh_database("orquestador").await);
    std::env::set_var("ALPES__HTTP", "127.0.0.1:0");
    let config = Config::load(None).unwrap();
    assert!(!format!("{config:?}").contains("postgres://"), "the database URL never prints");
    let orchestrator = distributed::start(&config, transport, orchestrator::app::EventSink::Log).await.unwrap();
    let base = format!("http://{}", orchestrator.addr);
    let http = reqwest::Client::new();

    let mut results = Vec::new();
    for body in [ejemplo(&nike.to_string()), ejemplo("999e4567-e89b-12d3-a456-426614174000")] {
        let accepted: Value =
            http.post(format!("{base}/afiliaciones/campana")).json(&body).send().await.unwrap().json().await.unwrap();
        let id = accepted["id_campana"].as_str().unwrap().to_owned();
        let mut c = Value::Null;
        for _ in 0..200 {
            c = http.get(format!("{base}/afiliaciones/campana/{id}")).send().await.unwrap().json().await.unwrap();
            if c["estado"] != "pendiente" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        results.push(c);
    }
    assert_eq!(results[0]["estado"], "activa", "{}", results[0]);
    assert_eq!(results[1]["estado"], "rechazada");
    assert_eq!(results[1]["codigo"], "MARCA_DESCONOCIDA");
    let pool = pg_pool(&marca_db, 1).await.unwrap();
    let left: i64 = sqlx::query_scalar("SELECT presupuesto_disponible_centavos FROM marca WHERE id_marca = $1")
        .bind(nike)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 400_000);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("saga_finished_total"));
    orchestrator.stop().await;
    for w in workers {
        let health: Value = http.get(format!("http://{}/health", w.addr)).send().await.unwrap().json().await.unwrap();
        assert_eq!(health["database"], "ok");
        w.stop().await;
    }
}
