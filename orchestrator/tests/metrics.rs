//! `/metrics` in embedded mode: scrape, run sagas, scrape again, and check the counters moved
//! by exactly the right amounts. Its own test binary: the metrics recorder is process-wide.

// Tests unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use orchestrator::embedded::{self, MARCAS_POR_DEFECTO};
use serde_json::{json, Value};

/// The value of the sample of `name` whose labels include every `label="value"` in `labels`
/// (summed over the samples that match).
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, rest) = series.split_once('{').unwrap_or((series, ""));
            (n == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

fn ejemplo(id_marca: &str, influencer: &str) -> Value {
    json!({ "nombre": "Campaña", "descripcion": "", "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00",
      "fecha_fin": "2025-02-01T00:00:00", "presupuesto": 100, "marca": { "id_marca": id_marca, "nombre_marca": "Nike" },
      "influencers": [ { "nombre": influencer, "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" } ] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_move_by_exactly_the_sagas_run() {
    let dir = std::env::temp_dir().join(format!("alpes-metrics-{}", uuid::Uuid::new_v4().simple()));
    let config = embedded::Config {
        data_dir: dir,
        http: "127.0.0.1:0".parse().unwrap(),
        marcas: MARCAS_POR_DEFECTO.to_owned(),
        steps: Default::default(),
        faults: saga_core::inject::FaultPlan::none(),
        access: Default::default(),
    };
    let running = embedded::start(config, None).await.unwrap();
    let base = format!("http://{}", running.addr);
    let http = reqwest::Client::new();
    let scrape = || async { http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap() };

    let before = scrape().await;
    let nike = "123e4567-e89b-12d3-a456-426614174000";
    let bodies = [ejemplo(nike, "Uno"), ejemplo(nike, "Dos"), ejemplo("999e4567-e89b-12d3-a456-426614174000", "Tres")];
    let mut ids = Vec::new();
    for body in &bodies {
        let answer: Value =
            http.post(format!("{base}/afiliaciones/campana")).json(body).send().await.unwrap().json().await.unwrap();
        ids.push(answer["id_campana"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        for _ in 0..200 {
            let c: Value =
                http.get(format!("{base}/afiliaciones/campana/{id}")).send().await.unwrap().json().await.unwrap();
            if c["estado"] != "pendiente" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let after = scrape().await;
    let delta = |name: &str, labels: &[&str]| sample(&after, name, labels) - sample(&before, name, labels);

    assert_eq!(delta("saga_started_total", &["saga=\"crear_campana\""]), 3.0, "{after}");
    assert_eq!(delta("saga_finished_total", &["outcome=\"completed\""]), 2.0);
    assert_eq!(delta("saga_finished_total", &["outcome=\"compensated\""]), 1.0);
    assert_eq!(delta("saga_duration_seconds_count", &["outcome=\"completed\""]), 2.0);
    // Every action of the two completed sagas, and the refused one's first action.
    assert_eq!(delta("saga_step_duration_seconds_count", &["kind=\"action\""]), 7.0);
    assert_eq!(
        delta("saga_step_duration_seconds_count", &["step=\"reservar_presupuesto\"", "outcome=\"business_failure\""]),
        1.0
    );
    assert_eq!(delta("participant_commands_total", &["participant=\"comandos.marca\"", "kind=\"action\""]), 3.0);
    assert_eq!(delta("participant_commands_total", &["participant=\"comandos.tracking\""]), 2.0);
    assert_eq!(delta("saga_timeouts_total", &[]), 0.0);
    // The transport, by topic: 3 + 2 + 2 commands sent and consumed, 7 replies; nothing
    // redelivered or dead-lettered.
    let transport = |name: &str, topic: &str| delta(name, &["transport=\"in_process\"", &format!("topic=\"{topic}\"")]);
    assert_eq!(transport("transport_messages_published_total", "comandos.marca"), 3.0, "{after}");
    assert_eq!(transport("transport_messages_consumed_total", "comandos.marca"), 3.0);
    assert_eq!(transport("transport_messages_published_total", "comandos.influencer"), 2.0);
    assert_eq!(transport("transport_messages_published_total", "comandos.tracking"), 2.0);
    assert_eq!(transport("transport_messages_published_total", "respuestas.afiliaciones"), 7.0);
    assert_eq!(transport("transport_messages_consumed_total", "respuestas.afiliaciones"), 7.0);
    assert_eq!(delta("transport_messages_redelivered_total", &[]), 0.0);
    assert_eq!(delta("transport_messages_dead_lettered_total", &[]), 0.0);
    running.stop().await;
}
