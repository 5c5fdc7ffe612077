# Two commands on a fresh machine: `make demo` sets up what is missing and runs the quickstart,
# `make test` sets up what is missing and runs the tests. The set-up is the README's, done once:
# .venv is made again only when pyproject.toml changes.
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu   # a CPU-only torch, no CUDA libraries
#   make test PYTEST_ARGS="tests/test_table.py -q"
PYTHON ?= python3
VENV ?= .venv
DEMO ?= demo
TORCH_INDEX ?=
PYTEST_ARGS ?=

.PHONY: setup demo test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(VENV)/bin/python -m pip install -q torch torchvision --index-url $(TORCH_INDEX))
	$(VENV)/bin/python -m pip install -q -e ".[test]"
	touch $@

demo: setup
	$(VENV)/bin/dcloop quickstart $(DEMO)

test: setup
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
