#!/usr/bin/env bash
# The keygate demo behind `make run`: keygate-server, the keygate-echo upstream and Envoy with the
# filter, all on 127.0.0.1. Prints the admin secret and curl commands to paste into another
# terminal (also written to $RUN_DIR/commands.sh). Ctrl-C stops everything.
#
# Expects the binaries, the .wasm and Envoy to be built (`make run` does that first). Settings,
# all optional:
#   KEYGATE_DEMO_DIR                state: secrets, database, rendered config, logs (default .run)
#   KEYGATE_DEMO_ENVOY_PORT         10000   KEYGATE_DEMO_ADMIN_PORT  9901
#   KEYGATE_DEMO_KEYSERVICE_PORT    8080    KEYGATE_DEMO_ECHO_PORT   8081
#   KEYGATE_SERVER_BIN, KEYGATE_ECHO_BIN, KEYGATE_WASM, ENVOY_BIN  what to run
# Any other KEYGATE_* variable reaches keygate-server as it is: `KEYGATE_DATABASE_URL=postgres://…
# make run` runs the demo on PostgreSQL instead of the SQLite file in the run directory.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

run_dir=${KEYGATE_DEMO_DIR:-$root/.run}
envoy_port=${KEYGATE_DEMO_ENVOY_PORT:-10000}
admin_port=${KEYGATE_DEMO_ADMIN_PORT:-9901}
keyservice_port=${KEYGATE_DEMO_KEYSERVICE_PORT:-8080}
echo_port=${KEYGATE_DEMO_ECHO_PORT:-8081}
target=${CARGO_TARGET_DIR:-$root/target}
server_bin=${KEYGATE_SERVER_BIN:-$target/debug/keygate-server}
echo_bin=${KEYGATE_ECHO_BIN:-$target/debug/keygate-echo}
wasm=${KEYGATE_WASM:-$target/wasm32-wasip1/release/keygate.wasm}
envoy_bin=${ENVOY_BIN:-$root/.venv/bin/envoy}

for file in "$server_bin" "$echo_bin" "$wasm" "$envoy_bin"; do
  if [ ! -x "$file" ] && [ ! -f "$file" ]; then
    echo "run-demo: $file is missing; run \`make run\` (it builds and installs what is missing)" >&2
    exit 1
  fi
done

mkdir -p "$run_dir"
run_dir=$(cd "$run_dir" && pwd)
umask 077
# Written again once everything is up; a stale one would tell waiting tools we are ready.
rm -f "$run_dir/commands.sh"

# Secrets are made once and kept in the run directory, so the database and the printed commands
# stay valid across runs.
secret_file() { # path
  if [ ! -s "$1" ]; then
    python3 -c 'import secrets; print(secrets.token_hex(32))' >"$1"
  fi
  cat "$1"
}
admin_secret=$(secret_file "$run_dir/admin-secret")
filter_token=$(secret_file "$run_dir/filter-token")

# The `iss` of the key service's access tokens; envoy/demo.yaml's JWT provider names the same
# (http://localhost:KEYSERVICE_PORT), and the two must agree exactly.
issuer="http://localhost:$keyservice_port"

python3 "$root/scripts/render.py" "$root/envoy/demo.yaml" "$run_dir/envoy.yaml" \
  LISTEN_PORT="$envoy_port" ADMIN_PORT="$admin_port" KEYSERVICE_PORT="$keyservice_port" \
  UPSTREAM_PORT="$echo_port" WASM_PATH="$(realpath "$wasm")" FILTER_TOKEN="$filter_token"

