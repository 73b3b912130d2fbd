# amaranth: UnusedElaboratable=no
"""The inference engine in Amaranth's simulator: every output code against the golden model,
the engine's cycle counter against the cycle model, on random programs and arrays."""

import dataclasses

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.config import ArrayConfig, code_range
from systolix.hw.engine import InferenceEngine
from systolix.timing import default_requant_lanes
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.layer import IntegerLayer, MatMulLayer, Window
from systolix.sw.stimulus import (live_constants, program_of, random_attention_program,
                                   random_conv_program, random_program)
from systolix.memory_map import MemoryConfig, input_channels, pack_vectors, unpack_outputs
from systolix.sw.pack import pack


def simulate(engine, batches, rng, stall=0.0):
    """Run consecutive batches of input codes through ``engine``; returns, per batch, the
    output codes (raw) with their ``last`` flags, the ``cycles`` output and the cycles from
    the start transfer to the first valid output."""
    runs = []

    async def bench(ctx):
        for codes in batches:
            for word in pack_vectors(codes, engine.config, engine.vector_words,
                                     input_channels(engine.images)):
                while rng.random() < stall:
                    ctx.set(engine.inputs.valid, 0)
                    await ctx.tick()
                assert ctx.get(engine.inputs.ready)
                ctx.set(engine.inputs.valid, 1)
                ctx.set(engine.inputs.payload, word)
                await ctx.tick()
            ctx.set(engine.inputs.valid, 0)
            ctx.set(engine.start.valid, 1)
            ctx.set(engine.start.payload, len(codes))
            await ctx.tick()
            ctx.set(engine.start.valid, 0)
            outputs, first_valid, cycle = [], None, 0
            while not outputs or not outputs[-1][1]:
                ready = rng.random() >= stall
                ctx.set(engine.outputs.ready, ready)
                cycle += 1
                valid, code, last = ctx.get(engine.outputs.valid), \
                    ctx.get(engine.outputs.payload.code), ctx.get(engine.outputs.payload.last)
                if valid and first_valid is None:
                    first_valid = cycle
                if valid and ready:
                    outputs.append((code, last))
                await ctx.tick()
            ctx.set(engine.outputs.ready, 0)
            runs.append((outputs, ctx.get(engine.cycles), first_valid))

    simulator = Simulator(engine)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    return runs


def live_program(rng, config, sizes):
    """:func:`random_program` with requantization constants that spread the codes over their
    range (the random ones clamp nearly every code to one value)."""
    return program_of([live_constants(rng, layer, config.accumulator_bits)
                       for layer in random_program(rng, config, sizes).layers])


def check_program(program, config, batch_sizes, rng, *, memories=MemoryConfig(), stall=0.0,
                  requant_lanes=None, filler=None, windows=None):
    """Runs the batches through the engine; returns how many distinct codes it sent."""
    images = pack(program, config, memories)
    engine = InferenceEngine(config, images, requant_lanes=requant_lanes, filler=filler,
                             windows=windows)
    first, last = program.layers[0], program.layers[-1]
    low, high = code_range(first.input_bits, first.input_signed)
    batches = [rng.integers(low, high, (size, program.inputs), endpoint=True)
               for size in batch_sizes]
    seen = set()
    for codes, (outputs, cycles, first_output) in zip(batches,
                                                      simulate(engine, batches, rng, stall)):
        expected = run_program(program, codes).reshape(-1).tolist()
        assert unpack_outputs([code for code, _ in outputs], last.output_bits,
                              last.output_signed) == expected
        assert [flag for _, flag in outputs] == [0] * (len(expected) - 1) + [1]
        model = engine_cycles(config, images, len(codes), requant_lanes)
        assert (cycles, first_output) == (model.compute, model.first_output)
        seen.update(expected)
    return len(seen)


@pytest.mark.parametrize("seed", range(6))
def test_random_programs(seed):
    rng = np.random.default_rng(seed)
    rows, cols = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=int(rng.integers(1, 9)),
                         weight_signed=bool(rng.integers(2)),
                         activation_bits=int(rng.integers(1, 9)),
                         activation_signed=bool(rng.integers(2)),
                         accumulator_bits=int(rng.integers(12, 33)))
    sizes = rng.integers(1, 3 * max(rows, cols), size=int(rng.integers(2, 5))).tolist()
    assert check_program(live_program(rng, config, sizes), config,
                         [int(rng.integers(2, 7)), 1, 3], rng, stall=0.3,
                         windows=bool(seed % 2)) > 1


@pytest.mark.parametrize("rows, cols, lanes", [(2, 4, 2), (4, 4, 4), (8, 2, 2), (4, 4, 1)])
def test_requant_lanes(rows, cols, lanes):
    rng = np.random.default_rng(rows * 10 + cols + lanes)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         accumulator_bits=20)
    program = live_program(rng, config, [11, 9, 13, 5])
    assert check_program(program, config, [4, 2], rng, requant_lanes=lanes) > 1


def test_saturate_and_small_memories():
    """Saturating accumulators (one K tile, where the array clamps every addition) and a batch
    limited by the output memory."""
    rng = np.random.default_rng(9)
    config = ArrayConfig(rows=12, cols=3, weight_bits=8, activation_bits=8, accumulator_bits=10,
                         overflow="saturate")
    program = live_program(rng, config, [12, 5, 7])
    memories = MemoryConfig(output_codes=21, batch=8)
    assert pack(program, config, memories).max_batch == 3
    assert check_program(program, config, [3, 3, 1], rng, memories=memories) > 1


def test_as_many_k_tiles_as_the_weight_memory_holds():
    """A layer of the most K tiles the weight memory holds, a power of two (here 1), in
    activation buffers that hold more: every vector of the batch is its own (Hypothesis found
    this, tests/sim/test_fuzz.py)."""
    rng = np.random.default_rng(5)
    config = ArrayConfig(rows=3, cols=2, weight_bits=1, activation_bits=3,
                         activation_signed=True, accumulator_bits=5)
    program = program_of([IntegerLayer(
        weights=np.array([[0, -1]]), bias=np.zeros(2, dtype=np.int64),
        multiplier=np.array([65535, 22560]), shift=np.array([15, 14]), output_zero_point=2,
        output_low=-4, output_high=3, input_bits=3, input_signed=True, weight_bits=1,
        weight_signed=True, output_bits=3, output_signed=True, accumulator_bits=5,
        overflow="wrap")])
    assert len(set(run_program(program, np.arange(-4, 4)[:, None])[:, 1].tolist())) > 3
    memories = MemoryConfig(weight_words=3, requant_words=2, program_words=27,
                            activation_words=6, batch=4, output_codes=10)
    check_program(program, config, [4, 3, 4], rng, memories=memories)


def test_filler_in_unused_memory_changes_nothing():
    """Board builds fill the unused words of the weight, requantization and program memories
    with pseudo-random words (for bitstream patching); the engine never reads them."""
    rng = np.random.default_rng(12)
    config = ArrayConfig(rows=3, cols=4, weight_bits=3, activation_bits=5, accumulator_bits=18)
    program = live_program(rng, config, [10, 7, 6])
    memories = MemoryConfig(weight_words=64, requant_words=32, program_words=64)
    assert check_program(program, config, [3, 1], rng, memories=memories, stall=0.3,
                         filler=7) > 1


@pytest.mark.parametrize("seed, rows, cols, overflow", [
    (0, 3, 2, "wrap"), (1, 2, 4, "wrap"), (2, 4, 4, "saturate"), (3, 1, 3, "wrap")])
def test_convolutions(seed, rows, cols, overflow):
    """Chains of random convolutions (kernels up to 3x3, strides 1 and 2, any padding with its
    pad code, grouped and depthwise, halves up and to even) and a dense layer on their map."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         activation_signed=bool(seed % 2),
                         accumulator_bits=32 if overflow == "saturate" else 14,
                         overflow=overflow)
    program = random_conv_program(rng, config, (5, 4, 3), [
        ("conv", 4), ("conv", 4, {"largest_stride": 2}), ("dense", 3)])
    assert any(layer.window.stride_height > 1 or layer.window.stride_width > 1
               for layer in program.layers[:2]) or seed
    assert check_program(program, config, [2, 1], rng, stall=0.3) > 1


@pytest.mark.parametrize("seed, rows, cols", [(0, 2, 2), (3, 4, 2)])
def test_pooling_and_residual_adds(seed, rows, cols):
    """Graphs: a max pooling layer between convolutions, a residual add whose skip spans two
    layers, and an add of the program's input as the last layer (to the output memory)."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         activation_signed=bool(seed), accumulator_bits=16)
    program = random_conv_program(rng, config, (4, 4, 3), [
        ("conv", 3, {"largest_stride": 1}), ("max_pool", {"largest_stride": 1}),
        ("conv", 3, {"largest_kernel": 1, "largest_stride": 1}),
        ("conv", 3, {"largest_kernel": 1, "largest_stride": 1}), ("add", 1)])
    assert check_program(program, config, [2, 1], rng, stall=0.3) > 1
    program = random_conv_program(rng, config, (2, 3, 3), [
        ("conv", 3, {"largest_kernel": 1, "largest_stride": 1}), ("add", -1)])
    assert check_program(program, config, [3], rng, stall=0.3) > 1


