# amaranth: UnusedElaboratable=no
"""The output streamer in Amaranth's simulator with random ready: the codes of the output memory
in the order the issuer writes them, ``last`` and ``done`` on the final one, at the cycles of its
cycle model."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.output_streamer import OutputStreamer
from systolix.memory_map import MemoryConfig
from systolix.numeric import CODE_BITS
from systolix.sim.golden import components

MEMORIES = MemoryConfig(weight_words=64, requant_words=32, program_words=32,
                        activation_words=16, batch=8, output_codes=64)


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_streams_the_output_memory(lanes):
    rng = np.random.default_rng(lanes)
    config = ArrayConfig(rows=4, cols=4)
    words = rng.integers(0, 1 << (CODE_BITS * lanes), MEMORIES.output_codes).tolist()
    m = Module()
    memory = m.submodules.memory = Memory(shape=CODE_BITS * lanes, depth=len(words), init=words)
    streamer = m.submodules.streamer = OutputStreamer(config, MEMORIES, lanes)
    wiring.connect(m, streamer.read, memory.read_port())
    model = components.OutputStreamer(lanes)
    runs = [(int(rng.integers(1, 8)), int(rng.integers(1, 9))) for _ in range(4)] + [(1, 1)]
    received = []

    async def bench(ctx):
        for batch, outputs in runs:
            ctx.set(streamer.batch_last, batch - 1)
            ctx.set(streamer.outputs_last, outputs - 1)
            codes, done = [], 0
            for cycle in range(3 * batch * outputs + 10):
                start = cycle == 1
                ready = bool(rng.random() < 0.6)
                ctx.set(streamer.start, start)
                ctx.set(streamer.outputs.ready, ready)
                assert ctx.get(streamer.outputs.valid) == model.valid
                assert ctx.get(streamer.done) == model.done(ready)
                done += model.done(ready)
                if model.valid:
                    addr, lane, last = model.reader.word
                    payload = ctx.get(streamer.outputs.payload)
                    assert (payload.code, payload.last) == \
                        (words[addr] >> (lane * CODE_BITS) & 0xff, last)
                    if ready:
                        codes.append((payload.code, payload.last))
                model.step(start, ready, batch, outputs)
                await ctx.tick()
            assert done == 1
            received.append(codes)

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    for (batch, outputs), codes in zip(runs, received):
        stride = -(-outputs // lanes)      # words a vector
        expected = [words[i * stride + c // lanes] >> (c % lanes * CODE_BITS) & 0xff
                    for i in range(batch) for c in range(outputs)]
        assert codes == [(code, int(n == len(expected) - 1)) for n, code in enumerate(expected)]


def test_refuses_bad_parameters():
    config = ArrayConfig(rows=4, cols=6)
    with pytest.raises(ValueError, match=r"^requant_lanes must be a power of two that divides "
                                         r"rows \(4\) and cols \(6\), not 4$"):
        OutputStreamer(config, MEMORIES, 4)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not None$"):
        OutputStreamer(config, None, 1)
