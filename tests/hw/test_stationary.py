# amaranth: UnusedElaboratable=no
"""The stationary-operand feeder in Amaranth's simulator with random back-pressure: a matmul
layer's tiles of ``b - zb`` from an activation buffer (transposed or not), a gemm layer's
weight words through its gate, at the cycles of its cycle model."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.codec import decode
from systolix.config import ArrayConfig
from systolix.hw.stationary import StationaryFeeder
from systolix.layer import MatMulLayer
from systolix.memory_map import (HEADER_WORDS, LAYER_KINDS, RECORD_WORDS, MemoryConfig,
                                 layer_records, unpack_vectors, weights_layout)
from systolix.sim.golden import components
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_attention_program

MEMORIES = MemoryConfig(weight_words=256, requant_words=128, program_words=256,
                        activation_words=512, batch=16, output_codes=64)


def expected_tiles(layer, words, record, config, batch):
    """The tiles of ``b - zb`` the feeder must send for ``layer`` (its record ``record``), per
    input, head, output tile and K tile, ``rows`` rows of ``cols`` codes each."""
    size = config.rows
    stored_lines = layer.cols if layer.transpose else layer.inner
    stored_channels = layer.inner if layer.transpose else layer.cols
    image_words = record["multiplier_a"]
    tiles = []
    for n in range(batch):
        base = record["second_base"] + n * image_words
        stored = unpack_vectors(words[base:base + image_words], config, image_words,
                                stored_channels).reshape(stored_lines, layer.groups,
                                                         stored_channels)
        for g in range(layer.groups):
            b = stored[:, g, :].T if layer.transpose else stored[:, g, :]      # (inner, cols)
            padded = np.zeros((record["k_tiles"] * size, record["n_tiles"] * size), np.int64)
            padded[:layer.inner, :layer.cols] = b - layer.zero_points[1]
            for j in range(record["n_tiles"]):
                for t in range(record["k_tiles"]):
                    tiles.extend(padded[t * size:(t + 1) * size, j * size:(j + 1) * size]
                                 .tolist())
    return tiles


@pytest.mark.parametrize("seed, size, weight_bits, batch", [(0, 4, 5, 2), (1, 3, 4, 1),
                                                            (2, 2, 5, 3)])
def test_stationary_feeder(seed, size, weight_bits, batch):
    """Every layer of a random attention program: the matmul layers' tiles (``Q K^T`` reads
    ``K`` transposed, ``S V`` reads ``V`` as it is), the gemm layers' words through the gate
    (no more than the layer's tiles), with the cycles of the cycle model."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=size, cols=size, weight_bits=weight_bits, activation_bits=4,
                         accumulator_bits=16)
    program = random_attention_program(rng, config, 5, 2, 3, size + 1)
    images = pack(program, config, MEMORIES)
    records = layer_records(images)
    m = Module()
    words = rng.integers(0, 1 << (size * 4), MEMORIES.activation_words).tolist()
    feeder = m.submodules.feeder = StationaryFeeder(config, MEMORIES)
    for index in range(2):
        memory = m.submodules[f"buffer_{index}"] = Memory(
            shape=size * 4, depth=MEMORIES.activation_words, init=words)
        wiring.connect(m, feeder.buffers[index], memory.read_port())
    model = components.StationaryFeeder(size)
    beat = weights_layout(config)
    checked = []

    async def bench(ctx):
        gemm_word = 0
        for number, (layer, record) in enumerate(zip(program.layers, records)):
            start_word = HEADER_WORDS + RECORD_WORDS * number
            fields = images.program[start_word:start_word + RECORD_WORDS]
            ctx.set(feeder.layer.as_value(), sum(word << (32 * index)
                                                 for index, word in enumerate(fields)))
            ctx.set(feeder.batch_last, batch - 1)
            ctx.set(feeder.k_last, max(record["k_tiles"], 1) - 1)
            ctx.set(feeder.n_last, max(record["n_tiles"], 1) - 1)
            matmul = LAYER_KINDS[record["kind"]] == "matmul"
            tiles = record["k_tiles"] * record["n_tiles"] * (batch * layer.groups if matmul
                                                             else 1)
            received = []
            for cycle in range(tiles * (3 * size + 4) + 12):
                start = cycle == 2
                ready = bool(rng.random() < 0.6)
                gemm_valid = bool(rng.random() < 0.7)
                ctx.set(feeder.start, start)
                ctx.set(feeder.weights.ready, ready)
                ctx.set(feeder.gemm.valid, gemm_valid)
                ctx.set(feeder.gemm.payload.as_value(), gemm_word)
                valid = ctx.get(feeder.weights.valid)
                assert valid == model.valid(gemm_valid)
                gemm_take = gemm_valid and model.gemm_ready(ready)
                assert ctx.get(feeder.gemm.ready) == model.gemm_ready(ready)
                if valid and ready:
                    received.append(ctx.get(feeder.weights.payload.as_value()))
                if gemm_take:
                    gemm_word += 1
                model.step(start, record, batch, gemm_take, ready)
                await ctx.tick()
            if matmul:
                assert [decode(beat, word) for word in received] == expected_tiles(
                    layer, words, record, config, batch)
            else:
                assert received == list(range(gemm_word - len(received), gemm_word))
                assert len(received) == tiles * size
            checked.append((type(layer).__name__, getattr(layer, "transpose", None)))

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert ("MatMulLayer", True) in checked and ("MatMulLayer", False) in checked
    assert any(isinstance(layer, MatMulLayer) for layer in program.layers)
