# limner — set-up, demo and tests. Every target is idempotent: a second run skips what is installed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt

.PHONY: install dev demo test lint bench clean browser grpc

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

# The dashboard tests drive Debian's Chromium through Playwright (never `playwright install`).
browser:  ## install Chromium for the dashboard tests (apt, as root, only when missing)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else \
	    echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser test is skipped" >&2; \
	  fi; \
	fi

test: dev browser  ## the whole test suite
	$(BIN)/ruff check src tests
	$(BIN)/mypy src/limner
	$(BIN)/python -m pytest

bench: $(VENV)/.bench-installed  ## limner against lime, captum and shap; rewrites docs/benchmarks.md tables
	$(BIN)/python benchmarks/compare.py
	$(BIN)/python benchmarks/bench_image_size.py

lint: dev
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy src/limner

clean:
	rm -rf $(VENV) .pytest_cache limner-demo

grpc: dev  ## regenerate the gRPC modules from src/limner/protocol/grpc_predict_v2.proto
	PYTHON=$(BIN)/python scripts/gen_grpc.sh
