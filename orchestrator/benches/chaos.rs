//! The full chaos run (a `cargo bench` target only because benches can start the crate's own
//! binary; it measures nothing on its own) (see `tests/chaos/mod.rs`): `SAGAS` sagas (default 10 000) of both types
//! by `CLIENTS` clients (default 16), about 20% refused at a random step and 10% sent twice,
//! with faults every `FAULT_EVERY_SECS` (default 20): `kill -9` of each orchestrator replica and
//! each worker, a `SIGSTOP` of a participant past its step timeout, a broker restart, a
//! PostgreSQL restart. Prints the figures; exits 1 when an invariant is broken.
//!
//! ```sh
//! scripts/postgres.sh start && scripts/pulsar.sh start && eval "$(scripts/pulsar.sh env)"
//! cargo build --release -p worker --features pulsar   # the run starts target/release/worker
//! SAGA_TEST_DATABASE_URL=$(scripts/postgres.sh url) SAGA_TEST_PULSAR_URL=$PULSAR_URL \
//!   SAGA_TEST_PULSAR_ADMIN_URL=$PULSAR_ADMIN_URL cargo bench -p orchestrator --features pulsar --bench chaos
//! ```

#![allow(clippy::unwrap_used)]

#[path = "../tests/casos/mod.rs"]
mod casos;
#[path = "../tests/chaos/mod.rs"]
mod chaos;
#[path = "../tests/common/mod.rs"]
mod common;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let plan = chaos::Plan {
        sagas: env_or("SAGAS", 10_000),
        clients: env_or("CLIENTS", 16),
        failures: env_or("FAILURES", 0.2),
        duplicates: env_or("DUPLICATES", 0.1),
        fault_every: std::time::Duration::from_secs(env_or("FAULT_EVERY_SECS", 20)),
        seed: env_or("SEED", 7),
        pause: std::time::Duration::from_millis(env_or("PAUSE_MS", 0)),
        stop_with_faults: false,
    };
    let report = chaos::run(plan).await;
    if !report.broken.is_empty() {
        std::process::exit(1);
    }
}
