# The two commands: `make demo` brings the platform up, `make test` runs every test tier.
VENV := .venv
VISITING := $(VENV)/bin/visiting
PYTEST_ARGS ?=

.PHONY: setup lock check-locks images docker-up docker-down demo demo-up demo-down test lint unit integration

setup:
	@bash scripts/setup.sh

# Re-resolve the Python lock files (requirements/*.lock) on purpose, after a change of
# pyproject.toml, requirements/host.in or images/*/requirements.txt, and print what
# changed. Nothing else resolves. `make lock UPGRADE=1` takes the newest versions the
# inputs allow; `make lock UPGRADE_PACKAGE=dask` only those of one package.
lock: setup
	@python3 scripts/locks.py compile $(if $(UPGRADE),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE))

# A lock whose inputs changed since it was resolved fails at once, naming itself.
check-locks:
	@python3 scripts/locks.py check

# the container images, built offline; rebuilt only where their inputs changed
images: setup
	@bash scripts/images.sh

docker-up:
	@bash scripts/docker.sh up

docker-down:
	@bash scripts/docker.sh down

demo: setup
	$(VISITING) demo run

demo-up: setup
	$(VISITING) demo up

demo-down:
	@if [ -x $(VISITING) ]; then $(VISITING) demo down --sites; else echo "nothing to stop"; fi
	@bash scripts/docker.sh down

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: check-locks setup lint
	$(VENV)/bin/python -m pytest tests -ra $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/python -m pytest tests/unit -q

integration: setup
	$(VENV)/bin/python -m pytest tests/integration -ra
