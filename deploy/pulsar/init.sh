#!/usr/bin/env bash
# One-shot setup of the Pulsar namespace the daemons use, run by docker-compose.yml's `pulsar-init`
# service (apachepulsar/pulsar image, working directory /pulsar) once the broker is healthy.
# Safe to run again: a tenant or namespace that already exists is kept, the policies are set anew.
#
# Environment (docker-compose.yml sets every one):
#   ADMIN_URL             the broker's admin HTTP, e.g. http://pulsar:8080
#   TENANT, NAMESPACE     alpes, afiliaciones
#   SCHEMA_COMPATIBILITY  BACKWARD_TRANSITIVE: a new schema version must read every older one
#   RETENTION_TIME        how long acknowledged messages are kept, e.g. 7d
#   RETENTION_SIZE        and up to how much per topic, e.g. 1G
set -euo pipefail

: "${ADMIN_URL:?ADMIN_URL is not set}"
: "${TENANT:?TENANT is not set}"
: "${NAMESPACE:?NAMESPACE is not set}"
: "${SCHEMA_COMPATIBILITY:?SCHEMA_COMPATIBILITY is not set}"
: "${RETENTION_TIME:?RETENTION_TIME is not set}"
: "${RETENTION_SIZE:?RETENTION_SIZE is not set}"

NS="$TENANT/$NAMESPACE"
log() { echo "[pulsar-init] $*"; }

admin() { bin/pulsar-admin --admin-url "$ADMIN_URL" "$@"; }

# Runs a create command; "already exists" counts as done, any other failure stops the setup.
create() {
    local what="$1" out
    shift
    if out="$(admin "$@" 2>&1)"; then
        log "$what created"
    elif grep -qi "already exist" <<<"$out"; then
        log "$what already exists"
    else
        log "creating $what failed:"
        echo "$out" >&2
        exit 1
    fi
}

create "tenant $TENANT" tenants create "$TENANT" --allowed-clusters standalone
create "namespace $NS" namespaces create "$NS"

admin namespaces set-schema-compatibility-strategy "$NS" --compatibility "$SCHEMA_COMPATIBILITY"
# As scripts/pulsar.sh does for the tests: producers may register a new, compatible schema version;
# producers without a schema are not refused.
admin namespaces set-is-allow-auto-update-schema "$NS" --enable
admin namespaces set-schema-validation-enforce "$NS" --disable
admin namespaces set-retention "$NS" --time "$RETENTION_TIME" --size "$RETENTION_SIZE"

# Read back what the broker holds.
strategy="$(admin namespaces get-schema-compatibility-strategy "$NS")"
if [[ "$strategy" != *"$SCHEMA_COMPATIBILITY"* ]]; then
    log "namespace $NS: schema compatibility strategy is '$strategy', expected $SCHEMA_COMPATIBILITY"
    exit 1
fi
retention="$(admin namespaces get-retention "$NS" | tr -d '\n')"
log "namespace $NS ready: schema compatibility $strategy, retention $retention"
