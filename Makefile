# The two commands: `make run` (install if needed, then the whole flow on `digits`) and
# `make test` (install if needed, then the test suite). Nothing else needs to be set up.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganvirt-installed
# pip on this kind of machine warns about every absent local index; keep its output readable
QUIET_PIP := grep -v "is ignored: it is neither a file nor a directory" || true
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test test-slow test-all lint clean mlflow-ui prefect-ui up serve bench bench-quality

install: $(STAMP)

# torch first, pinned to the CPU wheel, where none is installed: pyproject's honest range
# (torch>=2.4) would otherwise make pip fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || ($(PY) -m pip install -q torch==2.13.0 2>&1 | $(QUIET_PIP))
	$(PY) -m pip install -q -e '.[dev]' 2>&1 | $(QUIET_PIP)
	@$(PY) -c "import torch, prefect, mlflow, ganvirt.cli" && touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/ganvirt run $(ARGS)

up: $(STAMP)
	$(VENV)/bin/ganvirt up $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

test-all: test test-slow

# Benchmarks (not tests): each writes benchmarks/results/<name>.json; about 14 minutes on 2 cores.
bench: $(STAMP)
	$(PY) -m benchmarks.throughput $(BENCH_ARGS)
	$(PY) -m benchmarks.sampling
	$(PY) -m benchmarks.scaling
	$(PY) -m benchmarks.evaluation
	$(PY) -m benchmarks.catalog_io
	$(PY) -m benchmarks.ingest
	$(PY) -m benchmarks.flow_overhead

# Time to quality on MNIST (minutes until TSTR >= 0.95, per model): about 20 minutes on 2 cores.
bench-quality: $(STAMP)
	$(PY) -m benchmarks.time_to_quality

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf .ganvirt .pytest_cache

# The two UIs over the embedded store (what `make run` wrote): no other setup.
HOME_DIR := $(abspath $(or $(GANVIRT_HOME),.ganvirt))
mlflow-ui: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	$(VENV)/bin/mlflow server --backend-store-uri sqlite:///$(HOME_DIR)/mlflow.db \
	  --artifacts-destination $(HOME_DIR)/mlartifacts --host 127.0.0.1 --port 5000 --workers 1

# The champion generator as a REST endpoint: make serve NAME=digits PORT=5001
serve: $(STAMP)
	PATH=$(abspath $(VENV))/bin:$$PATH MLFLOW_TRACKING_URI=sqlite:///$(HOME_DIR)/mlflow.db \
	$(VENV)/bin/mlflow models serve -m models:/$(or $(NAME),digits)-generator@champion \
	  --env-manager local -h 127.0.0.1 -p $(or $(PORT),5001)

prefect-ui: $(STAMP)
	PREFECT_HOME=$(HOME_DIR)/prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
	PREFECT_SERVER_UI_API_URL=http://127.0.0.1:4200/api \
	$(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200
