# sluice: `make run` runs the main job locally (SQLite + in-process moto, no AWS account);
# `make test` runs the whole test suite. Both create the virtualenv they need.
# Options reach the local run through ARGS, files through FILES:
#   make run ARGS="--no-serve --port 8010 --ws-port 8011" FILES="a.csv b.csv.gz"
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)

.PHONY: run test lint bench bench-full clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m tools.local $(ARGS) $(FILES)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python -m bench.ingest --rows $(or $(ROWS),1000000)

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache
