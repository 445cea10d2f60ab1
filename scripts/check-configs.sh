#!/usr/bin/env bash
# Checks every config file in the repository (run by `make test`):
# - each Envoy config template (envoy/*.yaml, tests/fixtures/*.yaml, bench/envoy/*.yaml) is
#   rendered with sample values and loaded by `envoy --mode validate`, which also loads keygate.wasm
#   and runs its configure, so the filter configuration inside is checked by the real filter;
# - each Istio file (envoy/istio/*.yaml) must parse as YAML with apiVersion and kind, and the
#   pluginConfig of a WasmPlugin must be accepted by the real filter (rendered into envoy/e2e.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."

envoy_bin=${ENVOY_BIN:-.venv/bin/envoy}
python=${KEYGATE_PYTHON:-.venv/bin/python3} # the Envoy venv, which has PyYAML
wasm=$(realpath "${KEYGATE_WASM:-${CARGO_TARGET_DIR:-target}/wasm32-wasip1/release/keygate.wasm}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

validate() { # name rendered-config
  if "$envoy_bin" --mode validate --disable-hot-restart -c "$2" >"$work/out" 2>&1; then
    echo "ok    $1"
  else
    echo "FAIL  $1 (envoy --mode validate):" >&2
    grep -E 'critical|error|wasm log' "$work/out" >&2 || tail -n 20 "$work/out" >&2
    failed=1
  fi
}

# envoy/e2e.yaml's key service cluster endpoints (lb_endpoints, a JSON list).
endpoints='[{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 8080}}}}]'
failed=0
plugin_configs=0
for istio in envoy/istio/*.yaml; do
  # Prints each WasmPlugin's pluginConfig, pointed at the e2e key service cluster, as the JSON
  # string envoy/e2e.yaml expects.
  if ! "$python" - "$istio" >"$work/plugin-configs" <<'PY'; then
import json, sys, yaml
with open(sys.argv[1], encoding="utf-8") as f:
    docs = [d for d in yaml.safe_load_all(f) if d is not None]
for doc in docs:
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        sys.exit(f"{sys.argv[1]}: a document without apiVersion/kind")
for doc in docs:
    if doc["kind"] == "WasmPlugin":
        config = doc["spec"]["pluginConfig"]
        config["key_service"]["cluster"] = "keygate_keyservice"
        print(json.dumps(json.dumps(config)))
PY
    echo "FAIL  $istio (YAML)" >&2
    failed=1
    continue
  fi
  echo "ok    $istio (YAML)"
  while IFS= read -r config; do
    plugin_configs=$((plugin_configs + 1))
    out="$work/istio-$plugin_configs.yaml"
    scripts/render.py envoy/e2e.yaml "$out" KEYSERVICE_PORT=8080 UPSTREAM_PORT=8081 IDP_PORT=8082 \
      KEYSERVICE_ENDPOINTS="$endpoints" KEYSERVICE_HEALTH_CHECKS='[]' KEYSERVICE_OUTLIER_DETECTION=null \
      WASM_PATH="$wasm" FILTER_CONFIG="$config" RAW_FILTER_CONFIG="$config"
    validate "$istio pluginConfig #$plugin_configs (in envoy/e2e.yaml)" "$out"
  done <"$work/plugin-configs"
done
if [ "$plugin_configs" -eq 0 ]; then
  echo "FAIL  no WasmPlugin pluginConfig found under envoy/istio/" >&2
  failed=1
fi

# Sample values for every placeholder any template uses. FILTER_CONFIG: a minimal filter
# configuration, as a JSON string; HTTP_FILTERS and CLUSTERS (bench/envoy): JSON lists.
sample_config='"{\"key_service\":{\"cluster\":\"keygate_keyservice\",\"token\":\"validate-token\"},\"routes\":[{\"prefix\":\"/public/\",\"public\":true}]}"'
router='[{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]'
shopt -s nullglob
for template in envoy/*.yaml tests/fixtures/*.yaml bench/envoy/*.yaml; do
  out="$work/rendered.yaml"
  scripts/render.py "$template" "$out" LISTEN_PORT=10000 ADMIN_PORT=9901 KEYSERVICE_PORT=8080 \
    KEYSERVICE_ENDPOINTS="$endpoints" KEYSERVICE_HEALTH_CHECKS='[]' KEYSERVICE_OUTLIER_DETECTION=null \
    UPSTREAM_PORT=8081 IDP_PORT=8082 WASM_PATH="$wasm" FILTER_TOKEN=validate-token FILTER_CONFIG="$sample_config" \
    RAW_FILTER_CONFIG="$sample_config" HTTP_FILTERS="$router" CLUSTERS='[]'
  validate "$template" "$out"
done

exit "$failed"
