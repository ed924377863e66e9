//! One run's figures, as a table row, a JSON line, and the ratios between systems measured in
//! alternating rounds.

use std::collections::BTreeMap;
use std::io::Write;

use serde::Serialize;

use crate::load::{Sample, Workload};
use crate::meter::{PgReading, ProcessCost};

/// Everything one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// The system (`engine/memory`, `distributed`, `steno`, `temporal/wal`, …).
    pub system: String,
    /// The workload's label.
    pub workload: String,
    /// The round of a comparison (1 for a single run).
    pub round: usize,
    /// Sagas that ended, by outcome.
    pub completed: u64,
    /// Sagas that compensated.
    pub compensated: u64,
    /// Sagas that ended badly.
    pub errors: u64,
    /// The first bad end, if any.
    pub first_error: Option<String>,
    /// First start to last end.
    pub seconds: f64,
    /// Completed and compensated sagas a second.
    pub sagas_per_second: f64,
    /// Latency percentiles, ms.
    pub p50_ms: f64,
    /// p95, ms.
    pub p95_ms: f64,
    /// p99, ms.
    pub p99_ms: f64,
    /// p99.9, ms.
    pub p999_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
    /// CPU and memory per process group.
    pub processes: Vec<ProcessCost>,
    /// Messages the transport carried per saga (commands and replies, and events where the
    /// system publishes them), when known.
    pub messages_per_saga: Option<f64>,
    /// PostgreSQL commits per saga, when the system writes to it.
    pub commits_per_saga: Option<f64>,
    /// PostgreSQL WAL syncs per saga.
    pub wal_syncs_per_saga: Option<f64>,
    /// PostgreSQL WAL bytes per saga.
    pub wal_bytes_per_saga: Option<f64>,
}

impl Run {
    /// A run from its sample and its meters' readings.
    pub fn new(system: &str, workload: &Workload, sample: &Sample) -> Self {
        Self {
            system: system.to_owned(),
            workload: workload.label(),
            round: 1,
            completed: sample.completed,
            compensated: sample.compensated,
            errors: sample.errors,
            first_error: sample.first_error.clone(),
            seconds: sample.seconds,
            sagas_per_second: sample.throughput(),
            p50_ms: sample.ms(50.0),
            p95_ms: sample.ms(95.0),
            p99_ms: sample.ms(99.0),
            p999_ms: sample.ms(99.9),
            max_ms: sample.latency_us.max() as f64 / 1000.0,
            processes: Vec::new(),
            messages_per_saga: None,
            commits_per_saga: None,
            wal_syncs_per_saga: None,
            wal_bytes_per_saga: None,
        }
    }

    /// Sagas that ended, any way.
    pub fn sagas(&self) -> u64 {
        self.completed + self.compensated + self.errors
    }

    /// Adds PostgreSQL's counters between two readings.
    pub fn with_postgres(mut self, before: PgReading, after: PgReading) -> Self {
        let n = self.sagas().max(1) as f64;
        self.commits_per_saga = Some((after.commits - before.commits) as f64 / n);
        self.wal_syncs_per_saga = Some((after.wal_syncs - before.wal_syncs) as f64 / n);
        self.wal_bytes_per_saga = Some((after.wal_lsn - before.wal_lsn) as f64 / n);
        self
    }

    /// CPU milliseconds per saga, all processes.
    pub fn cpu_ms_per_saga(&self) -> f64 {
        self.processes.iter().map(|p| p.cpu_seconds).sum::<f64>() * 1000.0 / self.sagas().max(1) as f64
    }

    /// The table's header.
    pub fn header() -> String {
        format!(
            "| {:<22} | {:<18} | {:>5} | {:>9} | {:>8} | {:>8} | {:>8} | {:>8} | {:>7} | {:>7} | {:>7} | {:>7} |\n|{}",
            "system",
            "workload",
            "sagas",
            "sagas/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "p99.9 ms",
            "CPU ms",
            "msg",
            "commit",
            "WAL KB",
            "---|".repeat(12)
        )
    }

