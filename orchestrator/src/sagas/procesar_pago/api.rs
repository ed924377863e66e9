//! The payout saga's HTTP routes, the public API's as documented:
//!
//! | route | what |
//! |---|---|
//! | `POST /pagos/pagar` | validate the request, check the partner is a registered client, record the payout, start its saga: `202 {"id": "payout-…"}` |
//! | `GET /pagos/{id}` | the payout: its state, amount, commission transactions and audit trail |
//! | `GET /pagos?estado=&partner_id=&fecha_desde=&fecha_hasta=&monto_min=&monto_max=&buscar=&limite=&desde=` | payouts, newest first, with `total` and `agregaciones` (count and sum per state and currency), filtered, paged and summed in SQL |
//!
//! One cycle of one partner is paid at most once: a second request for the same
//! `(partner_id, cycle_id)` answers the existing payout (`202`, the same id, `"existente": true`)
//! when it asks for the same payout, and `409` when it differs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use saga_core::engine::Engine;
use saga_core::{LogEntry, SagaId, SagaState};
use schemas::Monto;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::definicion::{Envio, Registro, SagaProcesarPago};
use super::solicitud::{es_id_cliente, validar};
use super::vista::{Agregado, EstadoPago, Filtro, Pago, Registrado, VistaPagos};
use crate::api::{ApiError, MAX_BODY};

/// Prefix of a payout's public id: `payout-<uuid>`.
pub const PREFIJO_ID: &str = "payout-";

/// How long the partner check waits for the cliente service.
pub const TIMEOUT_CLIENTE: Duration = Duration::from_secs(3);

/// The public id of a payout.
pub fn id_publico(id_pago: Uuid) -> String {
    format!("{PREFIJO_ID}{id_pago}")
}

/// A payout id as the API takes it: `payout-<uuid>`, or the bare UUID.
pub fn parse_id_pago(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.strip_prefix(PREFIJO_ID).unwrap_or(raw)).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("el id de pago debe ser {PREFIJO_ID}<uuid>, no {raw:?}"))
    })
}

/// Whether a partner is a registered client: asked of the cliente service, which owns clients.
#[async_trait]
pub trait Directorio: Send + Sync + 'static {
    /// `Ok(true)` for a registered client, `Ok(false)` for none, `Err` when the service does not
    /// answer.
    async fn existe(&self, id_partner: &str) -> Result<bool, String>;
}

/// The cliente service over its HTTP API (`GET /cliente/{id}`).
pub struct DirectorioHttp {
    base: String,
    client: reqwest::Client,
}

impl DirectorioHttp {
    /// The cliente service at `base` (e.g. `http://127.0.0.1:8004`), called with the
    /// deployment's token when `access` has one (sent as a sensitive header: never logged).
    pub fn new(base: &str, access: &daemon::access::Access) -> anyhow::Result<Self> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(authorization) = access.authorization() {
            headers.insert(reqwest::header::AUTHORIZATION, authorization);
        }
        let client = reqwest::Client::builder().timeout(TIMEOUT_CLIENTE).default_headers(headers).build()?;
        Ok(Self { base: base.trim_end_matches('/').to_owned(), client })
    }
}

#[async_trait]
impl Directorio for DirectorioHttp {
    async fn existe(&self, id_partner: &str) -> Result<bool, String> {
        // Only well-formed ids get here (`es_id_cliente`), so the path needs no escaping.
        let url = format!("{}/cliente/{id_partner}", self.base);
        let response = self.client.get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            other => Err(format!("GET {url}: {other}")),
        }
    }
}

/// What the payout handlers share.
#[derive(Clone)]
pub struct PagosApi {
    /// The saga engine.
    pub engine: Arc<Engine>,
    /// The payout view.
    pub vista: Arc<dyn VistaPagos>,
    /// The partner check.
    pub directorio: Arc<dyn Directorio>,
}

