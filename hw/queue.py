"""The engine's queue of finished sums: a first-in first-out buffer whose handshakes are
registers."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.config import check_int

from .array import count_up_down

__all__ = ["Queue"]


def _following(address, depth):
    """The address after ``address`` in a memory of ``depth`` words."""
    if depth == 1 << len(address):
        return address + 1      # wraps by itself
    return Mux(address == depth - 1, 0, address + 1)


class Queue(wiring.Component):
    """``depth`` words of ``width`` bits, first in first out: the transfers, cycle for cycle,
    of :class:`amaranth.lib.fifo.SyncFIFOBuffered` of the same depth (a memory of
    ``depth - 1`` words behind an output register), with ``w_stream.ready`` a register.

    ``SyncFIFOBuffered``'s ``w_rdy`` compares the memory's level with its depth; on the
    iCEBreaker that compare was the start of the engine's critical path, through the K-tile
    accumulator's ready and the array's result read into the enables behind them. Here the
    flags ``w_stream.ready`` (the memory is not full) and the memory's "not empty" are set a
    cycle ahead, from the level and the transfers of the cycle.

    Latency: 2 cycles from a ``w_stream`` transfer into an empty queue to ``r_stream.valid``.
    Throughput: one word a cycle in and out.

    Parameters
    ----------
    width : int
    depth : int
        At least 2.

    Attributes
    ----------
    w_stream : In(stream.Signature(width))
    r_stream : Out(stream.Signature(width))
    """

    def __init__(self, width, depth):
        check_int("width", width, 1, 1 << 16)
        check_int("depth", depth, 2, 1 << 24)
        self.width, self.depth = width, depth
        super().__init__({
            "w_stream": In(stream.Signature(width)),
            "r_stream": Out(stream.Signature(width)),
        })

    def elaborate(self, platform):
        m = Module()
        inner_depth = self.depth - 1
        storage = m.submodules.storage = Memory(shape=self.width, depth=inner_depth, init=[])
        write, read = storage.write_port(), storage.read_port()
        produce, consume = Signal(range(inner_depth)), Signal(range(inner_depth))
        level = Signal(range(inner_depth + 1))      # words in the memory
        room = Signal(init=1)                       # level != inner_depth, registered
        stored = Signal()                           # level != 0, registered
        w_stream, r_stream = self.w_stream, self.r_stream
        do_write, do_read = Signal(), Signal()
        m.d.comb += [
            w_stream.ready.eq(room),
            do_write.eq(w_stream.valid & room),
            # The output register takes the memory's next word when it is empty or taken.
            do_read.eq(stored & (~r_stream.valid | r_stream.ready)),
            write.addr.eq(produce), write.data.eq(w_stream.payload), write.en.eq(do_write),
            read.addr.eq(consume), read.en.eq(do_read), r_stream.payload.eq(read.data),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(_following(produce, inner_depth))
        with m.If(do_read):
            m.d.sync += consume.eq(_following(consume, inner_depth))
        count_up_down(m, level, stored, up=do_write, down=do_read)
        with m.If(do_write & ~do_read):
            m.d.sync += room.eq(level != inner_depth - 1)
        with m.Elif(do_read & ~do_write):
            m.d.sync += room.eq(1)
        with m.If(do_read):
            m.d.sync += r_stream.valid.eq(1)
        with m.Elif(r_stream.ready):
            m.d.sync += r_stream.valid.eq(0)
        return m
