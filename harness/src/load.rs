//! Workloads and the load drivers: a closed loop (N clients, each starting a saga when its last
//! one ended) and an open loop (arrivals at a fixed rate, whatever the system's pace).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How sagas arrive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// `clients` sagas in flight: each client starts the next when its last one ended, until
    /// `sagas` have run.
    Closed {
        /// Concurrent clients.
        clients: usize,
        /// Sagas in all.
        sagas: usize,
    },
    /// `rate` arrivals a second for `seconds`, each measured from its intended start.
    Open {
        /// Arrivals a second.
        rate: f64,
        /// How long arrivals go on.
        seconds: f64,
    },
}

/// A load and the share of sagas that fail at their last step and compensate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Workload {
    /// How sagas arrive.
    pub load: Load,
    /// Percent of sagas (0–100) refused at the last step.
    pub fail_percent: usize,
}

impl Workload {
    /// Whether saga `i` is one of those that fail: the same ones in every system.
    pub fn fails(&self, i: usize) -> bool {
        i % 100 < self.fail_percent
    }

    /// A short label: `closed 16`, `open 200/s`, with `, 10% fail` when some fail.
    pub fn label(&self) -> String {
        let load = match self.load {
            Load::Closed { clients, .. } => format!("closed {clients}"),
            Load::Open { rate, .. } => format!("open {rate:.0}/s"),
        };
        if self.fail_percent == 0 {
            load
        } else {
            format!("{load}, {}% fail", self.fail_percent)
        }
    }

    /// How many sagas the workload starts.
    pub fn sagas(&self) -> usize {
        match self.load {
            Load::Closed { sagas, .. } => sagas,
            Load::Open { rate, seconds } => (rate * seconds).round().max(1.0) as usize,
        }
    }
}

/// How one saga ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Every step ran.
    Completed,
    /// It was refused and every step that ran was undone.
    Compensated,
}

/// What a run measured, before the meters' figures are added.
#[derive(Clone, Debug)]
pub struct Sample {
    /// From the first start to the last end, in seconds.
    pub seconds: f64,
    /// Sagas that completed.
    pub completed: u64,
    /// Sagas that compensated.
    pub compensated: u64,
    /// Sagas that ended otherwise (an error, stuck, a timeout), with the first error seen.
    pub errors: u64,
    /// The first error, if any.
    pub first_error: Option<String>,
    /// Start (intended start, in the open loop) to end, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl Sample {
    /// An empty sample.
    pub fn new() -> Self {
        Self {
            seconds: 0.0,
            completed: 0,
            compensated: 0,
            errors: 0,
            first_error: None,
            latency_us: Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds"),
        }
    }

    /// Records one saga.
    pub fn record(&mut self, latency: Duration, ended: Result<Ended, String>) {
        match ended {
            Ok(Ended::Completed) => self.completed += 1,
            Ok(Ended::Compensated) => self.compensated += 1,
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
        self.latency_us.saturating_record(latency.as_micros().max(1) as u64);
    }

    /// Sagas that ended, by any outcome.
    pub fn sagas(&self) -> u64 {
        self.completed + self.compensated + self.errors
    }

    /// Sagas that ended well (completed or compensated) per second.
    pub fn throughput(&self) -> f64 {
        (self.completed + self.compensated) as f64 / self.seconds.max(1e-9)
    }

    /// A latency percentile (0–100), in milliseconds.
    pub fn ms(&self, percentile: f64) -> f64 {
        self.latency_us.value_at_percentile(percentile) as f64 / 1000.0
    }
}

impl Default for Sample {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs `workload`, starting saga `i` with `saga(i, fails)`, which resolves when that saga ended.
pub async fn drive<F, Fut>(workload: &Workload, saga: F) -> Sample
where
    F: Fn(usize, bool) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Ended, String>> + Send + 'static,
{
    let saga = Arc::new(saga);
    let workload = *workload;
    let began = Instant::now();
    let mut tasks = Vec::new();
    match workload.load {
        Load::Closed { clients, sagas } => {
            let next = Arc::new(AtomicUsize::new(0));
            for _ in 0..clients.max(1) {
                let (saga, next) = (saga.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= sagas {
                            return mine;
                        }
                        let start = Instant::now();
                        let ended = saga(i, workload.fails(i)).await;
                        mine.push((start.elapsed(), ended, Instant::now()));
                    }
                }));
            }
        }
        Load::Open { rate, .. } => {
            for i in 0..workload.sagas() {
                // Measured from when the saga was due, not from when the task got to send it, so
                // a system that falls behind shows it in the latencies (no coordinated omission).
                let due = began + Duration::from_secs_f64(i as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let saga = saga.clone();
                tasks.push(tokio::spawn(async move {
                    let ended = saga(i, workload.fails(i)).await;
                    vec![(due.elapsed(), ended, Instant::now())]
                }));
            }
        }
    }
    let mut sample = Sample::new();
    let mut last = began;
    for task in tasks {
        match task.await {
            Ok(done) => {
                for (latency, ended, at) in done {
                    last = last.max(at);
                    sample.record(latency, ended);
                }
            }
            Err(e) => sample.record(Duration::ZERO, Err(format!("a client task failed: {e}"))),
        }
    }
    sample.seconds = (last - began).as_secs_f64();
    sample
}
