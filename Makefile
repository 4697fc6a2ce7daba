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
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

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
chart-lint: venv tools ## helm lint --strict the chart; fail if its generated files or docs are stale
	helm lint --strict charts/ringrift-operator
	$(PY) hack/render_install.py --check
	$(PY) hack/gen_docs.py --check

.PHONY: install-manifest
install-manifest: venv tools ## refresh the chart's CRD copies, manifests/install.yaml, docs/install.md's values table
	$(PY) hack/render_install.py

.PHONY: docs
docs: venv ## regenerate docs/metrics.md and docs/settings.md from the code
	$(PY) hack/gen_docs.py

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

# Chaos, process and infrastructure faults: the long variants (20 operator kills) and every
# other fault scenario (API server restart and freeze, SIGTERM without API server, leader killed
# and frozen, node loss, agent loss). Figures: bench/results/chaos-faults.json. `make test` runs
# the short variants.
CHAOS_FAULTS := tests/e2e/test_chaos_faults.py \
	tests/e2e/test_leadership.py::test_one_replica_acts_and_a_killed_leader_hands_over \
	tests/e2e/test_leadership.py::test_a_paused_leader_that_lost_its_lease_writes_nothing \
	tests/e2e/test_selfplayjob.py::test_losing_the_node_retries_the_job_elsewhere \
	tests/e2e/test_syncplan.py::test_a_target_agent_lost_mid_plan_converges_when_it_returns_with_no_corrupt_file

.PHONY: chaos-faults
chaos-faults: venv tools ## fault chaos on the sandbox, long variants (20 kill -9s; ~6 min)
	pytest -m 'e2e or chaos' -k 'not 3-kills' $(CHAOS_FAULTS) $(PYTEST_ARGS)

.PHONY: chaos
chaos: chaos-faults chaos-input ## every long chaos variant: faults (20 kills...) and input (SIGKILLs, fuzzing)

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

# --- kind (needs Docker; not exercised in this project's CI, which has no Docker engine) -------
KIND_VERSION ?= v0.33.0
KIND_CLUSTER ?= ringrift
KIND_DIR := $(CURDIR)/.kind
KIND_KUBECONFIG := $(KIND_DIR)/kubeconfig
KIND := $(dir $(TOOLS_BIN))kind-$(KIND_VERSION)/kind
KIND_IMAGE := ringrift-operator:kind# hack/kind/values.yaml names this image
KIND_NAMESPACE ?= ringrift-system

.PHONY: kind-docker
kind-docker:
	@hack/kind/require-docker.sh

$(KIND):
	GOBIN=$(dir $(KIND)) go install sigs.k8s.io/kind@$(KIND_VERSION)

.PHONY: kind-up
kind-up: kind-docker venv tools $(KIND) ## kind cluster with GPU-labelled workers and patched nvidia.com/gpu capacity (Docker)
	@mkdir -p $(KIND_DIR)
	@$(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || \
	  $(KIND) create cluster --name $(KIND_CLUSTER) --config hack/kind/kind-config.yaml \
	    --kubeconfig $(KIND_KUBECONFIG) --wait 180s
	$(KIND) get kubeconfig --name $(KIND_CLUSTER) > $(KIND_KUBECONFIG)
	$(PY) hack/kind/gpu_capacity.py --kubeconfig $(KIND_KUBECONFIG)
	@echo "export KUBECONFIG=$(KIND_KUBECONFIG)"

.PHONY: kind-gpus
kind-gpus: kind-docker venv tools ## patch nvidia.com/gpu capacity onto the kind workers again
	$(PY) hack/kind/gpu_capacity.py --kubeconfig $(KIND_KUBECONFIG)

.PHONY: kind-down
kind-down: kind-docker $(KIND) ## delete the kind cluster
	$(KIND) delete cluster --name $(KIND_CLUSTER)
	rm -rf $(KIND_DIR)

.PHONY: kind-e2e
kind-e2e: kind-up ## build and load the image, helm install the chart on kind, run the e2e suite there (Docker)
	docker build -t $(KIND_IMAGE) .
	$(KIND) load docker-image $(KIND_IMAGE) --name $(KIND_CLUSTER)
	helm upgrade --install ringrift charts/ringrift-operator --kubeconfig $(KIND_KUBECONFIG) \
	  --namespace $(KIND_NAMESPACE) --create-namespace -f hack/kind/values.yaml --wait --timeout 5m
	RINGRIFT_E2E_KUBECONFIG=$(KIND_KUBECONFIG) RINGRIFT_E2E_OPERATOR_NAMESPACE=$(KIND_NAMESPACE) \
	  pytest -m e2e $(PYTEST_ARGS)

.PHONY: clean
clean: ## remove the virtualenv and caches in the work tree (not the Go-built binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis $(SANDBOX_DIR) $(KIND_DIR)
