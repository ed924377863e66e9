//! `alpes`: the operator's CLI. It talks to the orchestrator's HTTP API (`--url`, or
//! `ALPES_URL`) to start, list, show (as a timeline), watch, retry and abort sagas, to list, show
//! and redrive dead letters, and to list and show campaigns. When the API requires a bearer
//! token, `--token` (or `ALPES_TOKEN`) gives it.
//!
//! Exit codes, for scripts: 0 done; 2 usage error; 3 not found; 4 invalid input (the server
//! refused the request); 5 conflict (the saga's state does not allow the action); 6 the server is
//! unreachable or failed; 7 `watch` saw the saga end compensated, aborted or stuck. Errors print
//! one line on stderr.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

/// Operate the Alpes Partners saga engine through the orchestrator's HTTP API.
#[derive(Parser, Debug)]
#[command(name = "alpes", version, about)]
struct Cli {
    /// The orchestrator's base URL.
    #[arg(long, global = true, env = "ALPES_URL", default_value = "http://127.0.0.1:8000")]
    url: String,
    /// The API's bearer token, when it requires one (prefer the variable: a flag shows in the
    /// process list).
    #[arg(long, global = true, env = "ALPES_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    token: Option<String>,
    /// Output format of read commands.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Top,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns for people.
    Table,
    /// The API's JSON, for scripts.
    Json,
}

#[derive(Subcommand, Debug)]
enum Top {
    /// Sagas: start, list, show, watch, retry, abort.
    #[command(subcommand)]
    Saga(SagaCmd),
    /// Dead letters: list, show, redrive (after the cause is fixed).
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLetterCmd),
    /// Campaigns as clients see them.
    #[command(subcommand)]
    Campana(CampanaCmd),
    /// Prints shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// The sagas the CLI can start, each by its public start route.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum SagaKind {
    /// CrearCampaña: POST /afiliaciones/campana.
    #[value(name = "crear_campana")]
    CrearCampana,
    /// The payout saga: POST /pagos/pagar.
    #[value(name = "procesar_pago")]
    ProcesarPago,
}

impl SagaKind {
    /// The route that starts it.
    fn route(self) -> &'static str {
        match self {
            SagaKind::CrearCampana => "/afiliaciones/campana",
            SagaKind::ProcesarPago => "/pagos/pagar",
        }
    }
}

