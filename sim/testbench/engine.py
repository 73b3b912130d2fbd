"""cocotb testbench of :class:`systolix.hw.engine.InferenceEngine` on the Verilog Amaranth emits.

Structure: :class:`~systolix.sim.testbench.array.StreamSource` drivers on ``inputs`` and
``start``, a :class:`~systolix.sim.testbench.array.StreamSink` monitor on ``outputs``; the golden
model (:func:`systolix.sim.golden.program.run_images`) and the cycle model
(:func:`systolix.sim.golden.engine.engine_cycles`) as the reference; a check of every output
code, of the ``last`` flags, of the engine's own cycle counter and of the cycle of the first
output after ``start``.

Parameters come from the JSON file named by ``SYSTOLIX_SPEC``:

``config``
    Fields of the :class:`~systolix.config.ArrayConfig` the engine was built with.
``images``, ``inputs``
    Paths of the engine's :class:`~systolix.memory_map.MemoryImages` (a JSON file of their
    fields) and of a ``.npy`` matrix of input codes.
``batches``
    Sizes of the consecutive runs; together they take the first rows of ``inputs``.
``input_stall``, ``output_stall``, ``seed``
    Probability that the host does not offer an input word, or is not ready for an output code,
    in a cycle (random stalls on both streams).

The report (``SYSTOLIX_REPORT``) has one entry per run and every output code.
"""

import json
import logging
import os
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix.config import ArrayConfig
from systolix.memory_map import (input_channels, layer_records, load_images, pack_vectors,
                                 unpack_outputs, vector_words)
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_images
from systolix.sim.testbench.array import StreamSink, StreamSource, reset

__all__ = ["run_batch"]

_LOG = logging.getLogger("cocotb.tb.engine")


def _pattern(rng, cycles, stall):
    return (rng.random(cycles) >= stall).tolist()


async def run_batch(dut, context, codes, rng):
    """Load ``codes`` into the engine, run it, collect and check the outputs; return the
    report entry of the run."""
    config, images, spec = (context[key] for key in ("config", "images", "spec"))
    last = layer_records(images)[-1]
    batch = len(codes)
    words = pack_vectors(codes, config, vector_words(images), input_channels(images))
    expected = run_images(images, config, codes).reshape(-1).tolist()
    model = engine_cycles(config, images, batch)
    limit = 4 * (len(words) + model.compute + len(expected)) + 1000

    inputs = StreamSource(dut, "inputs", words, _pattern(rng, limit, spec["input_stall"]))
    start = StreamSource(dut, "start", [batch], [True] * limit)
    outputs = StreamSink(dut, "outputs", _pattern(rng, limit, spec["output_stall"]))
    first_valid = None
    started = time.perf_counter()
    cycle = 0
    while len(outputs.words) < len(expected) and cycle < limit:
        inputs.drive(cycle)
        if inputs.sent == len(words):
            start.drive(cycle)
        outputs.drive(cycle)
        await ReadOnly()
        inputs.sample(cycle)
        start.sample(cycle)
        outputs.sample(cycle)
        if first_valid is None and start.cycles and int(dut.outputs__valid.value):
            first_valid = cycle
        await RisingEdge(dut.clk)
        cycle += 1
    dut.start__valid.value = 0
    wall = time.perf_counter() - started

    code_bits = [word & 0xFF for word in outputs.words]
    got = unpack_outputs(code_bits, last["output_bits"], last["output_signed"])
    lasts = [word >> 8 & 1 for word in outputs.words]
    mismatches = sum(a != b for a, b in zip(got, expected)) + abs(len(got) - len(expected))
    mismatches += sum(flag != (index == len(expected) - 1) for index, flag in enumerate(lasts))
    if mismatches:
        _LOG.error("batch of %d: %d mismatches; got %s, expected %s", batch, mismatches,
                   got[:12], expected[:12])
    measured = int(dut.cycles.value)
    first_output = first_valid - start.cycles[0] if first_valid is not None else None
    cycle_mismatches = int(measured != model.compute) + int(first_output != model.first_output)
    if cycle_mismatches:
        _LOG.error("batch of %d: %d compute cycles (model %d), first output %s cycles after "
                   "start (model %d)", batch, measured, model.compute, first_output,
                   model.first_output)
    return {
        "batch": batch,
        "mismatches": mismatches,
        "cycle_mismatches": cycle_mismatches,
        "cycles_measured": measured,
        "cycles_modelled": model.compute,
        "layer_cycles_modelled": list(model.layers),
        "sim_cycles": cycle,
        "seconds": wall,
        "outputs": got,
    }


@cocotb.test()
async def engine_runs(dut):
    """Every batch of the spec: output codes bit-exact, cycle counts equal to the model."""
    spec = json.loads(Path(os.environ["SYSTOLIX_SPEC"]).read_text())
    config = ArrayConfig(**spec["config"])
    images = load_images(spec["images"])
    codes = np.load(spec["inputs"])
    context = {"config": config, "images": images, "spec": spec}
    rng = np.random.default_rng(spec["seed"])

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut, sources=("inputs", "start"), sinks=("outputs",))

    entries, offset = [], 0
    for batch in spec["batches"]:
        entries.append(await run_batch(dut, context, codes[offset:offset + batch], rng))
        offset += batch
        dut._log.info("%s", {k: v for k, v in entries[-1].items() if k != "outputs"})
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"runs": entries}, report)
    assert all(e["mismatches"] == 0 and e["cycle_mismatches"] == 0 for e in entries)
