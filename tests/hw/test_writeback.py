# amaranth: UnusedElaboratable=no
"""The writeback in Amaranth's simulator: the host's words into buffer 0 from address 0, the
requantized codes into the lanes of the output buffer (from its output base, with bases) or the
output memory, masked to their widths, and ``layer_done`` with the final codes."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.writeback import Writeback
from systolix.memory_map import MemoryConfig
from systolix.numeric import CODE_BITS
from systolix.sim.golden import components

MEMORIES = MemoryConfig(weight_words=64, requant_words=32, program_words=32,
                        activation_words=16, batch=8, output_codes=16)


def harness(config, lanes, bases=False):
    m = Module()
    writeback = m.submodules.writeback = Writeback(config, MEMORIES, lanes, bases=bases)
    word_bits = config.rows * config.activation_bits
    buffers = [Memory(shape=word_bits, depth=MEMORIES.activation_words, init=[])
               for _ in range(2)]
    for index, buffer in enumerate(buffers):
        m.submodules[f"buffer_{index}"] = buffer
        wiring.connect(m, writeback.buffers[index],
                       buffer.write_port(granularity=config.activation_bits))
    output = m.submodules.output = Memory(shape=CODE_BITS * lanes,
                                          depth=MEMORIES.output_codes, init=[])
    wiring.connect(m, writeback.output, output.write_port(granularity=CODE_BITS))
    return m, writeback, buffers, output


@pytest.mark.parametrize("rows, lanes, bases", [(4, 1, False), (4, 2, True), (6, 2, False),
                                               (8, 4, True)])
def test_writes(rows, lanes, bases):
    rng = np.random.default_rng(rows + lanes)
    config = ArrayConfig(rows=rows, cols=lanes * 2, activation_bits=3)
    bits = config.activation_bits
    m, writeback, buffers, output = harness(config, lanes, bases)
    model = components.Writeback()
    depth = MEMORIES.activation_words
    expected = {"buffers": [[[0] * rows for _ in range(depth)] for _ in range(2)],
                "output": [[0] * lanes for _ in range(MEMORIES.output_codes)]}
    contents = {}

    async def bench(ctx):
        # The host's words, with a rewind (a start of an empty batch) half way.
        ctx.set(writeback.idle, 1)
        host = [[int(code) for code in rng.integers(0, 1 << bits, rows)] for _ in range(40)]
        for number, word in enumerate(host):
            rewind = number == 15
            valid = bool(rng.random() < 0.7)
            ctx.set(writeback.rewind, rewind)
            ctx.set(writeback.inputs.valid, valid)
            ctx.set(writeback.inputs.payload, sum(c << (r * bits) for r, c in enumerate(word)))
            assert ctx.get(writeback.inputs.ready)
            if valid:
                expected["buffers"][0][model.input_addr % depth] = word
            model.step(True, valid, rewind)
            await ctx.tick()
        ctx.set(writeback.rewind, 0)
        ctx.set(writeback.inputs.valid, 0)
        ctx.set(writeback.idle, 0)
        assert not ctx.get(writeback.inputs.ready)

        # Codes of four layers: the last one to the output memory.
        for last, output_buffer, base, output_bits in ((0, 1, 0, 3), (0, 0, 5, 2), (0, 0, 0, 4),
                                                       (1, 0, 7, 5), (1, 1, 0, 8)):
            for name, value in (("last", last), ("output_buffer", output_buffer),
                                ("output_base", base), ("output_bits", output_bits)):
                ctx.set(getattr(writeback, name), value)
            for number in range(30):
                valid = bool(rng.random() < 0.7)
                codes = [int(code) for code in rng.integers(-256, 256, lanes)]
                tag = {"addr": int(rng.integers(depth)), "lane": int(rng.integers(rows // lanes))
                       * lanes, "write": int(rng.integers(1 << lanes)),
                       "final": int(number == 29)}
                for stream, code in zip(writeback.codes, codes):
                    ctx.set(stream.valid, valid)
                    ctx.set(stream.payload, {"code": code, "tag": tag})
                assert ctx.get(writeback.layer_done) == (valid and tag["final"])
                assert ctx.get(writeback.layer_done) == model.layer_done(valid and tag["final"])
                for lane, code in enumerate(codes):
                    if not (valid and tag["write"] >> lane & 1):
                        continue
                    if last:
                        expected["output"][tag["addr"]][lane] = \
                            code & ((1 << output_bits) - 1) & 0xff
                    else:
                        addr = (tag["addr"] + base * bases) % depth
                        expected["buffers"][output_buffer][addr][tag["lane"] + lane] = \
                            code & ((1 << bits) - 1)
                await ctx.tick()
        for stream in writeback.codes:
            ctx.set(stream.valid, 0)
        await ctx.tick()
        contents["buffers"] = [[[ctx.get(buffer.data[addr]) >> (r * bits) & ((1 << bits) - 1)
                                 for r in range(rows)] for addr in range(depth)]
                               for buffer in buffers]
        contents["output"] = [[ctx.get(output.data[addr]) >> (lane * CODE_BITS) & 0xff
                               for lane in range(lanes)]
                              for addr in range(MEMORIES.output_codes)]

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert contents == expected


def test_refuses_bad_parameters():
    config = ArrayConfig(rows=4, cols=6)
    with pytest.raises(ValueError, match=r"^requant_lanes must be a power of two that divides "
                                         r"rows \(4\) and cols \(6\), not 3$"):
        Writeback(config, MEMORIES, 3)
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 1$"):
        Writeback(1, MEMORIES, 1)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not 1$"):
        Writeback(config, 1, 1)
