#!/usr/bin/env bash
# Runs a real Apache Pulsar standalone broker (broker + one embedded bookie + RocksDB metadata store)
# on this machine, without Docker, bound to 127.0.0.1 only.
#
# Usage: scripts/pulsar.sh fetch|start|stop|kill|status|wipe|env
#   fetch   resolve and cache the broker's jars (needs Maven Central once; then offline)
#   start   fetch if needed, start in the background, wait until ready, create tenant/namespace
#   stop    TERM the broker by its pid, KILL after PULSAR_STOP_TIMEOUT seconds
#   kill    kill -9 the broker (crash tests); data is kept, `start` recovers it
#   status  exit 0 if the broker started by this script is running and healthy
#   wipe    stop, then delete the data directory
#   env     print PULSAR_URL / PULSAR_ADMIN_URL (and the namespace) for the current settings
#
# Environment (defaults):
#   PULSAR_VERSION=3.0.7             Pulsar version (3.0.x LTS: the broker line documented for Java 17)
#   ALPES_CACHE_DIR=~/.cache/alpes   jars are cached in $ALPES_CACHE_DIR/pulsar-$PULSAR_VERSION/
#   PULSAR_DATA_DIR=<repo>/.data/pulsar   data (metadata/, bookkeeper/) and run files (run/: conf, pid, log)
#   PULSAR_BROKER_PORT=6650  PULSAR_HTTP_PORT=8080  PULSAR_BOOKIE_PORT=3181
#     (the bookie port is recorded in the bookie's cookie on first start: with existing data the
#      recorded port is reused, whatever PULSAR_BOOKIE_PORT says)
#   PULSAR_TENANT=alpes  PULSAR_NAMESPACE=afiliaciones
#   PULSAR_SCHEMA_COMPATIBILITY=BACKWARD_TRANSITIVE
#   PULSAR_SCHEMA_AUTO_UPDATE=true   namespace isAllowAutoUpdateSchema: true lets a producer that attaches
#                                    a new schema version register it, if compatible with the strategy;
#                                    false accepts only schemas already registered (e.g. via the admin API)
#   PULSAR_SCHEMA_VALIDATION_ENFORCED=false  true rejects producers without a schema on topics that have one
#   PULSAR_JOURNAL_SYNC=true         fsync the bookie journal before acking writes (false: faster, not
#                                    crash-safe)
#   PULSAR_HEAP_OPTS="-Xms512m -Xmx1g"   PULSAR_EXTRA_JAVA_OPTS=""   PULSAR_LOG_LEVEL=info
#   PULSAR_START_TIMEOUT=180  PULSAR_STOP_TIMEOUT=60   (seconds)
#   JAVA_HOME / PULSAR_JAVA_HOME     a Java >= 17; otherwise `java` on PATH, otherwise /usr/lib/jvm/*
#
# How it runs: `fetch` first asks Maven Central for the binary distribution
# (org.apache.pulsar:pulsar-server-distribution:VERSION:tar.gz:bin; present for 4.0.8, absent for 3.0.x);
# without it, it copies the runtime classpath of org.apache.pulsar:pulsar-broker:VERSION (scripts/pulsar/pom.xml).
# Either way the broker runs as `java -cp <lib>/* org.apache.pulsar.PulsarStandaloneStarter`, with
# scripts/pulsar/standalone.conf.in (filled in) and scripts/pulsar/log4j2.xml. It listens on exactly three
# ports, all on 127.0.0.1: broker, HTTP (admin REST, metrics) and bookie. Before a start on existing data,
# scripts/pulsar/CleanStaleEphemeral.java drops the metadata a dead broker left behind (without it a
# restart can loop on the bookie registration and topics fail to load).
#
# The script only ever signals the pid recorded in its pid file, after checking that this pid is a
# Pulsar standalone JVM using this data directory.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
RES_DIR="$SCRIPT_DIR/pulsar"

PULSAR_VERSION="${PULSAR_VERSION:-3.0.7}"
CACHE_BASE="${ALPES_CACHE_DIR:-$HOME/.cache/alpes}"
PULSAR_HOME_DIR="$CACHE_BASE/pulsar-$PULSAR_VERSION"
DATA_DIR="${PULSAR_DATA_DIR:-$REPO_ROOT/.data/pulsar}"
RUN_DIR="$DATA_DIR/run"
PID_FILE="$RUN_DIR/pulsar.pid"
LOG_FILE="$RUN_DIR/pulsar.log"
CONF_FILE="$RUN_DIR/standalone.conf"

