//! The value objects of a client: its id, name, email and cédula. An invalid one cannot be
//! built: each is made through `FromStr` (or `TryFrom`), whose error says why.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The longest email: the limit of a forward path in SMTP (RFC 5321), 254 characters.
pub const MAX_EMAIL: usize = 254;
/// The fewest digits of a cédula.
pub const MIN_CEDULA: usize = 5;
/// The most digits of a cédula: the longest national id among the countries served.
pub const MAX_CEDULA: usize = 15;
/// The longest client id.
pub const MAX_ID: usize = 64;
/// The longest name.
pub const MAX_NOMBRE: usize = 200;

/// A client's id: 1 to [`MAX_ID`] characters of `A-Z a-z 0-9 . _ -` (it is used in URLs).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdCliente(String);

/// Why a client id is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdInvalido {
    /// Empty.
    #[error("el id está vacío")]
    Vacio,
    /// Too long.
    #[error("el id tiene más de {MAX_ID} caracteres")]
    Largo,
    /// A character outside the allowed set.
    #[error("el id solo admite letras sin tilde, dígitos, '.', '_' y '-'")]
    Caracter,
}

impl FromStr for IdCliente {
    type Err = IdInvalido;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IdInvalido::Vacio);
        }
        if s.len() > MAX_ID {
            return Err(IdInvalido::Largo);
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err(IdInvalido::Caracter);
        }
        Ok(IdCliente(s.to_owned()))
    }
}

/// A client's name: trimmed, 1 to [`MAX_NOMBRE`] characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Nombre(String);

/// Why a name is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NombreInvalido {
    /// Empty, or only spaces.
    #[error("el nombre está vacío")]
    Vacio,
    /// Too long.
    #[error("el nombre tiene más de {MAX_NOMBRE} caracteres")]
    Largo,
}

impl FromStr for Nombre {
    type Err = NombreInvalido;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(NombreInvalido::Vacio);
        }
        if s.chars().count() > MAX_NOMBRE {
            return Err(NombreInvalido::Largo);
        }
        Ok(Nombre(s.to_owned()))
    }
}

/// An email address: trimmed and lower-cased (one client per address, however it was typed),
/// with one `@`, a non-empty local part, a domain with a dot and no empty label, no whitespace,
/// at most [`MAX_EMAIL`] characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why an email is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmailInvalido {
    /// Empty, or only spaces.
    #[error("el email está vacío")]
    Vacio,
    /// Too long.
    #[error("el email tiene más de {MAX_EMAIL} caracteres")]
    Largo,
    /// Whitespace inside.
    #[error("el email no puede tener espacios")]
    Espacios,
    /// No `@`, or more than one.
    #[error("el email debe tener exactamente una @")]
    Arroba,
    /// Nothing before the `@`.
    #[error("el email no tiene nada antes de la @")]
    SinUsuario,
    /// The domain has no dot, or an empty label (`a@b`, `a@.b`, `a@b..c`, `a@b.`).
    #[error("el dominio del email debe tener un punto y ninguna parte vacía")]
    Dominio,
}

impl FromStr for Email {
    type Err = EmailInvalido;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(EmailInvalido::Vacio);
        }
        if s.chars().count() > MAX_EMAIL {
            return Err(EmailInvalido::Largo);
        }
        if s.chars().any(char::is_whitespace) {
            return Err(EmailInvalido::Espacios);
        }
        let (usuario, dominio) = match s.split_once('@') {
            Some((u, d)) if !d.contains('@') => (u, d),
            _ => return Err(EmailInvalido::Arroba),
        };
        if usuario.is_empty() {
            return Err(EmailInvalido::SinUsuario);
        }
        if !dominio.contains('.') || dominio.split('.').any(str::is_empty) {
            return Err(EmailInvalido::Dominio);
        }
        Ok(Email(s.to_lowercase()))
    }
}

/// A cédula (national id number): [`MIN_CEDULA`] to [`MAX_CEDULA`] ASCII digits. JSON gives it
/// as a string or as an integer (`"1020304050"` or `1020304050`); a string keeps its leading
/// zeros, an integer has none.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "CedulaJson", into = "String")]
pub struct Cedula(String);

/// Why a cédula is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CedulaInvalida {
    /// Something other than digits.
    #[error("la cédula solo admite dígitos")]
    NoNumerica,
    /// Too short or too long.
    #[error("la cédula debe tener de {MIN_CEDULA} a {MAX_CEDULA} dígitos")]
    Longitud,
}

impl FromStr for Cedula {
    type Err = CedulaInvalida;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CedulaInvalida::NoNumerica);
        }
        if !(MIN_CEDULA..=MAX_CEDULA).contains(&s.len()) {
            return Err(CedulaInvalida::Longitud);
        }
        Ok(Cedula(s.to_owned()))
    }
}

