# The two commands of the quick start. Both work on a fresh clone with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make run: ingest the sample logs in fixtures/ into data/wardwatch.db, evaluate rules/, print the alerts
run: $(STAMP)
	$(BIN)/wardwatch run --once

## make test: the whole suite (Elasticsearch tests need WARDWATCH_TEST_ES_URL; .ci/run provides it)
test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf data .pytest_cache .hypothesis
