# amaranth: UnusedElaboratable=no
"""The row unit in Amaranth's simulator: softmax and LayerNorm layers from their records, buffer
regions and (LayerNorm) requantization words, every code against the golden model, the tags
against the buffer and output memory layouts, and the cycle of the final code against the cycle
model."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.rowops import RowOps
from systolix.memory_map import (HEADER_WORDS, LAYER_KINDS, RECORD_WORDS, MemoryConfig,
                                 layer_records, pack_vectors, unpack_vectors)
from systolix.sim.golden import components
from systolix.sim.golden.program import run_layer
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_conv_program

MEMORIES = MemoryConfig(weight_words=512, requant_words=128, program_words=256,
                        activation_words=512, batch=64, output_codes=512)
_LAYERNORM = LAYER_KINDS.index("layernorm")


def run_row_op(config, lanes, images, index, codes, batch, *, spare=0):
    """Run layer ``index`` of ``images`` (a softmax or a LayerNorm layer) on a row unit built
    for rows ``spare`` codes longer than its own, its input ``codes`` in their buffer region;
    return its output codes and the cycles from ``start`` to the final code."""
    record = layer_records(images)[index]
    start = HEADER_WORDS + RECORD_WORDS * index
    fields = sum(word << (32 * number) for number, word in
                 enumerate(images.program[start:start + RECORD_WORDS]))
    depth = MEMORIES.activation_words
    contents = [[0] * depth, [0] * depth]
    base = record["input_base"]
    words = pack_vectors(codes, config, record["image_words"], record["channels"])
    contents[record["input_buffer"]][base:base + len(words)] = words
    layernorm = record["kind"] == _LAYERNORM
    longest = record["channels"] + spare
    m = Module()
    unit = m.submodules.unit = RowOps(
        config, MEMORIES, lanes, softmax_length=0 if layernorm else longest,
        layernorm_channels=longest if layernorm else 0)
    for number, words in enumerate(contents):
        memory = m.submodules[f"buffer_{number}"] = Memory(
            shape=config.rows * config.activation_bits, depth=depth, init=words)
        wiring.connect(m, unit.buffers[number], memory.read_port())
    if layernorm:
        requant = m.submodules.requant = Memory(shape=images.requant_width,
                                                depth=MEMORIES.requant_words,
                                                init=images.requant)
        wiring.connect(m, unit.constants, requant.read_port())
    out, buffer_words, finish = {}, {}, []
    rows = batch * record["positions"]

    async def bench(ctx):
        ctx.set(unit.layer.as_value(), fields)
        ctx.set(unit.rows_last, rows - 1)
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        ctx.set(unit.running, 1)
        model = components.RowOps(longest if layernorm else 0)
        model.step(True, record, batch)
        for cycle in range(1, 200000):
            port = unit.codes[0]
            if ctx.get(port.valid):
                tag = ctx.get(port.payload.tag)
                assert model.final == bool(tag.final)
                for lane, channel in enumerate(unit.codes):
                    code = ctx.get(channel.payload.code)
                    if tag.write >> lane & 1:
                        if record["last"]:
                            out[tag.addr * lanes + lane] = code
                        else:
                            buffer_words.setdefault(tag.addr, {})[tag.lane + lane] = code
                if tag.final:
                    finish.append(cycle)
                    break
            else:
                assert not model.final
            model.step(False, record, batch)
            await ctx.tick()

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    channels = record["outputs"]
    if record["last"]:
        per_vector = -(-channels // lanes) * lanes
        flat = np.array([out.get(address, 0) for address in range(rows * per_vector)])
        return flat.reshape(-1, per_vector)[:, :channels].reshape(batch, -1), finish
    c_tiles = -(-channels // config.rows)
    words = [[buffer_words.get(address, {}).get(lane, 0) for lane in range(config.rows)]
             for address in range(rows * c_tiles)]
    mask = (1 << config.activation_bits) - 1
    raw = [sum((code & mask) << (lane * config.activation_bits)
               for lane, code in enumerate(word)) for word in words]
    return unpack_vectors(raw, config, record["positions"] * c_tiles, channels), finish


CASES = [
    # rows, lanes, activation bits, signed, input map, layers, the row layer's index, spare
    (4, 2, 4, False, (2, 3, 5), [("conv", 6, {"largest_stride": 1}), ("softmax",),
                                 ("dense", 2)], 1, 0),
    (3, 1, 8, True, (2, 2, 3), [("conv", 7, {"largest_stride": 1}), ("softmax",)], 1, 3),
    (8, 2, 8, True, (1, 2, 3), [("conv", 32, {"largest_stride": 1}), ("layernorm",),
                                ("dense", 3)], 1, 0),
    (16, 2, 8, False, (1, 2, 3), [("conv", 32, {"largest_stride": 1}), ("layernorm",)], 1, 0),
    (4, 4, 4, False, (2, 2, 3), [("conv", 5, {"largest_stride": 1}), ("layernorm",)], 1, 2),
    (2, 2, 8, False, (1, 3, 2), [("conv", 1, {"largest_stride": 1}), ("layernorm",),
                                 ("dense", 2)], 1, 0),
]


@pytest.mark.parametrize("rows, lanes, bits, signed, shape, layers, index, spare", CASES)
def test_row_ops(rows, lanes, bits, signed, shape, layers, index, spare):
    """Rows of one to 32 codes (one to four buffer words of 2 to 16 codes, the last one
    partial), codes of 4 and 8 bits, a last layer (into the output memory) and hidden ones
    (into a buffer), units longer than the layer's rows."""
    rng = np.random.default_rng(rows * 10 + bits)
    config = ArrayConfig(rows=rows, cols=lanes, weight_bits=4, activation_bits=bits,
                         activation_signed=signed, accumulator_bits=24)
    program = random_conv_program(rng, config, shape, layers)
    batch = 2
    images = pack(program, config, MEMORIES)
    layer = program.layers[index]
    tensor = rng.integers(*config.activation_range, (batch, layer.inputs), endpoint=True)
    codes, finish = run_row_op(config, lanes, images, index, tensor, batch, spare=spare)
    expected = run_layer(layer, tensor)
    np.testing.assert_array_equal(codes, expected)
    if layer.shape[2] > 1:
        assert len(set(codes.ravel().tolist())) > 1
    assert finish
