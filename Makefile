# Two entry points for a fresh machine (see README.md):
#   make run    -- set up, then a short on-device training run on the default device profile
#   make test   -- set up, then the test suite
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# Debian packages the project needs: ngspice (reference simulator for the nodal
# solver's tests) and Fashion-MNIST (IDX files for training).
APT_PACKAGES := ngspice dataset-fashion-mnist

.PHONY: setup system-deps run test clean

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
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: setup
	$(VENV)/bin/anasim train --circuit circuits/skew-small.toml --device devices/slm-10bit.toml --epochs 3 --train-size 10000 --test-size 2000 --out out/run.nc --plot out/run.png

test: setup
	$(PY) -m pytest

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
