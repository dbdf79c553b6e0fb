# Two commands do everything on a fresh machine with Python 3.11:
#   make demo [DATA=demo|online_retail]   set-up, then the whole pipeline on one data set
#   make test                             set-up, then every test (pytest + dbt build)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA ?= demo
export DUCKDB_PATH ?= proactive_recs.duckdb
ONLINE_RETAIL_CSV ?= ../shared/datasets/online_retail/online_retail.csv.gz
DBT := $(BIN)/dbt
DBT_VARS = --vars "$$(cat vars/$(DATA).yml)"
# Two pytest workers (pytest-xdist), one test file each at a time: most tests wait on a dbt
# subprocess, and a file's module fixtures are built once. PYTEST_WORKERS= runs them serially.
PYTEST_WORKERS ?= -n 2 --dist loadfile

.PHONY: setup demo test load-data build validate report docs summary pytest lint bench bench-pipeline simulate snowflake-stage clean

setup: $(VENV)/.installed

# Re-installs when pyproject.toml changes. uv (from PyPI) installs the same
# versions as pip in ~15 s instead of ~2 minutes; pip does it when uv cannot.
# --compile-bytecode: uv, unlike pip, leaves the packages as source only, and where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) every dbt process then compiles
# dbt, pandas and scikit-learn anew: `dbt --version` 6.3 s -> 3.9 s, the first Python
# model's imports 4.4 s -> 2.0 s on this machine.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	if $(BIN)/python -m pip install --quiet --disable-pip-version-check uv && \
	  $(BIN)/python -m uv pip install --quiet --compile-bytecode --python $(BIN)/python \
	    -e ".[dev,tools,snowflake]"; then \
	  :; \
	else \
	  $(BIN)/python -m pip install --quiet --upgrade pip && \
	  $(BIN)/python -m pip install --quiet -e ".[dev,tools,snowflake]"; \
	fi
	touch $@

# Step 1: raw tables. The demo seeds are dbt seeds; Online Retail is loaded by the library.
load-data: setup
ifeq ($(DATA),demo)
	$(DBT) seed --select tag:demo_data --full-refresh --quiet $(DBT_VARS)
else ifeq ($(DATA),online_retail)
	$(BIN)/python -m proactive_recs_tools.online_retail --csv $(ONLINE_RETAIL_CSV) --duckdb $(DUCKDB_PATH)
else
	@echo "DATA must be demo or online_retail (got '$(DATA)')" >&2; exit 2
endif

# Step 2: the two schedules of selectors.yml, each model with its tests. In production:
# `dbt build --selector daily` every day, `--selector weekly` once a week. Here the weekly
# training (recommender_stages and what it reads) goes first, so that the daily run reuses it
# (on a fresh database it would otherwise train the same stages itself); then the daily run;
# then the rest of the weekly set (evaluation and backtest, which read the daily tables); last
# the SQL unit tests, which a scheduled run leaves to CI (their inputs never change).
build: load-data
	$(DBT) build --select +recommender_stages --exclude tag:demo_data --indirect-selection cautious \
	  $(DBT_VARS) $(DBT_BUILD_FLAGS)
	$(DBT) build --selector daily $(DBT_VARS) $(DBT_BUILD_FLAGS)
	$(DBT) build --select tag:weekly --exclude recommender_stages $(DBT_VARS) $(DBT_BUILD_FLAGS)
	$(DBT) test --selector unit_tests $(DBT_VARS)

summary: setup
	$(BIN)/python -m proactive_recs_tools.summary --duckdb $(DUCKDB_PATH)

demo: build
	$(MAKE) --no-print-directory validate report summary

# Great Expectations suites on sources, staging and outputs (docs/data_quality.md);
# Data Docs under target/data_docs. A failing expectation stops here, naming it and the table.
validate: setup
	$(BIN)/python -m proactive_recs_tools.validation --duckdb $(DUCKDB_PATH) \
	  --vars-file dbt_project.yml --vars-file vars/$(DATA).yml --data-docs target/data_docs

# dbt's documentation site (every public model and column documented; dbt-bouncer checks it).
docs: setup
	$(DBT) docs generate --vars "$$(cat vars/$(DATA).yml)"
	@echo "open target/index.html, or: $(DBT) docs serve"

