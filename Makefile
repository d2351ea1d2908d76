# Two commands for a newcomer: `make run` (the product on embedded defaults) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PORT ?= 8000
EMULATOR_PORT ?= 8443
# Everything `make run` keeps (SQLite database, broker folders, artifacts, the emulator's state and CA).
VAR ?= $(CURDIR)/var
export PORT

.PHONY: install run test lint audit migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11 or newer is needed") if sys.version_info < (3, 11) else None'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(PY) manage.py migrate --noinput

# Web (gunicorn), a Celery worker, beat and the Dataverse emulator in the foreground; Ctrl-C stops all.
# The last lines printed, once every process answers, are the URL, the demo users and their password.
# Sign-in: the seeded accounts' password, or the emulator's demo identities through Entra ID single
# sign-on, linked to the seeded accounts by their full user principal name in the demo's own domain and
# tenant (the demo only, taken from the emulator's demo credentials).
run: install
	ALM_VAR_DIR=$(VAR) $(PY) manage.py migrate --noinput
	rm -f $(VAR)/run/*.ready
	PYTHONUNBUFFERED=1 ALM_VAR_DIR=$(VAR) ALM_PORT=$(PORT) ALM_EMULATOR_PORT=$(EMULATOR_PORT) \
		ALM_DATAVERSE_CA_BUNDLE=$(VAR)/dataverse-emulator/ca.pem ALM_GIT_LOCAL_ROOT=$(VAR)/git-repositories \
		ALM_SSO_DEMO_CREDENTIALS=$(VAR)/dataverse-emulator/demo-credentials.json ALM_DJANGO_ADMIN=false \
		$(VENV)/bin/honcho -f Procfile start

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Advisory, and never part of `make test`: whether a newer release or an advisory was published is news
# about the world, not about this commit. Needs the network; stops itself after ALM_AUDIT_TIME_LIMIT s.
audit: install
	$(PY) scripts/audit_dependencies.py

# The whole suite: lint, architecture contracts, types, then every test. Beyond installing the pinned
# requirements it makes no network request, so the same commit gives the same result tomorrow. With DATABASE_URL and
# REDIS_URL set it runs against them; otherwise on SQLite, skipping (with a reason) what needs them.
test: install lint
	ALM_MODE=test $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var/broker var/staticfiles .pytest_cache
