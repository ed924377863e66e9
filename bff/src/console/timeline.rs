//! One saga's history drawn as a picture: an SVG with a time axis, one row per step and
//! direction (action, compensation), one bar per attempt from the command sent to its answer
//! (or its timeout, or now while it is in flight), and marks for what happens between: retries
//! scheduled, replies ignored, the turn to compensation, operator actions, the end.
//!
//! Built from `GET /sagas/{id}`'s `historia` (the saga log, as the CLI's `saga show` prints
//! it): the same data, drawn. Every bar and mark carries its data as attributes
//! (`data-step`, `data-kind`, `data-attempt`, `data-outcome`, `data-start-ms`) and a `<title>`,
//! so a screen reader or a test reads what the eye sees.

use chrono::{DateTime, Utc};
use maud::{html, Markup};
use serde_json::Value;

/// One attempt of one step in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct Barra {
    /// The step's name.
    pub step: String,
    /// `action` or `compensation`.
    pub kind: String,
    /// The attempt, from 1.
    pub attempt: u64,
    /// When its command was sent.
    pub start: DateTime<Utc>,
    /// When its answer (or timeout) came; `None` while in flight.
    pub end: Option<DateTime<Utc>>,
    /// `success`, `business_failure`, `transient`, `timed_out`, or `in_flight`.
    pub outcome: String,
    /// The participant it went to.
    pub participant: String,
}

/// Something that happened at one instant.
#[derive(Clone, Debug, PartialEq)]
pub struct Marca {
    /// When.
    pub at: DateTime<Utc>,
    /// The log event's type (`retry_scheduled`, `reply_ignored`, `operator_retried`, …).
    pub kind: String,
    /// What to say about it.
    pub label: String,
    /// The step it concerns, when it concerns one.
    pub step: Option<String>,
    /// And in which direction (`action`, `compensation`), when known.
    pub direction: Option<String>,
}

/// What the picture shows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Timeline {
    /// The definition's steps, in order.
    pub steps: Vec<String>,
    /// Every attempt, in the order the commands were sent.
    pub barras: Vec<Barra>,
    /// Every mark, in log order.
    pub marcas: Vec<Marca>,
    /// The first entry's time.
    pub start: Option<DateTime<Utc>>,
    /// The last entry's time.
    pub end: Option<DateTime<Utc>>,
}

