# sked developer commands. `make help` lists them.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CLUSTER_DIR ?= .local/cluster
PYTEST_ARGS ?=
export SKED_CACHE ?= $(HOME)/.cache/sked

.DEFAULT_GOAL := help
.PHONY: help install control-plane run cluster-up cluster-down crds test test-unit \
	test-integration lint format

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(VENV)/.installed ## Create the virtualenv and install sked with its test and lint tools.

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

control-plane: ## Build etcd, Kubernetes and kwok from Go modules into $SKED_CACHE (cached).
	bash hack/build-control-plane.sh etcd kubernetes kwok

run: install control-plane ## Run the operator: on the current cluster, or on a local one.
	CLUSTER_DIR=$(CLUSTER_DIR) BIN=$(BIN) bash hack/run.sh

cluster-up: install control-plane ## Start the local control plane and write its kubeconfig.
	$(BIN)/python -m sked.localcluster up --dir $(CLUSTER_DIR)

cluster-down: ## Stop the local control plane.
	@if [ -x $(BIN)/python ]; then $(BIN)/python -m sked.localcluster down --dir $(CLUSTER_DIR); fi

crds: install ## Regenerate crds/ from the pydantic models.
	$(BIN)/python -m sked.crd > crds/scheduledjobs.sked.dev.yaml

test: lint test-unit test-integration ## Run every check CI runs.

test-unit: install ## Unit tests: no cluster, no sleeps.
	$(BIN)/python -m pytest tests/unit -q $(PYTEST_ARGS)

test-integration: install control-plane ## Integration tests on a local control plane they start.
	$(BIN)/python -m pytest tests/integration -q -m integration $(PYTEST_ARGS)

lint: install ## ruff, the layer contract and mypy.
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/lint-imports
	$(BIN)/mypy

format: install ## Format the code in place.
	$(BIN)/ruff format operator tests
	$(BIN)/ruff check --fix operator tests
