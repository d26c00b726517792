# Two entry points, both safe on a fresh machine:
#   make serve   set up, build the web UI, start the server (SQLite in ./data, port 5000)
#   make test    set up, then run every check and test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup web serve test test-pg lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,postgres,redis]'
	touch $@

setup: $(VENV)/.installed web tests/js/node_modules/.package-lock.json

web:
	@if [ -f web/package.json ]; then cd web && npm ci --no-audit --no-fund && npm run build; fi

# The npm socket.io-client the server tests drive in Node.
tests/js/node_modules/.package-lock.json: tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund

serve: setup
	$(VENV)/bin/vidsync serve --data-dir ./data

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

test: setup lint test-pg
	$(PY) -m pytest -q

# The server's suites a second time on PostgreSQL: each test server gets a scratch database there,
# dropped when the run ends. .ci/run starts PostgreSQL if it is down.
PG_TEST_URL ?= postgresql://127.0.0.1:5432/test
PG_SUITES = $(wildcard tests/server tests/content)

test-pg: setup
	@pg_isready -q -d $(PG_TEST_URL) || { echo "test-pg: no PostgreSQL at $(PG_TEST_URL)"; exit 1; }
	VIDSYNC_TEST_DATABASE=$(PG_TEST_URL) $(PY) -m pytest -q $(PG_SUITES)
