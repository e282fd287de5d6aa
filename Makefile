# flakeseg: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# uv: the one on PATH, else a copy bootstrapped from PyPI into .tools/ (no root, no curl).
UV ?= $(shell command -v uv 2>/dev/null || echo $(CURDIR)/.tools/bin/uv)
# Data root: FLAKESEG_DATA if set; else the shared copy beside the checkout; else .data/ (`make data`).
FLAKESEG_DATA ?= $(firstword $(wildcard $(abspath $(CURDIR)/../shared/datasets/mos2_segmentation)) $(CURDIR)/.data/mos2_segmentation)
export FLAKESEG_DATA
# The plugins the suite uses, named: pytest rewrites the asserts of every module of every auto-loaded
# plugin's package (all of Hydra's, anyio's), and where PYTHONDONTWRITEBYTECODE is set nothing caches
# that, so each pytest process redid it (~4 s of a session's start on 2 cores).
PYTEST_ENV := PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 PYTEST_PLUGINS=xdist.plugin,_hypothesis_pytestplugin
PYTEST_ARGS ?= -n 2 --dist worksteal --durations=15
RUN := $(UV) run --frozen

.PHONY: help install bytecode train test test-fast test-durations lint format data clean bench bench-train browser reproduce reproduce-quick compare ablation leaderboard fewshot models predict optics robustness

help:  ## show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'
	@echo "  data root: FLAKESEG_DATA=$(FLAKESEG_DATA)"

$(CURDIR)/.tools/bin/uv:
	python3 -m venv $(CURDIR)/.tools
	$(CURDIR)/.tools/bin/python -m pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI, containers) nothing caches the bytecode,
# and every process (each test worker, each CLI call) compiles ~1,500 modules again: ~15 s each here.
.venv/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode
	@touch $@

# the package's own sources, compiled whenever they changed (a no-op when they did not)
bytecode: install
	@$(CURDIR)/.venv/bin/python -m compileall -q src >/dev/null

install: .venv/.synced  ## create .venv with the locked dependencies (uv sync)

train: install  ## 3-fold CV of the CPU preset on MoS2 (add ARGS="data=graphene ..." for overrides)
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) python train.py $(ARGS)

MODEL ?= mos2
predict: install  ## screen images for flakes: IMAGES=<files/folders> OUT=<folder> [MODEL=mos2|graphene|<.ckpt>]
	@test -n "$(IMAGES)" -a -n "$(OUT)" || { echo "error: usage: make predict IMAGES=<files or folders> OUT=<folder> [MODEL=mos2]" >&2; exit 2; }
	$(RUN) flakeseg predict --model $(MODEL) $(IMAGES) --out $(OUT)

DATASET ?= all
ABLATION ?= cpu
reproduce: install  ## the paper's protocol at paper size, GPU work (DATASET=mos2|graphene|all) -> outputs/reproduce/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg reproduce --profile paper --dataset $(DATASET) --out outputs/reproduce

reproduce-quick: install  ## the same protocol CPU-sized, ~20 min on 2 cores -> outputs/reproduce_quick/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg reproduce --profile cpu_quick --dataset $(DATASET) --out outputs/reproduce_quick

compare: install  ## every model family by 3-fold CV, CPU size, ~25 min on 2 cores (DATASET=...) -> outputs/compare/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg compare --profile cpu --dataset $(DATASET) --out outputs/compare

ablation: install  ## the training recipe step by step, 3-fold CV, CPU size, ~45 min on 2 cores (DATASET=...) -> outputs/ablation/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg ablation --profile $(ABLATION) --dataset $(DATASET) --out outputs/ablation

leaderboard: install  ## every model family x protocol (paper, upstream), 3-fold CV, CPU size, ~105 min on 2 cores -> docs/results/leaderboard_cpu/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg leaderboard --profile cpu --dataset $(DATASET) --out docs/results/leaderboard_cpu --runs outputs/leaderboard

