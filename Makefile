# ironpost-tui developer entry points.  setup, test, demo, run and bench run as root (no sudo here):
# scripts/setup.sh installs packages, kernel headers and the venv.  dev, lint and test-unit need no
# root: scripts/venv.sh makes the venv alone (no apt).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
BENCH_ARGS ?=
IFACE ?=

.PHONY: setup dev test test-unit demo run lint bench bench-table clean distclean

setup:
	bash scripts/setup.sh

dev:
	bash scripts/venv.sh

test: setup
	$(PY) -m pytest -ra $(PYTEST_ARGS)

# The tests that need no root (the others are marked root), as any user.
test-unit: dev
	$(PY) -m pytest -ra -m "not root" $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/ironpost-tui demo

run:
	@if [ -z "$(IFACE)" ]; then echo "usage: make run IFACE=<interface>" >&2; exit 2; fi
	bash scripts/setup.sh
	$(VENV)/bin/ironpost-tui $(IFACE) --headless

# Every step runs, and the target fails if any of them failed.
LINT_STEPS := "ruff check ." "ruff format --check ." "mypy" "lint-imports --no-logo"
lint: dev
	@status=0; for step in $(LINT_STEPS); do \
		echo "lint: $$step"; $(VENV)/bin/$$step || { status=1; echo "lint: FAILED: $$step"; }; \
	done; exit $$status

# Writes bench/results/latest.json (commit, machine, every raw sample); then `make bench-table`.
bench: setup
	$(PY) -m bench $(BENCH_ARGS)

# The README's performance table, generated from bench/results/latest.json (never edited by hand).
bench-table: dev
	$(PY) scripts/bench_table.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
	find . -path ./.venv -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
