"""cocotb replay of given activation vectors through :class:`systolix.hw.array.SystolicArray`
with a given weight tile: how a formal counterexample (:mod:`systolix.sim.formal`) is shown
on the array itself.

The spec (JSON, named by ``SYSTOLIX_SPEC``) holds ``config``, ``tile`` (``rows`` lists of
``cols`` codes) and ``vectors`` (lists of ``rows`` codes); the tile is sent on ``weights``, the
vectors on ``activations`` (the final one with ``last``), every stream at full rate. The report
(``SYSTOLIX_REPORT``) holds ``results``: the ``cols`` partial sums of each vector, as the array
gives them.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix.codec import decode, encode
from systolix.config import ArrayConfig
from systolix.hw.array import activation_beat, activations_layout, results_layout
from systolix.memory_map import weights_layout
from systolix.sim.testbench.array import StreamSink, StreamSource, reset
from systolix.timing import array_timing

__all__ = ["replay"]


@cocotb.test()
async def replay(dut):
    """The tile, then the vectors; the results in the report."""
    spec = json.loads(open(os.environ["SYSTOLIX_SPEC"]).read())
    config = ArrayConfig(**spec["config"])
    vectors = spec["vectors"]
    timing = array_timing(config)
    cycles = config.rows + len(vectors) + 2 * timing.latency + 16
    weights = [encode(weights_layout(config), row) for row in spec["tile"]]
    activations = [encode(activations_layout(config),
                          activation_beat(config, vector, index == len(vectors) - 1))
                   for index, vector in enumerate(vectors)]
    always = [True] * cycles
    sources = [StreamSource(dut, "weights", weights, always),
               StreamSource(dut, "activations", activations, always)]
    sink = StreamSink(dut, "results", always)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)
    for cycle in range(cycles):
        for component in (*sources, sink):
            component.drive(cycle)
        await ReadOnly()
        for component in (*sources, sink):
            component.sample(cycle)
        await RisingEdge(dut.clk)
        if len(sink.words) == len(vectors):
            break
    results = [list(decode(results_layout(config), word)["data"]) for word in sink.words]
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"results": results}, report)
    assert len(results) == len(vectors), f"{len(results)} results for {len(vectors)} vectors"
