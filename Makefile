# The two commands: `make demo` (the main job) and `make test` (every test, services included).
VENV ?= $(or $(TASTEGRAPH_VENV),$(HOME)/.cache/tastegraph/venv)
BIN := $(VENV)/bin
export TASTEGRAPH_VENV := $(VENV)

.PHONY: install demo test lint format services-up services-down

install:
	scripts/bootstrap.sh

demo: install
	scripts/demo.sh

test:
	scripts/test.sh

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy config encoder graph finetuning stream evaluation services tools cli

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

services-up: install
	$(BIN)/tastegraph services up

services-down: install
	$(BIN)/tastegraph services down
