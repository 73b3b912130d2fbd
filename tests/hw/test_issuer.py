# amaranth: UnusedElaboratable=no
"""The requantization issuer with its requantization units in Amaranth's simulator: every code
against the golden model's requantization, every tag against the memory map's destination, the
handshakes against the issuer's cycle model; vectors offered at random."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.codec import encode
from systolix.config import ArrayConfig
from systolix.hw.issuer import RequantIssuer
from systolix.hw.requant import Requantizer
from systolix.memory_map import REQUANT_LAYOUT, MemoryConfig
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS
from systolix.sim.golden import components, requantize
from systolix.timing import REQUANT_LATENCY

MEMORIES = MemoryConfig(weight_words=64, requant_words=64, program_words=32,
                        activation_words=64, batch=8, output_codes=128)


def harness(config, lanes, constants, matmul=False):
    m = Module()
    issuer = m.submodules.issuer = RequantIssuer(config, MEMORIES, lanes, matmul=matmul)
    memory = m.submodules.requant = Memory(shape=REQUANT_LAYOUT.size,
                                           depth=MEMORIES.requant_words, init=constants)
    requantizers = []
    for index in range(lanes):
        wiring.connect(m, issuer.constants[index], memory.read_port())
        requantizer = m.submodules[f"requantizer_{index}"] = Requantizer(
            config.accumulator_bits, issuer.tag_layout)
        wiring.connect(m, issuer.channels[index], requantizer.input)
        requantizers.append(requantizer)
    return m, issuer, requantizers


def destinations(config, lanes, bounds, layer):
    """Per issued group, in order: the tag the memory map gives its codes (per output tile,
    per vector, per group of ``lanes`` channels)."""
    rows, cols, outputs = config.rows, config.cols, layer["outputs"]
    tags = []
    for j in range(bounds.n_tiles):
        for i in range(bounds.batch):
            for c in range(0, cols, lanes):
                n = j * cols + c
                addr = (i * -(-outputs // lanes) + n // lanes if layer["last"]
                        else i * layer["output_words"] + n // rows)
                tags.append({"addr": addr, "lane": n % rows,
                             "write": sum(1 << l for l in range(lanes) if n + l < outputs),
                             "final": int((j, i, c) == (bounds.n_tiles - 1, bounds.batch - 1,
                                                        cols - lanes))})
    return tags


@pytest.mark.parametrize("rows, cols, lanes", [(3, 4, 1), (4, 4, 2), (2, 4, 2), (4, 8, 4)])
def test_codes_and_destinations(rows, cols, lanes):
    rng = np.random.default_rng(rows * 100 + cols * 10 + lanes)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         accumulator_bits=14)
    bias = rng.integers(-(1 << (BIAS_BITS - 1)) >> 18, (1 << (BIAS_BITS - 1)) >> 18, 64)
    multiplier = rng.integers(0, 1 << MULTIPLIER_BITS, 64)
    shift = rng.integers(20, 31, 64)                         # codes that are not all clamped
    shift[::4] = rng.integers(0, MAX_SHIFT + 1, 16)
    constants = [encode(REQUANT_LAYOUT, {"bias": int(b), "multiplier": int(m), "shift": int(s),
                                         "reserved": 0})
                 for b, m, s in zip(bias, multiplier, shift)]
    m, issuer, requantizers = harness(config, lanes, constants)
    model = components.RequantIssuer(cols, lanes)
    low_acc, high_acc = config.accumulator_range
    layers = []
    for number in range(4):
        bounds = components.Bounds(int(rng.integers(1, 6)), 1, int(rng.integers(1, 4)))
        outputs = int(rng.integers((bounds.n_tiles - 1) * cols + 1, bounds.n_tiles * cols + 1))
        layer = {"last": number % 2, "outputs": outputs,
                 "output_words": -(-outputs // rows), "requant_base": int(rng.integers(0, 16)),
                 "zero_point": int(rng.integers(0, 16)), "low": 0, "high": 15}
        vectors = rng.integers(low_acc, high_acc + 1, (bounds.n_tiles * bounds.batch, cols))
        layers.append((bounds, layer, vectors))
    received = []

    async def bench(ctx):
        for bounds, layer, vectors in layers:
            for name in ("last", "outputs", "output_words", "requant_base"):
                ctx.set(getattr(issuer, name), layer[name])
            ctx.set(issuer.batch_last, bounds.batch - 1)
            ctx.set(issuer.n_last, bounds.n_tiles - 1)
            for requantizer in requantizers:
                for name in ("zero_point", "low", "high"):
                    ctx.set(getattr(requantizer, name), layer[name])
            ctx.set(issuer.running, 0)
            for _ in range(2):
                model.step(False, False, bounds)
                await ctx.tick()
            ctx.set(issuer.running, 1)
            pending, presenting, codes = list(vectors), False, []
            for _ in range(8 * len(vectors) * cols // lanes + 20):
                if not presenting and pending and rng.random() < 0.5:
                    presenting = True
                    mask = (1 << config.accumulator_bits) - 1
                    ctx.set(issuer.vectors.payload,
                            sum((int(v) & mask) << (c * config.accumulator_bits)
                                for c, v in enumerate(pending[0])))
                ctx.set(issuer.vectors.valid, presenting)
                assert ctx.get(issuer.vectors.ready) == model.ready(True)
                assert ctx.get(issuer.channels[0].valid) == model.issued
                assert ctx.get(issuer.channels[0].payload.tag.final) == (model.issued
                                                                        and model.final)
                output = requantizers[0].output
                if ctx.get(output.valid):
                    codes.append(([ctx.get(r.output.payload.code) for r in requantizers],
                                  {name: ctx.get(getattr(output.payload.tag, name))
                                   for name in ("addr", "lane", "write", "final")}))
                take = presenting and ctx.get(issuer.vectors.ready)
                if take:
                    pending.pop(0)
                    presenting = False
                model.step(take, True, bounds)
                await ctx.tick()
            ctx.set(issuer.vectors.valid, 0)
            received.append(codes)

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    for (bounds, layer, vectors), codes in zip(layers, received):
        channels = np.arange(bounds.n_tiles * cols).reshape(bounds.n_tiles, 1, cols)
        index = (layer["requant_base"] + channels).repeat(bounds.batch, axis=1).reshape(-1, cols)
        golden = requantize(vectors, bias[index], multiplier[index], shift[index],
                            layer["zero_point"], layer["low"], layer["high"])
        assert [code for group, _ in codes for code in group] == golden.reshape(-1).tolist()
        assert [tag for _, tag in codes] == destinations(config, lanes, bounds, layer)
    assert len({code for codes in received for group, _ in codes for code in group}) > 8


@pytest.mark.parametrize("lanes", [1, 2])
def test_column_terms(lanes):
    """In a matmul layer the first vector of each output tile is the column terms: kept, not
    issued, and subtracted from the tile's other vectors (wrapping to P bits); a gemm layer
    between matmul layers issues its vectors as they are. Handshakes as the cycle model's."""
    rng = np.random.default_rng(lanes)
    config = ArrayConfig(rows=4, cols=4, weight_bits=5, activation_bits=4, accumulator_bits=12)
    constants = [encode(REQUANT_LAYOUT, {"bias": int(b), "multiplier": 1 << 14, "shift": 14,
                                         "reserved": 0})
                 for b in rng.integers(-50, 50, 64)]
    m, issuer, requantizers = harness(config, lanes, constants, matmul=True)
    model = components.RequantIssuer(config.cols, lanes)
    low_acc, high_acc = config.accumulator_range
    layers = []
    for matmul in (1, 0, 1):
        bounds = components.Bounds(int(rng.integers(1, 5)), 1, int(rng.integers(1, 3)))
        tiles = []
        for _ in range(bounds.n_tiles):
            columns = rng.integers(-300, 300, (1, config.cols))
            rows = columns + rng.integers(-200, 200, (bounds.batch, config.cols))
            tiles.append(np.concatenate([columns, rows]) if matmul else rows)
        layers.append((matmul, bounds, tiles))
    received = []

    async def bench(ctx):
        for matmul, bounds, tiles in layers:
            outputs = bounds.n_tiles * config.cols
            for name, value in (("last", 0), ("outputs", outputs), ("requant_base", 8),
                                ("output_words", bounds.n_tiles), ("matmul", matmul),
                                ("batch_last", bounds.batch - 1),
                                ("n_last", bounds.n_tiles - 1)):
                ctx.set(getattr(issuer, name), value)
            for requantizer in requantizers:
                ctx.set(requantizer.low, -128)
                ctx.set(requantizer.high, 127)
            ctx.set(issuer.running, 0)
            for _ in range(2):
                model.step(False, False, bounds, matmul)
                await ctx.tick()
            ctx.set(issuer.running, 1)
            pending, codes = [vector for tile in tiles for vector in tile], []
            for _ in range(6 * len(pending) * config.cols // lanes + 20):
                presenting = bool(pending) and rng.random() < 0.6
                mask = (1 << config.accumulator_bits) - 1
                if presenting:
                    ctx.set(issuer.vectors.payload,
                            sum((int(v) & mask) << (c * config.accumulator_bits)
                                for c, v in enumerate(pending[0])))
                ctx.set(issuer.vectors.valid, presenting)
                assert ctx.get(issuer.vectors.ready) == model.ready(True)
                assert ctx.get(issuer.channels[0].valid) == model.issued
                if ctx.get(requantizers[0].output.valid):
                    codes.extend(ctx.get(r.output.payload.code) for r in requantizers)
                take = presenting and ctx.get(issuer.vectors.ready)
                if take:
                    pending.pop(0)
                model.step(take, True, bounds, matmul)
                await ctx.tick()
            ctx.set(issuer.vectors.valid, 0)
            received.append(codes)

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    bias = [constant & 0xFFFFFFFF for constant in constants]
    bias = np.array([b - (1 << 32) if b >> 31 else b for b in bias])
    for (matmul, bounds, tiles), codes in zip(layers, received):
        sums = np.concatenate([tile[1:] - tile[0] if matmul else tile for tile in tiles])
        channels = 8 + np.arange(bounds.n_tiles * config.cols).reshape(bounds.n_tiles, 1, -1)
        index = channels.repeat(bounds.batch, axis=1).reshape(-1, config.cols)
        golden = requantize(sums, bias[index], 1 << 14, 14, 0, -128, 127)
        assert codes == golden.reshape(-1).tolist()


def test_requant_latency_is_the_timing_contract():
    """The cycle model's requantizer delays by REQUANT_LATENCY, as the unit does."""
    model = components.Requantizer()
    outputs = []
    for cycle in range(10):
        outputs.append(model.output)
        model.step(cycle == 2)
    assert outputs.index(True) == 2 + REQUANT_LATENCY


def test_refuses_bad_parameters():
    config = ArrayConfig(rows=4, cols=6)
    with pytest.raises(ValueError, match=r"^requant_lanes must be a power of two that divides "
                                         r"rows \(4\) and cols \(6\), not 4$"):
        RequantIssuer(config, MEMORIES, 4)
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 1$"):
        RequantIssuer(1, MEMORIES, 1)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not 1$"):
        RequantIssuer(config, 1, 1)
