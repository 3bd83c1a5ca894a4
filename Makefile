# The two commands a newcomer needs: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS = 1

.PHONY: setup demo test test-fast lint ui viewer bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(PY) -m compileall -q mf_pipeline  # byte-code even where PYTHONDONTWRITEBYTECODE is set
	$(PY) -m mf_pipeline.warmup  # compile the Numba kernels once, not in your first run
	$(PY) -m mf_pipeline.orchestration.instance  # the project's DAGSTER_HOME and its template
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/mf demo

lint: setup
	$(VENV)/bin/ruff check mf_pipeline mf_pipeline_tests bench viewer

test: setup lint
	$(VENV)/bin/pytest -n 2 --dist worksteal

# The fast loop while editing: everything but the end-to-end runs (marker e2e), on both cores.
test-fast: setup
	$(VENV)/bin/pytest -n 2 --dist worksteal -m "not e2e"

ui: setup
	$(PY) -m mf_pipeline.orchestration.instance
	$(VENV)/bin/dagster dev -h 127.0.0.1 -p 3000 -w workspace.yaml

SIZE ?= small
bench: setup
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(PY) -m bench.run --size $(SIZE)

viewer: setup
	$(VENV)/bin/mf viewer --port 8501 --address 127.0.0.1

clean:
	rm -rf data artifacts logs dagster_home/storage dagster_home/history dagster_home/schedules \
	       dagster_home/logs dagster_home/.logs_queue dagster_home/.telemetry
