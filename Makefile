# The two commands: `make demo` brings the platform up, `make test` runs every test tier.
VENV := .venv
VISITING := $(VENV)/bin/visiting
PYTEST_ARGS ?=

.PHONY: setup images docker-up docker-down demo demo-up demo-down test lint unit integration

setup:
	@bash scripts/setup.sh

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

test: setup lint
	$(VENV)/bin/python -m pytest tests -ra $(PYTEST_ARGS)

unit: setup
	$(VENV)/bin/python -m pytest tests/unit -q

integration: setup
	$(VENV)/bin/python -m pytest tests/integration -ra
