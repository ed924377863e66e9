#!/usr/bin/env bash
# The demo path: starts the product in embedded mode (nothing to install), creates one campaign
# that completes and one that is refused by the tracking service (so influencer and marca are
# compensated), and prints both sagas' histories. Stops what it started.
#
#   scripts/demo.sh            (ALPES_DEMO_PORT, default 18080; data in a fresh temporary folder)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PORT="${ALPES_DEMO_PORT:-18080}"
DATA="$(mktemp -d /tmp/alpes-demo.XXXXXX)"
URL="http://127.0.0.1:$PORT"

cargo build -q -p orchestrator
target/debug/orchestrator embedded --http "127.0.0.1:$PORT" --data-dir "$DATA" >"$DATA/orchestrator.log" 2>&1 &
PID=$!
trap 'kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done

campana() { # $1: fecha_fin, $2 and $3: the influencers' names
    cat <<JSON
{ "nombre": "Campaña de Verano 2024", "descripcion": "Promoción de productos de verano con influencers",
  "tipo": "influencer", "fecha_inicio": "2025-01-01T00:00:00", "fecha_fin": "$1",
  "presupuesto": 15000, "marca": { "id_marca": "123e4567-e89b-12d3-a456-426614174000", "nombre_marca": "Nike" },
  "influencers": [ { "nombre": "$2", "plataforma": "Instagram", "seguidores": 150000, "categoria": "Fitness" },
                   { "nombre": "$3", "plataforma": "TikTok", "seguidores": 300000, "categoria": "Lifestyle" } ] }
JSON
}

show() { # $1: label, $2: POST answer
    local saga id
    saga="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["saga_id"])' <<<"$2")"
    id="$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id_campana"])' <<<"$2")"
    for _ in $(seq 1 100); do
        curl -s "$URL/afiliaciones/campana/$id" | grep -q '"estado":"pendiente"' || break
        sleep 0.1
    done
    echo "== $1: campaign $id"
    python3 scripts/demo_show.py "$URL" "$id" "$saga"
}

ok="$(curl -s -X POST "$URL/afiliaciones/campana" -H 'content-type: application/json' -d "$(campana 2025-12-31T23:59:59 "Ana García" "Carlos López")")"
refused="$(curl -s -X POST "$URL/afiliaciones/campana" -H 'content-type: application/json' -d "$(campana 2028-06-30T00:00:00 "Lucía Pérez" "Mateo Ruiz")")"
show "completes" "$ok"
show "compensates (tracking refuses a window over two years)" "$refused"
