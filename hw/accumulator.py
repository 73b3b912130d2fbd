"""The engine's K-tile accumulator: the array's partial sums added up over a layer's K tiles."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig
from systolix.memory_map import MemoryConfig

from .array import results_layout
from .loops import Bounds, LoopCounters
from .mac import accumulate

__all__ = ["sums_layout", "KTileAccumulator"]


def sums_layout(config):
    """``cols`` accumulator values: a finished vector of sums, one word of the accumulator
    buffer and of the queue behind it (``data`` of :func:`~systolix.hw.array.results_layout`)."""
    return results_layout(config).members["data"]


class KTileAccumulator(wiring.Component):
    """Adds the array's results over the K tiles of a layer and sends the finished sums.

    The results of a layer come tile by tile: per output tile, per K tile ``t``, per vector
    ``i`` of the batch. The result of K tile 0 is written into word ``i`` of the accumulator
    buffer (``batch`` words of ``cols`` sums); each later K tile's is added to it, lane by lane,
    wrapping or saturating to ``P`` bits like the array (:func:`~systolix.hw.mac.accumulate`);
    the sum with the last K tile's goes out on ``sums`` (a layer of a single K tile sends the
    results as they are). While ``running`` is low, ``results`` is not ready and the counters
    restart from zero; ``batch_last``, ``k_last`` and ``n_last`` must hold while it is high.

    The buffer's read address looks one result ahead (``i + 1`` in the cycle result ``i`` is
    taken) and its read port is transparent for its write port, so a result is taken in every
    cycle: ``results.ready = running & (~final | sums.ready)``, where ``final`` (a register) is
    set during the last K tile. ``sums.valid`` is ``results.valid & running & final`` and the
    sum is combinational from the result and the buffer's output.

    Latency: 0 cycles (``results`` to ``sums``, combinational). Throughput: one result a cycle;
    in the last K tile only while ``sums`` is ready.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
        ``batch`` is the depth of the accumulator buffer.

    Attributes
    ----------
    running : In(1)
    batch_last, k_last, n_last : In(...)
        Shapes of :class:`~systolix.hw.loops.Bounds`.
    results : In(stream.Signature(results_layout(config)))
        From the array (``last`` is not used).
    sums : Out(stream.Signature(cols * accumulator_bits))
        The bits of a :func:`sums_layout` (the payload of a FIFO's ``w_stream``).
    """

    def __init__(self, config, memories):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        self.config, self.memories = config, memories
        self.bounds = bounds = Bounds(config, memories)
        super().__init__({
            "running": In(1),
            "batch_last": In(bounds.batch),
            "k_last": In(bounds.k_tiles),
            "n_last": In(bounds.n_tiles),
            "results": In(stream.Signature(results_layout(config))),
            "sums": Out(stream.Signature(sums_layout(config).size)),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        layout = sums_layout(config)
        batch_last, k_last = self.batch_last, self.k_last
        buffer = m.submodules.buffer = Memory(shape=layout, depth=self.memories.batch, init=[])
        sink = LoopCounters("sink", self.bounds)
        first = Signal()                        # sink.k_tile == 0, registered
        final = Signal()                        # sink.k_tile == k_last, registered
        following = Signal.like(sink.index)     # the vector index after sink.index, registered
        take = Signal()
        sums = Signal(layout)
        write = buffer.write_port()
        read = buffer.read_port(transparent_for=(write,))
        results = self.results.payload.data
        m.d.comb += [
            self.results.ready.eq(self.running & (~final | self.sums.ready)),
            take.eq(self.results.valid & self.results.ready),
            read.addr.eq(Mux(take, following, sink.index)),
            write.addr.eq(sink.index),
            write.data.eq(sums),
            write.en.eq(take & ~final),
            self.sums.payload.eq(sums),
            self.sums.valid.eq(self.results.valid & self.running & final),
        ]
        for c in range(config.cols):
            m.d.comb += sums[c].eq(Mux(first, results[c],
                                       accumulate(config, read.data[c], results[c])))
        with m.If(take):
            sink.step(m, batch_last, k_last, self.n_last)
            m.d.sync += following.eq(Mux(following == batch_last, 0, following + 1))
            with m.If(sink.index == batch_last):    # on to the next K tile
                m.d.sync += [first.eq(final),
                             final.eq(Mux(final, k_last == 0, sink.k_tile + 1 == k_last))]
        # Between layers every loop restarts from zero.
        with m.If(~self.running):
            sink.reset(m)
            m.d.sync += [first.eq(1), final.eq(k_last == 0), following.eq(batch_last != 0)]
        return m
