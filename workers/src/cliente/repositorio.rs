//! The clients in the cliente database: the repository the HTTP routes use, and that the
//! orchestrator may use to look a client up in-process ([`Clientes`]), over PostgreSQL
//! ([`PgClientes`]) or SQLite ([`SqliteClientes`]) with the same statements.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgPool, SqlitePool};
use utoipa::ToSchema;

use super::valores::{Cedula, Email, IdCliente, Nombre};
use crate::support::ahora;

/// A client as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Cliente {
    /// Its id.
    #[schema(value_type = String, example = "partner-123")]
    pub id: IdCliente,
    /// Its name.
    #[schema(value_type = String, example = "Ana García")]
    pub nombre: Nombre,
    /// Its email, trimmed and lower case.
    #[schema(value_type = String, example = "ana@example.com")]
    pub email: Email,
    /// Its cédula, digits.
    #[schema(value_type = String, example = "1020304050")]
    pub cedula: Cedula,
    /// Its date of birth.
    pub fecha_nacimiento: NaiveDate,
    /// When it was registered (RFC 3339, UTC).
    pub fecha_registro: DateTime<Utc>,
    /// How many payments it has received.
    pub total_pagos: i64,
    /// When its last payment was recorded (RFC 3339, UTC); `null` when none.
    pub ultimo_pago: Option<DateTime<Utc>>,
}

/// What a registration asks for (validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NuevoCliente {
    /// The id chosen by the caller.
    pub id: IdCliente,
    /// The name.
    pub nombre: Nombre,
    /// The email.
    pub email: Email,
    /// The cédula.
    pub cedula: Cedula,
    /// The date of birth (not in the future).
    pub fecha_nacimiento: NaiveDate,
}

impl NuevoCliente {
    /// Whether `cliente` was registered with exactly these data (a retried registration).
    pub fn es(&self, cliente: &Cliente) -> bool {
        self.id == cliente.id
            && self.nombre == cliente.nombre
            && self.email == cliente.email
            && self.cedula == cliente.cedula
            && self.fecha_nacimiento == cliente.fecha_nacimiento
    }
}

/// What a registration did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Registro {
    /// Registered now.
    Creado(Cliente),
    /// This id was already registered with the same data: a retry; here it is.
    Repetido(Cliente),
    /// This id is registered with other data.
    IdOcupado,
    /// This email belongs to another client.
    EmailOcupado,
}

/// The clients.
#[async_trait]
pub trait Clientes: Send + Sync + 'static {
    /// Registers a client, or says why not. Concurrent registrations of one email (or one id)
    /// register one; the others see it.
    async fn registrar(&self, nuevo: &NuevoCliente) -> Result<Registro, sqlx::Error>;
    /// The client `id`, if registered.
    async fn buscar(&self, id: &str) -> Result<Option<Cliente>, sqlx::Error>;
    /// One page of the clients that match `consulta`, in its order, and how many match.
    async fn listar(&self, consulta: &Consulta) -> Result<(Vec<Cliente>, u64), sqlx::Error>;
}

/// The order of a client list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Orden {
    /// By name, then id.
    Nombre,
    /// By registration time, then id (the default).
    #[default]
    FechaRegistro,
}

/// What [`Clientes::listar`] returns.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consulta {
    /// Only the clients whose name or email contains this, ignoring case.
    pub buscar: Option<String>,
    /// The order.
    pub orden: Orden,
    /// Descending rather than ascending.
    pub descendente: bool,
    /// At most this many.
    pub limite: u32,
    /// Skip this many.
    pub desde: u32,
}

impl Consulta {
    fn patron(&self) -> Option<String> {
        self.buscar.as_deref().map(clave).and_then(|b| daemon::like_pattern(&b))
    }

    /// The `ORDER BY` clause: built from the enum only, never from the request's text.
    fn order_by(&self) -> &'static str {
        match (self.orden, self.descendente) {
            (Orden::Nombre, false) => "clave_nombre ASC, id ASC",
            (Orden::Nombre, true) => "clave_nombre DESC, id DESC",
            (Orden::FechaRegistro, false) => "fecha_registro ASC, id ASC",
            (Orden::FechaRegistro, true) => "fecha_registro DESC, id DESC",
        }
    }
}

type Fila = (String, String, String, String, NaiveDate, DateTime<Utc>, i64, Option<DateTime<Utc>>);

fn decode<T: std::str::FromStr>(s: &str) -> Result<T, sqlx::Error>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    s.parse().map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

fn cliente(fila: Fila) -> Result<Cliente, sqlx::Error> {
    let (id, nombre, email, cedula, fecha_nacimiento, fecha_registro, total_pagos, ultimo_pago) = fila;
    Ok(Cliente {
        id: decode(&id)?,
        nombre: decode(&nombre)?,
        email: decode(&email)?,
        cedula: decode(&cedula)?,
        fecha_nacimiento,
        fecha_registro,
        total_pagos,
        ultimo_pago,
    })
}

