#!/usr/bin/env bash
# Validates the Docker deployment without a Docker engine:
#
#   scripts/compose_check.sh
#
# 1. installs docker-compose (Debian package, 1.29) if missing: needs root;
# 2. `docker-compose -f docker-compose.yml config -q`: the file is valid for Compose;
# 3. builds the daemons' binaries (debug, with the `pulsar` features), unless ORCHESTRATOR_BIN and
#    WORKER_BIN name binaries to use as they are;
# 4. scripts/compose_check.py: every service, healthcheck, start condition, port, database, broker
#    setting and Dockerfile stage checked against the binaries (`orchestrator env`, `worker env …`).
#
# Environment: ORCHESTRATOR_BIN, WORKER_BIN (skip the build), TARGET_DIR (cargo's target folder,
# default target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { echo "[compose-check] $*" >&2; }

if ! command -v docker-compose >/dev/null 2>&1; then
    if [[ "$(id -u)" != 0 ]]; then
        log "docker-compose is not installed and this is not root: install the Debian package docker-compose first"
        exit 1
    fi
    log "docker-compose not found: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker-compose >/dev/null
    if ! command -v docker-compose >/dev/null 2>&1; then
        log "installing the Debian package docker-compose did not provide docker-compose"
        exit 1
    fi
fi

log "$(docker-compose version --short 2>/dev/null || docker-compose version | head -n 1): config -q"
if ! docker-compose -f docker-compose.yml config -q; then
    log "docker-compose.yml is not valid for docker-compose (see above)"
    exit 1
fi

if [[ -z "${ORCHESTRATOR_BIN:-}" || -z "${WORKER_BIN:-}" ]]; then
    if ! command -v cargo >/dev/null 2>&1; then
        log "cargo is not installed: install Rust, or set ORCHESTRATOR_BIN and WORKER_BIN to built binaries"
        exit 1
    fi
    target_args=()
    if [[ -n "${TARGET_DIR:-}" ]]; then target_args=(--target-dir "$TARGET_DIR"); fi
    log "building orchestrator, worker and bff (debug, feature pulsar)"
    cargo build --locked -q -p orchestrator -p worker -p bff --features pulsar --bins \
        "${target_args[@]}"
fi

# A Python with PyYAML: the one on PATH, or Debian's (python3-yaml comes with docker-compose).
python=""
for candidate in python3 /usr/bin/python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import yaml' >/dev/null 2>&1; then
        python="$candidate"
        break
    fi
done
if [[ -z "$python" ]]; then
    log "no python3 with PyYAML: install the Debian package python3-yaml"
    exit 1
fi

exec "$python" scripts/compose_check.py --compose docker-compose.yml