fn at(entry: &Value) -> Option<DateTime<Utc>> {
    entry["at"].as_str().and_then(|t| DateTime::parse_from_rfc3339(t).ok()).map(|t| t.to_utc())
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

impl Timeline {
    /// The timeline of a saga log (`historia`: entries `{seq, at, event: {type, …}}`).
    pub fn of(historia: &[Value]) -> Timeline {
        let mut t = Timeline::default();
        for entry in historia {
            let Some(when) = at(entry) else { continue };
            t.start = Some(t.start.map_or(when, |s| s.min(when)));
            t.end = Some(t.end.map_or(when, |e| e.max(when)));
            let e = &entry["event"];
            let step_name = |index: &Value| {
                index.as_u64().and_then(|i| t.steps.get(i as usize).cloned()).unwrap_or_else(|| format!("paso {index}"))
            };
            match e["type"].as_str().unwrap_or_default() {
                "started" => {
                    t.steps = e["steps"].as_array().map(|s| s.iter().map(text).collect()).unwrap_or_default();
                }
                "command_sent" => {
                    let c = &e["command"]["correlation"];
                    t.barras.push(Barra {
                        step: text(&c["step_name"]),
                        kind: text(&c["kind"]),
                        attempt: c["attempt"].as_u64().unwrap_or(1),
                        start: when,
                        end: None,
                        outcome: "in_flight".into(),
                        participant: text(&e["command"]["participant"]),
                    });
                }
                kind @ ("reply_accepted" | "timed_out") => {
                    let (step, direction, attempt) = (step_name(&e["step"]), text(&e["kind"]), e["attempt"].as_u64());
                    let outcome =
                        if kind == "timed_out" { "timed_out".to_owned() } else { text(&e["outcome"]["outcome"]) };
                    if let Some(b) = t.barras.iter_mut().rev().find(|b| {
                        b.step == step && b.kind == direction && Some(b.attempt) == attempt && b.end.is_none()
                    }) {
                        b.end = Some(when);
                        b.outcome = outcome;
                    }
                }
                "retry_scheduled" => t.marcas.push(Marca {
                    at: when,
                    kind: "retry_scheduled".into(),
                    label: format!("reintento {} programado", e["attempt"]),
                    step: Some(step_name(&e["step"])),
                    direction: e["kind"].as_str().map(str::to_owned),
                }),
                "reply_ignored" => t.marcas.push(Marca {
                    at: when,
                    kind: "reply_ignored".into(),
                    label: format!("respuesta ignorada: {}", text(&e["why"])),
                    step: e["correlation"]["step_name"].as_str().map(str::to_owned),
                    direction: e["correlation"]["kind"].as_str().map(str::to_owned),
                }),
                "build_failed" | "gave_up" => t.marcas.push(Marca {
                    at: when,
                    kind: text(&e["type"]),
                    label: text(&e["type"]).replace('_', " "),
                    step: Some(step_name(&e["step"])),
                    direction: e["kind"].as_str().map(str::to_owned),
                }),
                "compensation_started" => t.marcas.push(Marca {
                    at: when,
                    kind: "compensation_started".into(),
                    label: format!("compensación: {}", failure(&e["failure"])),
                    step: None,
                    direction: None,
                }),
                "operator_retried" | "operator_aborted" => t.marcas.push(Marca {
                    at: when,
                    kind: text(&e["type"]),
                    label: format!(
                        "{}: {}",
                        if e["type"] == "operator_retried" { "operador reintentó" } else { "operador abortó" },
                        text(&e["note"])
                    ),
                    step: None,
                    direction: None,
                }),
                kind @ ("completed" | "compensated" | "aborted" | "stuck") => t.marcas.push(Marca {
                    at: when,
                    kind: kind.into(),
                    label: match kind {
                        "stuck" => format!("atascada: {}", text(&e["reason"])),
                        other => other.into(),
                    },
                    step: None,
                    direction: None,
                }),
                _ => {}
            }
        }
        t
    }

    /// The rows: each step's action row in definition order, then each compensation row in the
    /// order its first attempt started (so the reverse order shows going down).
    pub fn filas(&self) -> Vec<(String, String)> {
        let mut filas: Vec<(String, String)> = Vec::new();
        for step in &self.steps {
            if self.barras.iter().any(|b| &b.step == step && b.kind == "action") {
                filas.push((step.clone(), "action".into()));
            }
        }
        for b in self.barras.iter().filter(|b| b.kind == "compensation") {
            let fila = (b.step.clone(), "compensation".to_owned());
            if !filas.contains(&fila) {
                filas.push(fila);
            }
        }
        // Steps missing from the definition's list (an older version): after the others.
        for b in &self.barras {
            let fila = (b.step.clone(), b.kind.clone());
            if !filas.contains(&fila) {
                filas.push(fila);
            }
        }
        filas
    }

    /// The picture, `now` closing the bars still in flight.
    pub fn svg(&self, now: DateTime<Utc>) -> Markup {
        const LEFT: f64 = 230.0;
        const WIDTH: f64 = 640.0;
        const ROW: f64 = 30.0;
        const TOP: f64 = 34.0;
        let filas = self.filas();
        let (Some(start), Some(last)) = (self.start, self.end) else {
            return html! { p { "La saga no tiene historia." } };
        };
        let in_flight = self.barras.iter().any(|b| b.end.is_none());
        let end = if in_flight { now.max(last) } else { last };
        let span_ms = ((end - start).num_microseconds().unwrap_or(0) as f64 / 1000.0).max(1.0);
        let x = |t: DateTime<Utc>| {
            let ms = (t - start).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            LEFT + (ms / span_ms).clamp(0.0, 1.0) * WIDTH
        };
        let ms_of = |t: DateTime<Utc>| (t - start).num_microseconds().unwrap_or(0) as f64 / 1000.0;
        // Below the rows: three lines of labels for the saga-wide marks, staggered.
        const LABELS: f64 = 3.0 * 13.0 + 12.0;
        let rows_bottom = TOP + ROW * filas.len().max(1) as f64;
        let height = rows_bottom + LABELS;
        let row_of = |step: &str, kind: &str| filas.iter().position(|(s, k)| s == step && k == kind).unwrap_or(0);
        let ticks: Vec<f64> = (0..=4).map(|i| span_ms * f64::from(i) / 4.0).collect();
        let total_w = LEFT + WIDTH + 20.0;
        html! {
            svg xmlns="http://www.w3.org/2000/svg" class="timeline" role="img"
                viewBox=(format!("0 0 {total_w} {height}")) width=(total_w) height=(height)
                aria-label=(format!("Línea de tiempo: {} intentos en {} filas, {:.0} ms", self.barras.len(), filas.len(), span_ms)) {
                // The time axis.
                @for ms in &ticks {
                    @let tx = LEFT + ms / span_ms * WIDTH;
                    line x1=(tx) y1=(TOP - 8.0) x2=(tx) y2=(rows_bottom) class="tick" {}
                    text x=(tx) y=(TOP - 14.0) class="tick-label" text-anchor="middle" { (duration(*ms)) }
                }
                @for (i, (step, kind)) in filas.iter().enumerate() {
                    @let y = TOP + ROW * i as f64;
                    rect x="0" y=(y) width=(total_w) height=(ROW) class=(if i % 2 == 0 { "row even" } else { "row odd" }) {}
                    text x="8" y=(y + ROW / 2.0 + 4.0) class=(format!("row-label {kind}")) {
                        (step) " · " (if kind == "action" { "acción" } else { "compensación" })
                    }
                }
                @for b in &self.barras {
                    @let row = row_of(&b.step, &b.kind);
                    @let y = TOP + ROW * row as f64 + 6.0;
                    @let x0 = x(b.start);
                    @let x1 = x(b.end.unwrap_or(end));
                    @let w = (x1 - x0).max(4.0);
                    g class=(format!("bar {} {}", b.kind, b.outcome)) data-step=(b.step) data-kind=(b.kind)
                        data-attempt=(b.attempt) data-outcome=(b.outcome) data-start-ms=(format!("{:.1}", ms_of(b.start))) {
                        title { (b.step) " " (b.kind) " #" (b.attempt) " → " (b.participant) ": " (b.outcome)
                            " (" (duration(ms_of(b.end.unwrap_or(end)) - ms_of(b.start))) ")" }
                        rect x=(x0) y=(y) width=(w) height=(ROW - 12.0) rx="3" {}
                        @if b.attempt > 1 || w > 26.0 {
                            text x=(x0 + 3.0) y=(y + ROW / 2.0 - 2.0) class="bar-label" { "#" (b.attempt) }
                        }
                    }
                }
                @for (i, m) in self.marcas.iter().filter(|m| m.step.is_none()).enumerate() {
                    @let mx = x(m.at);
                    @let ly = rows_bottom + 13.0 * (i % 3) as f64 + 13.0;
                    @let anchor = if mx > LEFT + WIDTH / 2.0 { "end" } else { "start" };
                    g class=(format!("mark {}", m.kind)) data-kind=(m.kind) data-start-ms=(format!("{:.1}", ms_of(m.at))) {
                        title { (m.label) }
                        line x1=(mx) y1=(TOP - 4.0) x2=(mx) y2=(ly - 9.0) {}
                        text x=(if anchor == "end" { mx - 3.0 } else { mx + 3.0 }) y=(ly) text-anchor=(anchor) class="mark-label" {
                            (m.label.chars().take(60).collect::<String>())
                        }
                    }
                }
                @for m in self.marcas.iter().filter(|m| m.step.is_some()) {
                    @let mx = x(m.at);
                    @let row = m.step.as_deref().and_then(|s| {
                        filas.iter().position(|(fs, fk)| fs == s && m.direction.as_deref().is_none_or(|d| d == fk))
                    });
                    g class=(format!("mark {}", m.kind)) data-kind=(m.kind) data-start-ms=(format!("{:.1}", ms_of(m.at))) {
                        title { (m.label) }
                        circle cx=(mx) cy=(TOP + ROW * row.unwrap_or(0) as f64 + 3.0) r="4" {}
                    }
                }
            }
        }
    }
}

/// A saga's failure (`{step, code, reason}`) in a few words.
fn failure(f: &Value) -> String {
    let step = f["step"].as_str().map(|s| format!(" en {s}")).unwrap_or_default();
    format!("{}{step}", f["code"].as_str().unwrap_or("?"))
}

/// `ms` for people: `850 ms`, `2.4 s`, `3 min 5 s`.
pub fn duration(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(seq: u64, ms: i64, event: Value) -> Value {
        let at = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("time").to_utc()
            + chrono::Duration::milliseconds(ms);
        json!({ "seq": seq, "at": at.to_rfc3339(), "event": event })
    }

    fn sent(step: &str, kind: &str, attempt: u64) -> Value {
        json!({ "type": "command_sent", "deadline": "2026-01-01T00:01:00Z", "command": {
            "participant": "comandos.x", "correlation": { "step_name": step, "kind": kind, "attempt": attempt } } })
    }

    fn answered(step: u64, kind: &str, attempt: u64, outcome: &str) -> Value {
        json!({ "type": "reply_accepted", "step": step, "kind": kind, "attempt": attempt, "outcome": { "outcome": outcome } })
    }

    #[test]
    fn compensations_are_rows_in_the_order_they_ran_and_attempts_are_bars() {
        let historia = vec![
            entry(1, 0, json!({ "type": "started", "steps": ["a", "b", "c"] })),
            entry(2, 0, sent("a", "action", 1)),
            entry(3, 10, answered(0, "action", 1, "success")),
            entry(4, 10, sent("b", "action", 1)),
            entry(5, 10, sent("c", "action", 1)),
            entry(6, 20, json!({ "type": "timed_out", "step": 1, "kind": "action", "attempt": 1 })),
            entry(7, 20, json!({ "type": "retry_scheduled", "step": 1, "kind": "action", "attempt": 2 })),
            entry(8, 30, sent("b", "action", 2)),
            entry(9, 35, answered(2, "action", 1, "business_failure")),
            entry(
                10,
                35,
                json!({ "type": "compensation_started", "failure": { "step": "c", "code": "X", "reason": "no" } }),
            ),
            entry(11, 40, answered(1, "action", 2, "success")),
            entry(12, 40, sent("b", "compensation", 1)),
            entry(13, 50, answered(1, "compensation", 1, "success")),
            entry(14, 50, sent("a", "compensation", 1)),
            entry(15, 55, json!({ "type": "retry_scheduled", "step": 0, "kind": "compensation", "attempt": 2 })),
            entry(16, 60, answered(0, "compensation", 1, "success")),
            entry(17, 60, json!({ "type": "compensated" })),
        ];
        let t = Timeline::of(&historia);
        let filas: Vec<String> = t.filas().iter().map(|(s, k)| format!("{s}:{k}")).collect();
        assert_eq!(filas, ["a:action", "b:action", "c:action", "b:compensation", "a:compensation"]);
        let b: Vec<(&str, u64, &str)> = t
            .barras
            .iter()
            .filter(|b| b.step == "b")
            .map(|b| (b.kind.as_str(), b.attempt, b.outcome.as_str()))
            .collect();
        assert_eq!(b, [("action", 1, "timed_out"), ("action", 2, "success"), ("compensation", 1, "success")]);
        assert_eq!(t.barras.iter().find(|b| b.step == "c").map(|b| b.outcome.as_str()), Some("business_failure"));
        let kinds: Vec<&str> = t.marcas.iter().map(|m| m.kind.as_str()).collect();
        assert_eq!(kinds, ["retry_scheduled", "compensation_started", "retry_scheduled", "compensated"]);
        let svg = t.svg(Utc::now()).into_string();
        // Each retry's mark sits on its own row: b's action (row 1), a's compensation (row 4).
        assert!(
            svg.contains(r#"<title>reintento 2 programado</title><circle cx="443.3333333333333" cy="67""#),
            "{svg}"
        );
        assert!(svg.contains(r#"cy="157" r="4""#), "{svg}");
        assert_eq!(svg.matches("class=\"bar ").count(), 6, "{svg}");
        assert!(svg.contains("data-outcome=\"timed_out\""), "{svg}");
    }

    #[test]
    fn a_command_without_answer_is_in_flight_until_now() {
        let historia =
            vec![entry(1, 0, json!({ "type": "started", "steps": ["a"] })), entry(2, 0, sent("a", "action", 1))];
        let t = Timeline::of(&historia);
        assert_eq!(t.barras[0].outcome, "in_flight");
        assert!(t.svg(Utc::now()).into_string().contains("in_flight"));
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850.0), "850 ms");
        assert_eq!(duration(2400.0), "2.4 s");
        assert_eq!(duration(185_000.0), "3 min 5 s");
    }
}
