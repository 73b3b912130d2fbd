"""cocotb testbench of :class:`systolix.hw.array.SystolicArray` running given integer GEMMs.

Each GEMM of the spec (``SYSTOLIX_SPEC``) is its weight tiles and the activation vectors sent
with each tile (for example every GEMM of a training step, laid out by
:func:`systolix.sw.train.array_tiles`). They run one after another through the array's own
testbench (:func:`systolix.sim.testbench.array.run_stimulus`, random stalls on every stream):
every partial sum is checked against the golden model and every transfer against the cycle
model, and the report (``SYSTOLIX_REPORT``) holds the partial sums the array returned, per GEMM
and tile, for the caller to assemble.
"""

import json
import os

import cocotb
import numpy as np
from cocotb.clock import Clock

from systolix.config import ArrayConfig
from systolix.sim.testbench.array import run_stimulus
from systolix.sim.testbench.scenarios import tile_stimulus

__all__ = ["array_gemms"]


@cocotb.test()
async def array_gemms(dut):
    """Every GEMM of the spec: results bit-exact, every transfer on its modelled cycle."""
    spec = json.loads(open(os.environ["SYSTOLIX_SPEC"]).read())
    config = ArrayConfig(**spec["config"])
    rng = np.random.default_rng(spec["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    entries = []
    for gemm in spec["gemms"]:
        stimulus = tile_stimulus(config, gemm["weights"], gemm["activations"], rng,
                                 spec["offer"], spec["ready"])
        entries.append(await run_stimulus(dut, config, gemm["name"],
                                          [len(x) for x in gemm["activations"]], stimulus,
                                          results=True))
        dut._log.info("%s: %d vectors, %d mismatches, %d cycle mismatches", gemm["name"],
                      entries[-1]["vectors"], entries[-1]["mismatches"],
                      entries[-1]["cycle_mismatches"])
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"gemms": entries}, report)
    assert all(e["mismatches"] == 0 and e["cycle_mismatches"] == 0 for e in entries), \
        [(e["name"], e["mismatches"], e["cycle_mismatches"]) for e in entries]