    /// One table row; per-saga costs (CPU, messages, commits, WAL) or `–`.
    pub fn row(&self) -> String {
        let opt = |v: Option<f64>, scale: f64| v.map_or("–".to_owned(), |v| format!("{:.1}", v / scale));
        let mut row = format!(
            "| {:<22} | {:<18} | {:>5} | {:>9.1} | {:>8.2} | {:>8.2} | {:>8.2} | {:>8.2} | {:>7.2} | {:>7} | {:>7} | {:>7} |",
            if self.round > 1 { format!("{} (r{})", self.system, self.round) } else { self.system.clone() },
            self.workload,
            self.sagas(),
            self.sagas_per_second,
            self.p50_ms,
            self.p95_ms,
            self.p99_ms,
            self.p999_ms,
            self.cpu_ms_per_saga(),
            opt(self.messages_per_saga, 1.0),
            opt(self.commits_per_saga, 1.0),
            opt(self.wal_bytes_per_saga, 1024.0),
        );
        if self.errors > 0 {
            row.push_str(&format!(
                " {} errors: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?").chars().take(200).collect::<String>()
            ));
        }
        row
    }

    /// CPU ms per saga by process, and peak RSS: `orchestrator 3.10 ms 41 MiB, …`.
    pub fn breakdown(&self) -> String {
        let n = self.sagas().max(1) as f64;
        self.processes
            .iter()
            .map(|p| format!("{} {:.2} ms {:.0} MiB", p.label, p.cpu_seconds * 1000.0 / n, p.peak_rss_mib))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where runs go: stdout as they finish, and a JSON line each to `json` if given.
pub struct Reporter {
    json: Option<std::fs::File>,
    /// Every run so far.
    pub runs: Vec<Run>,
}

impl Reporter {
    /// Prints the table's header.
    pub fn new(json: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let json = match json {
            Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
            None => None,
        };
        println!("{}", Run::header());
        Ok(Self { json, runs: Vec::new() })
    }

    /// Prints a run and keeps it.
    pub fn add(&mut self, run: Run) -> anyhow::Result<()> {
        println!("{}", run.row());
        if !run.processes.is_empty() {
            println!("|   CPU/saga and peak RSS: {} |", run.breakdown());
        }
        if let Some(file) = self.json.as_mut() {
            writeln!(file, "{}", serde_json::to_string(&run)?)?;
        }
        self.runs.push(run);
        Ok(())
    }

    /// For each workload where `ours` and `peer` both ran in the same rounds: the ratio of
    /// throughputs (ours / peer) and of p50 latencies (peer / ours, so above 1 means ours is
    /// faster), per round, as median and min–max.
    pub fn ratios(&self, ours: &str, peer: &str) -> Vec<String> {
        // (workload, round) -> (ours, the peer's)
        type Pair<'a> = (Option<&'a Run>, Option<&'a Run>);
        let mut by: BTreeMap<(String, usize), Pair<'_>> = BTreeMap::new();
        for run in &self.runs {
            let slot = by.entry((run.workload.clone(), run.round)).or_default();
            if run.system == ours {
                slot.0 = Some(run);
            } else if run.system == peer {
                slot.1 = Some(run);
            }
        }
        let mut per_workload: BTreeMap<String, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for ((workload, _), pair) in by {
            if let (Some(a), Some(b)) = pair {
                let entry = per_workload.entry(workload).or_default();
                entry.0.push(a.sagas_per_second / b.sagas_per_second.max(1e-9));
                entry.1.push(b.p50_ms / a.p50_ms.max(1e-9));
            }
        }
        per_workload
            .into_iter()
            .map(|(workload, (mut tput, mut p50))| {
                format!(
                    "| {ours} vs {peer} | {workload} | {} | {} | {} |",
                    tput.len(),
                    spread(&mut tput),
                    spread(&mut p50)
                )
            })
            .collect()
    }
}

/// `median (min–max)`, to two significant places.
fn spread(values: &mut [f64]) -> String {
    values.sort_by(f64::total_cmp);
    let median = if values.len() % 2 == 1 {
        values[values.len() / 2]
    } else {
        (values[values.len() / 2 - 1] + values[values.len() / 2]) / 2.0
    };
    format!("{median:.2}× ({:.2}–{:.2})", values[0], values[values.len() - 1])
}
