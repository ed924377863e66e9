//! `/api/v1`: the web front end's routes, each an aggregation of the services' HTTP APIs.
//!
//! | route | from | answer |
//! |---|---|---|
//! | `GET /dashboard` | cliente, orchestrator | `{total_clientes, total_pagos, total_campanias, pagos_por_estado, pagos_recientes, clientes_recientes, no_disponible}` |
//! | `GET /clientes?page=&per_page=&search=&sort_by=nombre\|fecha_registro&sort_order=asc\|desc` | cliente | `{clientes, pagination}` |
//! | `GET /clientes/{id}` | cliente, orchestrator | `{cliente, estadisticas, pagos_recientes, campanias_activas, no_disponible}` |
//! | `POST /clientes` | cliente | what `POST /cliente/registrar` answers |
//! | `GET /pagos?page=&per_page=&partner_id=&estado=&fecha_desde=&fecha_hasta=&monto_min=&monto_max=` | orchestrator | `{pagos, pagination, agregaciones}` |
//! | `GET /pagos/{id}` | orchestrator | the payout with its transactions and audit trail |
//! | `GET /campanias?page=&per_page=&estado=` | orchestrator | `{campanias, pagination}` |
//! | `GET /search?q=&type=cliente\|pago\|campania\|all&limit=` | all | `{query, type, resultados: {clientes, pagos, campanias}, totales, no_disponible}` |
//! | `GET /health` | all | `{status, servicios: {name: {status, tiempo_respuesta_ms, url}}, cache: {hits, misses, hit_rate, …}}` |
//!
//! `pagination` is `{page, per_page, total, pages, has_next, has_prev}`; `per_page` is 1 to 100
//! (default 20). Errors are `{"error": "..."}`: `400` for a bad parameter (the message names it),
//! `404` for an unknown id, `503` with `Retry-After` when the one service a route needs does not
//! answer. A route that aggregates several services answers with what it has: each part whose
//! service did not answer is `null` and named in `no_disponible` with why.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::backend::{path_with, segment, Fallo};

/// What a `503` asks the client to wait before retrying, in seconds.
pub const RETRY_AFTER_SECS: u64 = 2;
/// The most items one page holds.
pub const MAX_PER_PAGE: u32 = 100;
/// Items per page when the client does not say.
pub const PER_PAGE: u32 = 20;

/// The `/api/v1` routes (nested by [`crate::router`]).
pub fn router(state: crate::State) -> Router {
    Router::new()
        .route("/dashboard", get(dashboard))
        .route("/clientes", get(clientes).post(crear_cliente))
        .route("/clientes/{id}", get(cliente))
        .route("/pagos", get(pagos))
        .route("/pagos/{id}", get(pago))
        .route("/campanias", get(campanias))
        .route("/search", get(search))
        .route("/health", get(health))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no existe esa ruta de /api/v1") })
        .with_state(state)
}

/// `{"error": message}` with `status` (and `Retry-After` on a `503`).
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    answer(status, json!({ "error": message.into() }))
}

/// `body` as JSON with `status`, and `Retry-After` when the status is `503`: every answer of
/// the BFF's API goes through here.
fn answer(status: StatusCode, body: Value) -> Response {
    let mut r = (status, Json(body)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS.into());
    }
    r
}

/// A route's failure, answered as JSON (`Retry-After` on a `503`).
pub struct ApiError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        answer(self.status, self.body)
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError { status: StatusCode::BAD_REQUEST, body: json!({ "error": message.into() }) }
}

/// A backend's failure when the route needs that backend: its 4xx passed on as it said it, no
/// answer as a `503` naming the service.
fn from_backend(servicio: &str, f: Fallo) -> ApiError {
    match f {
        Fallo::NoDisponible(why) => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: json!({ "error": format!("el servicio {servicio} no está disponible: {why}") }),
        },
        Fallo::Rechazo { status, cuerpo } => {
            ApiError { status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY), body: cuerpo }
        }
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(q)| q).map_err(|e| bad_request(format!("parámetros inválidos: {}", e.body_text())))
}

/// A page asked for: `page` from 1, `per_page` 1 to [`MAX_PER_PAGE`].
#[derive(Clone, Copy, Debug)]
struct Pagina {
    page: u32,
    per_page: u32,
}