def test_depthwise_and_padding():
    """A depthwise 3x3 convolution with padding 1 on every side and stride 2, then a 1x1
    convolution whose channels span K tiles, rounding halves to even."""
    rng = np.random.default_rng(21)
    config = ArrayConfig(rows=2, cols=3, weight_bits=3, activation_bits=4, accumulator_bits=16)
    depthwise = Window(5, 5, 3, 3, 3, 2, 2, 1, 1, 1, 1, groups=3, pad_code=7)
    pointwise = Window(3, 3, 3, 1, 1)
    program = random_conv_program(rng, config, (5, 5, 3), [
        ("window", 3, depthwise), ("window", 5, pointwise)], rounding="half_even")
    assert check_program(program, config, [3, 2], rng, stall=0.2) > 1


def test_more_k_tiles_than_activation_words():
    """A 3x3 convolution with padding on a 1x1 map: 9 K tiles, more than the 4 words of each
    activation buffer (the K tile counters are as wide as the weight memory needs)."""
    rng = np.random.default_rng(4)
    config = ArrayConfig(rows=2, cols=2, weight_bits=4, activation_bits=4, accumulator_bits=16)
    window = Window(1, 1, 2, 3, 3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1,
                    pad_code=3)
    program = random_conv_program(rng, config, (1, 1, 2), [("window", 2, window)])
    memories = MemoryConfig(weight_words=32, requant_words=8, program_words=32,
                            activation_words=4, batch=4, output_codes=16)
    assert pack(program, config, memories).max_batch == 4
    assert check_program(program, config, [4, 1], rng, memories=memories) > 1


def test_default_requant_lanes():
    assert default_requant_lanes(ArrayConfig(rows=8, cols=8)) == 2
    assert default_requant_lanes(ArrayConfig(rows=8, cols=3)) == 1


def test_refuses_bad_parameters():
    config = ArrayConfig(rows=4, cols=6)
    images = pack(random_program(np.random.default_rng(0), config, [5, 3]), config)
    with pytest.raises(ValueError, match=r"^requant_lanes must be a power of two that divides "
                                         r"rows \(4\) and cols \(6\), not 4$"):
        InferenceEngine(config, images, requant_lanes=4)
    with pytest.raises(ValueError, match=r"^the images were packed for another array than "
                                         r"4x3-W4s-A4u-P16-wrap$"):
        InferenceEngine(ArrayConfig(rows=4, cols=3), images)
    with pytest.raises(TypeError, match=r"^images must be MemoryImages"):
        InferenceEngine(config, [1, 2, 3])
    rng = np.random.default_rng(1)
    convolution = pack(random_conv_program(rng, config, (3, 3, 2), [("conv", 2)]), config)
    with pytest.raises(ValueError, match=r"^windows must be True or False \(True for images "
                                         r"with convolutions\), not False$"):
        InferenceEngine(config, convolution, windows=False)
    assert InferenceEngine(config, convolution).windows
    assert not InferenceEngine(config, images).windows


def test_start_with_no_vectors_rewinds_the_input():
    """A batch size of 0 runs nothing; the next words go to address 0 again."""
    rng = np.random.default_rng(3)
    config = ArrayConfig(rows=3, cols=2)
    program = random_program(rng, config, [5, 4])
    engine = InferenceEngine(config, pack(program, config))
    stale, codes = (rng.integers(0, 16, (2, 5)) for _ in range(2))
    outputs = []

    async def bench(ctx):
        for batch in (stale, None, codes):
            if batch is not None:
                for word in pack_vectors(batch, config, engine.vector_words):
                    ctx.set(engine.inputs.valid, 1)
                    ctx.set(engine.inputs.payload, word)
                    await ctx.tick()
                ctx.set(engine.inputs.valid, 0)
                continue
            ctx.set(engine.start.valid, 1)
            ctx.set(engine.start.payload, 0)
            await ctx.tick()
            ctx.set(engine.start.valid, 0)
            assert not ctx.get(engine.busy)
        ctx.set(engine.start.valid, 1)
        ctx.set(engine.start.payload, len(codes))
        await ctx.tick()
        ctx.set(engine.start.valid, 0)
        ctx.set(engine.outputs.ready, 1)
        while not outputs or not outputs[-1][1]:
            if ctx.get(engine.outputs.valid):
                outputs.append((ctx.get(engine.outputs.payload.code),
                                ctx.get(engine.outputs.payload.last)))
            await ctx.tick()

    simulator = Simulator(engine)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    last = program.layers[-1]
    assert unpack_outputs([code for code, _ in outputs], last.output_bits, last.output_signed) \
        == run_program(program, codes).reshape(-1).tolist()


