//! The operators' console: server-rendered pages over the orchestrator's API, the same data the
//! CLI shows, for the people who run the sagas.
//!
//! | page | what |
//! |---|---|
//! | `GET /console/sagas?tipo=&estado=&antiguedad=` | counts per status; the stuck sagas first, then the list filtered by type, status and age (minutes) |
//! | `GET /console/sagas/{id}` | one saga: its timeline drawn, its parameters, outputs, dead letters and whole log; retry and abort with a note |
//! | `GET /console/dead-letters?topic=&estado=` | dead letters by topic, each with its saga; redrive one, or every pending one of a topic |
//! | `GET /console/campanias`, `GET /console/pagos` | campaigns and payouts with their sagas |
//!
//! Actions are plain forms (`POST`, then a redirect to the page with what happened), so every
//! page works with the keyboard alone and without JavaScript. Pages never come from the cache:
//! an operator sees the saga as it is now.

pub mod timeline;

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, Utc};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::backend::{path_with, segment, Fallo};
use timeline::Timeline;

/// The console's routes.
pub fn router(state: crate::State) -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/sagas") }))
        .route("/console", get(|| async { Redirect::to("/console/sagas") }))
        .route("/console/sagas", get(sagas))
        .route("/console/sagas/{id}", get(saga))
        .route("/console/sagas/{id}/retry", post(retry))
        .route("/console/sagas/{id}/abort", post(abort))
        .route("/console/dead-letters", get(dead_letters))
        .route("/console/dead-letters/redrive", post(redrive_topic))
        .route("/console/dead-letters/{id}/redrive", post(redrive))
        .route("/console/campanias", get(campanias))
        .route("/console/pagos", get(pagos))
        .with_state(state)
}