const COLUMNS: &str = "id, nombre, email, cedula, fecha_nacimiento, fecha_registro, total_pagos, ultimo_pago";
const SELECT: &str = "SELECT id, nombre, email, cedula, fecha_nacimiento, fecha_registro, total_pagos, ultimo_pago \
                      FROM cliente WHERE id = $1";
/// The filter of a list: the name's key or the (already lower-case) email contains the pattern.
const MATCHES: &str = "($1 IS NULL OR clave_nombre LIKE $1 ESCAPE '\\' OR email LIKE $1 ESCAPE '\\')";

/// A text as lists sort and search names: lower case, accents dropped (`Álvaro` → `alvaro`),
/// the same in PostgreSQL and SQLite whatever their collation.
pub fn clave(text: &str) -> String {
    use unicode_normalization::char::is_combining_mark;
    use unicode_normalization::UnicodeNormalization;
    text.nfd().filter(|c| !is_combining_mark(*c)).collect::<String>().to_lowercase()
}

macro_rules! sql_clientes {
    ($(#[$meta:meta])* $name:ident, $pool:ty) => {
        $(#[$meta])*
        #[derive(Clone, Debug)]
        pub struct $name {
            /// The cliente database.
            pub pool: $pool,
        }

        #[async_trait]
        impl Clientes for $name {
            async fn registrar(&self, nuevo: &NuevoCliente) -> Result<Registro, sqlx::Error> {
                let existente = |c: Cliente| if nuevo.es(&c) { Registro::Repetido(c) } else { Registro::IdOcupado };
                if let Some(c) = self.buscar(nuevo.id.as_str()).await? {
                    return Ok(existente(c));
                }
                // A concurrent registration of the same id or email may win between the look-up
                // and here: the insert then does nothing (on PostgreSQL, after waiting for the
                // winner's commit), and the winner is read back.
                let fecha_registro = ahora();
                let inserted = sqlx::query(
                    "INSERT INTO cliente (id, nombre, email, cedula, fecha_nacimiento, fecha_registro, total_pagos, clave_nombre) \
                     VALUES ($1, $2, $3, $4, $5, $6, 0, $7) ON CONFLICT DO NOTHING",
                )
                .bind(nuevo.id.as_str())
                .bind(nuevo.nombre.as_str())
                .bind(nuevo.email.as_str())
                .bind(nuevo.cedula.as_str())
                .bind(nuevo.fecha_nacimiento)
                .bind(fecha_registro)
                .bind(clave(nuevo.nombre.as_str()))
                .execute(&self.pool)
                .await?
                .rows_affected();
                if inserted == 1 {
                    return Ok(Registro::Creado(Cliente {
                        id: nuevo.id.clone(),
                        nombre: nuevo.nombre.clone(),
                        email: nuevo.email.clone(),
                        cedula: nuevo.cedula.clone(),
                        fecha_nacimiento: nuevo.fecha_nacimiento,
                        fecha_registro,
                        total_pagos: 0,
                        ultimo_pago: None,
                    }));
                }
                Ok(match self.buscar(nuevo.id.as_str()).await? {
                    Some(c) => existente(c),
                    None => Registro::EmailOcupado,
                })
            }

            async fn buscar(&self, id: &str) -> Result<Option<Cliente>, sqlx::Error> {
                let fila: Option<Fila> = sqlx::query_as(SELECT).bind(id).fetch_optional(&self.pool).await?;
                fila.map(cliente).transpose()
            }

            async fn listar(&self, consulta: &Consulta) -> Result<(Vec<Cliente>, u64), sqlx::Error> {
                let patron = consulta.patron();
                let filas: Vec<Fila> = sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM cliente WHERE {MATCHES} ORDER BY {} LIMIT $2 OFFSET $3",
                    consulta.order_by()
                ))
                .bind(patron.as_deref())
                .bind(i64::from(consulta.limite))
                .bind(i64::from(consulta.desde))
                .fetch_all(&self.pool)
                .await?;
                let total: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM cliente WHERE {MATCHES}"))
                    .bind(patron.as_deref())
                    .fetch_one(&self.pool)
                    .await?;
                let clientes = filas.into_iter().map(cliente).collect::<Result<_, _>>()?;
                Ok((clientes, u64::try_from(total).unwrap_or(0)))
            }
        }
    };
}

sql_clientes!(
    /// The clients in PostgreSQL.
    PgClientes,
    PgPool
);
sql_clientes!(
    /// The clients in SQLite (the embedded mode).
    SqliteClientes,
    SqlitePool
);

#[cfg(test)]
mod tests {
    use super::clave;

    #[test]
    fn a_name_key_drops_case_and_accents_only() {
        assert_eq!(clave("Álvaro Pérez"), "alvaro perez");
        assert_eq!(clave("NÚÑEZ"), "nunez");
        assert_eq!(clave("ana@example.com"), "ana@example.com");
        assert_eq!(clave("100%_x"), "100%_x");
    }
}