def mixed_program(rng, config, sizes, bits):
    """:func:`live_program` whose layer ``l`` takes ``bits[l]`` = (bits, signed) input codes
    (the hidden layers' output codes follow)."""
    layers = random_program(rng, config, sizes).layers
    outputs = [*bits[1:], (layers[-1].output_bits, layers[-1].output_signed)]
    layers = [dataclasses.replace(layer, input_bits=bits[index][0], input_signed=bits[index][1],
                                  output_bits=output[0], output_signed=output[1],
                                  output_zero_point=code_range(*output)[0],
                                  output_low=code_range(*output)[0],
                                  output_high=code_range(*output)[1])
              for index, (layer, output) in enumerate(zip(layers, outputs))]
    return program_of([live_constants(rng, layer, config.accumulator_bits)
                       for layer in layers])


@pytest.mark.parametrize("name, bits", [
    ("3x4-W4s-A4u-P14-wrap-serial", [(4, False), (2, False), (4, False), (1, False)]),
    # An unsigned layer on signed codes takes one plane more (its sign plane is 0).
    ("4x2-W3s-A4s-P12-wrap-serial", [(4, True), (2, False), (3, True)]),
])
def test_bit_serial_cells_mixed_precision(name, bits):
    """Bit-serial cells: each layer's vectors take as many cycles as its input bits, bit-exact
    and cycle-exact; 2-bit layers make the run shorter than 4-bit ones."""
    rng = np.random.default_rng(len(bits))
    config = ArrayConfig.from_name(name)
    program = mixed_program(rng, config, [9, 7, 11, 5][:len(bits) + 1], bits)
    assert check_program(program, config, [3, 1], rng, stall=0.2, windows=len(bits) == 3) > 1
    wide = mixed_program(np.random.default_rng(len(bits)), config,
                         [9, 7, 11, 5][:len(bits) + 1], [bits[0]] * len(bits))
    assert engine_cycles(config, pack(program, config), 3).compute \
        < engine_cycles(config, pack(wide, config), 3).compute


@pytest.mark.parametrize("seed, size, tokens, heads, channels, head_width, weight_bits", [
    (0, 4, 5, 2, 3, 6, 5),      # several K and output tiles, a head width past a tile
    (1, 4, 3, 1, 4, 4, 4),      # W4s: zb = 8, b - 8 on the weight path
    (2, 2, 3, 3, 2, 3, 5),      # three heads
])
def test_matmul_layers(seed, size, tokens, heads, channels, head_width, weight_bits):
    """Attention's products on the array (Q K^T with the transposed K, softmax-less S V),
    their stationary operands from the activation buffers: every output code and the cycle
    count of batches of 1 to 3 inputs."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=size, cols=size, weight_bits=weight_bits, activation_bits=4,
                         accumulator_bits=16)
    program = random_attention_program(rng, config, tokens, heads, channels, head_width)
    assert check_program(program, config, [3, 1], rng, stall=0.3) > 1
    # A layer's cycles end with its last pass.
    assert len(engine_cycles(config, pack(program, config), 3).layers) == len(program.layers)


@pytest.mark.slow
def test_vit_attention():
    """The digits ViT's first attention as lowered (``Q``, ``K``, ``V`` projections, ``Q K^T``,
    ``S V``, the output projection; a stand-in for the softmax) on an 8x8 W5s/A8s array, on
    the LayerNorm codes of two test images: every code and the cycle count."""
    from systolix.sim.golden.program import run_layers
    from systolix.sw.models import digits_vit
    from systolix.sw.stimulus import vit_attention_program
    from systolix.sw.vit import lower_vit

    model, data = digits_vit()
    vit = lower_vit(model, data.x_train[:200], 4, 4)
    config = ArrayConfig(rows=8, cols=8, weight_bits=5, activation_bits=8,
                         activation_signed=True, accumulator_bits=16)
    program = vit_attention_program(vit, 0, config)
    scores = next(index for index, layer in enumerate(vit.layers)
                  if isinstance(layer, MatMulLayer))
    norm = vit.sources[vit.sources[scores][0]][0]
    codes = run_layers(vit.layers[:norm + 1], vit.encode_input(data.x_test[:2]),
                       vit.sources[:norm + 1])
    images = pack(program, config)
    engine = InferenceEngine(config, images)
    ((outputs, cycles, first_output),) = simulate(engine, [codes], np.random.default_rng(0))
    assert unpack_outputs([code for code, _ in outputs], 8, True) \
        == run_program(program, codes).reshape(-1).tolist()
    model_cycles = engine_cycles(config, images, 2)
    assert (cycles, first_output) == (model_cycles.compute, model_cycles.first_output)
