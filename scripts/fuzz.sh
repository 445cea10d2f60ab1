#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (one per parser of keygate-core) and prints a table of
# executions and crashes per target. Used by `make fuzz` and `make fuzz-smoke`.
#
#   scripts/fuzz.sh run      each target FUZZ_SECS seconds, adding what it finds to fuzz/corpus/
#   scripts/fuzz.sh smoke    each target FUZZ_SECS seconds (default 10) over the committed corpus,
#                            which it leaves unchanged
#   scripts/fuzz.sh cmin     minimizes each committed corpus by edge coverage (cargo fuzz cmin)
#
# FUZZ_RUNS, if set, also stops each target after that many executions (libFuzzer's -runs).
# FUZZ_TARGETS picks targets (default: all, as `cargo fuzz list` gives them); FUZZ_SANITIZER is
# cargo-fuzz's -s (default none: keygate-core forbids unsafe code, so the sanitizer mostly slows
# the run; `address` works too). Any crash fails the script; its input is in fuzz/artifacts/.
# The fuzz crate needs nightly-only flags: RUSTC_BOOTSTRAP=1 lets the stable toolchain build it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

mode=${1:-run}
case "$mode" in
  run) secs=${FUZZ_SECS:-300} ;;
  smoke) secs=${FUZZ_SECS:-10} ;;
  cmin) secs=0 ;;
  *) echo "usage: $0 run|smoke|cmin" >&2; exit 2 ;;
esac
sanitizer=${FUZZ_SANITIZER:-none}
export RUSTC_BOOTSTRAP=1
# cargo-fuzz reads CARGO_TARGET_DIR too; without it the fuzz crate builds into fuzz/target.
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-target}")
export CARGO_TARGET_DIR=$target_dir

if ! cargo fuzz --version 2>/dev/null | grep -q '0\.13\.2'; then
  cargo install cargo-fuzz --version 0.13.2 --locked
fi

read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
build=(cargo fuzz build -O --debug-assertions -s "$sanitizer")

if [[ $mode == cmin ]]; then
  "${build[@]}"
  for t in "${targets[@]}"; do
    # Edges only (no hit counts): counts keep thousands of near-duplicate inputs, several MB in
    # all, which a run finds again in seconds; edges keep the committed corpora small.
    cargo fuzz cmin -O --debug-assertions -s "$sanitizer" "$t" "corpus/$t" -- \
      -use_counters=0 -rss_limit_mb=4096
  done
  exit 0
fi

"${build[@]}"
bin_dir="$target_dir/$(rustc -vV | sed -n 's/^host: //p')/release"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
rows=()
for t in "${targets[@]}"; do
  mkdir -p "artifacts/$t" "corpus/$t"
  if [[ $mode == smoke ]]; then
    # New inputs go to the scratch directory, listed first; the committed corpus is only read.
    dirs=("$work/$t" "corpus/$t")
    mkdir -p "$work/$t"
  else
    dirs=("corpus/$t")
  fi
  echo "== $t: ${secs}s (sanitizer: $sanitizer)"
  before=$(find "artifacts/$t" -type f | wc -l)
  started=$(date +%s)
  rc=0
  "$bin_dir/$t" "${dirs[@]}" -max_total_time="$secs" ${FUZZ_RUNS:+-runs="$FUZZ_RUNS"} \
    -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" >"$work/$t.log" 2>&1 || rc=$?
  elapsed=$(($(date +%s) - started))
  crashes=$(($(find "artifacts/$t" -type f | wc -l) - before))
  if ((rc != 0 && crashes == 0)); then crashes=1; fi # died without writing an input
  if ((rc != 0 || crashes > 0)); then
    status=1
    grep -E -A3 'panicked|ERROR|SUMMARY|Test unit written' "$work/$t.log" | head -n 20 || tail -n 20 "$work/$t.log"
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$t.log" | tail -n 1)
  corpus=$(find "${dirs[@]}" -type f | wc -l)
  rows+=("$(printf '%-11s %12s %8s %9s %8s %8s' "$t" "${execs:-?}" "$elapsed" "${rate:-?}" "$crashes" "$corpus")")
done

printf '\n%-11s %12s %8s %9s %8s %8s\n' target execs seconds exec/s crashes corpus
printf '%s\n' "${rows[@]}"
exit "$status"
