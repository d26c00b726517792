# Two entry points, both safe on a fresh machine:
#   make serve   set up, build the web UI, start the server (SQLite in ./data, port 5000)
#   make test    set up, then run every check and test this machine can (skipped suites, such as
#                those needing PostgreSQL or Redis, are listed at the end; with CI=true they fail)
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

# Everything this machine can run. A suite whose service (PostgreSQL, Redis, Chromium) is missing
# is skipped, and the end of the output says which and why; with CI=true (.ci/run starts every
# service) a missing service fails instead.
SKIPPED := $(VENV)/test-skipped
# Test processes side by side (pytest-xdist, a file per worker at a time). Most of a test's time
# is spent waiting on the servers and agents it starts, so 4 on 2 cores took the SQLite pass from
# 14 min to 3.5; TEST_WORKERS=0 runs everything in this one process.
TEST_WORKERS ?= 4
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: setup lint
	@rm -f $(SKIPPED)
	VIDSYNC_SKIP_REPORT=$(SKIPPED) $(PYTEST) -q --durations=15
	@$(TEST_PG)
	@if [ -s $(SKIPPED) ]; then printf '\nmake test passed, without these (skipped):\n'; \
	  sed 's/^/  /' $(SKIPPED); fi

# The server's suites a second time on PostgreSQL: each test server gets a scratch database there,
# dropped when the run ends. .ci/run starts PostgreSQL if it is down.
PG_TEST_URL ?= postgresql://127.0.0.1:5432/test
PG_SUITES = $(wildcard tests/server tests/content)
define TEST_PG
if $(PY) -c "import psycopg; psycopg.connect('$(PG_TEST_URL)', connect_timeout=3).close()" \
    2>/dev/null; then \
  echo "VIDSYNC_TEST_DATABASE=$(PG_TEST_URL) pytest -q $(PG_SUITES)"; \
  VIDSYNC_TEST_DATABASE=$(PG_TEST_URL) VIDSYNC_SKIP_REPORT=$(SKIPPED) \
    $(PYTEST) -q $(PG_SUITES); \
elif [ -n "$$CI" ]; then \
  echo "test-pg: no PostgreSQL at $(PG_TEST_URL) (CI=true: a missing service is a failure)"; \
  exit 1; \
else \
  echo "test-pg: skipped: no PostgreSQL at $(PG_TEST_URL)"; \
  echo "$(PG_SUITES) on PostgreSQL: no PostgreSQL at $(PG_TEST_URL)" >> $(SKIPPED); \
fi
endef

test-pg: setup
	@$(TEST_PG)
