# Set-up and checks. Everything runs in a local virtual environment (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Install the package and run its main job on a small pool of real text built on this machine.
demo: $(BIN)/python
	$(BIN)/pip install -q .
	$(BIN)/curate demo demo-out

# Install the development extras and run every check CI runs.
test: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(MAKE) lint typecheck unit

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

unit:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not gpu and not ray"

# Benchmarks against DSIR's reference implementation (data-selection); prints JSON lines.
bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/bench_kernel.py
	$(BIN)/python bench/bench_dsir.py

# Regenerate the CLI reference from --help.
docs: $(BIN)/python
	$(BIN)/python docs/gen_cli_reference.py > docs/cli.md

clean:
	rm -rf build demo-out .pytest_cache .mypy_cache .ruff_cache
