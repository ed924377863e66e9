//! The body of `POST /afiliaciones/campana`, exactly as the public API has always taken it, and
//! its validation: every field error is collected (not only the first), so a client fixes its
//! request in one round trip; a valid request becomes the saga's [`CrearCampana`] parameters.

use chrono::NaiveDateTime;
use schemas::{Centavos, ImporteInvalido, Influencer, Marca};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::sagas::crear_campana::CrearCampana;

/// One problem with one field of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorCampo {
    /// The field's path, e.g. `influencers[1].seguidores`.
    pub campo: String,
    /// What is wrong with it.
    pub error: String,
}

/// Longest name, brand name, influencer name, platform and category.
pub const MAX_TEXTO: usize = 200;
/// Longest description.
pub const MAX_DESCRIPCION: usize = 2_000;
/// Most influencers in one campaign.
pub const MAX_INFLUENCERS: usize = 100;
/// Largest budget: 10^12 minor units (ten billion in the currency): far beyond any campaign, far
/// below an overflow.
pub const MAX_PRESUPUESTO_CENTAVOS: i64 = 1_000_000_000_000;

/// The fields the body takes; any other is an error.
pub const CAMPOS: &[&str] =
    &["nombre", "descripcion", "tipo", "fecha_inicio", "fecha_fin", "presupuesto", "marca", "influencers"];
/// The fields of `marca`.
pub const CAMPOS_MARCA: &[&str] = &["id_marca", "nombre_marca"];
/// The fields of each influencer.
pub const CAMPOS_INFLUENCER: &[&str] = &["nombre", "plataforma", "seguidores", "categoria"];

/// The date form the public API uses (no zone).
pub const FORMATO_FECHA: &str = "%Y-%m-%dT%H:%M:%S";

struct Check {
    errors: Vec<ErrorCampo>,
}

impl Check {
    /// Fails every field of `obj` not in `known`, under `prefix` (`marca.`, `influencers[0].`).
    fn only(&mut self, obj: &Value, known: &[&str], prefix: &str) {
        for campo in daemon::unknown_fields(obj, known) {
            self.fail(&format!("{prefix}{campo}"), daemon::UNKNOWN_FIELD);
        }
    }

    fn fail(&mut self, campo: &str, error: impl Into<String>) {
        self.errors.push(ErrorCampo { campo: campo.to_owned(), error: error.into() });
    }

    fn text(&mut self, obj: &Value, campo: &str, path: &str, max: usize) -> Option<String> {
        match obj.get(campo) {
            None | Some(Value::Null) => self.fail(path, "es obligatorio"),
            Some(Value::String(s)) if s.trim().is_empty() => self.fail(path, "no puede estar vacío"),
            Some(Value::String(s)) if s.chars().count() > max => {
                self.fail(path, format!("admite a lo sumo {max} caracteres"))
            }
            Some(Value::String(s)) => return Some(s.trim().to_owned()),
            Some(_) => self.fail(path, "debe ser un texto"),
        }
        None
    }

    fn date(&mut self, obj: &Value, campo: &str) -> Option<NaiveDateTime> {
        let text = self.text(obj, campo, campo, 40)?;
        match NaiveDateTime::parse_from_str(&text, FORMATO_FECHA) {
            Ok(t) => Some(t),
            Err(_) => {
                self.fail(campo, "debe ser una fecha y hora AAAA-MM-DDTHH:MM:SS");
                None
            }
        }
    }
}

