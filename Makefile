# physmem: the two commands (make demo, make test) set everything up themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TSTAMP := $(VENV)/.installed-test

.PHONY: demo test bench torture lint clean chromium

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

test: $(TSTAMP) chromium
	$(VENV)/bin/ruff check src tests bench
	$(PY) -m pytest

# Headless Chromium for the report's browser test: installed from Debian's packages where
# apt-get works (as root); anywhere else the test skips with a message.  Never fails.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    echo "installing chromium for the report browser test (apt-get)" && \
	    timeout 600 sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	      apt-get install -y -qq chromium' >/dev/null 2>&1; } || \
	  echo "chromium not available: the report browser test will skip"

bench: $(TSTAMP)
	$(PY) bench/run.py

torture: $(TSTAMP)
	$(PY) -m tests.torture

lint: $(TSTAMP)
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
