#!/usr/bin/env bash
# The project's one test command: sets up what the tests need on a fresh machine, then builds
# and runs every test of the workspace.
#
#   scripts/test.sh [extra cargo test arguments]
#
# - installs PostgreSQL from Debian packages if it is missing, and starts the project's own
#   cluster on 127.0.0.1 (scripts/postgres.sh); stops it at the end if it started it;
# - installs protoc and chromium with its chromedriver (Debian), and the Python test clients
#   and Selenium (PyPI) if missing, fetches and starts a
#   real Apache Pulsar standalone on 127.0.0.1 (scripts/pulsar.sh, jars cached in
#   ~/.cache/alpes), runs its smoke test; stops it at the end if it started it;
# - builds every binary with every feature (the distributed daemons need `pulsar`), validates
#   docker-compose.yml against them (scripts/compose_check.sh: installs docker-compose from
#   Debian if missing), runs clippy (warnings are errors) when clippy is installed, then
#   `cargo test --workspace --all-features` (the end-to-end tests run the daemons as processes),
#   then a quick run of the benchmark harness (`alpes-bench suite --quick`: a venv with the
#   Temporal peer under target/peers on first use).
# Tests that need PostgreSQL read SAGA_TEST_DATABASE_URL, set here; without it they fail with a
# message saying so (they are never skipped).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "[test] $*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is not installed: install a Rust toolchain (1.89 or newer) first"
    exit 1
fi

started_pg=0
if ! scripts/postgres.sh status 2>/dev/null; then
    scripts/postgres.sh start >/dev/null
    started_pg=1
fi
# Tests write SQLite files under the temporary folder: give them one of their own, removed at exit.
TEST_TMP="$(mktemp -d /tmp/alpes-tests.XXXXXX)"
export TMPDIR="$TEST_TMP"
started_pulsar=0
cleanup() {
    rm -rf "$TEST_TMP"
    if [[ "$started_pulsar" == 1 ]]; then scripts/pulsar.sh stop >/dev/null || true; fi
    if [[ "$started_pg" == 1 ]]; then scripts/postgres.sh stop || true; fi
}
trap cleanup EXIT

export SAGA_TEST_DATABASE_URL="$(scripts/postgres.sh url)"
log "PostgreSQL for tests: $SAGA_TEST_DATABASE_URL"
# Each test creates its own database; drop those of earlier runs.
psql -q -d "$SAGA_TEST_DATABASE_URL" -At -c \
    "SELECT 'DROP DATABASE \"' || datname || '\";' FROM pg_database WHERE datname ~ '^(saga|marca|worker|vista)_(test|bench)_'" \
    | psql -q -d "$SAGA_TEST_DATABASE_URL" >/dev/null || log "could not drop old test databases (continuing)"

# --- Apache Pulsar: a real standalone broker (scripts/pulsar.sh), its client deps, its smoke test.
if ! command -v protoc >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]]; then
        log "protoc not found: installing the Debian package protobuf-compiler (the pulsar crate needs it)"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null
    else
        log "protoc not found: install the Debian package protobuf-compiler"
        exit 1
    fi
fi
# --- The console's browser test: Debian's chromium and its chromedriver, driven by Selenium.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]]; then
        log "chromium or chromedriver not found: installing the Debian packages chromium and chromium-driver"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        log "chromium or chromedriver not found: install the Debian packages chromium and chromium-driver"
        exit 1
    fi
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
    log "installing Selenium (PyPI), which drives the Debian chromium in the console's browser test"
    python3 -m pip install -q --disable-pip-version-check 'selenium==4.27.1'
fi
if ! python3 -c 'import pulsar, fastavro' >/dev/null 2>&1; then
    log "installing the Python test clients (official pulsar-client, fastavro) from PyPI"
    python3 -m pip install -q --disable-pip-version-check 'pulsar-client[avro]==3.13.0' 'fastavro==1.13.1'
