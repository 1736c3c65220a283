# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The extras every venv of the project installs (make pythons too).
EXTRAS := all,dev,otel-instrument

.PHONY: demo test lint typecheck unit servers bench pythons clean browser proxy interop

$(STAMP): setup.cfg setup.py pyproject.toml highlight_logging/_speedups.c
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
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
PURE_TESTS := tests/frontends/test_handler.py tests/frontends/test_structlog.py tests/frontends/test_loguru.py tests/frontends/test_hostile.py \
	tests/frontends/test_three_frontends.py tests/export/test_plain.py tests/core/test_capture.py tests/core/test_scrub.py tests/test_golden_otel.py \
	tests/core/test_highlight_rules.py tests/core/test_secrets.py

# Debian's headless Chromium and its driver for the viewer's browser tests (idempotent; root installs them).
browser:
	@bash .ci/install-chromium.sh

# Debian's tinyproxy, a CONNECT proxy nobody here wrote, for tests/transport/test_proxy.py (idempotent).
proxy:
	@bash tests/install-proxy.sh

unit: $(STAMP) browser proxy
	$(BIN)/python -m pytest -q
	HIGHLIGHT_LOGGING_PURE_PYTHON=1 $(BIN)/python -m pytest -q -p no:cacheprovider $(PURE_TESTS)

test: lint typecheck unit

# The suite again on every CPython 3.10-3.13 the machine has (one venv each, .venv-3.X); .ci/run runs it.
pythons:
	EXTRAS=$(EXTRAS) bash .ci/pythons

# Both gRPC clients against servers nobody here wrote (grpc-js, grpc-go, nginx as a TLS gRPC proxy),
# installed idempotently by tests/interop/install.sh (npm, apt-get); a few minutes on 2 cores.
interop: $(STAMP)
	bash tests/interop/install.sh
	HIGHLIGHT_INTEROP=1 $(BIN)/python -m pytest -q tests/interop

# uWSGI compiles from source (a minute or two, once per venv): installed here, not by `make test`,
# whose run skips the uWSGI smoke tests without it.
SERVERS_STAMP := $(VENV)/.servers
$(SERVERS_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS),servers]'
	touch $(SERVERS_STAMP)

servers: $(SERVERS_STAMP)
	$(BIN)/python -m pytest -q tests/test_servers.py -k uwsgi

# Every performance goal with PASS/FAIL (exit 1 if one fails); ~15 minutes on an idle machine. The
# grpc-js receiver comes from the interop suite's install (idempotent); BENCH_ARGS=--quick smokes it.
bench: $(STAMP)
	bash tests/interop/install.sh
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info .mypy_cache .ruff_cache highlight_logging/*.so
