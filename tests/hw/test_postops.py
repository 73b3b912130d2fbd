# amaranth: UnusedElaboratable=no
"""The post-op unit in Amaranth's simulator: max pooling (overlapping and padded windows), add and
GELU layers from their records and buffer regions, every code through the requantization units'
arithmetic against the golden model, the tags against the buffer and output memory layouts, and
the cycle of the final codes against the cycle model."""

import dataclasses

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.postops import PostOps
from systolix.layer import GELU_CLIP_MAX, GELU_CONSTANT_MAX, GeluLayer, MaxPoolLayer, Window
from systolix.memory_map import (HEADER_WORDS, LAYER_KINDS, RECORD_WORDS, MemoryConfig,
                                 layer_records, pack_vectors, unpack_vectors)
from systolix.sim.golden import components
from systolix.sim.golden.program import requantize, run_layer
from systolix.sw.pack import pack
from systolix.sw.models import digits_vit
from systolix.sw.stimulus import program_of, random_conv_program
from systolix.sw.vit import lower_vit

MEMORIES = MemoryConfig(weight_words=512, requant_words=64, program_words=256,
                        activation_words=512, batch=64, output_codes=512)


def run_post_op(config, lanes, images, index, tensors, batch):
    """Run layer ``index`` of ``images`` (a max pooling or an add layer) on the unit, its input
    ``tensors`` (codes, per source) in their buffer regions; return its output codes and the
    cycles from ``start`` to the final codes."""
    record = layer_records(images)[index]
    start = HEADER_WORDS + RECORD_WORDS * index
    fields = sum(word << (32 * number) for number, word in
                 enumerate(images.program[start:start + RECORD_WORDS]))
    depth = MEMORIES.activation_words
    contents = [[0] * depth, [0] * depth]
    regions = [(record["input_buffer"], record["input_base"]),
               (record["second_buffer"], record["second_base"])]
    for codes, (buffer, base) in zip(tensors, regions):
        words = pack_vectors(codes, config, record["image_words"], record["channels"])
        contents[buffer][base:base + len(words)] = words
    m = Module()
    unit = m.submodules.unit = PostOps(config, MEMORIES, lanes,
                                       gelu=record["kind"] == LAYER_KINDS.index("gelu"))
    for number, words in enumerate(contents):
        memory = m.submodules[f"buffer_{number}"] = Memory(
            shape=config.rows * config.activation_bits, depth=depth, init=words)
        wiring.connect(m, unit.buffers[number], memory.read_port())
    codes, words, finish = {}, {}, []

    async def bench(ctx):
        ctx.set(unit.layer.as_value(), fields)
        ctx.set(unit.batch_last, batch - 1)
        ctx.set(unit.start, 1)
        await ctx.tick()
        ctx.set(unit.start, 0)
        ctx.set(unit.running, 1)
        model = components.PostOps(config.rows, lanes)
        model.step(True, record, batch)
        for cycle in range(1, 20000):
            if ctx.get(unit.channels[0].valid):
                tag = ctx.get(unit.channels[0].payload.tag)
                assert model.final == bool(tag.final)
                for lane, channel in enumerate(unit.channels):
                    payload = ctx.get(channel.payload)
                    assert payload.bias == 0
                    if tag.write >> lane & 1:
                        code = int(requantize(payload.acc, 0, payload.multiplier, payload.shift,
                                              record["output_zero_point"], record["output_low"],
                                              record["output_high"],
                                              ("half_up", "half_even")[record["rounding"]]))
                        if record["last"]:
                            codes[tag.addr * lanes + lane] = code
                        else:
                            words.setdefault(tag.addr, {})[tag.lane + lane] = code
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
        flat = np.array([codes.get(address, 0) for address in
                         range(batch * record["positions"] * per_vector)])
        return flat.reshape(-1, per_vector)[:, :channels].reshape(batch, -1), finish
    c_tiles = -(-channels // config.rows)
    rows = [[words.get(address, {}).get(lane, 0) for lane in range(config.rows)]
            for address in range(batch * record["positions"] * c_tiles)]
    mask = (1 << config.activation_bits) - 1
    raw = [sum((code & mask) << (lane * config.activation_bits)
               for lane, code in enumerate(row)) for row in rows]
    return unpack_vectors(raw, config, record["positions"] * c_tiles, channels), finish


CASES = [
    # rows, lanes, signed, layers, the post-op layer's index
    (4, 2, False, [("conv", 5, {"largest_stride": 1}), ("max_pool", {"largest_stride": 2}),
                   ("dense", 2)], 1),
    (3, 1, True, [("conv", 4, {"largest_stride": 1}), ("conv", 4, {"largest_kernel": 1,
                                                                   "largest_stride": 1}),
                  ("add", 0), ("dense", 2)], 2),
    (4, 4, True, [("conv", 6, {"largest_stride": 1, "largest_kernel": 1}), ("add", -1)], 1),
    (2, 2, False, [("conv", 3, {"largest_stride": 1}), ("max_pool", {})], 1),
    (4, 2, False, [("conv", 5, {"largest_stride": 1}), ("gelu",), ("dense", 2)], 1),
    (3, 1, True, [("conv", 4, {"largest_stride": 1}), ("gelu",)], 1),
]


@pytest.mark.parametrize("rows, lanes, signed, layers, index", CASES)
def test_post_ops(rows, lanes, signed, layers, index):
    rng = np.random.default_rng(rows * 10 + index)
    config = ArrayConfig(rows=rows, cols=lanes, weight_bits=4, activation_bits=4,
                         activation_signed=signed, accumulator_bits=20)
    shape = (5, 4, 3) if layers[-1] != ("add", -1) else (3, 3, 6)
    program = random_conv_program(rng, config, shape, layers)
    batch = 2
    images = pack(program, config, MEMORIES)
    low, high = config.activation_range
    tensors = [rng.integers(low, high, (batch, program.layers[index].inputs), endpoint=True)
               for _ in program.sources[index]]
    codes, finish = run_post_op(config, lanes, images, index, tensors, batch)
    np.testing.assert_array_equal(codes, run_layer(program.layers[index], *tensors))
    assert len(set(codes.ravel().tolist())) > 1
    assert finish


def test_overlapping_padded_pool():
    """3x3 windows, stride 2, padding 1 on every side (the ResNet stem's pool): every output
    reads some pixels of its neighbours and the corners read padding, signed codes."""
    config = ArrayConfig(rows=4, cols=2, weight_bits=4, activation_bits=4,
                         activation_signed=True, accumulator_bits=20)
    rng = np.random.default_rng(9)
    program = random_conv_program(rng, config, (5, 5, 6), [
        ("conv", 6, {"largest_kernel": 1, "largest_stride": 1}),
        ("window", 5, Window(5, 5, 6, 1, 1)), ("max_pool", {})])
    low, _ = config.activation_range
    pool = MaxPoolLayer(Window(5, 5, 5, 3, 3, 2, 2, 1, 1, 1, 1, groups=5, pad_code=low), 4, True)
    program = program_of(program.layers[:2] + (pool,))
    images = pack(program, config, MEMORIES)
    tensor = rng.integers(low, 0, (3, pool.inputs), endpoint=True)   # padding never wins
    codes, _ = run_post_op(config, 2, images, 2, [tensor], 3)
    np.testing.assert_array_equal(codes, run_layer(pool, tensor))


def test_gelu_over_every_code():
    """GELU layers on the unit over every 8-bit input code: the digits ViT's two (signed codes,
    its calibrated constants) and one with the largest constant and clip, whose products reach
    the 32 bits of ``P``."""
    model, data = digits_vit()
    vit = lower_vit(model, data.x_train[:200], weight_bits=4, activation_bits=4)
    layers = [layer for layer in vit.layers if isinstance(layer, GeluLayer)]
    assert len(layers) == 2
    layers.append(dataclasses.replace(layers[0], input_zero_point=-128, clip=GELU_CLIP_MAX,
                                      constant=GELU_CONSTANT_MAX, multiplier=65535, shift=40,
                                      output_bits=8, output_signed=True, output_zero_point=-100,
                                      output_low=-128, output_high=127))
    config = ArrayConfig(rows=4, cols=2, weight_bits=4, activation_bits=8,
                         activation_signed=True, accumulator_bits=20)
    codes = np.arange(-128, 128).reshape(1, -1)
    for layer in layers:
        layer = dataclasses.replace(layer, shape=(4, 4, 16))
        images = pack(program_of([layer]), config, MEMORIES)
        result, finish = run_post_op(config, 2, images, 0, [codes], 1)
        expected = run_layer(layer, codes)
        np.testing.assert_array_equal(result, expected)
        assert len(set(expected.ravel().tolist())) > 8
        assert finish
