//! The `worker` binary's command line, run as a process: `worker env SERVICE` prints the
//! variables the service reads (docker-compose.yml and scripts/compose_check.py rely on it).
//!
//! Also what makes `cargo test --workspace` build `target/<profile>/worker` before it runs any
//! test: cargo builds a package's binaries for its integration tests, and the orchestrator's
//! end-to-end tests start this binary from there.

use std::process::Command;

fn env(servicio: &str) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_worker")).args(["env", servicio]).output().expect("running worker");
    assert!(out.status.success(), "worker env {servicio}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8").lines().map(str::to_owned).collect()
}

#[test]
fn env_lists_each_services_variables() {
    for servicio in ["marca", "influencer", "tracking"] {
        let vars = env(servicio);
        for v in ["ALPES__DATABASE_URL", "ALPES__HTTP", "ALPES__PULSAR__URL", "ALPES_LOG_FORMAT", "RUST_LOG"] {
            assert!(vars.iter().any(|x| x == v), "{servicio} lacks {v}: {vars:?}");
        }
        assert_eq!(vars.iter().any(|x| x == "ALPES__MARCAS"), servicio == "marca", "{servicio}: {vars:?}");
    }
}

#[test]
fn an_unknown_service_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_worker")).args(["env", "nadie"]).output().expect("running worker");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nadie"), "{}", String::from_utf8_lossy(&out.stderr));
}