/// The payout routes.
pub fn router(state: PagosApi) -> Router {
    Router::new()
        .route("/pagos/pagar", post(pagar))
        .route("/pagos/{id}", get(obtener_pago))
        .route("/pagos", get(listar_pagos))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn no_disponible(que: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "{que} unavailable");
    ApiError::unavailable(format!("{que} no responde; inténtelo de nuevo"))
}

fn aceptado(p: &Pago, existente: bool) -> Response {
    let id = id_publico(p.id_pago);
    let body = json!({
        "id": id,
        "estado": p.estado,
        "saga_id": p.saga_id,
        "existente": existente,
        "consultar": format!("/pagos/{id}"),
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/pagos/{id}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

#[utoipa::path(post, path = "/pagos/pagar", tag = "pagos",
    request_body(content = SolicitudPagoDoc, description = "The documented payout request"),
    responses(
        (status = 202, description = "Accepted: the saga started (or the cycle's existing payout, `existente: true`)", body = PagoAceptado),
        (status = 400, description = "Not JSON; or `{\"error\": \"Partner no encontrado\"}`", body = crate::openapi::Error),
        (status = 409, description = "The partner's cycle already has a different payout", body = crate::openapi::Error),
        (status = 413, description = "Body over 256 KiB"),
        (status = 422, description = "Every field error", body = crate::openapi::Errores),
        (status = 503, description = "The database or the cliente service does not answer (`Retry-After`)", body = crate::openapi::Error)))]
async fn pagar(State(s): State<PagosApi>, body: Bytes) -> Result<Response, ApiError> {
    let json: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("el cuerpo no es JSON válido: {e}")))?;
    let pedido = validar(&json, Uuid::now_v7()).map_err(|errores| {
        ApiError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "error": "la solicitud tiene errores", "errores": errores }),
        )
    })?;
    if !s.directorio.existe(&pedido.id_partner).await.map_err(|e| no_disponible("el servicio de clientes", e))? {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "Partner no encontrado"));
    }
    let registrado =
        s.vista.registrar(&pedido, SagaId::new()).await.map_err(|e| ApiError::database("payout view", &e.0))?;
    let (p, repetido) = match registrado {
        Registrado::Nuevo(p) => (p, false),
        Registrado::Existente(p) => {
            let mut mismo = pedido.clone();
            mismo.id_pago = p.solicitud.id_pago;
            if mismo != p.solicitud {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!(
                        "el ciclo {} del partner {} ya tiene el pago {} con otros datos",
                        p.solicitud.id_ciclo,
                        p.solicitud.id_partner,
                        id_publico(p.id_pago)
                    ),
                ));
            }
            (p, true)
        }
    };
    // As for a campaign: started for a repeated request too, since the first may have died
    // before its saga was in the log; the 202 comes once it is. If this fails, the payout stays
    // PENDIENTE and the projector's catch-up starts its saga (start is idempotent on the saga id).
    s.engine.start_saga::<SagaProcesarPago>(p.saga_id, &p.solicitud).await?;
    Ok(aceptado(&p, repetido))
}

fn monto(m: &Monto) -> Value {
    json!({ "valor": m.valor(), "moneda": m.moneda, "valor_menor": m.valor_menor })
}

/// A payout in the documented shape, with what the view knows: what a list shows.
fn resumen(p: &Pago) -> Value {
    let s = &p.solicitud;
    json!({
        "id": id_publico(p.id_pago),
        "partner_id": s.id_partner,
        "cycle_id": s.id_ciclo,
        "estado": p.estado,
        "monto_total": monto(&s.monto),
        "fecha_creacion": p.fecha_creacion,
        "fecha_actualizacion": p.fecha_actualizacion,
        "metodo_pago": { "tipo": s.metodo_pago.tipo, "mascara": s.metodo_pago.mascara },
        "confirmation_id": s.referencia,
        "codigo": p.codigo,
        "motivo": p.motivo,
        "paso_fallido": p.paso_fallido,
        "saga_id": p.saga_id,
    })
}

