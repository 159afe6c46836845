# One command per habit. `make setup` first; every other target uses the project's .venv.
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/dagster_home

.PHONY: setup run dev test-quick test lint bench

setup:  ## install the package with every test and lint tool
	python3 -m venv $(VENV) && $(BIN)/pip install -e '.[dev]'

run:  ## materialize every asset on the landing folder (the sample when it is empty)
	$(BIN)/dagster asset materialize -m lakehouse_assets --select '*'

dev:  ## the Dagster UI and daemon on http://127.0.0.1:3000
	$(BIN)/dagster dev

test-quick:  ## the unit tier: no server, no subprocess, under two minutes
	$(BIN)/python -m pytest lakehouse_assets_tests/unit

test:  ## every tier (the deployment and e2e tiers need .ci/install-services.sh and Chromium)
	$(BIN)/python -m pytest

lint:  ## ruff, sqlfluff on the SQL files, mypy on the package
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/sqlfluff lint lakehouse_assets/lib/sql
	$(BIN)/mypy

bench:  ## the benchmark at 10,000 and 1,000,000 transactions (see docs/benchmark.md for more)
	$(BIN)/python -m benchmarks.bench --events 10000 1000000
