# Phoenix ML. `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench k8s-check clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

# The demo model heals itself: its retrained challenger starts an experiment (see README).
run: install
	$(BIN)/python manage.py bootstrap
	PHOENIX_EXPERIMENT_AUTOSTART="$${PHOENIX_EXPERIMENT_AUTOSTART-credit-risk,support-tickets}" \
		$(BIN)/python manage.py run_stack --port $(PORT)

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# Side-by-side data-plane benchmark (scripts/bench): Phoenix, thin FastAPI, KServe, raw ORT.
# e.g. make bench BENCH_ARGS="--only phoenix --duration 2"
bench: install
	$(BIN)/python -m scripts.bench $(BENCH_ARGS)

# The last step: one-way imports between the apps, no cycles (docs/ARCHITECTURE.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/python manage.py makemigrations --check --dry-run
	$(BIN)/python -m scripts.import_graph

# The Kubernetes overlays' security scan (checkov on each rendered overlay; waivers are
# annotations in deploy/kubernetes with their reasons). checkov gets its own virtualenv:
# its pins (packaging, pydantic, ...) do not fit the project's.
SCAN_VENV ?= .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed

$(SCAN_STAMP): requirements-scan.txt
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install --quiet -r requirements-scan.txt
	touch $(SCAN_STAMP)

k8s-check: $(SCAN_STAMP)
	scripts/k8s_scan.sh $(SCAN_VENV)/bin/checkov

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
