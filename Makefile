# The two commands: `make run` (the service on embedded defaults) and `make test`.
# Both create the virtual environment and install what they need.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: install install-test browser run test test-fast bench clean

# Stamps: the service's dependencies, and on top of them the test tools.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

run: install
	PORT=$(PORT) $(BIN)/recomb up --port $(PORT)

# The dashboard tests drive Debian's Chromium (never a browser download); as root, install it when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

test: install-test browser
	$(BIN)/pytest -q

test-fast: install-test
	$(BIN)/pytest -q tests/core tests/api

bench: install-test
	$(BIN)/python -m bench.run_all

clean:
	rm -rf var .pytest_cache test-artifacts