/// One payout: its summary, with what its saga adds (the transactions, the provider's
/// operation, the audit trail).
fn cuerpo(p: &Pago, saga: Option<&SagaState>, historia: &[LogEntry]) -> Value {
    let registrado = saga.and_then(|st| st.output::<Registro>().ok().flatten());
    let enviado = saga.and_then(|st| st.output::<Envio>().ok().flatten());
    let transacciones: Vec<Value> = registrado
        .map(|r| r.transacciones)
        .unwrap_or_default()
        .iter()
        .map(
            |t| json!({ "id": t.id_transaccion, "tipo": t.tipo, "monto": monto(&t.monto), "porcentaje": t.porcentaje }),
        )
        .collect();
    let mut body = resumen(p);
    body["transacciones"] = json!(transacciones);
    body["proveedor"] = json!(enviado.map(|e| json!({
        "id_operacion": e.id_operacion, "id_confirmacion": e.id_confirmacion, "procesado_en": e.procesado_en
    })));
    body["saga_estado"] = json!(saga.map(|st| st.status));
    body["auditoria"] = json!(auditoria(saga, historia));
    body
}

/// The saga's history as an audit trail: every recorded event with its time, step, kind and
/// attempt.
fn auditoria(saga: Option<&SagaState>, historia: &[LogEntry]) -> Vec<Value> {
    let pasos: Vec<String> = saga.map(|s| s.steps.iter().map(|st| st.name.clone()).collect()).unwrap_or_default();
    historia
        .iter()
        .map(|e| {
            let ev = serde_json::to_value(&e.event).unwrap_or(Value::Null);
            let command = ev.get("command").and_then(|c| c.get("correlation"));
            let paso = command.and_then(|c| c.get("step_name")).cloned().or_else(|| {
                ev.get("step").and_then(Value::as_u64).and_then(|i| pasos.get(i as usize)).map(|n| json!(n))
            });
            let pick = |k: &str| ev.get(k).or_else(|| command.and_then(|c| c.get(k))).cloned().unwrap_or(Value::Null);
            json!({
                "fecha": e.at,
                "evento": ev.get("type"),
                "paso": paso,
                "tipo": pick("kind"),
                "intento": pick("attempt"),
                "resultado": ev.get("outcome").and_then(|o| o.get("outcome").or(Some(o))).cloned(),
                "nota": ev.get("note").cloned(),
            })
        })
        .collect()
}

#[utoipa::path(get, path = "/pagos/{id}", tag = "pagos",
    params(("id" = String, Path, description = "The payout id, `payout-<uuid>`")),
    responses((status = 200, body = PagoDoc), (status = 400, body = crate::openapi::Error),
              (status = 404, description = "`{\"message\": \"No encontrado\"}`"), (status = 503, body = crate::openapi::Error)))]
async fn obtener_pago(State(s): State<PagosApi>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = parse_id_pago(&id)?;
    let Some(p) = s.vista.obtener(id).await.map_err(|e| ApiError::database("payout view", &e.0))? else {
        return Err(ApiError::with_body(StatusCode::NOT_FOUND, json!({ "message": "No encontrado" })));
    };
    let saga = s.engine.get(p.saga_id).await?;
    let historia = if saga.is_some() { s.engine.history(p.saga_id).await? } else { Vec::new() };
    Ok(Json(cuerpo(&p, saga.as_ref(), &historia)).into_response())
}

/// Query of `GET /pagos`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsultaPagos {
    /// Only this state.
    pub estado: Option<String>,
    /// Only this partner's.
    pub partner_id: Option<String>,
    /// Only those created on or after this (`YYYY-MM-DD` or RFC 3339).
    pub fecha_desde: Option<String>,
    /// Only those created on or before this (`YYYY-MM-DD`: the whole day, or RFC 3339).
    pub fecha_hasta: Option<String>,
    /// Only those of at least this amount, in units of their currency.
    pub monto_min: Option<f64>,
    /// Only those of at most this amount, in units of their currency.
    pub monto_max: Option<f64>,
    /// Only those whose partner or cycle contains this, ignoring case.
    pub buscar: Option<String>,
    /// At most this many (1 to 500; default 50).
    pub limite: Option<u32>,
    /// Skip this many.
    pub desde: Option<u32>,
}

