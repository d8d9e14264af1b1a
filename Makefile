# Set-up and checks. Everything runs in a local virtual environment (.venv).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-ray lint typecheck unit unit-without-debian-text bench docs golden clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Install the package and run its main job on a small pool of real text built on this machine.
demo: $(BIN)/python
	$(BIN)/pip install -q .
	$(BIN)/curate demo demo-out

# Install the development extras and run every check CI runs: the suite runs twice, the second
# time with the test corpus cut from Python's own text only (no Debian documentation), so it is
# shown to pass on machines with any set of packages, or none.
test: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	$(MAKE) lint typecheck unit unit-without-debian-text

# The Ray executor's tests (marker `ray`): a local Ray with 2 CPUs, started by the tests.
test-ray: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,ray]'
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m ray

lint:
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck:
	$(BIN)/mypy

unit:
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not slow and not gpu and not ray"

unit-without-debian-text:
	empty=$$(mktemp -d) && HF_HUB_OFFLINE=1 CURATE_DOC_DIR=$$empty $(BIN)/python -m pytest -q \
		-m "not slow and not gpu and not ray"; status=$$?; rmdir $$empty; exit $$status

# Benchmarks against DSIR's reference implementation (data-selection); prints JSON lines.
bench: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/bench_kernel.py
	$(BIN)/python bench/bench_dsir.py

# Regenerate the golden digests (tests/golden/): only when a change means to alter outputs.
golden: $(BIN)/python
	HF_HUB_OFFLINE=1 $(BIN)/python tests/golden/runs.py --update

# Regenerate the CLI reference from --help.
docs: $(BIN)/python
	$(BIN)/python docs/gen_cli_reference.py > docs/cli.md
	$(BIN)/python -c "from curate.stats import markdown; print(markdown(), end='')" > docs/stats.md

clean:
	rm -rf build demo-out .pytest_cache .mypy_cache .ruff_cache
