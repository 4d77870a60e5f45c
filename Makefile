# The commands of the README: `make run` (the main job), `make test` (lint and the test suite) and `make docs`
# (the docs site, built into site/ with warnings as errors). Each sets up .venv first (once; again when
# pyproject.toml changes). TORCH=torch on a GPU machine; on a machine without one,
# TORCH_INDEX=https://download.pytorch.org/whl/cpu takes PyTorch's CPU build (PyPI's Linux torch is the CUDA
# build, several GB).
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
BIN := $(VENV)/bin

.PHONY: run test docs

$(BIN)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

run: $(BIN)/.installed
	HF_HUB_OFFLINE=1 $(BIN)/hf-tst train --config recipes/configs/tiny.yaml

test: $(BIN)/.installed
	$(BIN)/ruff check hf_tst recipes tests benchmarks .ci
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

# mkdocs-material's notice about its successor is not about these docs: silenced, so the build prints only ours.
docs: $(BIN)/.installed
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