pids=()
stop_all() {
  trap - EXIT INT TERM HUP
  if [ "${#pids[@]}" -gt 0 ]; then
    echo "run-demo: stopping" >&2
    kill "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
  fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# wait_until NAME URL PID LOG: polls URL until it answers 2xx, giving up if the process dies.
wait_until() {
  local name=$1 url=$2 pid=$3 log=$4
  for _ in $(seq 1 600); do
    if curl -fsS -o /dev/null --max-time 1 "$url" 2>/dev/null; then
      echo "run-demo: $name is up" >&2
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-demo: $name exited; the end of $log:" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "run-demo: $name not up after 60 s; the end of $log:" >&2
  tail -n 30 "$log" >&2
  exit 1
}

# The SQLite file in the run directory, unless KEYGATE_DATABASE_URL names another database.
database=()
if [ -z "${KEYGATE_DATABASE_URL:-}" ]; then
  database=("KEYGATE_DB_PATH=$run_dir/keygate.db")
fi
env "${database[@]}" \
  KEYGATE_LISTEN="127.0.0.1:$keyservice_port" \
  KEYGATE_ADMIN_SECRET="$admin_secret" \
  KEYGATE_FILTER_TOKEN="$filter_token" \
  KEYGATE_ISSUER="$issuer" \
  KEYGATE_LOOKUP_CACHE_TTL_SECS=300 \
  KEYGATE_NEGATIVE_CACHE_TTL_SECS=5 \
  "$server_bin" </dev/null >"$run_dir/keyservice.log" 2>&1 &
pids+=($!)
wait_until keygate-server "http://127.0.0.1:$keyservice_port/healthz" "${pids[-1]}" "$run_dir/keyservice.log"

"$echo_bin" "127.0.0.1:$echo_port" </dev/null >"$run_dir/echo.log" 2>&1 &
pids+=($!)
wait_until keygate-echo "http://127.0.0.1:$echo_port/" "${pids[-1]}" "$run_dir/echo.log"

"$envoy_bin" -c "$run_dir/envoy.yaml" --concurrency 2 --disable-hot-restart \
  </dev/null >"$run_dir/envoy.log" 2>&1 &
pids+=($!)
wait_until "envoy admin" "http://127.0.0.1:$admin_port/ready" "${pids[-1]}" "$run_dir/envoy.log"
# /healthz is a public route: a 200 means the filter is loaded and the upstream is reachable.
wait_until "envoy listener" "http://127.0.0.1:$envoy_port/healthz" "${pids[-1]}" "$run_dir/envoy.log"
# The filter's first poll of the revocation feed only learns where the feed stands; the second
# goes out once it has answered, and from then on every revoke reaches the filter.
feed_polls() {
  curl -fsS --max-time 1 "http://127.0.0.1:$admin_port/stats?filter=keygate%5C.feed_poll%24" 2>/dev/null |
    awk -F': ' '{ n += $2 } END { print n + 0 }'
}
for _ in $(seq 1 100); do
  [ "$(feed_polls)" -ge 2 ] && break
  sleep 0.1
done
if [ "$(feed_polls)" -lt 2 ]; then
  echo "run-demo: the filter has not polled the revocation feed; the end of $run_dir/envoy.log:" >&2
  tail -n 30 "$run_dir/envoy.log" >&2
  exit 1
fi
echo "run-demo: the filter reads the revocation feed" >&2

cat >"$run_dir/commands.sh.new" <<EOF
# Admin secret of the key service (kept in $run_dir/admin-secret):
SECRET='$admin_secret'

# 1. Create a key for tenant acme that may read orders. Its secret is shown only in this answer.
RESP=\$(curl -s -X POST localhost:$keyservice_port/v1/keys -H "authorization: Bearer \$SECRET" -H 'content-type: application/json' -d '{"name":"demo","tenant":"acme","permissions":["orders:read"]}'); echo "\$RESP"

# 2. Keep the key and its id (no jq needed):
KEY=\$(printf '%s' "\$RESP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])')
KEY_ID=\$(printf '%s' "\$RESP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

# 3. Through Envoy with the key: 200. The upstream echoes what it got: the x-keygate-* identity
#    headers, and no x-api-key.
curl -s -i localhost:$envoy_port/orders/42 -H "x-api-key: \$KEY"; echo

# 4. Without a key: 401.
curl -s -i localhost:$envoy_port/orders/42; echo

# 5. Revoke the key:
curl -s -X POST localhost:$keyservice_port/v1/keys/\$KEY_ID/revoke -H "authorization: Bearer \$SECRET"; echo

# 6. The revoked key gets 401. Its answer is cached for 5 minutes (cache.ttl_secs in
#    envoy/demo.yaml), but the key service's revocation feed reaches every Envoy worker within
#    about a second. Pasted by hand, the first try is refused already; a script gets here within
#    milliseconds, so the loop tries every 50 ms, for at most 3 s, until the key has been refused
#    6 times in a row: each curl may reach another Envoy worker, and each worker drops its own
#    copy at its next tick (every 250 ms).
refused=0; for try in \$(seq 60); do if [ "\$(curl -s -o /dev/null -w '%{http_code}' localhost:$envoy_port/orders/42 -H "x-api-key: \$KEY")" = 401 ]; then refused=\$((refused + 1)); [ \$refused -ge 6 ] && break; else refused=0; fi; sleep 0.05; done
curl -s -i localhost:$envoy_port/orders/42 -H "x-api-key: \$KEY"; echo

# 7. Machine to machine: create an OAuth client for tenant acme that may read orders. Its secret is
#    shown only in this answer.
RESP=\$(curl -s -X POST localhost:$keyservice_port/v1/clients -H "authorization: Bearer \$SECRET" -H 'content-type: application/json' -d '{"name":"demo-client","tenant":"acme","permissions":["orders:read"]}'); echo "\$RESP"
CLIENT_ID=\$(printf '%s' "\$RESP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_id"])')
CLIENT_SECRET=\$(printf '%s' "\$RESP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["client_secret"])')

# 8. Get an access token (client credentials grant, HTTP Basic) and keep it:
RESP=\$(curl -s -u "\$CLIENT_ID:\$CLIENT_SECRET" -d grant_type=client_credentials localhost:$keyservice_port/oauth/token); echo "\$RESP"
TOKEN=\$(printf '%s' "\$RESP" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# 9. Through Envoy with the token: 200. The upstream gets x-keygate-auth: jwt, the client id as
#    x-keygate-subject, the tenant and permissions, and no Authorization header.
curl -s -i localhost:$envoy_port/orders/42 -H "Authorization: Bearer \$TOKEN"; echo

# 10. POST /orders needs orders:write, which the client lacks: 403.
curl -s -i -X POST localhost:$envoy_port/orders -H "Authorization: Bearer \$TOKEN"; echo
EOF

cat <<EOF

keygate demo is running (logs and state in $run_dir):
  Envoy         http://localhost:$envoy_port   (admin http://localhost:$admin_port)
  key service   http://localhost:$keyservice_port
  upstream      http://localhost:$echo_port    (keygate-echo)

Admin secret: $admin_secret

Paste into another terminal (also in $run_dir/commands.sh):

$(cat "$run_dir/commands.sh.new")

Ctrl-C stops everything.
EOF
# Last, so whoever waits for commands.sh (the e2e test) finds the printout complete.
mv "$run_dir/commands.sh.new" "$run_dir/commands.sh"

# Runs until Ctrl-C, or until one of the processes dies. Polls rather than `wait -n`: the
# services handle Ctrl-C themselves and exit 0, and bash would take that for a normal exit.
while true; do
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "run-demo: process $pid exited; see the logs in $run_dir" >&2
      exit 1
    fi
  done
  sleep 0.5
done
