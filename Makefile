# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing
# and re-install when pyproject.toml changes.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The local package index prints one harmless "Location ... is ignored" line per package.
	$(BIN)/python -m pip install --quiet -e '.[dev]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prunectl prune --target-sparsity 0.9 --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/prune.py
	$(BIN)/python benchmarks/export.py

clean:
	rm -rf $(VENV) runs build *.egg-info