impl Pagina {
    fn of(page: Option<u32>, per_page: Option<u32>) -> Result<Pagina, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(PER_PAGE);
        if page == 0 {
            return Err(bad_request("page empieza en 1"));
        }
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(bad_request(format!("per_page debe estar entre 1 y {MAX_PER_PAGE}, no {per_page}")));
        }
        if u64::from(page - 1) * u64::from(per_page) > u64::from(u32::MAX) {
            return Err(bad_request("page es demasiado grande"));
        }
        Ok(Pagina { page, per_page })
    }

    /// The services' paging: `limite` and `desde`.
    fn limite_desde(self) -> [(&'static str, Option<String>); 2] {
        [("limite", Some(self.per_page.to_string())), ("desde", Some(((self.page - 1) * self.per_page).to_string()))]
    }

    /// The pagination metadata of a page of `total`.
    fn metadata(self, total: u64) -> Value {
        let pages = total.div_ceil(u64::from(self.per_page));
        json!({
            "page": self.page,
            "per_page": self.per_page,
            "total": total,
            "pages": pages,
            "has_next": u64::from(self.page) < pages,
            "has_prev": self.page > 1,
        })
    }
}

fn total(v: &Value) -> u64 {
    v["total"].as_u64().unwrap_or(0)
}

fn lista(v: &Value, key: &str) -> Value {
    v.get(key).cloned().unwrap_or_else(|| json!([]))
}

/// The parts of an aggregated answer whose service did not answer.
#[derive(Default)]
struct NoDisponible(Map<String, Value>);

impl NoDisponible {
    /// `Some(value)`, or `None` with the part recorded as unavailable.
    fn parte<T>(&mut self, parte: &str, r: Result<T, Fallo>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(f) => {
                self.0.insert(parte.to_owned(), json!(f.to_string()));
                None
            }
        }
    }
}

async fn dashboard(State(s): State<crate::State>) -> Response {
    let b = &s.backends;
    let (clientes, pagos, campanias) = tokio::join!(
        b.get(&b.cliente, "/clientes?limite=5&orden=fecha_registro&direccion=desc"),
        b.get(&b.orquestador, "/pagos?limite=5"),
        b.get(&b.orquestador, "/afiliaciones/campanas?limite=1"),
    );
    let mut nd = NoDisponible::default();
    let clientes = nd.parte("clientes", clientes);
    let pagos = nd.parte("pagos", pagos);
    let campanias = nd.parte("campanias", campanias);
    let body = json!({
        "total_clientes": clientes.as_deref().map(total),
        "total_pagos": pagos.as_deref().map(total),
        "total_campanias": campanias.as_deref().map(total),
        "pagos_por_estado": pagos.as_deref().map(|p| p["agregaciones"]["por_estado"].clone()),
        "pagos_recientes": pagos.as_deref().map(|p| lista(p, "pagos")),
        "clientes_recientes": clientes.as_deref().map(|c| lista(c, "clientes")),
        "no_disponible": nd.0,
    });
    // Nothing answered: the dashboard itself is unavailable.
    let status = if clientes.is_none() && pagos.is_none() && campanias.is_none() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    answer(status, body)
}

#[derive(Debug, Deserialize)]
struct ConsultaClientes {
    page: Option<u32>,
    per_page: Option<u32>,
    search: Option<String>,
    sort_by: Option<String>,
    sort_order: Option<String>,
}

async fn clientes(
    State(s): State<crate::State>,
    q: Result<Query<ConsultaClientes>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let pagina = Pagina::of(q.page, q.per_page)?;
    let orden = match q.sort_by.as_deref() {
        None | Some("fecha_registro") => "fecha_registro",
        Some("nombre") => "nombre",
        Some(o) => return Err(bad_request(format!("sort_by debe ser nombre o fecha_registro, no {o:?}"))),
    };
    let direccion = match q.sort_order.as_deref() {
        None | Some("desc") => "desc",
        Some("asc") => "asc",
        Some(o) => return Err(bad_request(format!("sort_order debe ser asc o desc, no {o:?}"))),
    };
    if q.search.as_deref().is_some_and(|t| t.chars().count() > 100) {
        return Err(bad_request("search admite hasta 100 caracteres"));
    }
    let [limite, desde] = pagina.limite_desde();
    let path = path_with(
        "/clientes",
        &[("buscar", q.search), ("orden", Some(orden.into())), ("direccion", Some(direccion.into())), limite, desde],
    );
    let b = &s.backends;
    let v = b.get(&b.cliente, &path).await.map_err(|f| from_backend("cliente", f))?;
    Ok(Json(json!({ "clientes": lista(&v, "clientes"), "pagination": pagina.metadata(total(&v)) })).into_response())
}

