//! Rebuilds when a migration changes: `sqlx::migrate!` embeds the files at compile time, and each
//! saga keeps its view's migrations in its own folder (`src/sagas/<saga>/migrations`).
fn main() {
    println!("cargo:rerun-if-changed=src/sagas");
}
