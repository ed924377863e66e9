//! The saga cases the embedded and the distributed end-to-end tests both run, so the two modes
//! are held to the same expectations.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use serde_json::{json, Value};

/// A business failure: the request, the step that refuses it, the code, and the compensations
/// the saga must send, in order.
pub struct Fallo {
    pub solicitud: Value,
    pub paso: &'static str,
    pub codigo: &'static str,
    pub compensaciones: Vec<(String, String)>,
}

pub fn pair(step: &str, kind: &str) -> (String, String) {
    (step.to_owned(), kind.to_owned())
}

/// Each business failure in turn, built from `ejemplo` (a valid request for Nike with two
/// influencers): a refusal compensates every step that ran (its parallel sibling included), in
/// reverse dependency order.
pub fn fallos(ejemplo: impl Fn() -> Value) -> Vec<Fallo> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = ejemplo();
        edit(&mut body);
        body
    };
    vec![
        Fallo {
            solicitud: with(&|b| b["marca"]["id_marca"] = json!("999e4567-e89b-12d3-a456-426614174000")),
            paso: "reservar_presupuesto",
            codigo: "MARCA_DESCONOCIDA",
            compensaciones: vec![],
        },
        Fallo {
            solicitud: with(&|b| b["marca"]["id_marca"] = json!("323e4567-e89b-12d3-a456-426614174000")),
            paso: "reservar_presupuesto",
            codigo: "MARCA_INACTIVA",
            compensaciones: vec![],
        },
        Fallo {
            solicitud: with(&|b| b["influencers"][1]["seguidores"] = json!(10)),
            paso: "reservar_influencers",
            codigo: "AUDIENCIA_INSUFICIENTE",
            // tracking ran beside it: it is waited for, then closed, then the budget released.
            compensaciones: vec![pair("abrir_tracking", "compensation"), pair("reservar_presupuesto", "compensation")],
        },
        Fallo {
            solicitud: with(&|b| b["fecha_fin"] = json!("2028-01-01T00:00:00")),
            paso: "abrir_tracking",
            codigo: "FECHAS_INVALIDAS",
            compensaciones: vec![
                pair("reservar_influencers", "compensation"),
                pair("reservar_presupuesto", "compensation"),
            ],
        },
    ]
}

/// The (step, kind) of every command a saga sent, in order, without retries, from the answer of
/// `GET /sagas/{id}`.
pub fn comandos(saga: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for e in saga["historia"].as_array().expect("a history") {
        if e["event"]["type"] == "command_sent" {
            let c = &e["event"]["command"]["correlation"];
            let key = (c["step_name"].as_str().unwrap_or("?").to_owned(), c["kind"].as_str().unwrap_or("?").to_owned());
            if !out.contains(&key) {
                out.push(key);
            }
        }
    }
    out
}

/// A client as `POST /cliente/registrar` takes it, with an id and an email of its own.
pub fn cliente() -> (String, Value) {
    let id = format!("partner-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let body = json!({
        "id": id, "nombre": "Laura Gómez", "email": format!("{id}@alpes.example.com"),
        "cedula": "1032456789", "fecha_nacimiento": "1990-05-17"
    });
    (id, body)
}

/// A payout request as `POST /pagos/pagar` takes it, for `partner` and a cycle of its own.
pub fn pago(partner: &str) -> Value {
    json!({
        "partner_id": partner, "cycle_id": format!("2025-{}", uuid::Uuid::new_v4().simple()),
        "total_amount": 1500.5, "currency": "USD",
        "payment_method_type": "BANK_TRANSFER", "payment_method_mask": "****1234",
        "confirmation_id": "conf-2025-01", "processed_at": null, "completed_at": null
    })
}

/// The payout's steps as the saga sends them when it completes: record, then send and credit in
/// parallel (in either order), then confirm.
pub fn pasos_pago_completo(sent: &[(String, String)]) -> bool {
    let actions: Vec<&str> = sent.iter().filter(|(_, k)| k == "action").map(|(s, _)| s.as_str()).collect();
    actions.len() == 4
        && actions[0] == "registrar_pago"
        && actions[3] == "confirmar_pago"
        && actions[1..3].contains(&"enviar_pago")
        && actions[1..3].contains(&"registrar_pago_cliente")
        && sent.iter().all(|(_, k)| k == "action")
}

/// Each business refusal of the payment provider, built from `pago`: the client was credited
/// beside it, so the saga undoes that, then marks the payout failed.
pub fn fallos_pago(pago: impl Fn() -> Value) -> Vec<Fallo> {
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut body = pago();
        edit(&mut body);
        body
    };
    let compensaciones =
        || vec![pair("registrar_pago_cliente", "compensation"), pair("registrar_pago", "compensation")];
    vec![
        Fallo {
            solicitud: with(&|b| b["payment_method_mask"] = json!("****0002")),
            paso: "enviar_pago",
            codigo: "TARJETA_RECHAZADA",
            compensaciones: compensaciones(),
        },
        Fallo {
            solicitud: with(&|b| b["total_amount"] = json!(100_000.01)),
            paso: "enviar_pago",
            codigo: "LIMITE_EXCEDIDO",
            compensaciones: compensaciones(),
        },
        Fallo {
            solicitud: with(&|b| b["payment_method_type"] = json!("CRYPTO")),
            paso: "enviar_pago",
            codigo: "METODO_NO_SOPORTADO",
            compensaciones: compensaciones(),
        },
    ]
}