# One static page with the plots a marketer or analyst reads: target/report.html.
report: setup
	$(BIN)/python -m proactive_recs_tools.report --duckdb $(DUCKDB_PATH) \
	  --vars-file dbt_project.yml --vars-file vars/$(DATA).yml --out target/report.html

pytest: setup
	$(BIN)/python -m pytest $(PYTEST_WORKERS)

# The demo database is built once and shared with pytest (tests/python/conftest.py), with
# the profile's one dbt thread (profiles.yml says why): the tests compare against it.
test: setup
	mkdir -p target
	$(MAKE) --no-print-directory build DATA=demo DUCKDB_PATH=target/ci_demo.duckdb
	# The two pytest workers already use both cores: one OpenMP thread each (implicit, the
	# booster), or each waits at every parallel region for its threads the other descheduled
	# (two demo fits at once: 16 s each with one thread, 24 s with two).
	PROACTIVE_RECS_DEMO_DB=target/ci_demo.duckdb OMP_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_WORKERS)
	$(MAKE) --no-print-directory lint DUCKDB_PATH=target/ci_demo.duckdb

# SQL style (.sqlfluff, dbt templater: needs a built database to compile against) and Python.
lint: setup
	$(BIN)/sqlfluff lint --processes 2 models tests analyses
	$(BIN)/ruff check src tests python_models
	$(DBT) parse --quiet --target snowflake --target-path target/snowflake  # compiles for Snowflake, no account
	$(DBT) parse --quiet
	$(BIN)/dbt-bouncer run --config-file dbt-bouncer.yml

# Speed and memory against implicit and the bare matrix products (docs/benchmark.md), e.g.
#   make bench SIZE=M
SIZE ?= S
bench: setup
	$(BIN)/python -m proactive_recs_tools.bench --size $(SIZE) --json

# The dbt build on the same generated data, one selector of selectors.yml (SELECTOR=daily,
# weekly or all): wall time against the floor (implicit's fit and two recommend() calls on the
# same interactions, timed in the same run), peak RSS, slowest nodes; one dbt thread, killed
# above 12 GB. Results in bench/results/pipeline_<SIZE>_<SELECTOR>.json (docs/benchmark.md).
SELECTOR ?= daily
PIPELINE_VARS ?=
bench-pipeline: setup
	$(BIN)/python -m proactive_recs_tools.bench --size $(SIZE) --pipeline-only $(PIPELINE_VARS) \
		--pipeline-selector $(SELECTOR) --pipeline-mem-limit-gb 12 --save bench/results --json

# Closed loop (docs/frequency_rules.md §11): the daily pipeline for DAYS days against a
# simulated send tool that writes sends and responses back after DELAY days (0, 1, never);
# every promise checked from the tool's own send records. Exit 1 on any violation. Users
# have planted hours (responses fall away from them: SEND_TIME=personal|off compares) and a
# send's planted effect (EFFECT, 0 = none) is compared with campaign_lift at the end
# (docs/evaluation.md §5).
DAYS ?= 28
DELAY ?= 1
SIM_USERS ?= 600
SIM_ITEMS ?= 200
SEED ?= 7
EFFECT ?= 1
SEND_TIME ?= personal
HOLDOUT ?= 0.2
simulate: setup
	$(BIN)/python -m proactive_recs_tools.simulate --days $(DAYS) --write-back-delay $(DELAY) \
	  --users $(SIM_USERS) --items $(SIM_ITEMS) --seed $(SEED) --active-hours \
	  --send-effect $(EFFECT) --send-time $(SEND_TIME) --holdout-share $(HOLDOUT) \
	  --work target/simulation_$(DELAY)_$(SEND_TIME)_effect$(EFFECT)

# Snowflake: zip the library and PUT it on the stage the Python models import (needs SNOWFLAKE_*).
# Zip the library, PUT it on the stage (the var proactive_recs_snowflake_stage, or STAGE=...)
# and read it back to check it; CHECK=1 only compares the staged zip with the installed one.
snowflake-stage: setup
	$(BIN)/python -m proactive_recs_tools.snowflake_stage $(if $(STAGE),--stage $(STAGE)) $(if $(CHECK),--check)

clean:
	rm -rf target logs $(VENV) *.duckdb *.duckdb.wal
