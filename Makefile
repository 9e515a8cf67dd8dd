# Two set-up commands: `make setup`, then `make test`. `make run` runs the main job.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
SHARED  ?= ../shared/data

.PHONY: setup test test-slow run bench lint promote manifest clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[cde,dev]"
	$(BIN)/python -m sweep.warm
	@touch $(STAMP)

test: setup
	NUMBA_CACHE_DIR=$(CURDIR)/.numba_cache $(BIN)/python -m pytest -q

test-slow: setup
	NUMBA_CACHE_DIR=$(CURDIR)/.numba_cache $(BIN)/python -m pytest -q -m slow

run: setup
	$(BIN)/python -m sweep run

bench: setup
	$(BIN)/python -m sweep.bench --shared $(SHARED)

lint: setup
	$(BIN)/ruff check .

promote: setup
	$(BIN)/python -m sweep promote

manifest: setup
	$(BIN)/python -m harness.manifest --write

clean:
	rm -rf $(VENV) .numba_cache .pytest_cache
