# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing
# and re-install when pyproject.toml changes.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean bench bench-startup bench-privacy bench-compress bench-memory bench-structure

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# The local package index prints one harmless "Location ... is ignored" line per package.
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]' 2>&1 | { grep -v '^WARNING: Location' || true; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/prunectl compress --target-sparsity 0.9 --out runs/demo --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python benchmarks/prune.py
	$(BIN)/python benchmarks/export.py
	$(BIN)/python benchmarks/startup.py

# Dense vs unstructured vs channel vs channel + INT8 on resnet18, mobilenet_v2 and the builtin CNN
# (~10 minutes), then channel vs unstructured through the gate on Fashion-MNIST (~30-45 minutes).
bench-structure: $(STAMP)
	$(BIN)/python benchmarks/structure.py
	$(BIN)/python benchmarks/structure_privacy.py

# CLI start-up (help, init, a refused value) against `python -c pass`: about a minute.
bench-startup: $(STAMP)
	$(BIN)/python benchmarks/startup.py

# The release step on the embedded default, cold cache, several seeds and candidate recipes: ~30 minutes.
bench-compress: $(STAMP)
	$(BIN)/python benchmarks/compress.py --candidates default,weight-decay-0 --seeds 0,1,2,3,4
	$(BIN)/python benchmarks/compress.py --candidates weight-decay-3e-2,epochs-8,kl-16 --seeds 0
	$(BIN)/python benchmarks/classifier_dense.py

# Fashion-MNIST privacy benchmarks (apt-get install dataset-fashion-mnist): over an hour on 2 cores.
bench-privacy: $(STAMP)
	$(BIN)/python benchmarks/gate.py
	$(BIN)/python benchmarks/defenses.py
	$(BIN)/python benchmarks/memscore_k.py

# Peak RSS of compress on Fashion-MNIST at evaluation size N and 2N per side (issue #7): 15-30 minutes on 2 cores.
bench-memory: $(STAMP)
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) runs build *.egg-info
