# ironpost-tui developer entry points.  Everything runs as root (no sudo here):
# scripts/setup.sh installs packages, kernel headers and the venv.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
IFACE ?=

.PHONY: setup test demo run lint bench clean distclean

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/ironpost-tui demo

run:
	@if [ -z "$(IFACE)" ]; then echo "usage: make run IFACE=<interface>" >&2; exit 2; fi
	bash scripts/setup.sh
	$(VENV)/bin/ironpost-tui $(IFACE) --headless

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
