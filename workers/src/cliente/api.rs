//! cliente's HTTP routes:
//!
//! | route | answers |
//! |---|---|
//! | `POST /cliente/registrar` | `201` the client; `200` the same id again with the same data (a retry); `400` not JSON, or `{"error": "Email ya existe en el sistema"}`; `409` `{"error": "Cliente ya existe"}` (the id, with other data); `413` over 64 KiB; `422` every field error at once |
//! | `GET /cliente/{id}` | `200` the client without its personal data; `404` `{"message": "No encontrado"}` |
//! | `GET /clientes?buscar=&orden=nombre\|fecha_registro&direccion=asc\|desc&limite=&desde=` | `200 {clientes, total, limite, desde}`: a page, filtered and sorted in SQL; `400` a bad parameter |
//!
//! All answer `503` with `Retry-After` when the database does not, and a generic `500` on any
//! other internal error. Times are RFC 3339 in UTC.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{OpenApi, ToSchema};

use super::repositorio::{Cliente, Clientes, Consulta, NuevoCliente, Orden, Registro};
use super::valores::{Cedula, Email, IdCliente, Nombre};

/// The largest registration body.
pub const MAX_CUERPO: usize = 64 * 1024;
/// What a `503` asks the caller to wait, in seconds: a restarting database is back in seconds.
pub const RETRY_AFTER_SEGUNDOS: u32 = 5;
/// The body of a registration whose email belongs to another client.
pub const EMAIL_YA_EXISTE: &str = "Email ya existe en el sistema";
/// The body of a registration whose id is registered with other data.
pub const CLIENTE_YA_EXISTE: &str = "Cliente ya existe";
/// The body of a `404`.
pub const NO_ENCONTRADO: &str = "No encontrado";

/// One field error of a registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ErrorCampoCliente)]
pub struct ErrorCampo {
    /// The field, as named in the body.
    pub campo: String,
    /// What is wrong with it.
    pub mensaje: String,
}

fn campo(campo: &str, mensaje: impl Into<String>) -> ErrorCampo {
    ErrorCampo { campo: campo.to_owned(), mensaje: mensaje.into() }
}

/// The fields of a registration body; any other is an error.
pub const CAMPOS: &[&str] = &["id", "nombre", "email", "cedula", "fecha_nacimiento"];

/// Validates a registration body: `{"id", "nombre", "email", "cedula", "fecha_nacimiento"}`,
/// every field required; `cedula` a string or an integer; `fecha_nacimiento` `YYYY-MM-DD`, not
/// after `hoy`. Any other field is an error. Every field in error is reported, not only the first.
pub fn validar(body: &Value, hoy: NaiveDate) -> Result<NuevoCliente, Vec<ErrorCampo>> {
    let mut errores: Vec<ErrorCampo> =
        daemon::unknown_fields(body, CAMPOS).into_iter().map(|k| campo(k, daemon::UNKNOWN_FIELD)).collect();
    let mut texto = |nombre: &str, tipo: &str| match body.get(nombre) {
        None | Some(Value::Null) => {
            errores.push(campo(nombre, format!("es obligatorio ({tipo})")));
            None
        }
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errores.push(campo(nombre, format!("debe ser un texto ({tipo})")));
            None
        }
    };
    let id = texto("id", "de 1 a 64 caracteres A-Z, a-z, 0-9, '.', '_', '-'");
    let nombre = texto("nombre", "de 1 a 200 caracteres");
    let email = texto("email", "una dirección de correo");
    let fecha = texto("fecha_nacimiento", "una fecha AAAA-MM-DD");
    let cedula = match body.get("cedula") {
        None | Some(Value::Null) => Err("es obligatoria (de 5 a 15 dígitos)".to_owned()),
        Some(Value::String(s)) => s.parse::<Cedula>().map_err(|e| e.to_string()),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => Cedula::try_from(n).map_err(|e| e.to_string()),
            None => Err("debe ser un número entero positivo o un texto de dígitos".to_owned()),
        },
        Some(_) => Err("debe ser un texto de dígitos o un número entero".to_owned()),
    };
    let id = id.and_then(|s| check(&mut errores, "id", s.parse::<IdCliente>().map_err(|e| e.to_string())));
    let nombre = nombre.and_then(|s| check(&mut errores, "nombre", s.parse::<Nombre>().map_err(|e| e.to_string())));
    let email = email.and_then(|s| check(&mut errores, "email", s.parse::<Email>().map_err(|e| e.to_string())));
    let cedula = check(&mut errores, "cedula", cedula);
    let fecha_nacimiento = fecha.and_then(|s| check(&mut errores, "fecha_nacimiento", fecha_de_nacimiento(&s, hoy)));
    match (id, nombre, email, cedula, fecha_nacimiento) {
        (Some(id), Some(nombre), Some(email), Some(cedula), Some(fecha_nacimiento)) if errores.is_empty() => {
            Ok(NuevoCliente { id, nombre, email, cedula, fecha_nacimiento })
        }
        _ => Err(errores),
    }
}

