"""cocotb testbench of :class:`systolix.hw.array.SystolicArray` on the Verilog Amaranth emits.

Structure: a :class:`StreamSource` driver per input stream, a :class:`StreamSink` monitor on
``results``, the golden model (:func:`systolix.sim.golden.array_matmul`) and the cycle model
(:func:`systolix.sim.golden.cycles.simulate_array_cycles`) as the reference, and a
:class:`Checker` that compares every result bit-exactly and every transfer's cycle exactly.

All components advance in lock step from one clock loop: inputs are driven after each rising
edge, handshakes are sampled in the read-only phase before the next one. Parameters come from
the JSON file named by ``SYSTOLIX_SPEC``; the report goes to ``SYSTOLIX_REPORT``.
"""

import json
import logging
import os
import time

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix.codec import decode, encode
from systolix.config import ArrayConfig
from systolix.hw.array import results_layout
from systolix.memory_map import weights_layout
from systolix.sim.golden.cycles import simulate_array_cycles
from systolix.sim.testbench.scenarios import activation_words, make_stimulus

__all__ = ["StreamSource", "StreamSink", "Checker", "reset", "run_scenario", "run_stimulus"]


class StreamSource:
    """Drives a stream with a list of payload words, offering a beat when ``offer[cycle]``.

    Once offered, a beat stays valid until it is taken (stream rules); every transfer's cycle is
    recorded in ``cycles``.
    """

    def __init__(self, dut, name, words, offer):
        self.log = logging.getLogger(f"cocotb.tb.{name}")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.words, self.offer = words, offer
        self.sent = 0
        self.presenting = False
        self.cycles = []

    def drive(self, cycle):
        if not self.presenting and self.sent < len(self.words) and self.offer[cycle]:
            self.presenting = True
            self.payload.value = self.words[self.sent]
        self.valid.value = int(self.presenting)

    def sample(self, cycle):
        if self.presenting and int(self.ready.value):
            self.cycles.append(cycle)
            self.sent += 1
            self.presenting = False


class StreamSink:
    """Monitor of ``results``: ready when ``ready[cycle]``; records each transfer's payload."""

    def __init__(self, dut, name, ready):
        self.log = logging.getLogger(f"cocotb.tb.{name}")
        self.valid = getattr(dut, f"{name}__valid")
        self.ready_signal = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.ready = ready
        self.words = []
        self.cycles = []

    def drive(self, cycle):
        self.ready_signal.value = int(self.ready[cycle])

    def sample(self, cycle):
        if self.ready[cycle] and int(self.valid.value):
            self.words.append(self.payload.value.to_unsigned())
            self.cycles.append(cycle)


class Checker:
    """Compares the monitored results and transfer cycles with the golden and cycle models."""

    def __init__(self, config, stimulus, predicted_cycles):
        self.log = logging.getLogger("cocotb.tb.checker")
        self.config = config
        self.expected = [(tuple(int(v) for v in row), index == len(y) - 1)
                         for y in stimulus.expected for index, row in enumerate(y)]
        self.predicted = predicted_cycles
        self.mismatches = 0
        self.cycle_mismatches = 0

    def check(self, sources, sink):
        layout = results_layout(self.config)
        for index, word in enumerate(sink.words):
            result = decode(layout, word)
            got = (tuple(result["data"]), bool(result["last"]))
            if index >= len(self.expected) or got != self.expected[index]:
                self.mismatches += 1
                if self.mismatches <= 5:
                    want = self.expected[index] if index < len(self.expected) else None
                    self.log.error("result %d: got %s, expected %s", index, got, want)
        self.mismatches += abs(len(self.expected) - len(sink.words))
        measured = {"weights": sources[0].cycles, "activations": sources[1].cycles,
                    "results": sink.cycles}
        for stream, cycles in measured.items():
            model = list(getattr(self.predicted, stream))
            differ = sum(a != b for a, b in zip(cycles, model)) + abs(len(cycles) - len(model))
            if differ:
                self.log.error("%s: %d transfer cycles differ from the cycle model; first "
                               "measured %s, modelled %s", stream, differ, cycles[:8], model[:8])
            self.cycle_mismatches += differ


async def reset(dut, sources=("weights", "activations"), sinks=("results",)):
    """Hold ``dut`` in reset for two cycles with its input streams idle."""
    dut.rst.value = 1
    for name in sources:
        getattr(dut, f"{name}__valid").value = 0
        getattr(dut, f"{name}__payload").value = 0
    for name in sinks:
        getattr(dut, f"{name}__ready").value = 0
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


async def run_scenario(dut, config, spec):
    """Reset the array, run one scenario, check it; return its report entry."""
    return await run_stimulus(dut, config, spec["name"], spec["tiles"],
                              make_stimulus(config, spec))


async def run_stimulus(dut, config, name, tiles, stimulus, results=False):
    """Reset the array, run ``stimulus`` (``tiles``: the vectors of each weight tile), check
    it; return its report entry, with the partial sums of every vector (``results``, a list per
    tile) if ``results``."""
    weight_words = [encode(weights_layout(config), row) for w in stimulus.weights for row in w]
    activations = activation_words(config, stimulus)
    sources = [StreamSource(dut, "weights", weight_words, stimulus.weight_offer),
               StreamSource(dut, "activations", activations, stimulus.activation_offer)]
    sink = StreamSink(dut, "results", stimulus.result_ready)
    predicted = simulate_array_cycles(
        config, tiles, weight_offer=stimulus.weight_offer,
        activation_offer=stimulus.activation_offer, result_ready=stimulus.result_ready,
        planes=stimulus.planes)
    checker = Checker(config, stimulus, predicted)

    await reset(dut)
    started = time.perf_counter()
    cycle = 0
    while cycle < stimulus.cycles and len(sink.words) < len(activations):
        for component in (*sources, sink):
            component.drive(cycle)
        await ReadOnly()
        for component in (*sources, sink):
            component.sample(cycle)
        await RisingEdge(dut.clk)
        cycle += 1
    wall = time.perf_counter() - started
    checker.check(sources, sink)

    def mean_latency(accepted, delivered):
        pairs = list(zip(accepted, delivered))
        return sum(b - a for a, b in pairs) / len(pairs) if pairs else None

    entry = {
        "name": name,
        "vectors": len(activations),
        "overflows": stimulus.overflows,
        "mismatches": checker.mismatches,
        "cycle_mismatches": checker.cycle_mismatches,
        "cycles": cycle,
        "latency_measured": mean_latency(sources[1].cycles, sink.cycles),
        "latency_modelled": mean_latency(predicted.activations, predicted.results),
        "seconds": wall,
    }
    if results:
        layout = results_layout(config)
        vectors = [[int(v) for v in decode(layout, word)["data"]] for word in sink.words]
        ends = np.cumsum([0, *tiles])
        entry["results"] = [vectors[start:end] for start, end in zip(ends, ends[1:])]
    return entry


@cocotb.test()
async def array_scenarios(dut):
    """Every scenario of the spec: results bit-exact, every transfer on its modelled cycle."""
    spec = json.loads(open(os.environ["SYSTOLIX_SPEC"]).read())
    config = ArrayConfig(**spec["config"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    entries = []
    for scenario_spec in spec["scenarios"]:
        entries.append(await run_scenario(dut, config, scenario_spec))
        dut._log.info("%s", entries[-1])
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"scenarios": entries}, report)
    assert all(e["mismatches"] == 0 and e["cycle_mismatches"] == 0 for e in entries), entries
