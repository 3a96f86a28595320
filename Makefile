# Phoenix ML. `make run` starts everything on embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed

.PHONY: install run test lint format bench clean

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

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
