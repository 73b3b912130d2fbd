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
from systolix.codec import decode
from systolix.memory_map import (HEADER_WORDS, RECORD_WORDS, MemoryConfig,
                                 activation_word_layout, input_channels, layer_records,
                                 pack_vectors, vector_words)
from systolix.sim.golden import components
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_conv_program, random_program

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


def feed_layers(m, feeder, memories, config, program, codes, rng, ready_rate):
    """Run every layer of ``program`` (packed for ``config``) through the activation feeder,
    reading buffer ``l % 2``, which holds ``codes`` packed as the first layer's input; check
    every cycle against the cycle model and return each layer's received ``(data, last)``."""
    images = pack(program, config, memories)
    records = layer_records(images)
    words = pack_vectors(codes, config, vector_words(images), input_channels(images))
    for index in range(2):
        memory = m.submodules[f"buffer_{index}"] = Memory(
            shape=config.rows * config.activation_bits, depth=memories.activation_words,
            init=words)
        wiring.connect(m, feeder.buffers[index], memory.read_port())
    model = components.ActivationFeeder()
    runs = []

    async def bench(ctx):
        for number, record in enumerate(records):
            start_word = HEADER_WORDS + RECORD_WORDS * number
            fields = images.program[start_word:start_word + RECORD_WORDS]
            ctx.set(feeder.layer.as_value(), sum(word << (32 * index)
                                                 for index, word in enumerate(fields)))
            ctx.set(feeder.input_buffer, number % 2)
            ctx.set(feeder.batch_last, len(codes) - 1)
            ctx.set(feeder.k_last, record["k_tiles"] - 1)
            ctx.set(feeder.n_last, record["n_tiles"] - 1)
            received = []
            total = record["n_tiles"] * record["k_tiles"] * len(codes) * record["positions"]
            for cycle in range(4 * total + 12):
                start, running = cycle == 3, cycle > 3
                ready = bool(rng.random() < ready_rate)
                ctx.set(feeder.start, start)
                ctx.set(feeder.running, running)
                ctx.set(feeder.activations.ready, ready)
                assert ctx.get(feeder.activations.valid) == model.valid
                if model.valid:
                    addr, last = model.reader.word
                    data = ctx.get(feeder.activations.payload.data.as_value())
                    assert ctx.get(feeder.activations.payload.last) == last
                    if addr is not None:
                        assert data == words[addr]
                    if ready:
                        received.append((data, last))
                model.step(start, running, ready, record, len(codes))
                await ctx.tick()
            assert len(received) == total
            runs.append(received)

    simulate(m, bench)
    return images, runs


def patches_of(received, layer, config, batch):
    """The im2col matrix the words of one output tile make: row ``b * positions + p``, the
    patch in ``(ky, kx, c)`` order with each kernel position's channels padded to its
    words."""
    beat = activation_word_layout(config)
    codes = np.array([decode(beat, data) for data, _ in received])
    window = layer.window
    taps = window.kernel_height * window.kernel_width
    c_tiles = -(-window.channels // config.rows)
    vectors = batch * window.positions
    tile = codes[:taps * c_tiles * vectors].reshape(taps * c_tiles, vectors, config.rows)
    padded = tile.transpose(1, 0, 2).reshape(vectors, taps, c_tiles * config.rows)
    return padded[:, :, :window.channels].reshape(vectors, -1)


@pytest.mark.parametrize("seed", range(4))
def test_activation_feeder_streams_the_im2col_patches(seed):
    """Random convolution chains (strides 1 and 2, padding, groups): the words of each output
    tile are the layer's im2col patches (``Window.patches``), padding words ``rows`` copies of
    its pad code, at the cycles of the cycle model."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=int(rng.integers(1, 4)), cols=2, weight_bits=3,
                         activation_bits=4, activation_signed=bool(seed % 2),
                         accumulator_bits=20)
    memories = MemoryConfig(weight_words=4096, requant_words=64, program_words=64,
                            activation_words=512, batch=64, output_codes=64)
    program = random_conv_program(rng, config, (4, 5, 3), [("conv", 3), ("conv", 2)])
    m = Module()
    feeder = m.submodules.feeder = ActivationFeeder(config, memories)
    low, high = config.activation_range
    codes = rng.integers(low, high, (2, program.inputs), endpoint=True)
    _, runs = feed_layers(m, feeder, memories, config, program, codes, rng, 0.6)
    first = program.layers[0]
    expected = first.window.patches(codes)
    for run in runs[:1]:
        np.testing.assert_array_equal(patches_of(run, first, config, len(codes)), expected)


@pytest.mark.parametrize("windows", [False, True])
def test_dense_programs_with_and_without_windows(windows):
    """A chain of dense layers (vectors of many K tiles, several output tiles)."""
    rng = np.random.default_rng(11)
    memories = MemoryConfig(weight_words=256, requant_words=32, program_words=64,
                            activation_words=48, batch=8, output_codes=64)
    program = random_program(rng, CONFIG, [10, 5, 4])
    m = Module()
    feeder = m.submodules.feeder = ActivationFeeder(CONFIG, memories, windows=windows)
    codes = rng.integers(0, 8, (3, 10))
    images, runs = feed_layers(m, feeder, memories, CONFIG, program, codes, rng, 0.5)
    assert [len(run) for run in runs] == [3 * 4 * 3, 3 * 2 * 2]   # batch x K x output tiles


@pytest.mark.parametrize("component", [WeightFeeder, ActivationFeeder])
def test_refuses_bad_parameters(component):
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 'x'$"):
        component("x", MEMORIES)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not 4$"):
        component(CONFIG, 4)


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("weight_words, sizes", [(3, [3, 1]), (12, [12, 2])])
def test_activation_feeder_with_as_many_k_tiles_as_the_memories_hold(weight_words, sizes,
                                                                      windows):
    """A dense layer of the most K tiles the weight memory holds (a power of two): the words of
    each vector in order, vector after vector, with and without the window addresses."""
    memories = MemoryConfig(weight_words=weight_words, requant_words=32, program_words=32,
                            activation_words=48, batch=8, output_codes=64)
    rng = np.random.default_rng(weight_words)
    program = random_program(rng, CONFIG, sizes)
    m = Module()
    feeder = m.submodules.feeder = ActivationFeeder(CONFIG, memories, windows=windows)
    codes = rng.integers(0, 8, (4, sizes[0]))
    images, runs = feed_layers(m, feeder, memories, CONFIG, program, codes, rng, 1.0)
    words = pack_vectors(codes, CONFIG, vector_words(images))
    k_tiles = layer_records(images)[0]["k_tiles"]
    assert runs[0] == [(words[i * k_tiles + t], i == len(codes) - 1)
                       for t in range(k_tiles) for i in range(len(codes))]
