# amaranth: UnusedElaboratable=no
"""The inference engine in Amaranth's simulator: every output code against the golden model,
the engine's cycle counter against the cycle model, on random programs and arrays."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.config import ArrayConfig, code_range
from systolix.hw.engine import InferenceEngine
from systolix.timing import default_requant_lanes
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sw.stimulus import random_program
from systolix.memory_map import MemoryConfig, pack_vectors, unpack_outputs
from systolix.sw.pack import pack


def simulate(engine, batches, rng, stall=0.0):
    """Run consecutive batches of input codes through ``engine``; returns, per batch, the
    output codes (raw) with their ``last`` flags, the ``cycles`` output and the cycles from
    the start transfer to the first valid output."""
    runs = []

    async def bench(ctx):
        for codes in batches:
            for word in pack_vectors(codes, engine.config, engine.vector_words):
                while rng.random() < stall:
                    await ctx.tick()
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


def check_program(program, config, batch_sizes, rng, *, memories=MemoryConfig(), stall=0.0,
                  requant_lanes=None, filler=None):
    images = pack(program, config, memories)
    engine = InferenceEngine(config, images, requant_lanes=requant_lanes, filler=filler)
    first, last = program.layers[0], program.layers[-1]
    low, high = code_range(first.input_bits, first.input_signed)
    batches = [rng.integers(low, high, (size, first.weights.shape[0]), endpoint=True)
               for size in batch_sizes]
    for codes, (outputs, cycles, first_output) in zip(batches,
                                                      simulate(engine, batches, rng, stall)):
        expected = run_program(program, codes).reshape(-1).tolist()
        assert unpack_outputs([code for code, _ in outputs], last.output_bits,
                              last.output_signed) == expected
        assert [flag for _, flag in outputs] == [0] * (len(expected) - 1) + [1]
        model = engine_cycles(config, images, len(codes), requant_lanes)
        assert (cycles, first_output) == (model.compute, model.first_output)


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
    check_program(random_program(rng, config, sizes), config, [int(rng.integers(1, 7)), 1, 3],
                  rng, stall=0.3)


@pytest.mark.parametrize("rows, cols, lanes", [(2, 4, 2), (4, 4, 4), (8, 2, 2), (4, 4, 1)])
def test_requant_lanes(rows, cols, lanes):
    rng = np.random.default_rng(rows * 10 + cols + lanes)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         accumulator_bits=20)
    program = random_program(rng, config, [11, 9, 13, 5])
    check_program(program, config, [4, 2], rng, requant_lanes=lanes)


def test_saturate_and_small_memories():
    """Saturating accumulators (one K tile, where the array clamps every addition) and a batch
    limited by the output memory."""
    rng = np.random.default_rng(9)
    config = ArrayConfig(rows=12, cols=3, weight_bits=8, activation_bits=8, accumulator_bits=10,
                         overflow="saturate")
    program = random_program(rng, config, [12, 5, 7])
    memories = MemoryConfig(output_codes=21, batch=8)
    assert pack(program, config, memories).max_batch == 3
    check_program(program, config, [3, 3, 1], rng, memories=memories)


def test_filler_in_unused_memory_changes_nothing():
    """Board builds fill the unused words of the weight, requantization and program memories
    with pseudo-random words (for bitstream patching); the engine never reads them."""
    rng = np.random.default_rng(12)
    config = ArrayConfig(rows=3, cols=4, weight_bits=3, activation_bits=5, accumulator_bits=18)
    program = random_program(rng, config, [10, 7, 6])
    memories = MemoryConfig(weight_words=64, requant_words=32, program_words=32)
    check_program(program, config, [3, 1], rng, memories=memories, stall=0.3, filler=7)


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
