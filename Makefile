# The two commands: `make run` (the service on embedded defaults) and `make test`.
# Both create the virtual environment and install what they need.

PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: install browser run test test-fast bench clean

$(BIN)/recomb: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

install: $(BIN)/recomb

run: install
	PORT=$(PORT) $(BIN)/recomb up --port $(PORT)

# The dashboard tests drive Debian's Chromium (never a browser download); as root, install it when missing.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

test: install browser
	$(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q tests/core tests/api

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf var .pytest_cache test-artifacts