fi
if cargo fmt --version >/dev/null 2>&1; then
    log "rustfmt"
    cargo fmt --all -- --check
else
    log "rustfmt is not installed: format check not run"
fi

if cargo clippy --version >/dev/null 2>&1; then
    log "clippy"
    cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
else
    log "clippy is not installed: lint step not run"
fi

log "build: every binary and every test, every feature (the end-to-end tests start orchestrator and worker)"
cargo build --workspace --all-features --bins --locked
cargo test --workspace --all-features --locked --no-run

# The broker starts only now, once the build is done: it is not left idle, or starved by the
# compiler, for the build's twenty minutes on a cold machine.
free_kb="$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')"
log "disk: $((free_kb / 1024 / 1024)) GB free where the broker and the tests write"
if (( free_kb < 2 * 1024 * 1024 )); then
    log "warning: under 2 GB free; the broker's bookie turns read-only near a full disk (every"
    log "  Pulsar test would then time out subscribing): free some space if the tests fail so"
fi

if ! scripts/pulsar.sh status >/dev/null 2>&1; then
    scripts/pulsar.sh start >/dev/null
    started_pulsar=1
fi
eval "$(scripts/pulsar.sh env)"
export SAGA_TEST_PULSAR_URL="$PULSAR_URL" SAGA_TEST_PULSAR_ADMIN_URL="$PULSAR_ADMIN_URL"
# saga-pulsar's broker tests kill -9, stop and restart this broker through scripts/pulsar.sh
# (tests/broker_restart.rs, tests/broker_outage.rs: ~2.5 min): hand them the same settings.
export PULSAR_BROKER_PORT PULSAR_HTTP_PORT PULSAR_BOOKIE_PORT PULSAR_DATA_DIR
if [[ "$started_pulsar" == 0 ]]; then
    log "note: the broker was already running; saga-pulsar's restart tests will kill and restart it"
fi
log "Apache Pulsar for tests: $SAGA_TEST_PULSAR_URL (admin $SAGA_TEST_PULSAR_ADMIN_URL)"
log "broker smoke test (official Python client: Avro schema registry, evolution rules, kill -9 and restart)"
python3 scripts/pulsar_smoke.py

log "docker-compose.yml against the binaries"
ORCHESTRATOR_BIN="$ROOT/target/debug/orchestrator" WORKER_BIN="$ROOT/target/debug/worker" scripts/compose_check.sh

log "cargo test"
out="$(mktemp)"
status=0
# --no-fail-fast: one failing test binary does not hide the results of the others.
cargo test --workspace --all-features --locked --no-fail-fast "$@" 2>&1 | tee "$out" || status=$?
# One closing line over every test binary (cargo prints one per binary, the last being doc-tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$out"
rm -f "$out"
if [[ "$status" == 0 ]]; then
    # The benchmark harness, seconds per system (BENCHMARKS.md): every mode and both peers run a
    # few sagas, so the harness cannot rot; a run with an error fails the command.
    log "benchmark harness, quick run (alpes-bench suite --quick)"
    target/debug/alpes-bench suite --quick || status=$?
fi
if [[ "$status" != 0 ]]; then
    # What a failed run needs to be read without the machine: the disk (the bookie turns read-only
    # above its disk usage threshold), the broker's health and its last warnings.
    log "tests failed; the machine as they left it:"
    df -h "$ROOT" "${TMPDIR:-/tmp}" >&2 || true
    scripts/pulsar.sh status >&2 || log "the broker is not healthy"
    broker_log="${PULSAR_DATA_DIR:-$ROOT/.data/pulsar}/run/pulsar.log"
    if [[ -f "$broker_log" ]]; then
        log "the broker's last warnings and errors ($broker_log):"
        grep -E ' (WARN|ERROR) ' "$broker_log" | tail -n 40 | cut -c1-400 >&2 || true
    fi
fi
exit "$status"