/// The value, or its error recorded against `nombre`.
fn check<T>(errores: &mut Vec<ErrorCampo>, nombre: &str, r: Result<T, String>) -> Option<T> {
    r.map_err(|m| errores.push(campo(nombre, m))).ok()
}

fn fecha_de_nacimiento(s: &str, hoy: NaiveDate) -> Result<NaiveDate, String> {
    // chrono alone would take `2024-1-5`: the shape is checked first.
    let forma = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    let fecha = forma
        .then(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .flatten()
        .ok_or_else(|| format!("{s:?} no es una fecha válida AAAA-MM-DD"))?;
    if fecha > hoy {
        return Err(format!("la fecha de nacimiento {fecha} es posterior a hoy"));
    }
    Ok(fecha)
}

/// `{"error": message}` with `status`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// A database error as answered: `503` with `Retry-After` when the database does not answer (or
/// is busy), a generic `500` when what it returned cannot be read. Nothing internal leaks.
fn fallo(e: sqlx::Error) -> Response {
    match e {
        sqlx::Error::Decode(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::RowNotFound => {
            tracing::error!(error = %e, "cliente database: unreadable data");
            error(StatusCode::INTERNAL_SERVER_ERROR, "error interno; inténtelo de nuevo")
        }
        e => {
            tracing::warn!(error = %e, "cliente database unavailable");
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "la base de datos no responde; inténtelo de nuevo");
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SEGUNDOS));
            r
        }
    }
}

/// A registration: what the public API has always taken (any other field is refused).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SolicitudRegistro {
    /// 1 to 64 characters `A-Z a-z 0-9 . _ -`.
    #[schema(example = "partner-123")]
    id: String,
    /// 1 to 200 characters.
    #[schema(example = "Ana García")]
    nombre: String,
    /// An email address; one client per address (compared trimmed and lower case).
    #[schema(example = "ana@example.com")]
    email: String,
    /// 5 to 15 digits, as a string or an integer.
    #[schema(value_type = String, example = "1020304050")]
    cedula: Value,
    /// `YYYY-MM-DD`, not in the future.
    fecha_nacimiento: NaiveDate,
}

/// An error.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorRespuesta {
    /// What is wrong (`Email ya existe en el sistema`, `Cliente ya existe`, ...).
    error: String,
}

/// Every field error of a registration.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErroresRegistro {
    /// A summary.
    error: String,
    /// Every field in error, not only the first.
    errores: Vec<ErrorCampo>,
}

/// Nothing with that id.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct NoEncontrado {
    /// `No encontrado`.
    #[schema(example = "No encontrado")]
    message: String,
}

/// A client as `GET /cliente/{id}` shows it: without its personal data (cédula, birth date).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClienteConsultado {
    /// Its id.
    pub id: String,
    /// Its name.
    pub nombre: String,
    /// Its email.
    pub email: String,
    /// When it was registered (RFC 3339, UTC).
    pub fecha_registro: DateTime<Utc>,
    /// How many payments it has received.
    pub total_pagos: i64,
    /// When its last payment was recorded (RFC 3339, UTC); `null` when none.
    pub ultimo_pago: Option<DateTime<Utc>>,
}

impl From<Cliente> for ClienteConsultado {
    fn from(c: Cliente) -> Self {
        ClienteConsultado {
            id: c.id.into(),
            nombre: c.nombre.into(),
            email: c.email.into(),
            fecha_registro: c.fecha_registro,
            total_pagos: c.total_pagos,
            ultimo_pago: c.ultimo_pago,
        }
    }
}

#[utoipa::path(post, path = "/cliente/registrar", tag = "clientes",
    request_body(content = SolicitudRegistro, description = "The client to register"),
    responses(
        (status = 201, description = "Registered", body = Cliente),
        (status = 200, description = "This id was already registered with the same data (a retry)", body = Cliente),
        (status = 400, description = "Not JSON, not an object, or `Email ya existe en el sistema`", body = ErrorRespuesta),
        (status = 409, description = "`Cliente ya existe`: the id is registered with other data", body = ErrorRespuesta),
        (status = 413, description = "Body over 64 KiB", body = ErrorRespuesta),
        (status = 422, description = "Every field error", body = ErroresRegistro),
        (status = 503, description = "The database does not answer; see Retry-After", body = ErrorRespuesta)))]
