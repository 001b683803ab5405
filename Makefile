# Two commands do all set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The official Meshes clients' stand-in (tests/compat) needs `jose` from npm.
COMPAT := tests/compat/node_modules/.installed

.PHONY: run test lint typecheck fmt bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres]'
	touch $(STAMP)

$(COMPAT): tests/compat/package.json tests/compat/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd tests/compat && npm ci --no-audit --no-fund --silent && touch node_modules/.installed; \
	else \
		echo "npm not found: the official-client compatibility test will be skipped"; \
	fi

run: $(STAMP)
	$(BIN)/meshes-gateway serve --data-dir ./data

test: $(STAMP) $(COMPAT)
	$(BIN)/ruff check meshes_gateway tests bench
	$(BIN)/ruff format --check meshes_gateway tests bench
	$(BIN)/mypy
	$(BIN)/pytest
	# The integration suite again, every gateway over PostgreSQL (skips where none answers).
	MESHES_TEST_BACKEND=postgres $(BIN)/pytest -q tests/integration

lint: $(STAMP)
	$(BIN)/ruff check meshes_gateway tests bench
	$(BIN)/ruff format --check meshes_gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format meshes_gateway tests bench
	$(BIN)/ruff check --fix meshes_gateway tests bench

bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || { apt-get install -y -qq wrk >/dev/null 2>&1 || echo "wrk not installed: using the Python load generator"; }
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) data .mypy_cache .pytest_cache .ruff_cache tests/compat/node_modules
