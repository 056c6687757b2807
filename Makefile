# The two commands of the quick start. Both work on a fresh clone with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: run test install clean bench

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

## make bench B=NAME [ARGS="..."]: bench/bench_NAME.py by hand, with the bench extras (docs/benchmarks.md)
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@test -n "$(B)" || { echo "make bench: name one, e.g. make bench B=sigmahq (files: bench/bench_*.py)" >&2; exit 2; }
	@test -f bench/bench_$(B).py || { echo "make bench: no bench/bench_$(B).py" >&2; exit 2; }
	$(BIN)/python bench/bench_$(B).py $(ARGS)

clean:
	rm -rf data .pytest_cache .hypothesis
