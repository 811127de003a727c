# Two commands for a fresh machine: `make demo` and `make test`. Both create the environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# mkdocs-material prints a banner about MkDocs 2 on every build; the docs pin mkdocs<2.
export NO_MKDOCS_2_WARNING := 1

.PHONY: install chromium demo test lint docs docs-serve bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[ml,local,infra,results,dev,docs]'
	touch $@

install: $(VENV)/.installed chromium

# The console's browser tests drive Debian's chromium (Playwright cannot download a browser here).
# Skipped when chromium is already installed.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium; }

demo: install
	$(BIN)/batchinfer demo

test: install
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

# The docs site, built strictly (a broken link or a page missing from the nav fails) into site/.
docs: install
	$(BIN)/mkdocs build --strict --site-dir site

docs-serve: install
	$(BIN)/mkdocs serve

bench: install
	$(BIN)/python -m benchmarks.run --out benchmarks/results.json

clean:
	rm -rf $(VENV) cdk.out site .pytest_cache .mypy_cache .ruff_cache
