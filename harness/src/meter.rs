//! What a run cost, read from outside the systems measured: CPU time and peak memory per process
//! from `/proc`, and commits, WAL syncs and WAL bytes from PostgreSQL's statistics views.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;

/// A group of processes metered as one (a daemon; PostgreSQL's postmaster with its backends).
#[derive(Clone, Debug)]
pub struct Watched {
    /// How the report names it.
    pub label: String,
    /// Which processes.
    pub pids: Pids,
}

/// Which processes a [`Watched`] group is.
#[derive(Clone, Debug)]
pub enum Pids {
    /// One process.
    One(u32),
    /// A process and every process whose parent it is, as they are at each reading (the
    /// postmaster and its backends).
    WithChildren(u32),
}

impl Watched {
    /// One process.
    pub fn one(label: &str, pid: u32) -> Self {
        Self { label: label.to_owned(), pids: Pids::One(pid) }
    }

    /// This process (the harness: its clients, and the engine when it runs in here).
    pub fn this(label: &str) -> Self {
        Self::one(label, std::process::id())
    }

    fn members(&self) -> Vec<u32> {
        match self.pids {
            Pids::One(pid) => vec![pid],
            Pids::WithChildren(pid) => {
                let mut all = vec![pid];
                all.extend(children(pid));
                all
            }
        }
    }
}

/// CPU ticks (user + system) of one process, from `/proc/<pid>/stat`.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count fields after its end.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line (utime, stime) are 11 and 12 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn children(of: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| parent(*pid) == Some(of))
        .collect()
}

/// Peak resident memory of one process (`VmHWM`), in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Clock ticks a second (`getconf CLK_TCK`; 100 on Linux as built today).
fn ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// A reading of every watched group's CPU ticks.
pub struct CpuReading(Vec<(String, u64)>);

/// Reads every group's CPU ticks now.
pub fn cpu(watched: &[Watched]) -> CpuReading {
    CpuReading(watched.iter().map(|w| (w.label.clone(), w.members().into_iter().filter_map(ticks).sum())).collect())
}

/// What a group used between two readings, and its peak memory at the second.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessCost {
    /// The group.
    pub label: String,
    /// CPU seconds between the readings.
    pub cpu_seconds: f64,
    /// The largest `VmHWM` of the group's processes, in MiB (for PostgreSQL, the largest
    /// backend's, which counts the shared buffers it touched).
    pub peak_rss_mib: f64,
}

/// The CPU each group used from `before` to `after`, and its peak memory now.
pub fn costs(watched: &[Watched], before: &CpuReading, after: &CpuReading) -> Vec<ProcessCost> {
    let start: BTreeMap<&str, u64> = before.0.iter().map(|(l, t)| (l.as_str(), *t)).collect();
    watched
        .iter()
        .zip(&after.0)
        .map(|(w, (label, end))| ProcessCost {
            label: label.clone(),
            cpu_seconds: end.saturating_sub(start.get(label.as_str()).copied().unwrap_or(0)) as f64
                / ticks_per_second(),
            peak_rss_mib: w.members().into_iter().filter_map(peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0,
        })
        .collect()
}

/// PostgreSQL's own counters, for commits and WAL per saga.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PgReading {
    /// Committed transactions, every database.
    pub commits: i64,
    /// WAL syncs (fsync or its equivalent) the server did.
    pub wal_syncs: i64,
    /// WAL position, in bytes.
    pub wal_lsn: i64,
}

/// Where a PostgreSQL server is, and its postmaster's pid (to meter its processes).
pub struct Postgres {
    pool: sqlx::PgPool,
    /// The postmaster's pid, from `postmaster.pid` in its data directory.
    pub postmaster: u32,
}

impl Postgres {
    /// Connects to the server of `admin_url` and finds its postmaster.
    pub async fn connect(admin_url: &str) -> anyhow::Result<Self> {
        let pool = saga_core::log::sql::pg_pool(admin_url, 1).await.context("connecting to PostgreSQL")?;
        let dir: String =
            sqlx::query_scalar("SELECT current_setting('data_directory')").fetch_one(&pool).await.context(
                "reading PostgreSQL's data directory (the harness's user needs pg_read_all_settings or superuser)",
            )?;
        let pidfile = std::fs::read_to_string(format!("{dir}/postmaster.pid")).with_context(|| {
            format!("reading {dir}/postmaster.pid (the harness meters a PostgreSQL on this machine)")
        })?;
        let postmaster = pidfile.lines().next().and_then(|l| l.trim().parse().ok()).context("postmaster.pid")?;
        Ok(Self { pool, postmaster })
    }

    /// The postmaster and its backends, as one metered group.
    pub fn watched(&self) -> Watched {
        Watched { label: "postgresql".to_owned(), pids: Pids::WithChildren(self.postmaster) }
    }

    /// The server's counters now. Backends publish their statistics when idle (at most once a
    /// second), so a reading right after a run waits until two readings a second apart agree.
    pub async fn read(&self, settle: bool) -> anyhow::Result<PgReading> {
        let mut last: Option<PgReading> = None;
        for _ in 0..15 {
            let mut conn = self.pool.acquire().await?;
            sqlx::query("SET stats_fetch_consistency = none").execute(&mut *conn).await?;
            let (commits, wal_syncs, wal_lsn): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT sum(xact_commit)::bigint FROM pg_stat_database), \
                        (SELECT wal_sync FROM pg_stat_wal), \
                        pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint",
            )
            .fetch_one(&mut *conn)
            .await?;
            let now = PgReading { commits, wal_syncs, wal_lsn };
            if !settle || last.is_some_and(|l| l.commits == now.commits && l.wal_syncs == now.wal_syncs) {
                return Ok(now);
            }
            last = Some(now);
            drop(conn);
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        Ok(last.unwrap_or_default())
    }

    /// The pool, to create and drop the runs' databases.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.pool
    }
}

/// The Apache Pulsar standalone broker's JVM on this machine, if one runs.
pub fn pulsar_broker() -> Option<u32> {
    let dir = std::fs::read_dir("/proc").ok()?;
    dir.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()).find(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("PulsarStandaloneStarter"))
            .unwrap_or(false)
    })
}
