//! The chaos run's short form, in the test command: a few hundred sagas of both types on the
//! distributed stack (two orchestrator replicas, every worker, PostgreSQL, Pulsar), with every
//! fault once (`kill -9` of each replica and each worker, a `SIGSTOP` past the step timeout, a
//! broker restart, a PostgreSQL restart), then every invariant checked. See `tests/chaos/mod.rs`;
//! the full run is `examples/chaos.rs`.

#![cfg(feature = "pulsar")]
#![allow(clippy::unwrap_used)]

mod casos;
mod chaos;
mod common;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_chaos_run_loses_nothing_and_does_nothing_twice() {
    let report = chaos::run(chaos::Plan::short()).await;
    assert!(report.broken.is_empty(), "{}\n{}", report.lines.join("\n"), report.broken.join("\n"));
}
