# amaranth: UnusedElaboratable=no
"""The queue of finished sums in Amaranth's simulator beside Amaranth's SyncFIFOBuffered of
the same depth: the same handshakes and words in every cycle, with random valid and ready, and
the cycle model's handshakes."""

import numpy as np
import pytest
from amaranth.hdl import Module
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from systolix.hw.queue import Queue
from systolix.sim.golden import components


@pytest.mark.parametrize("depth", [2, 3, 5, 9])
def test_transfers_of_sync_fifo_buffered(depth):
    rng = np.random.default_rng(depth)
    m = Module()
    queue = m.submodules.queue = Queue(8, depth)
    fifo = m.submodules.fifo = SyncFIFOBuffered(width=8, depth=depth)
    model = components.Queue(depth)
    words, received, full = [], [], []

    async def bench(ctx):
        # Phases of a filling and a draining side, so that the queue runs full and empty.
        for cycle in range(1500):
            write_rate, read_rate = (0.9, 0.3) if cycle // 100 % 2 else (0.3, 0.9)
            valid, ready = bool(rng.random() < write_rate), bool(rng.random() < read_rate)
            word = int(rng.integers(256))
            for w_valid, w_data, r_ready in ((queue.w_stream.valid, queue.w_stream.payload,
                                              queue.r_stream.ready),
                                             (fifo.w_en, fifo.w_data, fifo.r_en)):
                ctx.set(w_valid, valid)
                ctx.set(w_data, word)
                ctx.set(r_ready, ready)
            w_ready, r_valid = ctx.get(queue.w_stream.ready), ctx.get(queue.r_stream.valid)
            assert (w_ready, r_valid) == (ctx.get(fifo.w_rdy), ctx.get(fifo.r_rdy))
            assert (w_ready, r_valid) == (model.w_rdy, model.r_rdy)
            if r_valid:
                assert ctx.get(queue.r_stream.payload) == ctx.get(fifo.r_data)
            full.append(not w_ready)
            if valid and w_ready:
                words.append(word)
            if r_valid and ready:
                received.append(ctx.get(queue.r_stream.payload))
            model.step(valid, ready)
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert received == words[:len(received)]
    assert len(received) > 300 and len(words) - len(received) <= depth
    assert 100 < sum(full) < 1000       # it ran full, and not only


def test_refuses_a_depth_below_two():
    with pytest.raises(ValueError, match="depth"):
        Queue(8, 1)
