# physmem: the two commands (make demo, make test) set everything up themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test bench torture lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e .
	@touch $@

$(TSTAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/physmem demo

test: $(TSTAMP)
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest

bench: $(TSTAMP)
	$(PY) bench/run.py

torture: $(TSTAMP)
	$(PY) -m tests.torture

lint: $(TSTAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
