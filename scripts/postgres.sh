#!/usr/bin/env bash
# Runs the project's own PostgreSQL for tests and local runs, on 127.0.0.1 only.
#
#   scripts/postgres.sh start    install PostgreSQL from Debian packages if missing, create the
#                                cluster on first use, start it, wait until it accepts connections
#   scripts/postgres.sh stop     stop it (by the pid the server wrote)
#   scripts/postgres.sh status   exit 0 if it accepts connections
#   scripts/postgres.sh url      print the admin URL tests use
#   scripts/postgres.sh wipe     stop and delete the cluster
#
# Environment: ALPES_PG_PORT (default 55432, away from a system cluster on 5432),
# ALPES_PG_DIR (default /tmp/alpes-saga-pg: the server refuses a data directory it does not own,
# and /tmp is writable by the `postgres` user whoever owns the checkout).
# Authentication is `trust` on 127.0.0.1: this cluster is for tests and local runs, never exposed.
set -euo pipefail

PORT="${ALPES_PG_PORT:-55432}"
DIR="${ALPES_PG_DIR:-/tmp/alpes-saga-pg}"
DATA="$DIR/data"
LOG="$DIR/server.log"
URL="postgres://postgres@127.0.0.1:${PORT}/postgres"

log() { echo "[postgres] $*" >&2; }

pg_bin() {
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [[ -x "$bin/pg_ctl" ]]; then echo "$bin"; fi
    done | sort -V | tail -n 1
}

install_if_missing() {
    if [[ -n "$(pg_bin)" ]]; then return; fi
    if [[ "$(id -u)" != 0 ]]; then
        log "PostgreSQL is not installed and this is not root: install the Debian package 'postgresql' first"
        exit 1
    fi
    log "PostgreSQL not found: installing the Debian package"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql >/dev/null
    if [[ -z "$(pg_bin)" ]]; then
        log "installing PostgreSQL did not provide pg_ctl"
        exit 1
    fi
}

# Runs a server binary as the cluster's owner: `postgres` when we are root (the server refuses
# to run as root), ourselves otherwise.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ready() {
    local bin; bin="$(pg_bin)"
    [[ -n "$bin" ]] && "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U postgres
}

start() {
    install_if_missing
    local bin; bin="$(pg_bin)"
    if ready; then
        log "already running on 127.0.0.1:$PORT"
        echo "$URL"
        return
    fi
    mkdir -p "$DIR"
    if [[ "$(id -u)" == 0 ]]; then chown postgres:postgres "$DIR"; fi
    if [[ ! -s "$DATA/PG_VERSION" ]]; then
        log "creating a cluster in $DATA"
        as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    fi
    # fsync stays on: the tests prove durability, they must not run on a database that lies about it.
    as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
        -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c max_connections=300" start >/dev/null
    for _ in $(seq 1 60); do
        if ready; then
            log "ready on 127.0.0.1:$PORT (pid $(head -n 1 "$DATA/postmaster.pid"))"
            echo "$URL"
            return
        fi
        sleep 0.5
    done
    log "did not become ready; last log lines:"
    tail -n 30 "$LOG" >&2 || true
    exit 1
}

stop() {
    local bin; bin="$(pg_bin)"
    if [[ -n "$bin" && -s "$DATA/postmaster.pid" ]]; then
        as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true
        log "stopped"
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) ready ;;
    url) echo "$URL" ;;
    wipe) stop; rm -rf "$DIR"; log "wiped $DIR" ;;
    *) echo "usage: $0 start|stop|status|url|wipe" >&2; exit 2 ;;
esac
