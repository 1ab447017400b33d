# Choir: `make run` serves the site, `make test` runs the suite. Both set up
# what they need on a fresh machine.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= 1

.PHONY: run test test-fast system-deps bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py choir_setup
	$(BIN)/python manage.py serve --host $(HOST) --port $(PORT) --workers $(WORKERS)

system-deps:
	@bash scripts/system-deps.sh

test: $(VENV)/.dev system-deps
	@bash scripts/test.sh

test-fast: $(VENV)/.dev
	$(BIN)/python -m pytest -q -m "not browser and not slow"

bench: $(VENV)/.dev
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf var test-output bench-output staticfiles