#[derive(Subcommand, Debug)]
enum SagaCmd {
    /// Starts a saga from its public request body (a file, or `-` for stdin).
    Start {
        /// Which saga: its request goes to that saga's start route.
        #[arg(long, value_enum, default_value_t = SagaKind::CrearCampana)]
        saga: SagaKind,
        /// The JSON body of the saga's start route (POST /afiliaciones/campana, POST /pagos/pagar).
        #[arg(long, short)]
        file: PathBuf,
        /// Makes a retried start return the first answer.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Lists sagas, newest first.
    List {
        /// Only sagas in this state (running, compensating, completed, compensated, stuck, aborted).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        from: u32,
    },
    /// Shows a saga as a timeline: each step, attempt, kind, outcome and duration, in order.
    Show {
        /// The saga id.
        id: String,
    },
    /// Follows a saga until it ends (or gets stuck).
    Watch {
        /// The saga id.
        id: String,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
    },
    /// Retries a stuck saga's compensation (write the cause's fix first).
    Retry {
        /// The saga id.
        id: String,
        /// Why, for the saga log.
        #[arg(long, default_value = "retried from the CLI")]
        note: String,
    },
    /// Aborts a saga: a running one compensates; a stuck one is abandoned.
    Abort {
        /// The saga id.
        id: String,
        /// Why, for the saga log.
        #[arg(long, default_value = "aborted from the CLI")]
        note: String,
    },
}

#[derive(Subcommand, Debug)]
enum DeadLetterCmd {
    /// Lists dead letters, newest first.
    List {
        /// Only this original topic (comandos.marca, respuestas.afiliaciones, ...).
        #[arg(long)]
        topic: Option<String>,
        /// Only dead letters in this state (pending, redriven).
        #[arg(long)]
        state: Option<String>,
        /// Only this saga's.
        #[arg(long)]
        saga: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        from: u32,
    },
    /// Shows one dead letter.
    Show {
        /// The dead letter's id.
        id: String,
    },
    /// Publishes a dead letter again to its original topic (or, with --topic, every pending one
    /// of that topic). Safe to repeat: participants deduplicate by message id.
    Redrive {
        /// The dead letter's id.
        #[arg(required_unless_present = "topic", conflicts_with = "topic")]
        id: Option<String>,
        /// Every pending dead letter of this original topic.
        #[arg(long)]
        topic: Option<String>,
        /// Why, kept with the dead letter.
        #[arg(long)]
        note: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum CampanaCmd {
    /// Lists campaigns, newest first.
    List {
        /// Only campaigns in this state (pendiente, activa, rechazada).
        #[arg(long)]
        state: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Shows one campaign.
    Show {
        /// The campaign id.
        id: String,
    },
}

/// A failure with its exit code and one line for stderr.
struct Fail(u8, String);

type Result<T> = std::result::Result<T, Fail>;

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>, key: Option<&str>) -> Result<Value> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut req = self.http.request(method, &url).timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.map_err(|e| Fail(6, format!("cannot reach {}: {}", self.base, root_cause(&e))))?;
        let status = res.status();
        let value: Value = res.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let mut message = value["error"].as_str().unwrap_or("no details").to_owned();
        if let Some(errores) = value["errores"].as_array() {
            let list: Vec<String> = errores
                .iter()
                .map(|e| format!("{}: {}", e["campo"].as_str().unwrap_or("?"), e["error"].as_str().unwrap_or("?")))
                .collect();
            message = format!("{message}: {}", list.join("; "));
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            message = format!("{message} (give the API's token with --token or ALPES_TOKEN)");
        }
        let code = match status.as_u16() {
            404 => 3,
            409 => 5,
            400..=499 => 4,
            _ => 6,
        };
        Err(Fail(code, format!("{status}: {message}")))
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.call(reqwest::Method::GET, path, None, None).await
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    cause
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_uppercase()).collect());
    for row in rows {
        line(row);
    }
}

