# amaranth: UnusedElaboratable=no
"""The K-tile accumulator in Amaranth's simulator with random valid and ready: its sums against
the golden model's accumulation over the K tiles (wrapping and saturating), its handshakes
against its cycle model."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.accumulator import KTileAccumulator
from systolix.memory_map import MemoryConfig
from systolix.sim.golden import components
from systolix.sim.golden.array import accumulate, array_matmul, wrap
from systolix.sw.stimulus import random_codes

MEMORIES = MemoryConfig(weight_words=64, requant_words=32, program_words=32,
                        activation_words=48, batch=8, output_codes=64)


def layer_results(config, rng, bounds):
    """Random codes of a layer; returns the array's results in the order it sends them (per
    output tile, per K tile, per vector) and the golden sums over all K per output tile and
    vector, and the same accumulated tile by tile."""
    inputs = bounds.k_tiles * config.rows
    x = random_codes(rng, (bounds.batch, inputs), config.activation_bits,
                     config.activation_signed)
    results, golden, tiled = [], [], []
    for _ in range(bounds.n_tiles):
        w = random_codes(rng, (inputs, config.cols), config.weight_bits, config.weight_signed)
        tiles = [array_matmul(config, x[:, t * config.rows:(t + 1) * config.rows],
                              w[t * config.rows:(t + 1) * config.rows])
                 for t in range(bounds.k_tiles)]
        results += [tile[i] for tile in tiles for i in range(bounds.batch)]
        golden += list(accumulate(x, w, config.accumulator_bits, config.overflow))
        # The K tiles' results added in order, wrapped or clamped after every addition.
        tiled += [accumulate(np.ones((1, bounds.k_tiles)), np.array([t[i] for t in tiles]),
                             config.accumulator_bits, config.overflow)[0]
                  for i in range(bounds.batch)]
    return results, golden, tiled


def unpack_sums(config, bits):
    mask = (1 << config.accumulator_bits) - 1
    return wrap([(bits >> (c * config.accumulator_bits)) & mask for c in range(config.cols)],
                config.accumulator_bits)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_sums_over_k_tiles(overflow):
    rng = np.random.default_rng(len(overflow))
    config = ArrayConfig(rows=3, cols=2, weight_bits=4, activation_bits=4, accumulator_bits=8,
                         overflow=overflow)
    accumulator = KTileAccumulator(config, MEMORIES)
    model = components.KTileAccumulator()
    layers = [components.Bounds(int(rng.integers(1, 9)), int(rng.integers(1, 6)),
                                int(rng.integers(1, 4))) for _ in range(5)]
    layers += [components.Bounds(8, 1, 2), components.Bounds(1, 4, 1)]
    expected, received = [], []

    async def bench(ctx):
        for bounds in layers:
            results, golden, tiled = layer_results(config, rng, bounds)
            if overflow == "wrap":
                assert [list(v) for v in golden] == [list(v) for v in tiled]
            expected.append([list(v) for v in tiled])
            for name, value in (("batch_last", bounds.batch - 1),
                                ("k_last", bounds.k_tiles - 1), ("n_last", bounds.n_tiles - 1)):
                ctx.set(getattr(accumulator, name), value)
            ctx.set(accumulator.running, 0)
            for _ in range(2):
                model.step(False, False, bounds)
                await ctx.tick()
            ctx.set(accumulator.running, 1)
            sums, presenting = [], False
            while len(sums) < bounds.batch * bounds.n_tiles:
                if not presenting and results and rng.random() < 0.7:
                    presenting = True
                    ctx.set(accumulator.results.payload,
                            {"data": [int(v) for v in results[0]], "last": 0})
                ctx.set(accumulator.results.valid, presenting)
                ready = bool(rng.random() < 0.6)
                ctx.set(accumulator.sums.ready, ready)
                assert ctx.get(accumulator.results.ready) == model.ready(True, ready, bounds)
                valid = ctx.get(accumulator.sums.valid)
                assert valid == model.sums_valid(presenting, True, bounds)
                if valid and ready:
                    sums.append(list(unpack_sums(config, ctx.get(accumulator.sums.payload))))
                take = presenting and ctx.get(accumulator.results.ready)
                if take:
                    results.pop(0)
                    presenting = False
                model.step(take, True, bounds)
                await ctx.tick()
            ctx.set(accumulator.results.valid, 0)
            received.append(sums)

    simulator = Simulator(accumulator)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert received == expected
    if overflow == "saturate":        # the clamps were exercised
        limit = (1 << (config.accumulator_bits - 1)) - 1
        assert any(abs(v) >= limit for layer in expected for vector in layer for v in vector)


def test_not_ready_while_not_running():
    config = ArrayConfig(rows=2, cols=2)
    accumulator = KTileAccumulator(config, MEMORIES)

    async def bench(ctx):
        ctx.set(accumulator.results.valid, 1)
        ctx.set(accumulator.sums.ready, 1)
        for _ in range(3):
            assert not ctx.get(accumulator.results.ready)
            assert not ctx.get(accumulator.sums.valid)
            await ctx.tick()

    simulator = Simulator(accumulator)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()


def test_refuses_bad_parameters():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not None$"):
        KTileAccumulator(None, MEMORIES)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not 'x'$"):
        KTileAccumulator(ArrayConfig(rows=2, cols=2), "x")