async fn cliente(State(s): State<crate::State>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let b = &s.backends;
    let c = b.get(&b.cliente, &format!("/cliente/{}", segment(&id))).await.map_err(|f| from_backend("cliente", f))?;
    let nombre = c["nombre"].as_str().unwrap_or_default().to_owned();
    let pagos_path = path_with("/pagos", &[("partner_id", Some(id.clone())), ("limite", Some("5".into()))]);
    let campanias_path = path_with(
        "/afiliaciones/campanas",
        &[("estado", Some("activa".into())), ("influencer", Some(nombre)), ("limite", Some("20".into()))],
    );
    let (pagos, campanias) = tokio::join!(b.get(&b.orquestador, &pagos_path), b.get(&b.orquestador, &campanias_path));
    let mut nd = NoDisponible::default();
    let pagos = nd.parte("pagos", pagos);
    let campanias = nd.parte("campanias", campanias);
    let estadisticas = pagos.as_deref().map(|p| {
        json!({
            "total_pagos": total(p),
            "pagos_por_estado": p["agregaciones"]["por_estado"],
            "monto_por_moneda": p["agregaciones"]["por_moneda"],
            "pagos_recibidos": c["total_pagos"],
            "ultimo_pago": c["ultimo_pago"],
        })
    });
    Ok(Json(json!({
        "cliente": *c,
        "estadisticas": estadisticas,
        "pagos_recientes": pagos.as_deref().map(|p| lista(p, "pagos")),
        "campanias_activas": campanias.as_deref().map(|c| lista(c, "campanas")),
        "no_disponible": nd.0,
    }))
    .into_response())
}

async fn crear_cliente(State(s): State<crate::State>, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let body: Value =
        serde_json::from_slice(&body).map_err(|e| bad_request(format!("el cuerpo no es JSON válido: {e}")))?;
    let b = &s.backends;
    let (status, answer) =
        b.post(&b.cliente, "/cliente/registrar", &body).await.map_err(|f| from_backend("cliente", f))?;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, Json(answer)).into_response())
}

#[derive(Debug, Deserialize)]
struct ConsultaPagos {
    page: Option<u32>,
    per_page: Option<u32>,
    partner_id: Option<String>,
    estado: Option<String>,
    fecha_desde: Option<String>,
    fecha_hasta: Option<String>,
    monto_min: Option<f64>,
    monto_max: Option<f64>,
}

async fn pagos(
    State(s): State<crate::State>,
    q: Result<Query<ConsultaPagos>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let pagina = Pagina::of(q.page, q.per_page)?;
    let [limite, desde] = pagina.limite_desde();
    let path = path_with(
        "/pagos",
        &[
            ("partner_id", q.partner_id),
            ("estado", q.estado),
            ("fecha_desde", q.fecha_desde),
            ("fecha_hasta", q.fecha_hasta),
            ("monto_min", q.monto_min.map(|m| m.to_string())),
            ("monto_max", q.monto_max.map(|m| m.to_string())),
            limite,
            desde,
        ],
    );
    let b = &s.backends;
    let v = b.get(&b.orquestador, &path).await.map_err(|f| from_backend("orquestador", f))?;
    Ok(Json(json!({
        "pagos": lista(&v, "pagos"),
        "pagination": pagina.metadata(total(&v)),
        "agregaciones": v["agregaciones"],
    }))
    .into_response())
}

async fn pago(State(s): State<crate::State>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let b = &s.backends;
    let v =
        b.get(&b.orquestador, &format!("/pagos/{}", segment(&id))).await.map_err(|f| from_backend("orquestador", f))?;
    Ok(Json(&*v).into_response())
}

#[derive(Debug, Deserialize)]
struct ConsultaCampanias {
    page: Option<u32>,
    per_page: Option<u32>,
    estado: Option<String>,
}