const STYLE: &str = r#"
:root { font-family: system-ui, sans-serif; color: #1d2433; background: #f6f7f9; }
body { margin: 0; }
a { color: #1a56b8; } a:focus, button:focus, input:focus, select:focus, textarea:focus { outline: 3px solid #f0a500; outline-offset: 1px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: #fff; padding: 4px; }
header { background: #1d2433; color: #fff; padding: 10px 20px; display: flex; gap: 24px; align-items: center; }
header a { color: #fff; text-decoration: none; font-weight: 600; } header a[aria-current] { text-decoration: underline; }
main { padding: 16px 20px; max-width: 1200px; }
h1 { font-size: 1.4rem; margin: 8px 0 12px; } h2 { font-size: 1.1rem; margin: 20px 0 8px; }
table { border-collapse: collapse; width: 100%; background: #fff; font-size: 0.9rem; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e3e6ea; vertical-align: top; }
th { background: #eef0f3; }
code, .mono { font-family: ui-monospace, monospace; font-size: 0.85rem; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 0.8rem; font-weight: 600; background: #dde1e7; }
.badge.completed, .badge.COMPLETADO, .badge.activa { background: #cdeccf; color: #14532d; }
.badge.compensated, .badge.FALLIDO, .badge.rechazada { background: #fde2c8; color: #7c2d12; }
.badge.stuck, .badge.pending { background: #f9c2c2; color: #7f1d1d; }
.badge.running, .badge.compensating, .badge.PENDIENTE, .badge.pendiente { background: #cfe0fb; color: #1e3a8a; }
.counts { display: flex; gap: 10px; flex-wrap: wrap; margin: 8px 0 14px; }
.counts a { text-decoration: none; }
form.inline { display: inline; }
form.filters { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; margin-bottom: 12px; }
label { display: flex; flex-direction: column; font-size: 0.8rem; gap: 2px; }
.actions { display: flex; gap: 16px; flex-wrap: wrap; background: #fff; padding: 10px; border: 1px solid #e3e6ea; }
.actions form { display: flex; gap: 6px; align-items: end; }
button { padding: 4px 12px; font-weight: 600; cursor: pointer; }
.notice { padding: 8px 12px; margin: 8px 0; border-radius: 4px; background: #e6f4ea; border: 1px solid #9bd3a8; }
.notice.error { background: #fdecec; border-color: #f3a5a5; }
.unavailable { padding: 8px 12px; background: #fff4e5; border: 1px solid #f5c27a; }
svg.timeline { background: #fff; border: 1px solid #e3e6ea; max-width: 100%; height: auto; }
svg .row.odd { fill: #f8f9fb; } svg .row.even { fill: #ffffff; }
svg .tick { stroke: #e3e6ea; } svg .tick-label, svg .mark-label { font-size: 11px; fill: #5b6475; }
svg .row-label { font-size: 12px; fill: #1d2433; } svg .row-label.compensation { fill: #9a3412; }
svg .bar.action rect { fill: #3b82f6; } svg .bar.compensation rect { fill: #f97316; }
svg .bar.business_failure rect { fill: #dc2626; } svg .bar.timed_out rect { fill: #a855f7; }
svg .bar.transient rect { fill: #eab308; } svg .bar.in_flight rect { fill: #94a3b8; }
svg .bar-label { font-size: 10px; fill: #fff; }
svg .mark line { stroke: #1d2433; stroke-dasharray: 3 3; } svg .mark circle { fill: #1d2433; }
svg .mark.stuck line, svg .mark.gave_up circle { stroke: #dc2626; fill: #dc2626; }
svg .mark.reply_ignored circle { fill: #94a3b8; }
.legend { font-size: 0.8rem; display: flex; gap: 12px; margin: 4px 0; } .legend span::before { content: "■ "; }
.legend .a::before { color: #3b82f6; } .legend .c::before { color: #f97316; } .legend .f::before { color: #dc2626; }
.legend .t::before { color: #a855f7; } .legend .r::before { color: #eab308; } .legend .i::before { color: #94a3b8; }
pre { background: #fff; border: 1px solid #e3e6ea; padding: 8px; overflow: auto; max-height: 320px; font-size: 0.8rem; }
"#;

fn page(title: &str, current: &str, body: Markup) -> Html<String> {
    let nav = [
        ("/console/sagas", "Sagas"),
        ("/console/dead-letters", "Dead letters"),
        ("/console/campanias", "Campañas"),
        ("/console/pagos", "Pagos"),
    ];
    Html(
        html! {
            (DOCTYPE)
            html lang="es" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " · Consola de sagas" }
                    style { (PreEscaped(STYLE)) }
                }
                body {
                    a class="skip" href="#contenido" { "Saltar al contenido" }
                    header {
                        strong { "Alpes · consola" }
                        nav aria-label="Secciones" {
                            @for (href, name) in nav {
                                a href=(href) aria-current=[(href == current).then_some("page")] style="margin-right:16px" { (name) }
                            }
                        }
                        a href="/api/v1/health" { "Salud" }
                    }
                    main id="contenido" { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// What a page shows when the orchestrator did not answer.
fn unavailable(f: &Fallo) -> Markup {
    html! { p class="unavailable" role="alert" { "El orquestador no está disponible ahora (" (f.to_string()) "). Vuelva a cargar en unos segundos." } }
}

#[derive(Debug, Default, Deserialize)]
struct Aviso {
    aviso: Option<String>,
    error: Option<String>,
}

fn notices(a: &Aviso) -> Markup {
    html! {
        @if let Some(m) = &a.aviso { p class="notice" role="status" { (m) } }
        @if let Some(m) = &a.error { p class="notice error" role="alert" { (m) } }
    }
}

fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge {status}")) { (status) } }
}

fn time(v: &Value) -> String {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.to_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "—".into())
}

fn age(v: &Value, now: DateTime<Utc>) -> String {
    v.as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| timeline::duration((now - t.to_utc()).num_milliseconds().max(0) as f64))
        .unwrap_or_default()
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

const STATUSES: [&str; 6] = ["running", "compensating", "stuck", "completed", "compensated", "aborted"];
const TYPES: [&str; 2] = ["crear_campana", "procesar_pago"];

#[derive(Debug, Default, Deserialize)]
struct FiltroSagas {
    tipo: Option<String>,
    estado: Option<String>,
    /// Only sagas at least this many minutes old.
    antiguedad: Option<String>,
    aviso: Option<String>,
    error: Option<String>,
}

fn saga_rows(sagas: &[Value], now: DateTime<Utc>) -> Markup {
    html! {
        table {
            thead { tr { th { "Saga" } th { "Tipo" } th { "Estado" } th { "Iniciada" } th { "Edad" } th { "Última escritura" } th { "Fallos del timer" } th { "Respuestas ignoradas" } } }
            tbody {
                @for s in sagas {
                    @let id = s["id"].as_str().unwrap_or_default();
                    tr data-saga=(id) data-status=(s["status"].as_str().unwrap_or_default()) {
                        td { a href=(format!("/console/sagas/{id}")) class="mono" { (short(id)) } }
                        td { (s["saga_type"].as_str().unwrap_or_default()) }
                        td { (badge(s["status"].as_str().unwrap_or_default())) }
                        td { (time(&s["created_at"])) }
                        td { (age(&s["created_at"], now)) }
                        td { (time(&s["updated_at"])) }
                        td { (s["wake_failures"]) @if let Some(e) = s["wake_error"].as_str() { " " small { (e) } } }
                        td { (s["replies_ignored"]) }
                    }
                }
            }
        }
    }
}

async fn sagas(State(s): State<crate::State>, Query(f): Query<FiltroSagas>) -> Response {
    let b = &s.backends;
    let now = Utc::now();
    let tipo = f.tipo.clone().filter(|t| !t.is_empty());
    let estado = f.estado.clone().filter(|e| !e.is_empty());
    let minutos = match f.antiguedad.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
        None => None,
        Some(a) => match a.parse::<u32>() {
            Ok(m) => Some(m),
            Err(_) => {
                let body = html! { p class="notice error" role="alert" { "La antigüedad debe ser un número de minutos, no " (a) "." } };
                return (StatusCode::BAD_REQUEST, page("Sagas", "/console/sagas", body)).into_response();
            }
        },
    };
    let antes = minutos.map(|m| (now - chrono::Duration::minutes(i64::from(m))).to_rfc3339());
    let query = |estado: Option<String>| {
        path_with(
            "/sagas",
            &[
                ("estado", estado),
                ("tipo", tipo.clone()),
                ("iniciada_antes", antes.clone()),
                ("limite", Some("100".into())),
            ],
        )
    };
    let show_stuck_first = estado.is_none();
    let (list_path, stuck_path) = (query(estado.clone()), query(Some("stuck".into())));
    let (list, stuck) = tokio::join!(b.get_fresh(&b.orquestador, &list_path), async {
        if show_stuck_first {
            Some(b.get_fresh(&b.orquestador, &stuck_path).await)
        } else {
            None
        }
    });
    let aviso = Aviso { aviso: f.aviso.clone(), error: f.error.clone() };
    let body = match list {
        Err(e) => html! { h1 { "Sagas" } (unavailable(&e)) },
        Ok(list) => {
            let counts = list["por_estado"].clone();
            let all: Vec<Value> = list["sagas"].as_array().cloned().unwrap_or_default();
            let stuck: Vec<Value> =
                stuck.and_then(Result::ok).and_then(|v| v["sagas"].as_array().cloned()).unwrap_or_default();
            let rest: Vec<Value> =
                if show_stuck_first { all.into_iter().filter(|s| s["status"] != "stuck").collect() } else { all };
            html! {
                h1 { "Sagas" }
                (notices(&aviso))
                div class="counts" aria-label="Sagas por estado" {
                    @for st in STATUSES {
                        a href=(format!("/console/sagas?estado={st}")) data-count=(st) {
                            (badge(st)) " " (counts[st].as_i64().unwrap_or(0))
                        }
                    }
                }
                form class="filters" method="get" action="/console/sagas" {
                    label { "Tipo" select name="tipo" {
                        option value="" { "todos" }
                        @for t in TYPES { option value=(t) selected[tipo.as_deref() == Some(t)] { (t) } }
                    } }
                    label { "Estado" select name="estado" {
                        option value="" { "todos" }
                        @for st in STATUSES { option value=(st) selected[estado.as_deref() == Some(st)] { (st) } }
                    } }
                    label { "Antigüedad mínima (min)" input name="antiguedad" type="number" min="0" value=[minutos] size="6"; }
                    button type="submit" { "Filtrar" }
                }
                @if show_stuck_first {
                    h2 id="atascadas" { "Atascadas: necesitan un operador (" (stuck.len()) ")" }
                    @if stuck.is_empty() { p { "Ninguna." } } @else { (saga_rows(&stuck, now)) }
                    h2 { "Las demás, más recientes primero" }
                }
                @if rest.is_empty() { p { "Ninguna saga con estos filtros." } } @else { (saga_rows(&rest, now)) }
            }
        }
    };
    page("Sagas", "/console/sagas", body).into_response()
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// What one log entry says, in a line (as `saga show` prints it).
fn detail(e: &Value) -> String {
    match e["type"].as_str().unwrap_or_default() {
        "started" => format!("{} v{}", e["saga_type"].as_str().unwrap_or_default(), e["version"]),
        "command_sent" => {
            let c = &e["command"]["correlation"];
            format!(
                "{} {} #{} → {} ({})",
                c["step_name"].as_str().unwrap_or_default(),
                c["kind"].as_str().unwrap_or_default(),
                c["attempt"],
                e["command"]["participant"].as_str().unwrap_or_default(),
                e["command"]["message_type"].as_str().unwrap_or_default()
            )
        }
        "reply_accepted" => {
            let o = &e["outcome"];
            let code = o["code"].as_str().map(|c| format!(" {c}")).unwrap_or_default();
            format!(
                "paso {} {} #{}: {}{code}",
                e["step"],
                e["kind"].as_str().unwrap_or_default(),
                e["attempt"],
                o["outcome"].as_str().unwrap_or_default()
            )
        }
        "timed_out" | "retry_scheduled" | "gave_up" => {
            format!(
                "paso {} {} #{}",
                e["step"],
                e["kind"].as_str().unwrap_or_default(),
                e["attempt"].as_u64().or(e["attempts"].as_u64()).unwrap_or(0)
            )
        }
        "reply_ignored" => {
            format!("{}: {}", e["outcome"].as_str().unwrap_or_default(), e["why"].as_str().unwrap_or_default())
        }
        "compensation_started" => {
            let f = &e["failure"];
            format!(
                "{} en {}: {}",
                f["code"].as_str().unwrap_or_default(),
                f["step"].as_str().unwrap_or("—"),
                f["reason"].as_str().unwrap_or_default()
            )
        }
        "stuck" => e["reason"].as_str().unwrap_or_default().to_owned(),
        "operator_retried" | "operator_aborted" => format!("nota: {}", e["note"].as_str().unwrap_or_default()),
        "build_failed" => e["error"].as_str().unwrap_or_default().to_owned(),
        _ => String::new(),
    }
}

fn dead_letter_rows(dls: &[Value], volver: &str) -> Markup {
    html! {
        table {
            thead { tr { th { "Tópico" } th { "Saga" } th { "Paso" } th { "Motivo" } th { "Llegó" } th { "Estado" } th { "Reenvíos" } th { "Acción" } } }
            tbody {
                @for d in dls {
                    @let id = d["id"].as_str().unwrap_or_default();
                    tr data-dead-letter=(id) data-estado=(d["estado"].as_str().unwrap_or_default()) {
                        td class="mono" { (d["topic"].as_str().unwrap_or_default()) }
                        td { @match d["saga_id"].as_str() {
                            Some(saga) => a href=(format!("/console/sagas/{saga}")) class="mono" { (short(saga)) },
                            None => "—",
                        } }
                        td { (d["step"].as_str().unwrap_or("—")) " " small { (d["kind"].as_str().unwrap_or_default()) } }
                        td { (d["reason"].as_str().unwrap_or_default()) }
                        td { (time(&d["dead_at"])) }
                        td { (badge(d["estado"].as_str().unwrap_or_default())) }
                        td { (d["redrives"]) }
                        td {
                            form class="inline" method="post" action=(format!("/console/dead-letters/{id}/redrive")) {
                                input type="hidden" name="volver" value=(volver);
                                label { "Nota" input name="nota" type="text" required placeholder="causa corregida" aria-label=(format!("Nota para reenviar {}", short(id))); }
                                button type="submit" { "Reenviar" }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn saga(State(s): State<crate::State>, Path(id): Path<String>, Query(aviso): Query<Aviso>) -> Response {
    let b = &s.backends;
    let now = Utc::now();
    let answer = match b.get_fresh(&b.orquestador, &format!("/sagas/{}", segment(&id))).await {
        Ok(v) => v,
        Err(Fallo::Rechazo { status, cuerpo }) => {
            let body = html! { h1 { "Saga " (id) } p class="notice error" role="alert" { (cuerpo["error"].as_str().unwrap_or("no encontrada")) } };
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
            return (status, page("Saga", "/console/sagas", body)).into_response();
        }
        Err(e) => {
            let body = html! { h1 { "Saga " (id) } (unavailable(&e)) };
            return (StatusCode::SERVICE_UNAVAILABLE, page("Saga", "/console/sagas", body)).into_response();
        }
    };
    let state = &answer["saga"];
    let status = state["status"].as_str().unwrap_or_default();
    let historia: Vec<Value> = answer["historia"].as_array().cloned().unwrap_or_default();
    let t = Timeline::of(&historia);
    let dead: Vec<Value> = answer["dead_letters"].as_array().cloned().unwrap_or_default();
    let volver = format!("/console/sagas/{id}");
    let body = html! {
        h1 { "Saga " span class="mono" { (id) } " " (badge(status)) }
        (notices(&aviso))
        p {
            (state["saga_type"].as_str().unwrap_or_default()) " v" (state["definition_version"])
            " · iniciada " (time(&state["created_at"])) " · última escritura " (time(&state["updated_at"]))
            " · " (historia.len()) " entradas en el log"
            @if let Some(r) = state["stuck_reason"].as_str() { br; strong { "Atascada: " } (r) }
            @if let Some(f) = state["failure"].as_object() {
                br; strong { "Falla: " } (f.get("code").and_then(Value::as_str).unwrap_or_default())
                " en " (f.get("step").and_then(Value::as_str).unwrap_or("—")) ": " (f.get("reason").and_then(Value::as_str).unwrap_or_default())
            }
        }
        @if matches!(status, "stuck" | "running" | "compensating") {
            section class="actions" aria-label="Acciones del operador" {
                @if status == "stuck" {
                    form method="post" action=(format!("/console/sagas/{id}/retry")) {
                        label { "Nota (queda en el log)" input name="nota" type="text" required size="40" placeholder="qué se corrigió"; }
                        button type="submit" { "Reintentar la compensación" }
                    }
                }
                @if matches!(status, "stuck" | "running") {
                    form method="post" action=(format!("/console/sagas/{id}/abort")) {
                        label { "Nota (queda en el log)" input name="nota" type="text" required size="40" placeholder="por qué se aborta"; }
                        button type="submit" { "Abortar" }
                    }
                }
            }
        }
        h2 { "Línea de tiempo" }
        div class="legend" aria-hidden="true" {
            span class="a" { "acción" } span class="c" { "compensación" } span class="f" { "falla de negocio" }
            span class="t" { "sin respuesta a tiempo" } span class="r" { "transitoria" } span class="i" { "en curso" }
        }
        figure { (t.svg(now)) figcaption { "Cada barra es un intento, del comando enviado a su respuesta; las líneas verticales marcan el giro a compensar, las acciones del operador y el final." } }
        h2 id="dead-letters" { "Dead letters (" (dead.len()) ")" }
        @if dead.is_empty() { p { "Ninguna." } } @else { (dead_letter_rows(&dead, &volver)) }
        h2 { "Parámetros" }
        pre { (pretty(&state["params"])) }
        h2 { "Salidas de los pasos" }
        pre { (pretty(&state["outputs"])) }
        h2 { "Log" }
        table {
            thead { tr { th { "#" } th { "Hora" } th { "Evento" } th { "Detalle" } } }
            tbody {
                @for e in &historia {
                    tr { td { (e["seq"]) } td { (time(&e["at"])) } td { code { (e["event"]["type"].as_str().unwrap_or_default()) } } td { (detail(&e["event"])) } }
                }
            }
        }
    };
    page(&format!("Saga {}", short(&id)), "/console/sagas", body).into_response()
}

#[derive(Debug, Deserialize)]
struct NotaForm {
    nota: Option<String>,
    volver: Option<String>,
}

fn nota(f: &NotaForm) -> String {
    f.nota.as_deref().map(str::trim).filter(|n| !n.is_empty()).unwrap_or("(sin nota)").to_owned()
}

/// Where to go back after an action: a console page only, never another site.
fn back(volver: Option<&str>, default: &str) -> String {
    match volver {
        Some(v) if v.starts_with("/console/") && !v.starts_with("//") && !v.contains("://") => v.to_owned(),
        _ => default.to_owned(),
    }
}

fn with_notice(to: &str, key: &str, message: &str) -> Redirect {
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}{}", path_with("", &[(key, Some(message.to_owned()))]).trim_start_matches('?')))
}

async fn operator_action(s: &crate::State, id: &str, action: &str, f: &NotaForm, done: &str) -> Redirect {
    let b = &s.backends;
    let to = format!("/console/sagas/{}", segment(id));
    match b.post(&b.orquestador, &format!("/sagas/{}/{action}", segment(id)), &json!({ "nota": nota(f) })).await {
        Ok((200..=299, _)) => with_notice(&to, "aviso", done),
        Ok((_, cuerpo)) => {
            with_notice(&to, "error", cuerpo["error"].as_str().unwrap_or("el orquestador rechazó la acción"))
        }
        Err(e) => with_notice(&to, "error", &e.to_string()),
    }
}

async fn retry(State(s): State<crate::State>, Path(id): Path<String>, Form(f): Form<NotaForm>) -> Redirect {
    operator_action(&s, &id, "retry", &f, "Reintento pedido: la saga vuelve a compensar.").await
}

async fn abort(State(s): State<crate::State>, Path(id): Path<String>, Form(f): Form<NotaForm>) -> Redirect {
    operator_action(&s, &id, "abort", &f, "Saga abortada.").await
}

#[derive(Debug, Default, Deserialize)]
struct FiltroDeadLetters {
    topic: Option<String>,
    estado: Option<String>,
    aviso: Option<String>,
    error: Option<String>,
}

async fn dead_letters(State(s): State<crate::State>, Query(f): Query<FiltroDeadLetters>) -> Response {
    let b = &s.backends;
    let topic = f.topic.clone().filter(|t| !t.is_empty());
    let estado = f.estado.clone().filter(|e| !e.is_empty());
    let path = path_with(
        "/dead-letters",
        &[("topic", topic.clone()), ("estado", estado.clone()), ("limite", Some("200".into()))],
    );
    let volver = path_with("/console/dead-letters", &[("topic", topic.clone()), ("estado", estado.clone())]);
    let aviso = Aviso { aviso: f.aviso, error: f.error };
    let body = match b.get_fresh(&b.orquestador, &path).await {
        Err(e) => html! { h1 { "Dead letters" } (notices(&aviso)) (unavailable(&e)) },
        Ok(v) => {
            let dls: Vec<Value> = v["dead_letters"].as_array().cloned().unwrap_or_default();
            html! {
                h1 { "Dead letters" }
                (notices(&aviso))
                form class="filters" method="get" action="/console/dead-letters" {
                    label { "Tópico" input name="topic" type="text" value=[topic.as_deref()] placeholder="comandos.marca"; }
                    label { "Estado" select name="estado" {
                        option value="" { "todos" }
                        @for e in ["pending", "redriven"] { option value=(e) selected[estado.as_deref() == Some(e)] { (e) } }
                    } }
                    button type="submit" { "Filtrar" }
                }
                @if let Some(t) = &topic {
                    form class="actions" method="post" action="/console/dead-letters/redrive" {
                        input type="hidden" name="topic" value=(t);
                        label { "Nota" input name="nota" type="text" required placeholder="causa corregida"; }
                        button type="submit" { "Reenviar todas las pendientes de " (t) }
                    }
                }
                p { (v["total"]) " en total." }
                @if dls.is_empty() { p { "Ninguna." } } @else { (dead_letter_rows(&dls, &volver)) }
            }
        }
    };
    page("Dead letters", "/console/dead-letters", body).into_response()
}

async fn redrive(State(s): State<crate::State>, Path(id): Path<String>, Form(f): Form<NotaForm>) -> Redirect {
    let b = &s.backends;
    let to = back(f.volver.as_deref(), "/console/dead-letters");
    match b.post(&b.orquestador, &format!("/dead-letters/{}/redrive", segment(&id)), &json!({ "nota": nota(&f) })).await
    {
        Ok((200..=299, _)) => with_notice(&to, "aviso", "Dead letter reenviada a su tópico."),
        Ok((_, cuerpo)) => {
            with_notice(&to, "error", cuerpo["error"].as_str().unwrap_or("el orquestador rechazó el reenvío"))
        }
        Err(e) => with_notice(&to, "error", &e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct RedriveTopic {
    topic: String,
    nota: Option<String>,
}

async fn redrive_topic(State(s): State<crate::State>, Form(f): Form<RedriveTopic>) -> Redirect {
    let b = &s.backends;
    let to = path_with("/console/dead-letters", &[("topic", Some(f.topic.clone()))]);
    let path = path_with("/dead-letters/redrive", &[("topic", Some(f.topic.clone()))]);
    let nota = f.nota.unwrap_or_default();
    match b.post(&b.orquestador, &path, &json!({ "nota": nota })).await {
        Ok((200..=299, v)) => with_notice(&to, "aviso", &format!("{} dead letters reenviadas.", v["redriven"])),
        Ok((_, cuerpo)) => {
            with_notice(&to, "error", cuerpo["error"].as_str().unwrap_or("el orquestador rechazó el reenvío"))
        }
        Err(e) => with_notice(&to, "error", &e.to_string()),
    }
}

#[derive(Debug, Default, Deserialize)]
struct FiltroEstado {
    estado: Option<String>,
}

async fn campanias(State(s): State<crate::State>, Query(f): Query<FiltroEstado>) -> Response {
    let b = &s.backends;
    let path = path_with(
        "/afiliaciones/campanas",
        &[("estado", f.estado.filter(|e| !e.is_empty())), ("limite", Some("100".into()))],
    );
    let body = match b.get_fresh(&b.orquestador, &path).await {
        Err(e) => html! { h1 { "Campañas" } (unavailable(&e)) },
        Ok(v) => html! {
            h1 { "Campañas" }
            p { (v["total"]) " en total." }
            table {
                thead { tr { th { "Nombre" } th { "Estado" } th { "Motivo" } th { "Creada" } th { "Saga" } } }
                tbody {
                    @for c in v["campanas"].as_array().into_iter().flatten() {
                        tr {
                            td { (c["nombre"].as_str().unwrap_or_default()) }
                            td { (badge(c["estado"].as_str().unwrap_or_default())) }
                            td { (c["motivo"].as_str().unwrap_or_default()) }
                            td { (time(&c["fecha_creacion"])) }
                            td { @if let Some(saga) = c["saga_id"].as_str() { a href=(format!("/console/sagas/{saga}")) class="mono" { (short(saga)) } } }
                        }
                    }
                }
            }
        },
    };
    page("Campañas", "/console/campanias", body).into_response()
}

async fn pagos(State(s): State<crate::State>, Query(f): Query<FiltroEstado>) -> Response {
    let b = &s.backends;
    let path = path_with("/pagos", &[("estado", f.estado.filter(|e| !e.is_empty())), ("limite", Some("100".into()))]);
    let body = match b.get_fresh(&b.orquestador, &path).await {
        Err(e) => html! { h1 { "Pagos" } (unavailable(&e)) },
        Ok(v) => html! {
            h1 { "Pagos" }
            p { (v["total"]) " en total." }
            table {
                thead { tr { th { "Pago" } th { "Partner" } th { "Ciclo" } th { "Monto" } th { "Estado" } th { "Motivo" } th { "Creado" } th { "Saga" } } }
                tbody {
                    @for p in v["pagos"].as_array().into_iter().flatten() {
                        tr {
                            td class="mono" { (p["id"].as_str().unwrap_or_default()) }
                            td { (p["partner_id"].as_str().unwrap_or_default()) }
                            td { (p["cycle_id"].as_str().unwrap_or_default()) }
                            td { (p["monto_total"]["valor"]) " " (p["monto_total"]["moneda"].as_str().unwrap_or_default()) }
                            td { (badge(p["estado"].as_str().unwrap_or_default())) }
                            td { (p["motivo"].as_str().unwrap_or_default()) }
                            td { (time(&p["fecha_creacion"])) }
                            td { @if let Some(saga) = p["saga_id"].as_str() { a href=(format!("/console/sagas/{saga}")) class="mono" { (short(saga)) } } }
                        }
                    }
                }
            }
        },
    };
    page("Pagos", "/console/pagos", body).into_response()
}
