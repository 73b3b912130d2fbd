# amaranth: UnusedElaboratable=no
"""The memory-to-stream reader in Amaranth's simulator: every requested word once, in order,
held while not taken, at the cycles of its cycle model, with random valid and ready."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix.hw.memory_stream import MemoryToStream
from systolix.sim.golden import components


def harness(contents, registered, fields):
    """A reader of a memory holding ``contents``: a synchronous read port, or with
    ``registered`` one that answers in the same cycle."""
    m = Module()
    memory = m.submodules.memory = Memory(shape=8, depth=len(contents), init=contents)
    reader = m.submodules.reader = MemoryToStream(4, 8, fields=fields, registered=registered)
    port = memory.read_port(domain="comb" if registered else "sync")
    if registered:
        m.d.comb += [port.addr.eq(reader.read.addr), reader.read.data.eq(port.data)]
    else:
        wiring.connect(m, reader.read, port)
    return m, reader


@pytest.mark.parametrize("registered", [False, True])
@pytest.mark.parametrize("fields", [None, {"last": 1, "tag": 3}])
def test_every_word_once_in_order(registered, fields):
    rng = np.random.default_rng(int(registered) + 2 * bool(fields))
    contents = rng.integers(0, 256, 16).tolist()
    requests = [(int(rng.integers(16)), int(rng.integers(2)), int(rng.integers(8)))
                for _ in range(300)]
    m, reader = harness(contents, registered, fields)
    model = components.MemoryToStream()
    received = []

    def unpack(payload):
        return (payload.data, payload.last, payload.tag) if fields else payload

    async def bench(ctx):
        pending, held = list(requests), None
        presenting = False
        for _ in range(1200):
            if not presenting and pending and rng.random() < 0.7:
                addr, last, tag = pending[0]
                presenting = True
                if fields:
                    ctx.set(reader.requests.payload, {"addr": addr, "last": last, "tag": tag})
                else:
                    ctx.set(reader.requests.payload, addr)
            ctx.set(reader.requests.valid, presenting)
            ready = bool(rng.random() < 0.6)
            ctx.set(reader.words.ready, ready)
            valid = ctx.get(reader.words.valid)
            assert valid == model.valid
            assert ctx.get(reader.requests.ready) == model.ready(ready)
            assert ctx.get(reader.read.en) == model.ready(ready)
            if valid:
                word = unpack(ctx.get(reader.words.payload))
                if held is not None:
                    assert word == held          # unchanged while not taken
                addr, last, tag = model.word
                assert word == ((contents[addr], last, tag) if fields else contents[addr])
                held = None if ready else word
                if ready:
                    received.append(word)
            taken = model.step(pending[0] if presenting else None, ready)
            assert taken == (presenting and ctx.get(reader.requests.ready))
            if taken:
                pending.pop(0)
                presenting = False
            await ctx.tick()

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    expected = [(contents[a], last, tag) if fields else contents[a] for a, last, tag in requests]
    assert len(received) > 250
    assert received == expected[:len(received)]


def test_full_rate_without_bubbles():
    """Requests always valid and words always ready: a word every cycle from the second."""
    m, reader = harness(list(range(16)), False, None)
    seen = []

    async def bench(ctx):
        ctx.set(reader.words.ready, 1)
        ctx.set(reader.requests.valid, 1)
        for addr in range(16):
            ctx.set(reader.requests.payload, addr)
            seen.append(ctx.get(reader.words.payload) if ctx.get(reader.words.valid) else None)
            await ctx.tick()
        seen.append(ctx.get(reader.words.payload))

    simulator = Simulator(m)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == [None] + list(range(16))


def test_refuses_bad_parameters():
    with pytest.raises(TypeError, match=r"^addr_width must be a non-negative integer, not -1$"):
        MemoryToStream(-1, 8)
    with pytest.raises(TypeError, match=r"^data_shape must be a shape-castable object, not 'x'$"):
        MemoryToStream(4, "x")
    with pytest.raises(ValueError, match=r"^field names must be identifiers other than 'addr' "
                                         r"and 'data', not 'data'$"):
        MemoryToStream(4, 8, fields={"data": 1})
    with pytest.raises(TypeError, match=r"^the shape of field 'last' must be shape-castable, "
                                        r"not 'x'$"):
        MemoryToStream(4, 8, fields={"last": "x"})
    with pytest.raises(TypeError, match=r"^fields must be a dict of names to shapes, not \[1\]$"):
        MemoryToStream(4, 8, fields=[1])
    with pytest.raises(TypeError, match=r"^registered must be a bool, not 1$"):
        MemoryToStream(4, 8, registered=1)
