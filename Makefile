# systolix: every target bootstraps the virtual environment on first use, then calls the
# `systolix` command line, so everything a target does can also be done from Python.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SIM    ?= verilator
BOARD  ?= icebreaker

.PHONY: all sim sim-arrays test bench bitstream report formal clean distclean

all: test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

# The main job: a model on the simulated inference engine, end to end (MODEL: an
# IntegerProgram file, CONFIG: an array name such as 8x8-W4s-A4u-P12-wrap).
sim: $(STAMP)
	$(BIN)/systolix sim --simulator $(SIM) $(if $(MODEL),--model $(MODEL)) $(if $(CONFIG),--config $(CONFIG))

# Every array configuration of the suite through its cocotb testbench, as a table.
sim-arrays: $(STAMP)
	$(BIN)/systolix sim-arrays --simulator $(SIM)

# Speed and size figures (golden model, simulators, synthesis).
bench: $(STAMP)
	$(BIN)/systolix bench

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
