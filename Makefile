# The two commands of the README: `make run` (the main job) and `make test` (lint and the test suite).
# Each sets up .venv first (once; again when pyproject.toml changes). TORCH=torch on a GPU machine.
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: run test

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" -e ".[dev]"
	touch $@

run: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/accelerate launch recipes/train.py --config recipes/configs/tiny.yaml

test: $(BIN)/.installed
	$(BIN)/ruff check hf_tst recipes tests benchmarks .ci
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q