/// Validates a request body (already parsed as JSON) and builds the saga's parameters with the
/// campaign id `id_campana`. `Err` lists every field error.
pub fn validar(body: &Value, id_campana: Uuid) -> Result<CrearCampana, Vec<ErrorCampo>> {
    let mut c = Check { errors: Vec::new() };
    if !body.is_object() {
        c.fail("", "el cuerpo debe ser un objeto JSON");
        return Err(c.errors);
    }
    c.only(body, CAMPOS, "");
    let nombre = c.text(body, "nombre", "nombre", MAX_TEXTO);
    let descripcion = match body.get("descripcion") {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) if s.chars().count() > MAX_DESCRIPCION => {
            c.fail("descripcion", format!("admite a lo sumo {MAX_DESCRIPCION} caracteres"));
            None
        }
        Some(Value::String(s)) => Some(s.trim().to_owned()),
        Some(_) => {
            c.fail("descripcion", "debe ser un texto");
            None
        }
    };
    let tipo = c.text(body, "tipo", "tipo", 50);
    let inicio = c.date(body, "fecha_inicio");
    let fin = c.date(body, "fecha_fin");
    if let (Some(i), Some(f)) = (inicio, fin) {
        if f <= i {
            c.fail("fecha_fin", "debe ser posterior a fecha_inicio");
        }
    }
    let presupuesto = match body.get("presupuesto") {
        None | Some(Value::Null) => {
            c.fail("presupuesto", "es obligatorio");
            None
        }
        Some(Value::Number(n)) => match n.as_f64() {
            Some(v) if v <= 0.0 => {
                c.fail("presupuesto", "debe ser mayor que cero");
                None
            }
            Some(v) => match Centavos::from_decimal(v) {
                Ok(centavos) if centavos.0 <= MAX_PRESUPUESTO_CENTAVOS => Some(centavos),
                Ok(_) | Err(ImporteInvalido::FueraDeRango) => {
                    c.fail("presupuesto", "es demasiado grande");
                    None
                }
                Err(ImporteInvalido::DemasiadosDecimales) => {
                    c.fail("presupuesto", "admite a lo sumo dos decimales");
                    None
                }
            },
            None => {
                c.fail("presupuesto", "debe ser un número");
                None
            }
        },
        Some(_) => {
            c.fail("presupuesto", "debe ser un número");
            None
        }
    };
    let marca = match body.get("marca") {
        Some(m @ Value::Object(_)) => {
            c.only(m, CAMPOS_MARCA, "marca.");
            let id = match m.get("id_marca") {
                Some(Value::String(s)) => match Uuid::parse_str(s) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        c.fail("marca.id_marca", "debe ser un UUID");
                        None
                    }
                },
                None | Some(Value::Null) => {
                    c.fail("marca.id_marca", "es obligatorio");
                    None
                }
                Some(_) => {
                    c.fail("marca.id_marca", "debe ser un UUID");
                    None
                }
            };
            let nombre = c.text(m, "nombre_marca", "marca.nombre_marca", MAX_TEXTO);
            id.zip(nombre).map(|(id_marca, nombre_marca)| Marca { id_marca, nombre_marca })
        }
        None | Some(Value::Null) => {
            c.fail("marca", "es obligatorio");
            None
        }
        Some(_) => {
            c.fail("marca", "debe ser un objeto");
            None
        }
    };
    let influencers = match body.get("influencers") {
        Some(Value::Array(list)) if list.is_empty() => {
            c.fail("influencers", "debe tener al menos un influencer");
            None
        }
        Some(Value::Array(list)) if list.len() > MAX_INFLUENCERS => {
            c.fail("influencers", format!("admite a lo sumo {MAX_INFLUENCERS} influencers"));
            None
        }
        Some(Value::Array(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for (n, item) in list.iter().enumerate() {
                let path = |f: &str| format!("influencers[{n}].{f}");
                if !item.is_object() {
                    c.fail(&format!("influencers[{n}]"), "debe ser un objeto");
                    continue;
                }
                c.only(item, CAMPOS_INFLUENCER, &format!("influencers[{n}]."));
                let nombre = c.text(item, "nombre", &path("nombre"), MAX_TEXTO);
                let plataforma = c.text(item, "plataforma", &path("plataforma"), MAX_TEXTO);
                let categoria = c.text(item, "categoria", &path("categoria"), MAX_TEXTO);
                let seguidores = match item.get("seguidores") {
                    Some(Value::Number(s)) => match s.as_u64().and_then(|v| u32::try_from(v).ok()) {
                        Some(v) => Some(v),
                        None => {
                            c.fail(&path("seguidores"), "debe ser un entero entre 0 y 4294967295");
                            None
                        }
                    },
                    None | Some(Value::Null) => {
                        c.fail(&path("seguidores"), "es obligatorio");
                        None
                    }
                    Some(_) => {
                        c.fail(&path("seguidores"), "debe ser un número entero");
                        None
                    }
                };
                if let (Some(nombre), Some(plataforma), Some(seguidores), Some(categoria)) =
                    (nombre, plataforma, seguidores, categoria)
                {
                    out.push(Influencer { nombre, plataforma, seguidores, categoria });
                }
            }
            Some(out)
        }
        None | Some(Value::Null) => {
            c.fail("influencers", "es obligatorio");
            None
        }
        Some(_) => {
            c.fail("influencers", "debe ser una lista");
            None
        }
    };
    match (nombre, descripcion, tipo, inicio, fin, presupuesto, marca, influencers) {
        (
            Some(nombre),
            Some(descripcion),
            Some(tipo),
            Some(fecha_inicio),
            Some(fecha_fin),
            Some(presupuesto_centavos),
            Some(marca),
            Some(influencers),
        ) if c.errors.is_empty() => Ok(CrearCampana {
            id_campana,
            nombre,
            descripcion,
            tipo,
            fecha_inicio,
            fecha_fin,
            presupuesto_centavos,
            marca,
            influencers,
        }),
        _ => Err(c.errors),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The public API's documented example request, as it is taken.
    fn ejemplo() -> Value {
        json!({ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
          "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "2025-12-31T23:59:59",
          "presupuesto": 15000, "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
          "influencers": [ { "nombre": "Ana García", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                           { "nombre": "Carlos López", "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] })
    }

    fn campos(body: Value) -> Vec<String> {
        validar(&body, Uuid::now_v7()).expect_err("invalid").into_iter().map(|e| e.campo).collect()
    }

    #[test]
    fn the_public_example_is_valid() {
        let id = Uuid::now_v7();
        let c = validar(&ejemplo(), id).expect("valid");
        assert_eq!(c.id_campana, id);
        assert_eq!(c.presupuesto_centavos, Centavos(1_500_000));
        assert_eq!(c.influencers.len(), 2);
        assert_eq!(c.marca.nombre_marca, "Nike");
        assert_eq!(c.fecha_fin.to_string(), "2025-12-31 23:59:59");
    }

    #[test]
    fn every_field_error_is_listed() {
        let body = json!({ "nombre": "", "tipo": 3, "fecha_inicio": "2025-13-01T00:00:00", "fecha_fin": "ayer",
            "presupuesto": -5, "marca": { "id_marca": "no-uuid" },
            "influencers": [ { "nombre": "Ana", "plataforma": "Instagram", "seguidores": -1, "categoria": "x" }, 7 ] });
        assert_eq!(
            campos(body),
            vec![
                "nombre",
                "tipo",
                "fecha_inicio",
                "fecha_fin",
                "presupuesto",
                "marca.id_marca",
                "marca.nombre_marca",
                "influencers[0].seguidores",
                "influencers[1]"
            ]
        );
    }

    #[test]
    fn dates_budget_and_lists_have_their_rules() {
        let mut b = ejemplo();
        b["fecha_fin"] = json!("2024-12-31T00:00:00");
        assert_eq!(campos(b), vec!["fecha_fin"]);
        let mut b = ejemplo();
        b["presupuesto"] = json!(0);
        assert_eq!(campos(b), vec!["presupuesto"]);
        let mut b = ejemplo();
        b["presupuesto"] = json!(10.005);
        assert_eq!(campos(b), vec!["presupuesto"]);
        let mut b = ejemplo();
        b["presupuesto"] = json!(99.99);
        assert_eq!(validar(&b, Uuid::now_v7()).expect("valid").presupuesto_centavos, Centavos(9_999));
        let mut b = ejemplo();
        b["influencers"] = json!([]);
        assert_eq!(campos(b), vec!["influencers"]);
        let mut b = ejemplo();
        b["influencers"] = json!(vec![ejemplo()["influencers"][0].clone(); MAX_INFLUENCERS + 1]);
        assert_eq!(campos(b), vec!["influencers"]);
        let mut b = ejemplo();
        b["nombre"] = json!("x".repeat(MAX_TEXTO + 1));
        assert_eq!(campos(b), vec!["nombre"]);
        assert_eq!(campos(json!([1, 2])), vec![""]);
        let mut b = ejemplo();
        b.as_object_mut().expect("object").remove("marca");
        assert_eq!(campos(b), vec!["marca"]);
    }
}