/// One timeline row per log entry: seq, time since start, event, step, kind, attempt, detail,
/// and for a reply the time since its command.
fn timeline(saga: &Value) -> Vec<Vec<String>> {
    let history = saga["historia"].as_array().cloned().unwrap_or_default();
    let parse = |v: &Value| v.as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let start = history.first().and_then(|e| parse(&e["at"]));
    // When each (step, kind) last had a command sent: parallel steps are in flight together.
    let mut sent_at: std::collections::HashMap<(String, String), DateTime<Utc>> = std::collections::HashMap::new();
    let mut steps: Vec<String> = Vec::new();
    history
        .iter()
        .map(|e| {
            let ev = &e["event"];
            let at = parse(&e["at"]);
            let since = match (start, at) {
                (Some(s0), Some(t)) => format!("+{}ms", (t - s0).num_milliseconds()),
                _ => "-".into(),
            };
            let kind = s(&ev["type"]);
            let (mut step, mut k, mut attempt, mut detail, mut took) =
                (String::new(), String::new(), String::new(), String::new(), String::new());
            match kind.as_str() {
                "started" => {
                    steps = ev["steps"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
                    detail = s(&ev["saga_type"]);
                }
                "command_sent" => {
                    let c = &ev["command"]["correlation"];
                    (step, k, attempt) = (s(&c["step_name"]), s(&c["kind"]), s(&c["attempt"]));
                    detail = s(&ev["command"]["message_type"]);
                    if let Some(at) = at {
                        sent_at.insert((step.clone(), k.clone()), at);
                    }
                }
                "reply_accepted" | "timed_out" | "retry_scheduled" | "gave_up" | "build_failed" => {
                    let idx = ev["step"].as_u64().unwrap_or(0) as usize;
                    step = steps.get(idx).cloned().unwrap_or_default();
                    k = s(&ev["kind"]);
                    attempt = ev.get("attempt").map(s).unwrap_or_default();
                    detail = match kind.as_str() {
                        "reply_accepted" => {
                            let o = &ev["outcome"];
                            match o["outcome"].as_str() {
                                Some("success") => "success".into(),
                                _ => format!("{} {}", s(&o["outcome"]), o.get("code").map(s).unwrap_or_default())
                                    .trim()
                                    .to_owned(),
                            }
                        }
                        "retry_scheduled" => format!("at {}", s(&ev["at"])),
                        "build_failed" => s(&ev["error"]),
                        _ => String::new(),
                    };
                    if kind == "reply_accepted" || kind == "timed_out" {
                        if let (Some(a), Some(b)) = (sent_at.get(&(step.clone(), k.clone())), at) {
                            took = format!("{}ms", (b - a).num_milliseconds());
                        }
                    }
                }
                "reply_ignored" => {
                    let c = &ev["correlation"];
                    (step, k, attempt) = (s(&c["step_name"]), s(&c["kind"]), s(&c["attempt"]));
                    detail = s(&ev["why"]);
                }
                "compensation_started" => {
                    detail = format!("{}: {}", s(&ev["failure"]["code"]), s(&ev["failure"]["reason"]))
                }
                "stuck" => detail = s(&ev["reason"]),
                "operator_retried" | "operator_aborted" => detail = s(&ev["note"]),
                _ => {}
            }
            vec![s(&e["seq"]), since, kind, step, k, attempt, detail, took]
        })
        .collect()
}

/// One row per dead letter: the columns of `dead-letters list` and `saga show`.
fn dead_letter_rows(list: &Value) -> Vec<Vec<String>> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    vec![
                        s(&d["id"]),
                        s(&d["topic"]),
                        s(&d["saga_id"]),
                        s(&d["step"]),
                        s(&d["kind"]),
                        s(&d["estado"]),
                        s(&d["redrives"]),
                        s(&d["dead_at"]),
                        s(&d["reason"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default()
}

const DEAD_LETTER_COLUMNS: [&str; 9] =
    ["id", "topic", "saga", "step", "kind", "estado", "redrives", "dead at", "reason"];

fn show_dead_letter(d: &Value) {
    let notas: Vec<String> = d["notas"].as_array().map(|a| a.iter().map(s).collect()).unwrap_or_default();
    let rows = [
        "id",
        "topic",
        "dead_letter_topic",
        "estado",
        "reason",
        "saga_id",
        "saga_type",
        "step",
        "kind",
        "message_type",
        "message_id",
        "dead_at",
        "redriven_at",
        "redrives",
    ]
    .iter()
    .map(|f| vec![(*f).to_owned(), s(&d[*f])])
    .chain(std::iter::once(vec!["notas".to_owned(), if notas.is_empty() { "-".into() } else { notas.join(" | ") }]))
    .collect();
    table(&["campo", "valor"], rows);
}

/// `s` for a URL's query string.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn print(output: Output, value: &Value, as_table: impl FnOnce(&Value)) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(value).unwrap_or_default()),
        Output::Table => as_table(value),
    }
}

fn read_body(file: &PathBuf) -> Result<Value> {
    let text = if file.as_os_str() == "-" {
        let mut t = String::new();
        std::io::stdin().read_to_string(&mut t).map_err(|e| Fail(4, format!("cannot read stdin: {e}")))?;
        t
    } else {
        std::fs::read_to_string(file).map_err(|e| Fail(4, format!("cannot read {}: {e}", file.display())))?
    };
    serde_json::from_str(&text).map_err(|e| Fail(4, format!("{} is not JSON: {e}", file.display())))
}

/// The HTTP client, sending `token` as a bearer token (a header marked sensitive: never printed).
fn client(token: Option<&str>) -> Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token.filter(|t| !t.is_empty()) {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Fail(2, "the token must be printable ASCII".to_owned()))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder().default_headers(headers).build().map_err(|e| Fail(6, format!("HTTP client: {e}")))
}

