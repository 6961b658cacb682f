# The two commands of the README: `make demo` (main job) and `make test`.
# Each creates .venv when missing and installs what it needs first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Pinned so that a CPU-only machine with this wheel at hand takes it instead of a CUDA build.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow gpu-check-dry floors bench bench-efficiency install clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/dforce demo --out outputs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The slow tests CI runs after `make test`: the CPU dry run of scripts/gpu_check.sh (about 2 minutes).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow tests/test_gpu_check.py

# The GPU check's CPU dry run by hand (outputs in outputs/gpu_check_dry; nothing under results/).
gpu-check-dry: $(STAMP)
	DEVICE=cpu TINY=1 OUT=outputs/gpu_check_dry PYTHON=$(BIN)/python bash scripts/gpu_check.sh

# The lowest versions pyproject.toml allows, in a fresh venv, against the fast tests (scripts/check_floor_versions.sh).
floors:
	bash scripts/check_floor_versions.sh

bench: $(STAMP)
	$(BIN)/python -m benchmarks.core

# Training throughput of every domain's preset, fp32/bf16 against the baseline step (~25 min).
bench-efficiency: $(STAMP)
	$(BIN)/python -m benchmarks.efficiency

clean:
	rm -rf outputs runs .pytest_cache
