# The two commands of the README: `make demo` and `make test`. Everything else is a helper of theirs.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 5000
SPEED  ?= 1

.PHONY: demo test install install-test services chromium lint format bench clean-demo

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# installs the package and its runtime dependencies (stamp: re-run when pyproject.toml changes)
$(VENV)/.installed: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/bin/activate
	$(PIP) install -q -e '.[test]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

## make demo: embedded mode (SQLite, in-process jobs, demo data, live simulated events)
demo: install
	$(PY) -m flask --app wsgi db upgrade
	$(PY) -m flask --app wsgi demo load --if-empty
	@echo ""
	@echo "  演示账号：duty（值班员）/ supervisor（督导）/ leader（领导）/ operator1（坐席员）/ town01_sup（镇街督导）"
	@echo "  演示密码：Demo@2026"
	$(PY) -m flask --app wsgi serve --host $(HOST) --port $(PORT) --simulate --speed $(SPEED)

## make test: install what the tests need (Python packages, Debian's chromium), start services, check the
## formatting and the lint, run all tests
test: install-test chromium services lint
	$(PY) -m pytest $(PYTEST_ARGS)

chromium:
	@bash scripts/ensure-chromium.sh

services:
	@bash scripts/ensure-services.sh

LINTED := commandcenter workers tests bench

lint: install-test
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/ruff check $(LINTED)

format: install-test
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

bench: install-test services
	$(PY) bench/run_all.py

clean-demo:
	rm -f instance/commandcenter.db instance/commandcenter.db-wal instance/commandcenter.db-shm