/// A date bound of the list: `YYYY-MM-DD` (the day's first instant, or with `fin` its last) or
/// RFC 3339.
fn fecha(campo: &str, raw: &str, fin: bool) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        let t = if fin { d.and_hms_milli_opt(23, 59, 59, 999) } else { d.and_hms_opt(0, 0, 0) };
        if let Some(t) = t {
            return Ok(t.and_utc());
        }
    }
    chrono::DateTime::parse_from_rfc3339(raw).map(|t| t.to_utc()).map_err(|_| {
        ApiError::new(StatusCode::BAD_REQUEST, format!("{campo} debe ser una fecha YYYY-MM-DD o RFC 3339, no {raw:?}"))
    })
}

fn filtro(q: ConsultaPagos) -> Result<Filtro, ApiError> {
    let estado = q
        .estado
        .as_deref()
        .map(str::parse::<EstadoPago>)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    if let Some(p) = q.partner_id.as_deref().filter(|p| !es_id_cliente(p)) {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("partner_id no válido: {p:?}")));
    }
    for (campo, v) in [("monto_min", q.monto_min), ("monto_max", q.monto_max)] {
        if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
            return Err(ApiError::new(StatusCode::BAD_REQUEST, format!("{campo} debe ser un número no negativo")));
        }
    }
    if let Some(b) = q.buscar.as_deref().filter(|b| b.chars().count() > 100) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("buscar admite hasta 100 caracteres, no {}", b.len()),
        ));
    }
    Ok(Filtro {
        estado,
        id_partner: q.partner_id,
        creado_desde: q.fecha_desde.as_deref().map(|f| fecha("fecha_desde", f, false)).transpose()?,
        creado_hasta: q.fecha_hasta.as_deref().map(|f| fecha("fecha_hasta", f, true)).transpose()?,
        monto_min: q.monto_min,
        monto_max: q.monto_max,
        buscar: q.buscar,
    })
}

/// The aggregations of a list: per state, and per currency (amounts in units, and minor units).
fn agregaciones(agregados: &[Agregado]) -> Value {
    let mut por_estado = serde_json::Map::new();
    let mut por_moneda: std::collections::BTreeMap<&str, (u64, i64, Option<schemas::Moneda>)> = Default::default();
    for a in agregados {
        let n = por_estado.entry(a.estado.as_str()).or_insert(json!(0));
        *n = json!(n.as_u64().unwrap_or(0) + a.pagos);
        let m = por_moneda.entry(&a.moneda).or_insert((0, 0, a.moneda.parse().ok()));
        m.0 += a.pagos;
        m.1 = m.1.saturating_add(a.monto_menor);
    }
    let por_moneda: Vec<Value> = por_moneda
        .into_iter()
        .map(|(moneda, (pagos, menor, m))| {
            let valor = m.map(|m| Monto { valor_menor: menor, moneda: m }.valor());
            json!({ "moneda": moneda, "pagos": pagos, "monto_total": valor, "monto_total_menor": menor })
        })
        .collect();
    json!({ "por_estado": por_estado, "por_moneda": por_moneda })
}

#[utoipa::path(get, path = "/pagos", tag = "pagos",
    params(("estado" = Option<EstadoPago>, Query), ("partner_id" = Option<String>, Query),
           ("fecha_desde" = Option<String>, Query, description = "Created on or after: `YYYY-MM-DD` or RFC 3339"),
           ("fecha_hasta" = Option<String>, Query, description = "Created on or before: `YYYY-MM-DD` (the whole day) or RFC 3339"),
           ("monto_min" = Option<f64>, Query, description = "At least this amount, in units of the payout's currency"),
           ("monto_max" = Option<f64>, Query, description = "At most this amount, in units of the payout's currency"),
           ("buscar" = Option<String>, Query, description = "Partner or cycle contains this, ignoring case"),
           ("limite" = Option<u32>, Query, description = "1 to 500, default 50"), ("desde" = Option<u32>, Query)),
    responses((status = 200, description = "`{pagos: [payout without transacciones, proveedor, auditoria], total, limite, desde, agregaciones: {por_estado: {ESTADO: n}, por_moneda: [{moneda, pagos, monto_total, monto_total_menor}]}}`, newest first"),
              (status = 400, body = crate::openapi::Error), (status = 503, body = crate::openapi::Error)))]