async fn campanias(
    State(s): State<crate::State>,
    q: Result<Query<ConsultaCampanias>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let pagina = Pagina::of(q.page, q.per_page)?;
    let [limite, desde] = pagina.limite_desde();
    let path = path_with("/afiliaciones/campanas", &[("estado", q.estado), limite, desde]);
    let b = &s.backends;
    let v = b.get(&b.orquestador, &path).await.map_err(|f| from_backend("orquestador", f))?;
    Ok(Json(json!({ "campanias": lista(&v, "campanas"), "pagination": pagina.metadata(total(&v)) })).into_response())
}

#[derive(Debug, Deserialize)]
struct ConsultaBusqueda {
    q: Option<String>,
    #[serde(rename = "type")]
    tipo: Option<String>,
    limit: Option<u32>,
}

async fn search(
    State(s): State<crate::State>,
    q: Result<Query<ConsultaBusqueda>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let texto = q.q.as_deref().map(str::trim).unwrap_or_default().to_owned();
    if texto.is_empty() {
        return Err(bad_request("q es obligatorio: el texto a buscar"));
    }
    if texto.chars().count() > 100 {
        return Err(bad_request("q admite hasta 100 caracteres"));
    }
    let tipo = q.tipo.unwrap_or_else(|| "all".into());
    let (clientes, pagos, campanias) = match tipo.as_str() {
        "all" => (true, true, true),
        "cliente" => (true, false, false),
        "pago" => (false, true, false),
        "campania" => (false, false, true),
        t => return Err(bad_request(format!("type debe ser cliente, pago, campania o all, no {t:?}"))),
    };
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > 50 {
        return Err(bad_request(format!("limit debe estar entre 1 y 50, no {limit}")));
    }
    let b = &s.backends;
    let buscar =
        |path: &'static str| path_with(path, &[("buscar", Some(texto.clone())), ("limite", Some(limit.to_string()))]);
    let skip = || async { Ok(std::sync::Arc::new(Value::Null)) };
    let (c, p, k) = tokio::join!(
        async {
            if clientes {
                b.get(&b.cliente, &buscar("/clientes")).await
            } else {
                skip().await
            }
        },
        async {
            if pagos {
                b.get(&b.orquestador, &buscar("/pagos")).await
            } else {
                skip().await
            }
        },
        async {
            if campanias {
                b.get(&b.orquestador, &buscar("/afiliaciones/campanas")).await
            } else {
                skip().await
            }
        },
    );
    let mut nd = NoDisponible::default();
    let mut resultados = Map::new();
    let mut totales = Map::new();
    for (wanted, parte, key, r) in
        [(clientes, "clientes", "clientes", c), (pagos, "pagos", "pagos", p), (campanias, "campanias", "campanas", k)]
    {
        if !wanted {
            continue;
        }
        let v = nd.parte(parte, r);
        resultados.insert(parte.into(), v.as_deref().map(|v| lista(v, key)).unwrap_or(Value::Null));
        totales.insert(parte.into(), v.as_deref().map(|v| json!(total(v))).unwrap_or(Value::Null));
    }
    Ok(Json(
        json!({ "query": texto, "type": tipo, "resultados": resultados, "totales": totales, "no_disponible": nd.0 }),
    )
    .into_response())
}

async fn health(State(s): State<crate::State>) -> Response {
    let b = &s.backends;
    let [o, c] = b.all();
    let ((ro, to), (rc, tc)) = tokio::join!(o.ping(), c.ping());
    let mut servicios = Map::new();
    let mut degraded = false;
    for (backend, r, t) in [(o, ro, to), (c, rc, tc)] {
        let mut entry = json!({
            "status": if r.is_ok() { "ok" } else { "no_disponible" },
            "tiempo_respuesta_ms": (t.as_secs_f64() * 1000.0 * 10.0).round() / 10.0,
            "url": backend.url(),
        });
        if let Err(f) = r {
            degraded = true;
            entry["error"] = json!(f.to_string());
        }
        servicios.insert(backend.nombre.to_owned(), entry);
    }
    // The BFF itself answers: 200, and `degraded` says a backend does not.
    Json(json!({ "status": if degraded { "degraded" } else { "ok" }, "servicios": servicios, "cache": b.cache() }))
        .into_response()
}
