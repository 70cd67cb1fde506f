# Quick start:  make train   (set up .venv if needed, train PPO on CartPole-v1 with live progress)
#               make test    (set up .venv if needed, run the test suite)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ppolab-installed

.PHONY: install train test bench clean

install: $(STAMP)

# Re-installs only when the package metadata or the pins change, so every target is idempotent.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/ppolab train CartPole-v1

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/time_to_solve.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