async fn registrar(State(store): State<Arc<dyn Clientes>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(StatusCode::PAYLOAD_TOO_LARGE, format!("el cuerpo supera {} KiB", MAX_CUERPO / 1024))
        }
        Err(e) => return error(e.status(), e.body_text()),
    };
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("el cuerpo no es JSON válido: {e}")),
    };
    if !json.is_object() {
        return error(StatusCode::BAD_REQUEST, "el cuerpo debe ser un objeto JSON");
    }
    let nuevo = match validar(&json, Utc::now().date_naive()) {
        Ok(n) => n,
        Err(errores) => {
            let resumen = format!("el cliente tiene {} campo(s) con errores", errores.len());
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "error": resumen, "errores": errores })))
                .into_response();
        }
    };
    match store.registrar(&nuevo).await {
        Ok(Registro::Creado(c)) => {
            let mut r = (StatusCode::CREATED, Json(&c)).into_response();
            if let Ok(location) = HeaderValue::from_str(&format!("/cliente/{}", c.id)) {
                r.headers_mut().insert(header::LOCATION, location);
            }
            r
        }
        Ok(Registro::Repetido(c)) => (StatusCode::OK, Json(c)).into_response(),
        Ok(Registro::IdOcupado) => error(StatusCode::CONFLICT, CLIENTE_YA_EXISTE),
        Ok(Registro::EmailOcupado) => error(StatusCode::BAD_REQUEST, EMAIL_YA_EXISTE),
        Err(e) => fallo(e),
    }
}

#[utoipa::path(get, path = "/cliente/{id}", tag = "clientes",
    params(("id" = String, Path, description = "The client's id")),
    responses(
        (status = 200, description = "The client", body = ClienteConsultado),
        (status = 404, description = "No client with that id", body = NoEncontrado),
        (status = 503, description = "The database does not answer; see Retry-After", body = ErrorRespuesta)))]
async fn consultar(State(store): State<Arc<dyn Clientes>>, Path(id): Path<String>) -> Response {
    let no_encontrado = || (StatusCode::NOT_FOUND, Json(json!({ "message": NO_ENCONTRADO }))).into_response();
    // An id that cannot be valid names no client.
    if id.parse::<IdCliente>().is_err() {
        return no_encontrado();
    }
    match store.buscar(&id).await {
        Ok(Some(c)) => Json(ClienteConsultado::from(c)).into_response(),
        Ok(None) => no_encontrado(),
        Err(e) => fallo(e),
    }
}

/// The query of `GET /clientes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsultaLista {
    buscar: Option<String>,
    orden: Option<String>,
    direccion: Option<String>,
    limite: Option<u32>,
    desde: Option<u32>,
}

/// The most clients one page holds.
pub const MAX_LIMITE: u32 = 500;

#[utoipa::path(get, path = "/clientes", tag = "clientes",
    params(("buscar" = Option<String>, Query, description = "Only clients whose name or email contains this, ignoring case"),
           ("orden" = Option<String>, Query, description = "`nombre` or `fecha_registro` (default)"),
           ("direccion" = Option<String>, Query, description = "`asc` or `desc` (default)"),
           ("limite" = Option<u32>, Query, description = "At most this many (1 to 500, default 50)"),
           ("desde" = Option<u32>, Query, description = "Skip this many")),
    responses(
        (status = 200, description = "`{clientes: [client], total, limite, desde}`"),
        (status = 400, description = "An unknown parameter or value", body = ErrorRespuesta),
        (status = 503, description = "The database does not answer; see Retry-After", body = ErrorRespuesta)))]
async fn listar(State(store): State<Arc<dyn Clientes>>, q: Result<Query<ConsultaLista>, QueryRejection>) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("parámetros inválidos: {}", e.body_text())),
    };
    let orden = match q.orden.as_deref() {
        None | Some("fecha_registro") => Orden::FechaRegistro,
        Some("nombre") => Orden::Nombre,
        Some(o) => return error(StatusCode::BAD_REQUEST, format!("orden debe ser nombre o fecha_registro, no {o:?}")),
    };
    let descendente = match q.direccion.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(d) => return error(StatusCode::BAD_REQUEST, format!("direccion debe ser asc o desc, no {d:?}")),
    };
    let limite = q.limite.unwrap_or(50).clamp(1, MAX_LIMITE);
    let desde = q.desde.unwrap_or(0);
    let consulta = Consulta { buscar: q.buscar, orden, descendente, limite, desde };
    match store.listar(&consulta).await {
        Ok((clientes, total)) => {
            let clientes: Vec<ClienteConsultado> = clientes.into_iter().map(ClienteConsultado::from).collect();
            Json(json!({ "clientes": clientes, "total": total, "limite": limite, "desde": desde })).into_response()
        }
        Err(e) => fallo(e),
    }
}

/// `POST /cliente/registrar`, `GET /cliente/{id}` and `GET /clientes` over `store`.
pub fn router(store: Arc<dyn Clientes>) -> Router {
    Router::new()
        .route("/cliente/registrar", post(registrar))
        .route("/cliente/{id}", get(consultar))
        .route("/clientes", get(listar))
        .layer(DefaultBodyLimit::max(MAX_CUERPO))
        .with_state(store)
}

#[derive(OpenApi)]
#[openapi(
    paths(registrar, consultar, listar),
    components(schemas(
        SolicitudRegistro,
        Cliente,
        ClienteConsultado,
        ErrorRespuesta,
        ErroresRegistro,
        ErrorCampo,
        NoEncontrado
    ))
)]
struct ClienteDoc;

/// The OpenAPI description of cliente's routes and their error bodies.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ClienteDoc::openapi()
}
