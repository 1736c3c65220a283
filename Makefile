# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit servers bench clean

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

# The front ends and both fast paths again without the C speedups, as an install without a compiler runs.
PURE_TESTS := tests/test_handler.py tests/test_structlog.py tests/test_loguru.py tests/test_hostile.py \
	tests/test_three_frontends.py tests/test_plain.py tests/test_capture.py tests/test_scrub.py

unit: $(STAMP)
	$(BIN)/python -m pytest -q
	HIGHLIGHT_LOGGING_PURE_PYTHON=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PURE_TESTS)

test: lint typecheck unit

# uWSGI compiles from source (a minute or two, once per venv): installed here, not by `make test`,
# whose run skips the uWSGI smoke tests without it.
SERVERS_STAMP := $(VENV)/.servers
$(SERVERS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[all,dev,servers]'
	touch $(SERVERS_STAMP)

servers: $(SERVERS_STAMP)
	$(BIN)/python -m pytest -q tests/test_servers.py -k uwsgi

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache highlight_logging/*.so
