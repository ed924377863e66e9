//! The whole comparison: the peers against this engine in alternating rounds, then each of this
//! project's modes across concurrency levels, failure mixes and open-loop rates.

use anyhow::bail;

use crate::load::{Load, Workload};
use crate::report::Reporter;
use crate::{measure, Env, System};

/// About how many sagas a second `system` does, to size runs to some seconds each.
fn pace(system: System) -> f64 {
    match system {
        System::EngineMemory => 10_000.0,
        System::Steno => 7_000.0,
        System::EngineSqlite | System::EnginePostgres => 500.0,
        System::Embedded => 300.0,
        System::Distributed => 60.0,
        System::Temporal | System::TemporalWal => 15.0,
    }
}

/// A closed loop of `clients` sized to about `seconds` of `system`'s pace, at least 20 sagas a
/// client.
fn closed(system: System, clients: usize, seconds: f64, fail_percent: usize) -> Workload {
    let sagas = ((pace(system) * seconds) as usize).max(clients * 20);
    Workload { load: Load::Closed { clients, sagas }, fail_percent }
}

/// Measures and reports; a run that fails is printed and the suite goes on (the test command's
/// quick run fails at the end if any did).
async fn one(
    reporter: &mut Reporter,
    env: &Env,
    system: System,
    workload: Workload,
    round: usize,
    failed: &mut Vec<String>,
) {
    match measure(system, &workload, env).await {
        Ok(mut run) => {
            run.round = round;
            if run.errors > 0 || run.completed + run.compensated == 0 {
                failed.push(format!("{system:?} {}: {} errors", workload.label(), run.errors));
            }
            if let Err(e) = reporter.add(run) {
                failed.push(format!("reporting {system:?}: {e}"));
            }
        }
        Err(e) => {
            println!("| {system:?} | {} | failed: {e:#} |", workload.label());
            failed.push(format!("{system:?} {}: {e:#}", workload.label()));
        }
    }
}

/// Runs the suite. `quick`: one round, a few sagas per run, every system once.
pub async fn run(reporter: &mut Reporter, env: &Env, rounds: usize, quick: bool, temporal: bool) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let rounds = if quick { 1 } else { rounds.max(1) };
    // Seconds of work per run.
    let secs = if quick { 0.1 } else { 4.0 };
    let mut peers_of_distributed = vec![System::Distributed];
    if temporal {
        peers_of_distributed.extend([System::Temporal, System::TemporalWal]);
    }

    // The peers, alternating with this engine in each round and workload.
    for round in 1..=rounds {
        for (clients, fail) in [(1, 0), (16, 0), (16, 50)] {
            for system in [System::EngineMemory, System::Steno] {
                let secs = if clients == 1 { secs / 2.0 } else { secs };
                one(reporter, env, system, closed(system, clients, secs, fail), round, &mut failed).await;
            }
        }
        for clients in [1, 16] {
            for &system in &peers_of_distributed {
                let workload = if quick {
                    Workload { load: Load::Closed { clients, sagas: clients.max(4) }, fail_percent: 0 }
                } else {
                    closed(system, clients, if clients == 1 { 6.0 } else { 10.0 }, 0)
                };
                one(reporter, env, system, workload, round, &mut failed).await;
            }
        }
    }

    // Each of this project's modes across concurrency levels.
    let levels: &[usize] = if quick { &[4] } else { &[1, 4, 16, 64, 256] };
    for system in
        [System::EngineMemory, System::EngineSqlite, System::EnginePostgres, System::Embedded, System::Distributed]
    {
        for &clients in levels {
            one(reporter, env, system, closed(system, clients, secs, 0), 1, &mut failed).await;
        }
    }
    // The failure mix: 10% and 50% refused at the last step (0% is above).
    let mixes: &[usize] = if quick { &[50] } else { &[10, 50] };
    for system in [System::EnginePostgres, System::Embedded, System::Distributed] {
        for &fail in mixes {
            one(reporter, env, system, closed(system, 16, secs, fail), 1, &mut failed).await;
        }
    }
    // Open loop at fixed rates, below and around the closed loop's throughput at 16 clients.
    for system in [System::Embedded, System::Distributed] {
        let best = reporter
            .runs
            .iter()
            .filter(|r| r.system == crate::system_name(system) && r.workload == "closed 16")
            .map(|r| r.sagas_per_second)
            .fold(0.0, f64::max);
        let fractions: &[f64] = if quick { &[0.5] } else { &[0.25, 0.5, 0.75] };
        for &fraction in fractions {
            let rate = (best * fraction).max(1.0).round();
            let seconds = if quick { 1.0 } else { 10.0 };
            one(
                reporter,
                env,
                system,
                Workload { load: Load::Open { rate, seconds }, fail_percent: 0 },
                1,
                &mut failed,
            )
            .await;
        }
    }

    println!();
    println!("| comparison | workload | rounds | throughput, ours / peer | p50, peer / ours |");
    println!("|---|---|---|---|---|");
    let mut pairs = vec![("engine/memory", "steno")];
    if temporal {
        pairs.extend([("distributed", "temporal"), ("distributed", "temporal/wal")]);
    }
    for (ours, peer) in pairs {
        for line in reporter.ratios(ours, peer) {
            println!("{line}");
        }
    }
    if !failed.is_empty() {
        bail!("{} runs failed or had errors:\n  {}", failed.len(), failed.join("\n  "));
    }
    Ok(())
}
