# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench clean

$(STAMP): setup.cfg setup.py pyproject.toml highlight_logging/_speedups.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

# Start the local receiver on a free port, run every example against it, show what arrived.
demo: $(STAMP)
	@bash examples/run_demo.sh

lint: $(STAMP)
	$(BIN)/ruff check highlight_logging tests examples benchmarks
	$(BIN)/ruff format --check highlight_logging tests

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing_smoke.py

unit: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache highlight_logging/*.so
