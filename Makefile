# limner — set-up, demo and tests. Every target is idempotent: a second run skips what is installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install dev demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  (echo "limner needs Python 3.11 or newer (found $$($(PYTHON) --version))" >&2; exit 1)
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e .
	@touch $@

$(VENV)/.dev-installed: $(VENV)/.installed pyproject.toml
	$(PIP) -e '.[dev]'
	@touch $@

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PIP) -e '.[bench]'
	@touch $@

install: $(VENV)/.installed  ## create .venv and install limner

dev: $(VENV)/.dev-installed  ## install + the dev tools

demo: install  ## run the end-to-end demo
	$(BIN)/limner demo

test: dev  ## the whole test suite
	$(BIN)/ruff check src tests
	$(BIN)/python -m pytest

bench: $(VENV)/.bench-installed  ## limner against lime, captum and shap; rewrites docs/benchmarks.md tables
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/bench_image_size.py

lint: dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) .pytest_cache limner-demo