BROKER_PORT="${PULSAR_BROKER_PORT:-6650}"
HTTP_PORT="${PULSAR_HTTP_PORT:-8080}"
BOOKIE_PORT="${PULSAR_BOOKIE_PORT:-3181}"
HOST=127.0.0.1
TENANT="${PULSAR_TENANT:-alpes}"
NAMESPACE="${PULSAR_NAMESPACE:-afiliaciones}"
SCHEMA_COMPAT="${PULSAR_SCHEMA_COMPATIBILITY:-BACKWARD_TRANSITIVE}"
SCHEMA_AUTO_UPDATE="${PULSAR_SCHEMA_AUTO_UPDATE:-true}"
SCHEMA_VALIDATION_ENFORCED="${PULSAR_SCHEMA_VALIDATION_ENFORCED:-false}"
JOURNAL_SYNC="${PULSAR_JOURNAL_SYNC:-true}"
HEAP_OPTS="${PULSAR_HEAP_OPTS:--Xms512m -Xmx1g}"
START_TIMEOUT="${PULSAR_START_TIMEOUT:-180}"
STOP_TIMEOUT="${PULSAR_STOP_TIMEOUT:-60}"
LOG_LEVEL="${PULSAR_LOG_LEVEL:-info}"

ADMIN_URL="http://$HOST:$HTTP_PORT"
MAIN_CLASS=org.apache.pulsar.PulsarStandaloneStarter

