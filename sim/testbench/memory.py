"""cocotb replay of writes and reads through a :class:`systolix.hw.spram.SinglePortMemory`,
for its ``SB_SPRAM256KA`` blocks simulated with the FPGA family's cell model.

The spec (JSON, named by ``SYSTOLIX_SPEC``) holds ``operations``: ``[write, address, word]``
each, one a cycle (``write`` 1: the word is written; 0: the address is read, the word ignored).
The report (``SYSTOLIX_REPORT``) holds ``reads``: the word each read gave, in order (the read
port's data in the cycle after its request).
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix.sim.testbench.array import reset

__all__ = ["single_port"]


@cocotb.test()
async def single_port(dut):
    """The operations, one a cycle; the words read in the report."""
    spec = json.loads(open(os.environ["SYSTOLIX_SPEC"]).read())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.write__en.value = dut.read__en.value = 0
    await reset(dut, sources=(), sinks=())
    reads, pending = [], False
    for write, address, word in [*spec["operations"], [0, 0, 0]]:
        dut.write__en.value = write
        dut.write__addr.value = address
        dut.write__data.value = word
        dut.read__en.value = 1 - write
        dut.read__addr.value = address
        await ReadOnly()
        if pending:
            reads.append(int(dut.read__data.value))
        await RisingEdge(dut.clk)
        pending = not write
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"reads": reads}, report)
