# The one task runner: people, CI and hooks call these targets. The first use creates .venv and installs into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test lint typecheck bench fmt clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/mailsc serve

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src tests bench

# `make bench`: the summary table (mailsc end to end vs the physical limit and the peers); BENCH=all runs every
# benchmark, BENCH="api outbox" some. BENCH_QUICK=1: short windows, prints only.
bench: $(STAMP)
	$(BIN)/python -m bench $(or $(BENCH),summary)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
