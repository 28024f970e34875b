# `make help` lists the targets. Everything runs inside .venv, made on first use.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# The PyTorch build to install. The default is the CPU build; pick yours, e.g.
#   make install TORCH="torch --index-url https://download.pytorch.org/whl/cu126"
TORCH   ?= torch==2.13.0
ARGS    ?=
STAMP   := $(VENV)/.installed

.PHONY: help install train serve test test-full lint bench dpo-demo mutation clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade --quiet pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## make .venv and install llm with its dev tools (TORCH=... picks the torch build)

train: $(STAMP)  ## train the quickstart GPT on the embedded corpus (ARGS="..." adds Hydra overrides)
	$(BIN)/llm train experiment=quickstart $(ARGS)

serve: $(STAMP)  ## serve a model directory over an OpenAI-compatible API (ARGS="model=DIR")
	$(BIN)/llm serve $(ARGS)

test: $(STAMP)  ## the fast test suite (what CI runs)
	$(BIN)/pytest -q $(ARGS)

test-full: $(STAMP)  ## every test, the slow ones too
	$(BIN)/pytest -q -m "not gpu" $(ARGS)

lint: $(STAMP)  ## ruff and mypy
	$(BIN)/ruff check llm tests
	$(BIN)/ruff format --check llm tests
	$(BIN)/mypy

bench: $(STAMP)  ## benchmark scripts: training tokens/s and MFU, data throughput, generation tokens/s (runs/bench/)
	$(BIN)/python benchmarks/training.py $(ARGS)
	$(BIN)/python benchmarks/data_io.py
	$(BIN)/python benchmarks/generation.py

dpo-demo: $(STAMP)  ## the DPO demonstration: pretrain, align with dpo and ipo over 3 seeds, runs/dpo-demo/results.json
	$(BIN)/python experiments/dpo/demo.py --out runs/dpo-demo $(ARGS)

mutation: $(STAMP)  ## mutation testing of llm/model, objectives, data with mutmut (slow, not in CI; ARGS= picks mutants)
	OMP_NUM_THREADS=1 $(BIN)/mutmut run $(ARGS)
	$(BIN)/mutmut results

clean:  ## remove the virtualenv, caches and runs
	rm -rf $(VENV) runs multirun outputs mutants build dist .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
