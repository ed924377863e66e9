//! Rebuilds the `worker` binary when any source of the crates it is built from changes, even one
//! cargo would not rebuild it for (a manifest edit that changes nothing in the build): the
//! end-to-end tests' helper (orchestrator/tests/common/mod.rs, `worker_bin`) refuses a worker
//! binary older than those files, and `cargo build -p worker --features pulsar` must always
//! satisfy it.

use std::path::Path;

/// The crates the binary is built from: this package and the workspace crates it depends on.
/// orchestrator/tests/common/mod.rs lists the same ones.
const CRATES: [&str; 7] = ["worker", "workers", "orchestrator", "saga-core", "saga-pulsar", "schemas", "daemon"];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).parent().expect("the package is a folder of the workspace");
    for krate in CRATES {
        let Ok(entries) = std::fs::read_dir(root.join(krate)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            // What does not go into the binary; the helper skips the same.
            if matches!(name.as_str(), "tests" | "benches" | "examples" | "target") || name.ends_with(".md") {
                continue;
            }
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
}
