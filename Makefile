# sked developer commands. `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= .local/cluster
PYTEST_ARGS ?=
export SKED_CACHE ?= $(HOME)/.cache/sked

.DEFAULT_GOAL := help
.PHONY: help install control-plane run cluster-up cluster-down crds test test-unit \
	test-integration test-chaos chart-test bench bench-quick lint format kind-up kind-deploy e2e-kind kind-down

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create the virtualenv and install sked with its test and lint tools.

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

control-plane: ## Build etcd, Kubernetes, kwok, helm and promtool from Go modules (cached).
	bash hack/build-control-plane.sh etcd kubernetes kwok helm promtool toxiproxy

run: install control-plane ## Run the operator: on the current cluster, or on a local one.
	CLUSTER_DIR=$(CLUSTER_DIR) BIN=$(BIN) bash hack/run.sh

cluster-up: install control-plane ## Start the local control plane and write its kubeconfig.
	$(BIN)/python -m sked.localcluster up --dir $(CLUSTER_DIR)

cluster-down: ## Stop the local control plane.
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sked.localcluster down --dir $(CLUSTER_DIR); fi

crds: install ## Regenerate crds/ (and the chart's copy) from the pydantic models.
	$(BIN)/python -m sked.crd > crds/scheduledjobs.sked.dev.yaml
	cp crds/scheduledjobs.sked.dev.yaml helm/sked/crds/

test: lint test-unit test-integration chart-test ## Run every check CI runs.

test-unit: install ## Unit tests: no cluster, no sleeps.
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

test-integration: install control-plane ## Integration tests on a local control plane they start.
	$(BIN)/python -m pytest tests/integration -q -m integration $(PYTEST_ARGS)

test-chaos: install control-plane ## The long failover test under injected faults (about 6 minutes).
	$(BIN)/python -m pytest tests/integration/test_failover.py -q -m chaos -s $(PYTEST_ARGS)

bench-quick: install control-plane ## Small forms of B1-B3 against the CronJob controller (about 25 min).
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench quick

bench: install control-plane ## Every benchmark against the CronJob controller (several hours).
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench all

chart-test: install control-plane ## Lint and render the Helm chart, then install it locally.
	$(BIN)/python -m pytest tests/chart -q $(PYTEST_ARGS)

kind-up: ## Create a kind cluster for sked (needs Docker and kind).
	bash hack/kind.sh up

kind-deploy: ## Build the image, load it into kind and install the chart.
	bash hack/kind.sh deploy

e2e-kind: ## Run the examples on the kind cluster until a run succeeds.
	bash hack/kind.sh e2e

kind-down: ## Delete the kind cluster.
	bash hack/kind.sh down

lint: install ## ruff, the layer contract and mypy.
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install ## Format the code in place.
	$(BIN)/ruff format operator tests
	$(BIN)/ruff check --fix operator tests
