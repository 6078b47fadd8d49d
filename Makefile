# Two commands on a fresh machine: `make run` (napari with the plugin on its sample data) and
# `make test` (the whole suite, headless). Both set everything up first.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SCREENSHOT ?= out/napari-tomoml.png

# torch stays at the local CPU wheel: an unpinned resolve pulls gigabytes of CUDA packages.
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# napari writes settings and caches: keep them inside the checkout.
export XDG_CONFIG_HOME := $(CURDIR)/.cache/xdg-config
export XDG_CACHE_HOME := $(CURDIR)/.cache/xdg-cache

.PHONY: setup run test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	bash scripts/install_system_deps.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $@

run: setup
	@mkdir -p out
	@if [ -n "$$DISPLAY" ] && [ -z "$$CI" ]; then \
		$(PY) scripts/run_napari.py; \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/run_napari.py --screenshot $(SCREENSHOT); \
	fi

test: setup
	$(PY) -m pytest

# Benchmarks are run by hand (never in CI), on a quiet machine; ASTRA is their optional peer.
# bench_all.py writes benchmarks/results.md (FBP, SIRT, find_center; about 45 min on 2 cores).
bench: setup
	$(PY) -m pip install -q -e ".[astra]"
	$(PY) benchmarks/bench_all.py

clean:
	rm -rf $(VENV) out .cache .pytest_cache