impl TryFrom<u64> for Cedula {
    type Error = CedulaInvalida;
    fn try_from(n: u64) -> Result<Self, Self::Error> {
        n.to_string().parse()
    }
}

/// A cédula as JSON may carry it.
#[derive(Deserialize)]
#[serde(untagged)]
enum CedulaJson {
    Texto(String),
    Numero(u64),
}

impl TryFrom<CedulaJson> for Cedula {
    type Error = CedulaInvalida;
    fn try_from(c: CedulaJson) -> Result<Self, Self::Error> {
        match c {
            CedulaJson::Texto(s) => s.parse(),
            CedulaJson::Numero(n) => Cedula::try_from(n),
        }
    }
}

macro_rules! texto {
    ($($t:ident: $err:ident),+) => {$(
        impl $t {
            /// The value.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $t {
            type Error = $err;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                s.parse()
            }
        }

        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
    )+};
}

texto!(IdCliente: IdInvalido, Nombre: NombreInvalido, Email: EmailInvalido, Cedula: CedulaInvalida);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!("  Ana.Garcia@Example.COM ".parse::<Email>().map(|e| e.0), Ok("ana.garcia@example.com".into()));
        assert_eq!("a@b.co".parse::<Email>().map(|e| e.0), Ok("a@b.co".into()));
        let bad = [
            ("", EmailInvalido::Vacio),
            ("   ", EmailInvalido::Vacio),
            ("a b@c.de", EmailInvalido::Espacios),
            ("a@c.d\te", EmailInvalido::Espacios),
            ("ab.cd", EmailInvalido::Arroba),
            ("a@b@c.de", EmailInvalido::Arroba),
            ("@c.de", EmailInvalido::SinUsuario),
            ("a@cde", EmailInvalido::Dominio),
            ("a@.cde", EmailInvalido::Dominio),
            ("a@c..de", EmailInvalido::Dominio),
            ("a@cde.", EmailInvalido::Dominio),
        ];
        for (raw, why) in bad {
            assert_eq!(raw.parse::<Email>(), Err(why), "{raw:?}");
        }
        let local = "a".repeat(MAX_EMAIL - "@b.co".len());
        assert!(format!("{local}@b.co").parse::<Email>().is_ok());
        assert_eq!(format!("{local}x@b.co").parse::<Email>(), Err(EmailInvalido::Largo));
    }

    #[test]
    fn cedulas_are_five_to_fifteen_digits_from_text_or_integer() {
        assert_eq!("01234".parse::<Cedula>().map(|c| c.0), Ok("01234".into()));
        assert_eq!("1234".parse::<Cedula>(), Err(CedulaInvalida::Longitud));
        assert_eq!("1".repeat(16).parse::<Cedula>(), Err(CedulaInvalida::Longitud));
        assert!("1".repeat(15).parse::<Cedula>().is_ok());
        assert_eq!("12a45".parse::<Cedula>(), Err(CedulaInvalida::NoNumerica));
        assert_eq!("-12345".parse::<Cedula>(), Err(CedulaInvalida::NoNumerica));
        assert_eq!(" 12345".parse::<Cedula>(), Err(CedulaInvalida::NoNumerica));
        let json = |v: serde_json::Value| serde_json::from_value::<Cedula>(v).map(|c| c.0).ok();
        assert_eq!(json(serde_json::json!(1_020_304_050)), Some("1020304050".into()));
        assert_eq!(json(serde_json::json!("1020304050")), Some("1020304050".into()));
        assert_eq!(json(serde_json::json!(-12345)), None);
        assert_eq!(json(serde_json::json!(12345.5)), None);
        assert_eq!(json(serde_json::json!(1234)), None);
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!("partner-7_A.b".parse::<IdCliente>().is_ok());
        assert_eq!("".parse::<IdCliente>(), Err(IdInvalido::Vacio));
        assert_eq!("a/b".parse::<IdCliente>(), Err(IdInvalido::Caracter));
        assert_eq!("ñandú".parse::<IdCliente>(), Err(IdInvalido::Caracter));
        assert!("x".repeat(MAX_ID).parse::<IdCliente>().is_ok());
        assert_eq!("x".repeat(MAX_ID + 1).parse::<IdCliente>(), Err(IdInvalido::Largo));
        assert_eq!("  Ana  ".parse::<Nombre>().map(|n| n.0), Ok("Ana".into()));
        assert_eq!(" ".parse::<Nombre>(), Err(NombreInvalido::Vacio));
        assert!("ñ".repeat(MAX_NOMBRE).parse::<Nombre>().is_ok());
        assert_eq!("ñ".repeat(MAX_NOMBRE + 1).parse::<Nombre>(), Err(NombreInvalido::Largo));
    }
}