async fn run(cli: Cli) -> Result<()> {
    let api = Api { base: cli.url.clone(), http: client(cli.token.as_deref())? };
    let out = cli.output;
    match cli.command {
        Top::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "alpes", &mut std::io::stdout());
        }
        Top::Saga(SagaCmd::Start { saga, file, idempotency_key }) => {
            let body = read_body(&file)?;
            let v = api.call(reqwest::Method::POST, saga.route(), Some(body), idempotency_key.as_deref()).await?;
            print(out, &v, |v| {
                // Each start route names what it created: a campaign's `id_campana`, a payout's `id`.
                let id = if v["id_campana"].is_null() { &v["id"] } else { &v["id_campana"] };
                table(&["saga", "id", "estado"], vec![vec![s(&v["saga_id"]), s(id), s(&v["estado"])]])
            });
        }
        Top::Saga(SagaCmd::List { state, limit, from }) => {
            let mut path = format!("/sagas?limite={limit}&desde={from}");
            if let Some(st) = state {
                path.push_str(&format!("&estado={st}"));
            }
            let v = api.get(&path).await?;
            print(out, &v, |v| {
                let rows = v["sagas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| {
                                vec![
                                    s(&x["id"]),
                                    s(&x["saga_type"]),
                                    s(&x["status"]),
                                    s(&x["created_at"]),
                                    s(&x["updated_at"]),
                                ]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                table(&["id", "type", "status", "created", "updated"], rows);
            });
        }
        Top::Saga(SagaCmd::Show { id }) => {
            let v = api.get(&format!("/sagas/{id}")).await?;
            print(out, &v, |v| {
                let st = &v["saga"];
                println!("saga {}  {}  {}", s(&st["id"]), s(&st["saga_type"]), s(&st["status"]));
                if let Some(f) = st["failure"].as_object() {
                    println!("failure: {} at {}: {}", s(&f["code"]), s(&f["step"]), s(&f["reason"]));
                }
                if !st["stuck_reason"].is_null() {
                    println!("stuck: {}", s(&st["stuck_reason"]));
                }
                table(&["seq", "at", "event", "step", "kind", "attempt", "detail", "took"], timeline(v));
                let dead = dead_letter_rows(&v["dead_letters"]);
                if !dead.is_empty() {
                    println!();
                    println!("dead letters: {}", dead.len());
                    table(&DEAD_LETTER_COLUMNS, dead);
                }
            });
        }
        Top::Saga(SagaCmd::Watch { id, timeout }) => {
            let began = Instant::now();
            let mut shown = 0usize;
            let mut path = format!("/sagas/{id}");
            loop {
                let v = api.get(&path).await?;
                let rows = timeline(&v);
                if out == Output::Table {
                    for row in rows.iter().skip(shown) {
                        println!("{}", row.iter().filter(|c| !c.is_empty()).cloned().collect::<Vec<_>>().join("  "));
                    }
                }
                shown = rows.len();
                let status = s(&v["saga"]["status"]);
                if !matches!(status.as_str(), "running" | "compensating") {
                    if out == Output::Json {
                        print(out, &v, |_| {});
                    } else {
                        println!("saga {id} is {status}");
                    }
                    return if status == "completed" {
                        Ok(())
                    } else {
                        Err(Fail(7, format!("saga {id} ended {status}")))
                    };
                }
                if began.elapsed() > Duration::from_secs(timeout) {
                    return Err(Fail(6, format!("saga {id} still {status} after {timeout} s")));
                }
                // The server answers as soon as the log moves past what was shown (or the saga
                // rests): no polling.
                let left = Duration::from_secs(timeout).saturating_sub(began.elapsed()).as_millis().clamp(1, 10_000);
                path = format!("/sagas/{id}?esperar_ms={left}&despues_de={}", v["saga"]["version"]);
            }
        }
        Top::Saga(SagaCmd::Retry { id, note }) => {
            let v = api
                .call(reqwest::Method::POST, &format!("/sagas/{id}/retry"), Some(json!({ "nota": note })), None)
                .await?;
            print(out, &v, |v| println!("saga {} is {}", s(&v["saga"]["id"]), s(&v["saga"]["status"])));
        }
        Top::Saga(SagaCmd::Abort { id, note }) => {
            let v = api
                .call(reqwest::Method::POST, &format!("/sagas/{id}/abort"), Some(json!({ "nota": note })), None)
                .await?;
            print(out, &v, |v| println!("saga {} is {}", s(&v["saga"]["id"]), s(&v["saga"]["status"])));
        }
        Top::DeadLetters(DeadLetterCmd::List { topic, state, saga, limit, from }) => {
            let mut path = format!("/dead-letters?limite={limit}&desde={from}");
            for (name, value) in [("topic", topic), ("estado", state), ("saga_id", saga)] {
                if let Some(v) = value {
                    path.push_str(&format!("&{name}={}", encode(&v)));
                }
            }
            let v = api.get(&path).await?;
            print(out, &v, |v| {
                let rows = dead_letter_rows(&v["dead_letters"]);
                let shown = rows.len();
                table(&DEAD_LETTER_COLUMNS, rows);
                println!("{shown} of {}", s(&v["total"]));
            });
        }
        Top::DeadLetters(DeadLetterCmd::Show { id }) => {
            let v = api.get(&format!("/dead-letters/{}", encode(&id))).await?;
            print(out, &v, |v| show_dead_letter(&v["dead_letter"]));
        }
        Top::DeadLetters(DeadLetterCmd::Redrive { id, topic, note }) => {
            let body = note.map(|n| json!({ "nota": n }));
            match (id, topic) {
                (Some(id), _) => {
                    let path = format!("/dead-letters/{}/redrive", encode(&id));
                    let v = api.call(reqwest::Method::POST, &path, body, None).await?;
                    print(out, &v, |v| {
                        let d = &v["dead_letter"];
                        println!(
                            "dead letter {} redriven to {} ({} redrives)",
                            s(&d["id"]),
                            s(&d["topic"]),
                            s(&d["redrives"])
                        )
                    });
                }
                (None, Some(topic)) => {
                    let path = format!("/dead-letters/redrive?topic={}", encode(&topic));
                    let v = api.call(reqwest::Method::POST, &path, body, None).await?;
                    print(out, &v, |v| println!("{} dead letters of {topic} redriven", s(&v["redriven"])));
                }
                (None, None) => return Err(Fail(2, "give a dead letter's id or --topic".into())),
            }
        }
        Top::Campana(CampanaCmd::List { state, limit }) => {
            let mut path = format!("/afiliaciones/campanas?limite={limit}");
            if let Some(st) = state {
                path.push_str(&format!("&estado={st}"));
            }
            let v = api.get(&path).await?;
            print(out, &v, |v| {
                let rows: Vec<Vec<String>> = v["campanas"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| {
                                vec![s(&c["id"]), s(&c["nombre"]), s(&c["estado"]), s(&c["codigo"]), s(&c["saga_id"])]
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let shown = rows.len();
                table(&["id", "nombre", "estado", "codigo", "saga"], rows);
                println!("{shown} of {}", s(&v["total"]));
            });
        }
        Top::Campana(CampanaCmd::Show { id }) => {
            let v = api.get(&format!("/afiliaciones/campana/{id}")).await?;
            print(out, &v, |c| {
                table(
                    &["campo", "valor"],
                    vec![
                        vec!["id".into(), s(&c["id"])],
                        vec!["nombre".into(), s(&c["nombre"])],
                        vec!["estado".into(), s(&c["estado"])],
                        vec!["marca".into(), s(&c["marca"]["nombre_marca"])],
                        vec!["presupuesto".into(), s(&c["presupuesto"])],
                        vec!["fechas".into(), format!("{} – {}", s(&c["fecha_inicio"]), s(&c["fecha_fin"]))],
                        vec!["influencers".into(), c["influencers"].as_array().map_or(0, Vec::len).to_string()],
                        vec!["codigo".into(), s(&c["codigo"])],
                        vec!["motivo".into(), s(&c["motivo"])],
                        vec!["saga".into(), s(&c["saga_id"])],
                    ],
                );
            });
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("alpes: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(code, message)) => {
            eprintln!("alpes: {message}");
            ExitCode::from(code)
        }
    }
}
