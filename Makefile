# Every target does its own set-up: a fresh clone needs nothing but python3 (>= 3.11).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-unit test-integration test-process lint bench bench-quick system-deps clean man

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian tools some tests drive for real (promtool, prometheus, systemd-analyze); installs only what is missing.
system-deps:
	bash scripts/install-system-deps.sh

# 1 GiB of incompressible assets: the upload is real (DEMO_ARGS="--size 8G", "--lossy", ...)
DEMO_ARGS ?= --size 1G
demo: $(STAMP)
	$(BIN)/notaryd demo $(DEMO_ARGS)

# Tests run in tiers, fastest first (tests/support/tiers.py): a broken unit fails in seconds.
# The integration and process tiers run on PYTEST_WORKERS workers, each with its own SeaweedFS.
# A tier that PYTEST_ARGS leaves without tests (pytest's exit status 5) is not a failure.
PYTEST_WORKERS ?= 2
tier = $(BIN)/pytest --tier $(1) $(PYTEST_ARGS) || [ $$? -eq 5 ]
parallel_tier = $(BIN)/pytest --tier $(1) -n $(PYTEST_WORKERS) $(PYTEST_ARGS) || [ $$? -eq 5 ]

test: $(STAMP) system-deps
	$(BIN)/ruff check uploader service tests benchmarks
	$(call tier,unit)
	$(BIN)/mypy
	$(call parallel_tier,integration)
	$(call parallel_tier,process)

# The inner loop: pure logic only, no servers, no processes (about half a minute).
test-unit: $(STAMP)
	$(call tier,unit)

test-integration: $(STAMP)
	$(call parallel_tier,integration)

test-process: $(STAMP) system-deps
	$(call parallel_tier,process)

lint: $(STAMP)
	$(BIN)/ruff check uploader service tests benchmarks
	$(BIN)/mypy

# The man page, generated from the parser: build/man/man1/notaryd.1 (`man -l` it, or put
# build/man on MANPATH).
man: $(STAMP)
	$(BIN)/python scripts/make_man.py

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks --quick $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