async fn listar_pagos(
    State(s): State<PagosApi>,
    q: Result<Query<ConsultaPagos>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = crate::api::query(q)?;
    let limite = q.limite.unwrap_or(50).clamp(1, 500);
    let desde = q.desde.unwrap_or(0);
    let filtro = filtro(q)?;
    let db = |e: super::vista::VistaError| ApiError::database("payout view", &e.0);
    let (pagos, total) = s.vista.listar(&filtro, limite, desde).await.map_err(db)?;
    let agregados = s.vista.agregar(&filtro).await.map_err(db)?;
    let pagos: Vec<Value> = pagos.iter().map(resumen).collect();
    Ok(Json(json!({ "pagos": pagos, "total": total, "limite": limite, "desde": desde,
                    "agregaciones": agregaciones(&agregados) })))
}

/// The body of `POST /pagos/pagar` (documentation of what `solicitud::validar` accepts).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SolicitudPagoDoc {
    /// A registered client's id.
    #[schema(example = "partner-001")]
    partner_id: String,
    /// The payment cycle; paid at most once per partner.
    #[schema(example = "2025-01")]
    cycle_id: String,
    /// Greater than zero, with at most the currency's decimals.
    #[schema(example = 1500.5)]
    total_amount: f64,
    /// USD, EUR, COP, MXN or CLP.
    #[schema(example = "USD")]
    currency: String,
    /// e.g. BANK_TRANSFER, PAYPAL, CARD.
    payment_method_type: String,
    /// e.g. `****1234`.
    payment_method_mask: String,
    /// The client's own reference; optional.
    confirmation_id: Option<String>,
    /// RFC 3339; optional.
    processed_at: Option<String>,
    /// RFC 3339; optional.
    completed_at: Option<String>,
}

/// The answer of an accepted request.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PagoAceptado {
    /// `payout-<uuid>`.
    id: String,
    estado: EstadoPago,
    saga_id: Uuid,
    /// The cycle already had this payout.
    existente: bool,
    /// Where to read it.
    consultar: String,
}

/// An amount.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct MontoDoc {
    /// In major units, e.g. 1500.5.
    valor: f64,
    /// ISO 4217.
    moneda: String,
    /// In minor units, exact.
    valor_menor: i64,
}

/// A payout.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct PagoDoc {
    /// `payout-<uuid>`.
    id: String,
    partner_id: String,
    cycle_id: String,
    estado: EstadoPago,
    monto_total: MontoDoc,
    fecha_creacion: String,
    fecha_actualizacion: String,
    /// `{tipo, mascara}`.
    #[schema(value_type = Object)]
    metodo_pago: Value,
    /// `[{id, tipo: COMISION, monto, porcentaje}]`, once recorded in pagos.
    #[schema(value_type = Vec<Object>)]
    transacciones: Vec<Value>,
    /// Every event of its saga: `[{fecha, evento, paso, tipo, intento, resultado, nota}]`.
    #[schema(value_type = Vec<Object>)]
    auditoria: Vec<Value>,
    /// The failure's code, step and reason, once `FALLIDO`.
    codigo: Option<String>,
    motivo: Option<String>,
    paso_fallido: Option<String>,
    saga_id: Uuid,
}

#[derive(OpenApi)]
#[openapi(
    paths(pagar, obtener_pago, listar_pagos),
    components(schemas(SolicitudPagoDoc, PagoAceptado, MontoDoc, PagoDoc, EstadoPago))
)]
struct PagosDoc;

/// The OpenAPI description of these routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    PagosDoc::openapi()
}
