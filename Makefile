# portflow: every target is a thin call of the CLI (see README.md).
#   make demo                      venv + install + all phases on the synthetic market
#   make test                      venv + dev extras + the test suite
#   make flow-data PROFILE=crypto_long [AS_OF=2026-06-30] [JOBS=8]
#   make port-optimize RUN_ID=...
#   make bench [QUICK=1]           every benchmark, one table (benchmarks/README.md)
#   make scale                     10,000 symbols x 2,500 bars through flow-data
#   make flow-meta-production META=fractal_meta [EXECUTOR=local] [FLAGS=--skip-validation]
PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
PORTFLOW := $(BIN)/portflow
PROFILE  ?= crypto_long
META     ?= crypto_meta
DATA_DIR ?= data
RUN_ID   ?=
DATA_RUN ?=
AS_OF    ?=
JOBS     ?=
PYTEST_ARGS ?=
QUICK   ?=

GLOBAL  = --data-dir $(DATA_DIR) $(if $(AS_OF),--as-of $(AS_OF))
RUN_OPT = $(if $(RUN_ID),--run-id $(RUN_ID))
DR_OPT  = $(if $(DATA_RUN),--data-run $(DATA_RUN))
JOB_OPT = $(if $(JOBS),--jobs $(JOBS))

.PHONY: help install dev demo test test-all lint bench scale clean \
        flow-data scan-run data-ingest meta-ingest feature-ingest feature-backfill \
        flow-production port-select port-pre-opt port-optimize port-report port-test \
        port-post-analysis flow-meta-production runs profiles

help:
	@sed -n '1,8p' Makefile

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

demo: install
	DATA_DIR=$(DATA_DIR) PORTFLOW=$(PORTFLOW) AS_OF=$(AS_OF) bash scripts/demo.sh

# the report's browser test needs Debian's chromium: installed here when missing (as root)
test: dev
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-all: dev
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest -m "" $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy src

bench: dev
	$(BIN)/pip install -q -e ".[dev,bench]"
	$(BIN)/python benchmarks/run.py $(if $(QUICK),--quick)

scale: install
	$(BIN)/python benchmarks/scale.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache

flow-data: install
	$(PORTFLOW) $(GLOBAL) flow-data --profile $(PROFILE) $(RUN_OPT) $(JOB_OPT)
scan-run: install
	$(PORTFLOW) $(GLOBAL) scan-run --profile $(PROFILE) $(RUN_OPT)
data-ingest: install
	$(PORTFLOW) $(GLOBAL) data-ingest --profile $(PROFILE) $(RUN_OPT) $(DR_OPT) $(JOB_OPT)
meta-ingest: install
	$(PORTFLOW) $(GLOBAL) meta-ingest --profile $(PROFILE) $(RUN_OPT) $(DR_OPT)
feature-ingest: install
	$(PORTFLOW) $(GLOBAL) feature-ingest --profile $(PROFILE) $(RUN_OPT) $(DR_OPT)
feature-backfill: install
	$(PORTFLOW) $(GLOBAL) feature-backfill --profile $(PROFILE) $(RUN_OPT) $(DR_OPT)
flow-production: install
	$(PORTFLOW) $(GLOBAL) flow-production --profile $(PROFILE) $(RUN_OPT) $(DR_OPT) $(FLAGS)
port-select: install
	$(PORTFLOW) $(GLOBAL) port-select --profile $(PROFILE) $(RUN_OPT) $(DR_OPT)
port-pre-opt: install
	$(PORTFLOW) $(GLOBAL) port-pre-opt --run-id $(RUN_ID)
port-optimize: install
	$(PORTFLOW) $(GLOBAL) port-optimize --run-id $(RUN_ID)
port-report: install
	$(PORTFLOW) $(GLOBAL) port-report --run-id $(RUN_ID)
port-test: install
	$(PORTFLOW) $(GLOBAL) port-test --run-id $(RUN_ID)
port-post-analysis: install
	$(PORTFLOW) $(GLOBAL) port-post-analysis --run-id $(RUN_ID)
flow-meta-production: install
	$(PORTFLOW) $(GLOBAL) flow-meta-production --profile $(META) $(RUN_OPT) $(DR_OPT) \
	  $(if $(EXECUTOR),--executor $(EXECUTOR)) $(FLAGS)
runs: install
	$(PORTFLOW) $(GLOBAL) runs list
profiles: install
	$(PORTFLOW) $(GLOBAL) profiles list
