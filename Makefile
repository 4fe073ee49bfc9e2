# Thin wrappers; every target sets up the virtual environment first if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/cdarts stage search --config configs/demo.yaml --out .cdarts/demo/search
	$(VENV)/bin/cdarts stage derive-genotype --alphas .cdarts/demo/search/alphas.pt --out .cdarts/demo/genotype

bench: setup
	$(PY) bench/search_step.py --json bench/results/search_step.json

lint: setup
	$(VENV)/bin/ruff check cdarts tests bench
	$(VENV)/bin/mypy cdarts

clean:
	rm -rf .cdarts bench/results .pytest_cache .mypy_cache .ruff_cache
