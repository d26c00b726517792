# Two entry points, both safe on a fresh machine:
#   make serve   set up, build the web UI, start the server (SQLite in ./data, port 5000)
#   make test    set up, then run every check and test
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: setup web serve test lint

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test,postgres,redis]'
	touch $@

setup: $(VENV)/.installed web

web:
	@if [ -f web/package.json ]; then cd web && npm ci --no-audit --no-fund && npm run build; fi

serve: setup
	$(VENV)/bin/vidsync serve --data-dir ./data

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

test: setup lint
	$(PY) -m pytest -q
