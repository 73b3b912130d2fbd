# amaranth: UnusedElaboratable=no
"""The sequencer in Amaranth's simulator, cycle by cycle against its cycle model: strobes, states,
the cycle counter, and the layer fields and loop bounds it reads from the program."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.sequencer import Sequencer
from systolix.memory_map import LAYER_KINDS, MemoryConfig, TOTALS_LAYOUT, layer_records
from systolix.codec import decode
from systolix.sim.golden import components
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_attention_program, random_conv_program, random_program

CONFIG = ArrayConfig(rows=3, cols=2)
MEMORIES = MemoryConfig(weight_words=1024, requant_words=64, program_words=256,
                        activation_words=128, batch=64, output_codes=256)


def harness(images, config=CONFIG, matmul=False):
    m = Module()
    memory = m.submodules.program = Memory(shape=images.program_width,
                                           depth=MEMORIES.program_words, init=images.program)
    sequencer = m.submodules.sequencer = Sequencer(config, MEMORIES, matmul=matmul)
    wiring.connect(m, sequencer.program, memory.read_port())
    return m, sequencer


@pytest.mark.parametrize("seed", range(5))
def test_runs_the_program_as_modelled(seed):
    """Dense programs, and convolutions (seeds 3 and 4: ``vectors_last`` is the batch times
    the output positions)."""
    rng = np.random.default_rng(seed)
    if seed < 3:
        program = random_program(rng, CONFIG,
                                 rng.integers(1, 9, int(rng.integers(2, 5))).tolist())
    else:
        program = random_conv_program(rng, CONFIG, (3, 3, 2), [("conv", 3), ("dense", 2)])
    images = pack(program, CONFIG, MEMORIES)
    records = layer_records(images)
    total = decode(TOTALS_LAYOUT, images.program[2])["weight_words"]
    m, sequencer = harness(images)
    model = components.Sequencer(records)
    seen = {"header_done": 0, "layer_start": 0, "runs": 0}

    async def bench(ctx):
        for batch in (int(rng.integers(1, 9)), 0, int(rng.integers(1, 9))):
            ctx.set(sequencer.start.valid, 1)
            ctx.set(sequencer.start.payload, batch)
            assert ctx.get(sequencer.start.ready) and ctx.get(sequencer.started)
            model.step(batch)
            await ctx.tick()
            ctx.set(sequencer.start.valid, 0)
            assert bool(ctx.get(sequencer.idle)) == (batch == 0)
            seen["runs"] += batch != 0
            layer_cycles = 0
            while not model.idle:
                for name in ("header_done", "layer_start", "running", "idle"):
                    assert ctx.get(getattr(sequencer, name)) == getattr(model, name), name
                assert ctx.get(sequencer.busy) != model.idle
                assert ctx.get(sequencer.cycles) == model.cycles
                assert not ctx.get(sequencer.start.ready)
                if model.header_done:
                    seen["header_done"] += 1
                    assert ctx.get(sequencer.weight_words) == total
                seen["layer_start"] += model.layer_start
                layer_done = outputs_sent = False
                if model.running:
                    record = model.record
                    layer = ctx.get(sequencer.layer)
                    assert {name: getattr(layer, name) for name in record} == record
                    assert [ctx.get(getattr(sequencer, name)) for name in
                            ("batch_last", "vectors_last", "k_last", "n_last",
                             "outputs_last")] == \
                        [batch - 1, batch * record["positions"] - 1, record["k_tiles"] - 1,
                         record["n_tiles"] - 1, record["outputs"] - 1]
                    layer_cycles += 1
                    layer_done = layer_cycles > 1 and rng.random() < 0.2
                    layer_cycles = 0 if layer_done else layer_cycles
                elif model.state == "OUTPUT":
                    outputs_sent = rng.random() < 0.3
                ctx.set(sequencer.layer_done, layer_done)
                ctx.set(sequencer.outputs_sent, outputs_sent)
                model.step(0, layer_done, outputs_sent)
                await ctx.tick()
            ctx.set(sequencer.outputs_sent, 0)
            assert ctx.get(sequencer.idle)
            assert model.layer == len(records)      # every layer ran (or, for 0, the last run)

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == {"header_done": 2, "layer_start": 2 * len(records), "runs": 2}


def test_matmul_passes():
    """A matmul layer runs as one pass per input and head, a cycle of ``REPEAT`` between
    passes (the ``repeat`` strobe, ``running`` low), with the offsets of the pass's head in the
    input and output maps and the vectors of one head (``positions``, the issuer's one fewer);
    the other layers as before. Cycle by cycle against the cycle model."""
    rng = np.random.default_rng(7)
    config = ArrayConfig(rows=3, cols=3, weight_bits=5, activation_bits=4)
    program = random_attention_program(rng, config, 4, 3, 2, 4)
    images = pack(program, config, MEMORIES)
    records = layer_records(images)
    m, sequencer = harness(images, config, matmul=True)
    model = components.Sequencer(records)
    repeats = []

    async def bench(ctx):
        batch = 2
        ctx.set(sequencer.start.valid, 1)
        ctx.set(sequencer.start.payload, batch)
        model.step(batch)
        await ctx.tick()
        ctx.set(sequencer.start.valid, 0)
        while not model.idle:
            for name in ("header_done", "layer_start", "running", "idle", "repeat"):
                assert ctx.get(getattr(sequencer, name)) == getattr(model, name), name
            assert ctx.get(sequencer.cycles) == model.cycles
            repeats.append(model.repeat)
            layer_done = outputs_sent = False
            if model.running:
                record = model.record
                matmul = record["kind"] == LAYER_KINDS.index("matmul")
                vectors = record["positions"] * (1 if matmul else batch)
                assert (ctx.get(sequencer.vectors_last), ctx.get(sequencer.issues_last)) == (
                    vectors - 1, vectors - 1 - matmul)
                image, head = divmod(model.passes, record["groups"])
                assert (ctx.get(sequencer.input_offset), ctx.get(sequencer.output_offset)) == (
                    (image * record["image_words"] + head * record["c_tiles"],
                     image * record["multiplier_b"] + head * record["output_words"])
                    if matmul else (0, 0))
                layer_done = rng.random() < 0.3
            elif model.state == "OUTPUT":
                outputs_sent = True
            ctx.set(sequencer.layer_done, layer_done)
            ctx.set(sequencer.outputs_sent, outputs_sent)
            model.step(0, layer_done, outputs_sent)
            await ctx.tick()

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    # Two matmul layers of 3 heads on 2 inputs: 5 repeats each.
    assert sum(repeats) == 2 * (2 * 3 - 1)


def test_refuses_bad_parameters():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        Sequencer(3, MEMORIES)
    with pytest.raises(TypeError, match=r"^memories must be a MemoryConfig, not None$"):
        Sequencer(CONFIG, None)
    with pytest.raises(ValueError, match=r"^program_width must be 32 \(memory map "
                                         r"PROGRAM_WORD_BITS\), not 16$"):
        Sequencer(CONFIG, MEMORIES, program_width=16)
