# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/meshes-gateway serve --data-dir ./data

test: $(STAMP)
	$(BIN)/ruff check meshes_gateway tests bench
	$(BIN)/ruff format --check meshes_gateway tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check meshes_gateway tests bench
	$(BIN)/ruff format --check meshes_gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format meshes_gateway tests bench
	$(BIN)/ruff check --fix meshes_gateway tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.quick

clean:
	rm -rf $(VENV) data .mypy_cache .pytest_cache .ruff_cache