fewshot: install  ## k = 1, 3, 5, 10, all graphene images: fine-tuned from the shipped MoS2 model vs scratch, ~25 min on 2 cores -> docs/results/fewshot_cpu/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	$(RUN) flakeseg fewshot --profile cpu --out docs/results/fewshot_cpu --runs outputs/fewshot

models: install  ## retrain the shipped models: a CV on each data set chooses the post-processing (flake F1), then the whole training split (~15 min each) -> src/flakeseg/inference/shipped/
	@test -d "$(FLAKESEG_DATA)/data" || { echo "error: no data at FLAKESEG_DATA=$(FLAKESEG_DATA); run 'make data' or set FLAKESEG_DATA"; exit 1; }
	for d in mos2 graphene; do \
	  $(RUN) python train.py experiment=best_cpu data=$$d hydra.run.dir=outputs/models/$${d}_cv && \
	  $(RUN) python train.py experiment=best_cpu stage=test data=$$d hydra.run.dir=outputs/models/$$d && \
	  $(RUN) python -m flakeseg.stages.shipping outputs/models/$$d $$d \
	    --postprocess-from outputs/models/$${d}_cv/evaluation.json || exit 1; done

test: install bytecode browser  ## run the test suite (uses the real data at FLAKESEG_DATA); what CI runs
	$(PYTEST_ENV) $(RUN) pytest $(PYTEST_ARGS)

test-fast: install bytecode  ## the unit tier: every test not marked slow (no training), under a minute on 2 cores
	$(PYTEST_ENV) $(RUN) pytest $(PYTEST_ARGS) -m "not slow"

test-durations: install bytecode browser  ## the whole suite, recording each test's seconds in tests/durations.json (the order the workers take tests in)
	FLAKESEG_RECORD_DURATIONS=1 $(PYTEST_ENV) $(RUN) pytest $(PYTEST_ARGS)

browser:  ## Debian's chromium for the report-page test (apt-get, as root; skipped if present)
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "note: no chromium and no root apt-get; the report-page test skips (fails under CI)"; fi; }

lint: install  ## ruff check and ruff format --check
	$(RUN) ruff check .
	$(RUN) ruff format --check .

format: install  ## ruff format and fix
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

data:  ## clone the upstream data set into .data/ (needs internet)
	@if [ -d "$(FLAKESEG_DATA)/data" ]; then echo "data already at $(FLAKESEG_DATA)"; else \
	  git clone --depth 1 https://github.com/xinkent/mos2_segmentation $(CURDIR)/.data/mos2_segmentation && \
	  echo "data in $(CURDIR)/.data/mos2_segmentation (found automatically by make; for train.py: export FLAKESEG_DATA=$(CURDIR)/.data/mos2_segmentation)"; fi

clean:  ## remove run outputs (outputs/*) and caches
	rm -rf outputs/* .pytest_cache .ruff_cache
	touch outputs/.gitkeep

optics: install  ## the optics against the labels: MoS2 and graphene setups calibrated, each material predicted and screened (zero labels) from the other's, ~3 min -> docs/results/optics/
	$(RUN) python benchmarks/optics.py --out docs/results/optics

robustness: install  ## the shipped models, the contrast GMM and the zero-label optics under 12 shifts of the microscope, both data sets -> docs/results/robustness_cpu/
	$(RUN) flakeseg robustness mos2 contrast_gmm optics --data mos2 --out docs/results/robustness_cpu/mos2
	$(RUN) flakeseg robustness graphene contrast_gmm optics --data graphene --out docs/results/robustness_cpu/graphene

bench: install  ## inference images/s per backend (eager, channels-last, compile, onnxruntime) -> docs/results/bench_cpu/
	$(RUN) python benchmarks/bench_predict.py --out docs/results/bench_$(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)

bench-train: install  ## training throughput: Lightning vs plain loop, data pipeline, FLOPs (docs/results/bench_train_*)
	$(RUN) python benchmarks/bench_train.py --out docs/results/bench_train_$(if $(shell command -v nvidia-smi 2>/dev/null),gpu,cpu)
