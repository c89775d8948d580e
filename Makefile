# Two entry points for a fresh machine (see README.md):
#   make run    -- set up, then a short on-device training run on the default device profile
#   make test   -- set up, then the test suite and a strict build of the manual
#   make test-fast -- the tests not marked slow or ngspice
#   make docs   -- build the manual into site/
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages the project needs: ngspice (reference simulator for the nodal
# solver's tests) and Fashion-MNIST (IDX files for training).
APT_PACKAGES := ngspice dataset-fashion-mnist

.PHONY: setup system-deps run test test-fast docs clean

setup: system-deps $(VENV)/.installed

system-deps:
	@if ! command -v ngspice >/dev/null 2>&1 || [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES); \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,docs]'
	touch $@

run: setup
	$(VENV)/bin/anasim train --circuit circuits/skew-small.toml --device devices/slm-10bit.toml --epochs 3 --train-size 10000 --test-size 2000 --out out/run.nc --plot out/run.png --overwrite

test: setup
	$(PY) -m pytest
	$(VENV)/bin/mkdocs build --strict

test-fast: setup
	$(PY) -m pytest -m "not slow and not ngspice"

docs: setup
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) out site .pytest_cache .hypothesis
