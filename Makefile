# systolix: every target bootstraps the virtual environment on first use, then calls the
# `systolix` command line, so everything a target does can also be done from Python.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SIM    ?= verilator
BOARD  ?= icebreaker

.PHONY: all sim test bench bitstream report formal clean distclean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The main job: runs the simulations and prints their table.
sim: $(STAMP)
	$(BIN)/systolix sim --simulator $(SIM)

# Speed and size figures (golden model, simulators, synthesis).
bench: $(STAMP)
	$(BIN)/systolix bench

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
