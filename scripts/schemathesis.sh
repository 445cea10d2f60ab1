#!/usr/bin/env bash
# schemathesis (in .venv, installed by `make schemathesis`) against a live keygate-server built in
# debug mode: a fresh SQLite database, the admin secret and filter token below, and one OAuth
# client for the token endpoint's Basic scheme. Checks and limits are in keyservice/schemathesis.toml.
# Usage: scripts/schemathesis.sh [extra schemathesis arguments]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
server=$target/debug/keygate-server
st=$root/.venv/bin/schemathesis
[[ -x $server ]] || { echo "missing $server: cargo build -p keygate-keyservice" >&2; exit 1; }
[[ -x $st ]] || { echo "missing $st: make schemathesis" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() {
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
export KEYGATE_ADMIN_SECRET=schemathesis-admin-secret-0123456789abcdef
export KEYGATE_FILTER_TOKEN=schemathesis-filter-token-0123456789abcdef
export KEYGATE_METRICS_TOKEN=schemathesis-metrics-token-0123456789abcdef
KEYGATE_LOG=warn "$server" --listen "127.0.0.1:$port" --db-path "$work/keygate.db" \
    >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 50); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "$base/healthz" >/dev/null

client=$(curl -fsS -X POST "$base/v1/clients" -H "Authorization: Bearer $KEYGATE_ADMIN_SECRET" \
    -H 'Content-Type: application/json' \
    -d '{"name":"schemathesis","tenant":"schemathesis","permissions":["orders:read"]}')
SCHEMATHESIS_CLIENT_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])' <<<"$client")
SCHEMATHESIS_CLIENT_SECRET=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])' <<<"$client")
export SCHEMATHESIS_CLIENT_ID SCHEMATHESIS_CLIENT_SECRET
# An API key for the ext_authz check (the `api_key` scheme).
key=$(curl -fsS -X POST "$base/v1/keys" -H "Authorization: Bearer $KEYGATE_ADMIN_SECRET" \
    -H 'Content-Type: application/json' \
    -d '{"name":"schemathesis","tenant":"schemathesis","permissions":["orders:read"]}')
SCHEMATHESIS_API_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$key")
export SCHEMATHESIS_API_KEY

status=0
# From the scratch folder, with no example database: nothing is left in the work tree.
# One worker: with two threads, hypothesis parses lambdas' source with `ast` concurrently, and on
# this machine's CPython 3.11.7 that failed 1 run in 4 with "SystemError: AST constructor
# recursion depth mismatch" (python/cpython gh-106905): a runtime error of the tool, not the API.
cd "$work"
"$st" --config-file "${SCHEMATHESIS_CONFIG:-$root/keyservice/schemathesis.toml}" run "$base/openapi.json" \
    --workers 1 --seed "${SCHEMATHESIS_SEED:-1}" --generation-database none --no-color "$@" \
    || status=$?
if grep -q 'ERROR\|panicked' "$work/server.log"; then
    echo "--- keygate-server errors during the run:" >&2
    grep 'ERROR\|panicked' "$work/server.log" | head -20 >&2
    status=1
fi
exit "$status"
