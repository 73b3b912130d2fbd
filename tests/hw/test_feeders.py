# amaranth: UnusedElaboratable=no
"""The weight and activation feeders in Amaranth's simulator with random back-pressure: the words
in the order of the memory map, every one once, at the cycles of their cycle models."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.feeders import ActivationFeeder, WeightFeeder
from systolix.memory_map import MemoryConfig
from systolix.sim.golden import components

CONFIG = ArrayConfig(rows=3, cols=2, weight_bits=5, activation_bits=3)
MEMORIES = MemoryConfig(weight_words=64, requant_words=32, program_words=32,
                        activation_words=48, batch=8, output_codes=64)


def simulate(m, bench):
    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()


def test_weight_feeder_sends_the_image_in_address_order():
    rng = np.random.default_rng(1)
    words = rng.integers(0, 1 << (CONFIG.cols * CONFIG.weight_bits), 64).tolist()
    m = Module()
    memory = m.submodules.memory = Memory(shape=CONFIG.cols * CONFIG.weight_bits, depth=64,
                                          init=words)
    feeder = m.submodules.feeder = WeightFeeder(CONFIG, MEMORIES)
    wiring.connect(m, feeder.read, memory.read_port())
    model = components.WeightFeeder()
    runs = []

    async def bench(ctx):
        for total in (37, 64, 1):
            received = []
            for cycle in range(4 * total + 8):
                start = cycle == 2
                ready = bool(rng.random() < 0.6)
                ctx.set(feeder.start, start)
                ctx.set(feeder.total, total if start else 0)     # sampled with start only
                ctx.set(feeder.weights.ready, ready)
                assert ctx.get(feeder.weights.valid) == model.valid
                if model.valid:
                    word = ctx.get(feeder.weights.payload.as_value())
                    assert word == words[model.reader.word]
                    if ready:
                        received.append(word)
                model.step(start, total, ready)
                await ctx.tick()
            runs.append(received)

    simulate(m, bench)
    assert runs == [words[:37], words, words[:1]]


def expected_order(batch, k_tiles, n_tiles):
    """The activation feeder's words: per output tile, per K tile, per vector, the vector's
    K tile (word ``i * k_tiles + t``), ``last`` on the batch's final vector."""
    return [(i * k_tiles + t, i == batch - 1)
            for _ in range(n_tiles) for t in range(k_tiles) for i in range(batch)]


@pytest.mark.parametrize("seed", range(3))
def test_activation_feeder_sends_the_layers_in_tile_order(seed):
    rng = np.random.default_rng(seed)
    word_bits = CONFIG.rows * CONFIG.activation_bits
    contents = [rng.integers(0, 1 << word_bits, MEMORIES.activation_words).tolist()
                for _ in range(2)]
    m = Module()
    feeder = m.submodules.feeder = ActivationFeeder(CONFIG, MEMORIES)
    for index, words in enumerate(contents):
        memory = m.submodules[f"buffer_{index}"] = Memory(shape=word_bits, depth=len(words),
                                                          init=words)
        wiring.connect(m, feeder.buffers[index], memory.read_port())
    model = components.ActivationFeeder()
    layers = [components.Bounds(int(rng.integers(1, 9)), int(rng.integers(1, 6)),
                                int(rng.integers(1, 4))) for _ in range(4)]
    runs = []

    async def bench(ctx):
        for number, bounds in enumerate(layers):
            buffer = number % 2
            ctx.set(feeder.input_buffer, buffer)
            for name, value in (("batch_last", bounds.batch - 1),
                                ("k_last", bounds.k_tiles - 1),
                                ("n_last", bounds.n_tiles - 1), ("k_tiles", bounds.k_tiles)):
                ctx.set(getattr(feeder, name), value)
            received = []
            words = bounds.batch * bounds.k_tiles * bounds.n_tiles
            for cycle in range(3 * words + 12):
                start, running = cycle == 3, cycle > 3
                ready = bool(rng.random() < 0.6)
                ctx.set(feeder.start, start)
                ctx.set(feeder.running, running)
                ctx.set(feeder.activations.ready, ready)
                assert ctx.get(feeder.activations.valid) == model.valid
                if model.valid:
                    addr, last = model.reader.word
                    payload = ctx.get(feeder.activations.payload)
                    assert (ctx.get(feeder.activations.payload.data.as_value()),
                            payload.last) == (contents[buffer][addr], last)
                    if ready:
                        received.append((addr, last))
                model.step(start, running, ready, bounds)
                await ctx.tick()
            runs.append(received)

    simulate(m, bench)
    assert runs == [expected_order(*bounds) for bounds in layers]


@pytest.mark.parametrize("component", [WeightFeeder, ActivationFeeder])
def test_refuses_bad_parameters(component):
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 'x'$"):
        component("x", MEMORIES)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not 4$"):
        component(CONFIG, 4)


@pytest.mark.parametrize("weight_words, bounds", [(3, (4, 1, 1)), (12, (3, 4, 2))])
def test_activation_feeder_with_as_many_k_tiles_as_the_memories_hold(weight_words, bounds):
    """A layer of the most K tiles the weight memory holds (a power of two): the vector stride
    ``k_tiles`` is a count, one more than the largest K tile index."""
    memories = MemoryConfig(weight_words=weight_words, requant_words=32, program_words=32,
                            activation_words=48, batch=8, output_codes=64)
    bounds = components.Bounds(*bounds)
    word_bits = CONFIG.rows * CONFIG.activation_bits
    contents = list(range(memories.activation_words))
    m = Module()
    feeder = m.submodules.feeder = ActivationFeeder(CONFIG, memories)
    for index in range(2):
        memory = m.submodules[f"buffer_{index}"] = Memory(shape=word_bits, depth=48,
                                                          init=contents)
        wiring.connect(m, feeder.buffers[index], memory.read_port())
    received = []

    async def bench(ctx):
        for name, value in (("batch_last", bounds.batch - 1), ("k_last", bounds.k_tiles - 1),
                            ("n_last", bounds.n_tiles - 1), ("k_tiles", bounds.k_tiles)):
            ctx.set(getattr(feeder, name), value)
        ctx.set(feeder.activations.ready, 1)
        ctx.set(feeder.start, 1)
        await ctx.tick()
        ctx.set(feeder.start, 0)
        ctx.set(feeder.running, 1)
        for _ in range(bounds.batch * bounds.k_tiles * bounds.n_tiles + 4):
            if ctx.get(feeder.activations.valid):
                received.append((ctx.get(feeder.activations.payload.data.as_value()),
                                 ctx.get(feeder.activations.payload.last)))
            await ctx.tick()

    simulate(m, bench)
    assert received == [(addr, int(last)) for addr, last in expected_order(*bounds)]
