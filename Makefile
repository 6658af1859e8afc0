# tqmon: `make demo` shows it on a throwaway cluster, `make test` runs the tests on real servers.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install system-deps catalog demo test bench lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/python -m compileall -q plugin  # as a wheel install would: no compiling per run
	touch $@

system-deps:
	.ci/system-deps

catalog: install  # plugin/tqmon/catalog.json from catalog.yaml (committed; a test checks it)
	$(BIN)/python -m tqmon.catalog

demo: install
	.ci/system-deps --redis-only
	$(BIN)/python -m tqmon.demo

test: install system-deps
	$(BIN)/pytest

bench: install
	.ci/system-deps --redis-only
	$(BIN)/python tests/bench.py

lint: install
	$(BIN)/ruff check plugin tests

clean:
	rm -rf $(VENV) build *.egg-info plugin/*.egg-info .pytest_cache .ruff_cache
