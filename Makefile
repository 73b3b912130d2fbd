# systolix: every target bootstraps the virtual environment on first use, then calls the
# `systolix` command line, so everything a target does can also be done from Python.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SIM    ?= verilator
BOARD  ?= icebreaker

.PHONY: all sim sim-arrays test bench train bitstream patch prog run report sweep formal clean distclean

all: test

# The virtual environment: systolix (editable) with the test extras, the toolchain at the
# versions of constraints.txt (the ones whose bitstreams are byte-identical); --no-compile: a
# module is byte-compiled when it is first imported, not every module of every package at install.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	touch $@

# The test suite (what CI runs).
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal $(PYTEST_ARGS)

# The main job: a model on the simulated inference engine, end to end (MODEL: an
# IntegerProgram file, or WORKLOAD: digits-mlp (the default), digits-cnn or digits-vit; CONFIG:
# an array name such as 8x8-W4s-A4u-P12-wrap).
sim: $(STAMP)
	$(BIN)/systolix sim --simulator $(SIM) $(if $(MODEL),--model $(MODEL)) $(if $(WORKLOAD),--workload $(WORKLOAD)) $(if $(CONFIG),--config $(CONFIG))

# Every array configuration of the suite through its cocotb testbench, as a table.
sim-arrays: $(STAMP)
	$(BIN)/systolix sim-arrays --simulator $(SIM)

# Speed and size figures (golden model, simulators, synthesis).
bench: $(STAMP)
	$(BIN)/systolix bench

# Integer training of the digits MLP (SCHEME: wage or dfp), exported to build/train/program.npz.
train: $(STAMP)
	$(BIN)/systolix train --scheme $(or $(SCHEME),wage) $(TRAIN_ARGS)

# The accelerator of a model (MODEL: an IntegerProgram file, or WORKLOAD: digits-mlp or
# digits-cnn) for a board: bitstream, Verilog, logs and report in build/bitstream/BOARD.
bitstream: $(STAMP)
	$(BIN)/systolix bitstream --board $(BOARD) $(if $(MODEL),--model $(MODEL)) $(if $(WORKLOAD),--workload $(WORKLOAD)) $(BITSTREAM_ARGS)

# Another model (MODEL) into the bitstream of `make bitstream BOARD=...`, without place and route.
# Writes build/bitstream/$(BOARD)-patched (PATCH_ARGS: options of `systolix patch`, such as --out).
patch: $(STAMP)
	$(if $(MODEL),,$(error make patch needs MODEL=program.npz, an IntegerProgram file))
	$(BIN)/systolix patch --build build/bitstream/$(BOARD) --model $(MODEL) $(PATCH_ARGS)

# Program the board with the bitstream of `make bitstream BOARD=...` (openFPGALoader; PROG_ARGS:
# options of `systolix prog`, such as --build DIR).
prog: $(STAMP)
	$(BIN)/systolix prog --board $(BOARD) $(PROG_ARGS)

# The test set on the programmed board through its serial port (PORT, such as /dev/ttyUSB1;
# MODEL or WORKLOAD as for make bitstream; RUN_ARGS: options of `systolix run`).
run: $(STAMP)
	$(if $(PORT),,$(error make run needs PORT=/dev/ttyUSB1, the board's serial device))
	$(BIN)/systolix run --port $(PORT) --board $(BOARD) $(if $(MODEL),--model $(MODEL)) $(if $(WORKLOAD),--workload $(WORKLOAD)) $(RUN_ARGS)

# Resources, fmax and power of one array configuration (REPORT_ARGS: options of
# `systolix report`, such as --rows 8 --cols 8 --family ecp5).
report: $(STAMP)
	$(BIN)/systolix report $(REPORT_ARGS)

# Resources and fmax over widths and shapes (SWEEP_ARGS: options of `systolix sweep`, such as
# --grid full --scheduler tcp://host:8786).
sweep: $(STAMP)
	$(BIN)/systolix sweep $(SWEEP_ARGS)

# Formal proofs (SymbiYosys): no partial sum of any weight tile of the default model leaves the
# accumulator, and the engine's and the link's streams keep the stream rules (FORMAL_ARGS:
# options of `systolix formal`, such as --config 8x8-W4s-A4u-P16-wrap --no-streams).
formal: $(STAMP)
	$(BIN)/systolix formal $(FORMAL_ARGS)

clean:
	rm -rf build .pytest_cache

distclean: clean
	rm -rf $(VENV) *.egg-info
