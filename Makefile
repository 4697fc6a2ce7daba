# ringrift-operator. Every target does its own set-up: the virtualenv (.venv) and the sandbox's
# Go-built binaries (cached outside the work tree, see hack/build-tools.sh).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
TOOLS_BIN := $(shell hack/build-tools.sh --print-bindir)
export PATH := $(CURDIR)/$(VENV)/bin:$(TOOLS_BIN):$(PATH)
SANDBOX_DIR ?= $(CURDIR)/.sandbox
NODES ?= h100:2,gh200:1,a100:4,l40s:2,rtx4090:4,rtx3090:2,cpu:2
PYTEST_ARGS ?=

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-* && touch $@

.PHONY: venv
venv: $(STAMP) ## create the virtualenv with the package and dev tools

.PHONY: tools
tools: ## build etcd, kube-*, kubectl, kwok and helm from the Go module proxy (cached)
	@hack/build-tools.sh

.PHONY: lint
lint: venv ## ruff, mypy --strict and the import layering
	ruff check .
	ruff format --check operator tests
	mypy
	lint-imports

.PHONY: chart-lint
chart-lint: venv tools ## helm lint --strict the chart; fail if its generated files are stale
	helm lint --strict charts/ringrift-operator
	$(PY) hack/render_install.py --check

.PHONY: install-manifest
install-manifest: venv tools ## refresh the chart's CRD copies, manifests/install.yaml, docs/install.md's values table
	$(PY) hack/render_install.py

.PHONY: fmt
fmt: venv ## format the code
	ruff format operator tests
	ruff check --fix .

.PHONY: test-unit
test-unit: venv ## unit tests only (no cluster)
	pytest -m 'not e2e and not chaos' $(PYTEST_ARGS)

.PHONY: test
test: venv tools ## the whole suite but the long chaos variants: unit tests and e2e on the sandbox
	pytest -m 'not chaos' $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: venv tools ## e2e tests only
	pytest -m 'e2e and not chaos' $(PYTEST_ARGS)

CHAOS_KILLS ?= 100
FUZZ_EXAMPLES ?= 5000

.PHONY: chaos-input
chaos-input: venv tools ## history store SIGKILLs (CHAOS_KILLS), fuzzing (FUZZ_EXAMPLES), bad input, security
	RINGRIFT_CHAOS_KILLS=$(CHAOS_KILLS) RINGRIFT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
	RINGRIFT_AGENT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) pytest -s -m 'chaos or not chaos' \
		tests/unit/state/test_crash.py tests/unit/state/test_recovery.py \
		tests/unit/agent/test_hostile_input.py tests/e2e/test_history_recovery.py \
		tests/e2e/test_fuzz.py tests/e2e/test_security.py $(PYTEST_ARGS)

BENCH_ARGS ?=

.PHONY: bench
bench: venv tools ## benchmarks: placement vs kube-scheduler and the API ceiling, micro, restart (~15 min; BENCH_ARGS=--quick: <3 min)
	@$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) -m bench.run $(BENCH_ARGS)

.PHONY: sandbox-up
sandbox-up: venv tools ## start the sandbox cluster in the background ($(SANDBOX_DIR))
	ringrift-sandbox up --dir $(SANDBOX_DIR) --nodes $(NODES)

.PHONY: sandbox-down
sandbox-down: venv ## stop the sandbox cluster (and a demo operator), leaving no process behind
	python -m ringrift_sandbox.demo down --dir $(SANDBOX_DIR)

.PHONY: demo
demo: venv tools ## sandbox + CRDs + operator + sample self-play, then kubectl get trainingruns
	python -m ringrift_sandbox.demo up --dir $(SANDBOX_DIR)

.PHONY: demo-down
demo-down: venv ## stop the demo's operator and sandbox
	python -m ringrift_sandbox.demo down --dir $(SANDBOX_DIR)

.PHONY: clean
clean: ## remove the virtualenv and caches in the work tree (not the Go-built binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(SANDBOX_DIR)
