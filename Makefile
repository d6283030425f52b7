# tokenmgr — every set-up step lives here, so that a fresh clone needs only `make run` or `make test`.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
UV_VERSION := 0.13.8
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test lint bench e2e install install-dev system-deps lock clean messages

$(PY):
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(PY) requirements/base.txt pyproject.toml
	$(UV) pip install -q --python $(PY) -r requirements/base.txt
	$(UV) pip install -q --python $(PY) --no-deps -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements/dev.txt
	$(UV) pip install -q --python $(PY) -r requirements/dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Debian packages the test suite needs: Redis, Chromium (browser tests), PostgreSQL binaries.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	command -v msgfmt >/dev/null || missing="$$missing gettext"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	$(if $(filter bench,$(MAKECMDGOALS)),command -v wrk >/dev/null || missing="$$missing wrk";) \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

## Development: DEBUG on (its embedded keys are accepted), unless the environment says otherwise.
run: export DEBUG ?= 1
run: install
	@mkdir -p var
	$(PY) manage.py migrate --noinput -v0
	command -v msgfmt >/dev/null && $(PY) manage.py compilemessages -v0 --ignore=.venv || echo "gettext missing: French/English catalogues not compiled"
	$(PY) manage.py load_demo_data
	$(PY) scripts/run_all.py

lint: install-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# makemigrations --check compares models with the migration files; its history check gets an empty database.
test: install-dev system-deps lint
	DEBUG=1 DATABASE_URL=sqlite://:memory: $(PY) manage.py makemigrations --check --dry-run -v0
	DEBUG=1 $(PY) manage.py compilemessages -v0 --ignore=.venv
	DEBUG=0 $(PY) scripts/with_services.py -- $(PY) -m pytest -n 2 --dist loadgroup -p no:cacheprovider $(PYTEST_ARGS)

## The production topology (gunicorn, Celery workers, beat, SMTP sink) and its fault tests; starts its own services.
## Throw-away keys for the test process (with DEBUG off the settings refuse the development ones).
e2e: export SECRET_KEY ?= $(shell python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
e2e: export TOKEN_DIGEST_KEY ?= $(shell python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
e2e: install-dev system-deps
	$(PY) -m pytest -p no:cacheprovider tests/e2e $(PYTEST_ARGS)

bench: install-dev system-deps
	$(PY) scripts/with_services.py -- $(PY) bench/run_all.py

lock: $(PY)
	$(UV) pip compile -q pyproject.toml --python-version 3.11 -o requirements/base.txt
	$(UV) pip compile -q pyproject.toml --extra dev --python-version 3.11 -o requirements/dev.txt

clean:
	rm -rf var $(VENV)