log() { printf '[pulsar.sh] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------------------------
# Java
# ---------------------------------------------------------------------------------------------------
java_major() { # $1 = java binary -> major version on stdout
  local v
  v="$("$1" -version 2>&1 | awk -F'"' '/version "/ && !v {v = $2} END {print v}')" || return 1
  [[ -n "$v" ]] || return 1
  if [[ "$v" == 1.* ]]; then v="${v#1.}"; fi
  echo "${v%%[.+-]*}"
}

find_java() {
  local cands=() c m
  [[ -n "${PULSAR_JAVA_HOME:-}" ]] && cands+=("$PULSAR_JAVA_HOME/bin/java")
  [[ -n "${JAVA_HOME:-}" ]] && cands+=("$JAVA_HOME/bin/java")
  command -v java >/dev/null 2>&1 && cands+=("$(command -v java)")
  # Prefer 17 (the version Pulsar 3.0 documents for the broker), then 21, then anything newer.
  for c in /usr/lib/jvm/*17*/bin/java /usr/lib/jvm/*21*/bin/java /usr/lib/jvm/*/bin/java; do
    [[ -x "$c" ]] && cands+=("$c")
  done
  for c in "${cands[@]}"; do
    [[ -x "$c" ]] || continue
    m="$(java_major "$c" 2>/dev/null)" || continue
    if [[ "$m" =~ ^[0-9]+$ ]] && (( m >= 17 )); then echo "$c"; return 0; fi
  done
  return 1
}

# ---------------------------------------------------------------------------------------------------
# HTTP (curl if present, else python3)
# ---------------------------------------------------------------------------------------------------
# http METHOD URL [JSON_BODY] -> sets HTTP_STATUS (000 on connection failure) and HTTP_BODY.
# (No pipes: with pipefail, a reader that stops early would turn SIGPIPE into a failure.)
HTTP_STATUS=000
HTTP_BODY=
http() {
  local method="$1" url="$2" body="${3-}" out
  if command -v curl >/dev/null 2>&1; then
    local args=(-s -m 10 -X "$method" -w '\n%{http_code}')
    [[ -n "$body" ]] && args+=(-H 'Content-Type: application/json' --data "$body")
    out="$(curl "${args[@]}" "$url" 2>/dev/null)" || true
  else
    out="$(python3 - "$method" "$url" "$body" <<'PY'
import sys, urllib.request, urllib.error
method, url, body = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(url, method=method, data=body.encode() if body else None,
                             headers={"Content-Type": "application/json"} if body else {})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        sys.stdout.write(r.read().decode(errors="replace") + "\n" + str(r.status))
except urllib.error.HTTPError as e:
    sys.stdout.write(e.read().decode(errors="replace") + "\n" + str(e.code))
except Exception:
    sys.stdout.write("\n000")
PY
)" || true
  fi
  [[ "$out" == *$'\n'* ]] || out=$'\n000'
  HTTP_STATUS="${out##*$'\n'}"
  HTTP_BODY="${out%$'\n'*}"
  [[ "$HTTP_STATUS" =~ ^[0-9]{3}$ ]] || HTTP_STATUS=000
}

# ---------------------------------------------------------------------------------------------------
# fetch
# ---------------------------------------------------------------------------------------------------
lib_dir() { # prints the lib dir of a complete cache, fails if there is none
  [[ -f "$PULSAR_HOME_DIR/.complete" ]] || return 1
  local kind; kind="$(cat "$PULSAR_HOME_DIR/.complete")"
  case "$kind" in
    classpath) echo "$PULSAR_HOME_DIR/lib" ;;
    distribution) echo "$PULSAR_HOME_DIR/dist/lib" ;;
    *) return 1 ;;
  esac
}

cmd_fetch() {
  if lib_dir >/dev/null; then
    log "Pulsar $PULSAR_VERSION already cached in $PULSAR_HOME_DIR ($(cat "$PULSAR_HOME_DIR/.complete"))"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn (Maven) is needed once to fetch Pulsar's jars"
  mkdir -p "$CACHE_BASE"
  exec 9>"$PULSAR_HOME_DIR.lock"
  flock 9
  if lib_dir >/dev/null; then flock -u 9; return 0; fi  # another fetch finished meanwhile
  local tmp mvn_opts
  tmp="$(mktemp -d "$CACHE_BASE/.pulsar-$PULSAR_VERSION.XXXXXX")"
  # -gs: only a mirror that sends every repository to Maven Central (Pulsar's poms name others).
  mvn_opts=(-B -q -gs "$RES_DIR/settings-global.xml")
  local t0=$SECONDS

  # 1. The binary distribution, if Maven Central has it for this version (it has for 4.0.8, not for 3.0.x).
  log "looking for org.apache.pulsar:pulsar-server-distribution:$PULSAR_VERSION:tar.gz:bin on Maven Central"
  if (cd "$tmp" && mvn "${mvn_opts[@]}" org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy \
        -Dartifact="org.apache.pulsar:pulsar-server-distribution:$PULSAR_VERSION:tar.gz:bin" \
        -DoutputDirectory="$tmp/dl" >"$tmp/mvn-dist.log" 2>&1); then
    log "found the binary distribution; unpacking"
    mkdir -p "$tmp/home/dist"
    tar -xzf "$tmp/dl/pulsar-server-distribution-$PULSAR_VERSION-bin.tar.gz" -C "$tmp/home/dist" --strip-components=1
    echo distribution >"$tmp/home/.complete"
  else
    log "no binary distribution for $PULSAR_VERSION; assembling the classpath of pulsar-broker:$PULSAR_VERSION"
    mkdir -p "$tmp/home/lib"
    if ! mvn "${mvn_opts[@]}" -f "$RES_DIR/pom.xml" -Dpulsar.version="$PULSAR_VERSION" \
          org.apache.maven.plugins:maven-dependency-plugin:3.6.1:copy-dependencies \
          -DincludeScope=runtime -DoutputDirectory="$tmp/home/lib" >"$tmp/mvn-classpath.log" 2>&1; then
      tail -n 40 "$tmp/mvn-classpath.log" >&2
      rm -rf "$tmp"
      die "could not resolve pulsar-broker:$PULSAR_VERSION from Maven Central"
    fi
    # The pom has no sources; Maven may still leave a target/ folder beside it.
    rm -rf "$RES_DIR/target"
    echo classpath >"$tmp/home/.complete"
  fi
  rm -rf "$PULSAR_HOME_DIR"
  mv "$tmp/home" "$PULSAR_HOME_DIR"
  rm -rf "$tmp"
  flock -u 9
  log "cached Pulsar $PULSAR_VERSION in $PULSAR_HOME_DIR ($(cat "$PULSAR_HOME_DIR/.complete"), $((SECONDS - t0)) s, $(du -sh "$PULSAR_HOME_DIR" | cut -f1))"
}

# ---------------------------------------------------------------------------------------------------
# process helpers
# ---------------------------------------------------------------------------------------------------
# Is $1 a live Pulsar standalone JVM that uses our data dir?
is_our_pid() {
  local pid="$1" cmdline
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmdline" == *"$MAIN_CLASS"* && "$cmdline" == *"$DATA_DIR/metadata"* ]]
}

# Finds the JVM of this data dir by scanning /proc (used only if the launched pid is not the JVM itself).
find_our_jvm() {
  local d pid
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    is_our_pid "$pid" && { echo "$pid"; return 0; }
  done
  return 1
}

running_pid() { # prints the pid if the broker from the pid file is alive
  [[ -f "$PID_FILE" ]] || return 1
  local pid; pid="$(cat "$PID_FILE" 2>/dev/null || true)"
  is_our_pid "$pid" || return 1
  echo "$pid"
}

healthy() {
  http GET "$ADMIN_URL/admin/v2/brokers/health"
  [[ "$HTTP_STATUS" == 200 ]] || return 1
  http GET "$ADMIN_URL/admin/v2/namespaces/public"
  [[ "$HTTP_STATUS" == 200 && "$HTTP_BODY" == *'"public/default"'* ]]
}

port_in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

print_urls() {
  echo "PULSAR_URL=pulsar://$HOST:$BROKER_PORT"
  echo "PULSAR_ADMIN_URL=$ADMIN_URL"
  echo "PULSAR_NAMESPACE=$TENANT/$NAMESPACE"
}

# ---------------------------------------------------------------------------------------------------
# tenant / namespace
# ---------------------------------------------------------------------------------------------------
expect_status() { # $1 = what, rest = accepted statuses of the last `http` call
  local what="$1"; shift
  local s; for s in "$@"; do [[ "$HTTP_STATUS" == "$s" ]] && return 0; done
  die "$what failed: HTTP $HTTP_STATUS $HTTP_BODY"
}

setup_namespace() {
  local ns="$TENANT/$NAMESPACE" base="$ADMIN_URL/admin/v2/namespaces/$TENANT/$NAMESPACE"
  http PUT "$ADMIN_URL/admin/v2/tenants/$TENANT" '{"adminRoles":[],"allowedClusters":["standalone"]}'
  expect_status "create tenant $TENANT" 204 409
  http PUT "$base" '{}'
  expect_status "create namespace $ns" 204 409
  http PUT "$base/schemaCompatibilityStrategy" "\"$SCHEMA_COMPAT\""
  expect_status "set schemaCompatibilityStrategy on $ns" 204
  http POST "$base/isAllowAutoUpdateSchema" "$SCHEMA_AUTO_UPDATE"
  expect_status "set isAllowAutoUpdateSchema on $ns" 204
  http POST "$base/schemaValidationEnforced" "$SCHEMA_VALIDATION_ENFORCED"
  expect_status "set schemaValidationEnforced on $ns" 204
  # Keep messages for a while even once acknowledged or without a subscription (as docker-compose's
  # pulsar-init does): the integration events on eventos.campanas, which no daemon subscribes to,
  # stay readable by a consumer that subscribes later, and by an operator.
  http POST "$base/retention" '{"retentionTimeInMinutes":60,"retentionSizeInMB":512}'
  expect_status "set retention on $ns" 204
  # Read back what the broker holds.
  http GET "$base/schemaCompatibilityStrategy"
  [[ "$HTTP_BODY" == *"$SCHEMA_COMPAT"* ]] || die "namespace $ns: schemaCompatibilityStrategy is '$HTTP_BODY'"
  http GET "$base/isAllowAutoUpdateSchema"
  [[ "$HTTP_BODY" == *"$SCHEMA_AUTO_UPDATE"* ]] || die "namespace $ns: isAllowAutoUpdateSchema is '$HTTP_BODY'"
  log "namespace $ns ready (schemaCompatibilityStrategy=$SCHEMA_COMPAT, isAllowAutoUpdateSchema=$SCHEMA_AUTO_UPDATE, schemaValidationEnforced=$SCHEMA_VALIDATION_ENFORCED)"
}

# ---------------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------------
write_conf() {
  sed -e "s|@BROKER_PORT@|$BROKER_PORT|g" \
      -e "s|@HTTP_PORT@|$HTTP_PORT|g" \
      -e "s|@LOOPBACK_IF@|${PULSAR_LOOPBACK_IF:-lo}|g" \
      -e "s|@JOURNAL_SYNC@|$JOURNAL_SYNC|g" \
      "$RES_DIR/standalone.conf.in" >"$CONF_FILE.tmp"
  mv "$CONF_FILE.tmp" "$CONF_FILE"
}

# Drops the ephemeral metadata nodes a previous broker process left in the RocksDB store (see
# scripts/pulsar/CleanStaleEphemeral.java for why). Compiled once into the cache when javac is there,
# otherwise run as a single-file source program.
clean_stale_ephemeral() { # $1 = java, $2 = lib dir
  local java="$1" lib="$2" src="$RES_DIR/CleanStaleEphemeral.java" tools="$PULSAR_HOME_DIR/tools" javac
  javac="$(dirname "$java")/javac"
  local cmd=("$java" -Dlog4j.configurationFile="$RES_DIR/log4j2.xml" -Dpulsar.log.level=warn)
  if [[ -x "$javac" ]]; then
    if [[ ! -f "$tools/CleanStaleEphemeral.class" || "$src" -nt "$tools/CleanStaleEphemeral.class" ]]; then
      mkdir -p "$tools"
      "$javac" -nowarn --release 17 -d "$tools" -cp "$lib/*" "$src" >>"$LOG_FILE" 2>&1 || die "could not compile $src (see $LOG_FILE)"
    fi
    cmd+=(-cp "$tools:$lib/*" CleanStaleEphemeral)
  else
    cmd+=(-cp "$lib/*" "$src")
  fi
  log "dropping stale ephemeral metadata left by the previous run"
  "${cmd[@]}" "$DATA_DIR/metadata" >>"$LOG_FILE" 2>&1 || { tail -n 30 "$LOG_FILE" >&2; die "stale metadata cleanup failed"; }
}

# After readiness: the bookie registration lock must not be flapping (see CleanStaleEphemeral.java).
check_no_lock_loop() {
  local n
  sleep 0.5
  n="$(grep -c 'Lock on resource /ledgers/available/.* was invalidated' "$LOG_FILE" || true)"
  if (( n > 20 )); then
    die "the bookie registration lock keeps being invalidated ($n times, see $LOG_FILE): stop, then start again"
  fi
}

wait_ready() { # $1 = pid, $2 = start time (SECONDS)
  local pid="$1" t0="$2"
  while true; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the broker (pid $pid) exited during startup; last 50 lines of $LOG_FILE:"
      tail -n 50 "$LOG_FILE" >&2 || true
      rm -f "$PID_FILE"
      exit 1
    fi
    if healthy; then return 0; fi
    if (( SECONDS - t0 >= START_TIMEOUT )); then
      log "the broker (pid $pid) was not ready after ${START_TIMEOUT}s; last 50 lines of $LOG_FILE:"
      tail -n 50 "$LOG_FILE" >&2 || true
      log "it is still running: scripts/pulsar.sh stop"
      exit 1
    fi
    sleep 0.5
  done
}

cmd_start() {
  local t0=$SECONDS pid
  mkdir -p "$RUN_DIR"
  if pid="$(running_pid)"; then
    if healthy; then
      log "already running and healthy (pid $pid, data $DATA_DIR)"
    else
      log "already running (pid $pid) but not ready yet; waiting"
      wait_ready "$pid" "$t0"
    fi
    setup_namespace
    print_urls
    return 0
  fi
  [[ -f "$PID_FILE" ]] && { log "removing stale pid file"; rm -f "$PID_FILE"; }

  cmd_fetch
  local java lib
  java="$(find_java)" || die "no Java >= 17 found (set JAVA_HOME)"
  lib="$(lib_dir)"

  local p
  for p in "$BROKER_PORT" "$HTTP_PORT" "$BOOKIE_PORT"; do
    port_in_use "$p" && die "port $p on $HOST is already in use (set PULSAR_BROKER_PORT / PULSAR_HTTP_PORT / PULSAR_BOOKIE_PORT)"
  done

  [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.1"
  if [[ -f "$DATA_DIR/metadata/CURRENT" ]]; then
    clean_stale_ephemeral "$java" "$lib"
  fi
  mkdir -p "$DATA_DIR/metadata" "$DATA_DIR/bookkeeper"
  write_conf

  local jvm_opts=(
    $HEAP_OPTS
    -XX:+UseG1GC -XX:MaxGCPauseMillis=10 -XX:+ExitOnOutOfMemoryError -XX:+PerfDisableSharedMem
    # Java 17 module opens, as Pulsar's own launcher passes them.
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.zip=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.misc=ALL-UNNAMED
    --add-opens java.base/jdk.internal.platform=ALL-UNNAMED
    --add-opens java.base/sun.net=ALL-UNNAMED
    --add-opens java.management/sun.management=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    -Dio.netty.tryReflectionSetAccessible=true
    -Dio.netty.leakDetectionLevel=disabled
    -Dio.netty.recycler.maxCapacityPerThread=4096
    -Djava.net.preferIPv4Stack=true
    -Dlog4j.shutdownHookEnabled=false
    -Dlog4j.configurationFile="$RES_DIR/log4j2.xml"
    -Dpulsar.log.level="$LOG_LEVEL"
    # BookKeeper metadata drivers backed by Pulsar's metadata store (apache/pulsar issue 13750).
    -Dbookkeeper.metadata.bookie.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataBookieDriver
    -Dbookkeeper.metadata.client.drivers=org.apache.pulsar.metadata.bookkeeper.PulsarMetadataClientDriver
  )
  if [[ -n "${PULSAR_EXTRA_JAVA_OPTS:-}" ]]; then
    # shellcheck disable=SC2206
    jvm_opts+=($PULSAR_EXTRA_JAVA_OPTS)
  fi
  local args=(
    --config "$CONF_FILE"
    --no-functions-worker --no-stream-storage
    --advertised-address "$HOST"
    --metadata-dir "$DATA_DIR/metadata"
    --bookkeeper-dir "$DATA_DIR/bookkeeper"
    --bookkeeper-port "$BOOKIE_PORT"
  )
  log "starting Pulsar $PULSAR_VERSION ($("$java" -version 2>&1 | sed -n 1p)); log: $LOG_FILE"
  # Own session (setsid) so the broker outlives the shell that started it and its process group;
  # cwd = run dir (for any relative path the broker uses).
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  local t_launch=$SECONDS
  (cd "$RUN_DIR" && exec "${detach[@]}" "$java" "${jvm_opts[@]}" -cp "$lib/*" "$MAIN_CLASS" "${args[@]}" \
      >>"$LOG_FILE" 2>&1 </dev/null) &
  pid=$!
  echo "$pid" >"$PID_FILE"
  # `exec` keeps the pid of the subshell, so $! is the JVM (unless setsid had to fork: then look it up).
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do
    is_our_pid "$pid" && break
    if ! kill -0 "$pid" 2>/dev/null; then
      pid="$(find_our_jvm)" && { echo "$pid" >"$PID_FILE"; break; }
      tail -n 50 "$LOG_FILE" >&2 || true; rm -f "$PID_FILE"; die "the JVM did not start"
    fi
    sleep 0.2
  done
  is_our_pid "$pid" || { rm -f "$PID_FILE"; die "pid $pid is not the broker JVM"; }
  wait_ready "$pid" "$t_launch"
  check_no_lock_loop
  setup_namespace
  log "ready in $((SECONDS - t0)) s (pid $pid)"
  print_urls
}

# ---------------------------------------------------------------------------------------------------
# stop / kill / status / wipe
# ---------------------------------------------------------------------------------------------------
cmd_stop() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "stopping pid $pid (TERM, KILL after ${STOP_TIMEOUT}s)"
  kill -TERM "$pid" 2>/dev/null || true
  local t0=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    if (( SECONDS - t0 >= STOP_TIMEOUT )); then
      log "still alive after ${STOP_TIMEOUT}s: KILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  rm -f "$PID_FILE"
  log "stopped"
}

cmd_kill() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    rm -f "$PID_FILE"
    return 0
  fi
  log "kill -9 $pid (data kept in $DATA_DIR)"
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  rm -f "$PID_FILE"
}

cmd_status() {
  local pid
  if ! pid="$(running_pid)"; then
    log "not running"
    return 3
  fi
  if healthy; then
    log "running and healthy (pid $pid, data $DATA_DIR)"
    print_urls
    return 0
  fi
  log "running (pid $pid) but not healthy"
  return 1
}

cmd_wipe() {
  cmd_stop
  case "$DATA_DIR" in
    ""|"/"|"$HOME"|"$REPO_ROOT") die "refusing to delete '$DATA_DIR'" ;;
  esac
  rm -rf "$DATA_DIR"
  log "deleted $DATA_DIR"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  kill) cmd_kill ;;
  status) cmd_status ;;
  wipe) cmd_wipe ;;
  env) print_urls ;;
  *) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
