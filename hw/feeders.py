"""The engine's feeders: the weight memory and the activation buffers into the array."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import MemoryConfig, activation_word_layout, weights_layout

from .array import activations_layout
from .loops import Bounds, LoopCounters
from .memory_stream import MemoryToStream

__all__ = ["WeightFeeder", "ActivationFeeder"]


def _check(config, memories):
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {config!r}")
    if not isinstance(memories, MemoryConfig):
        raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")


class WeightFeeder(wiring.Component):
    """Streams the weight memory, in address order, once per run, into the array's ``weights``.

    The ``start`` strobe samples ``total`` (the words of the weight image, from the program's
    header) and starts the stream at address 0; words ``0 .. total - 1`` follow through a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage, and the feeder stops until the
    next ``start``. The memory holds every weight tile in the order the array needs them (per
    layer, per output tile, per K tile, ``rows`` words), so the feeder knows nothing of layers:
    the array's double buffering loads each tile while the previous one computes.

    Latency: the first word is valid 2 cycles after ``start`` (the cycle after the strobe
    requests it). Throughput: one word a cycle while ``weights`` is ready.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig

    Attributes
    ----------
    start : In(1)
    total : In(32)
        Words to send, sampled with ``start``; at most ``weight_words``.
    read : In(ReadPort.Signature(addr_width=ceil_log2(weight_words), shape=cols * weight_bits))
        The weight memory (a synchronous read port).
    weights : Out(stream.Signature(weights_layout(config)))
    """

    def __init__(self, config, memories):
        _check(config, memories)
        self.config, self.memories = config, memories
        self.addr_width = ceil_log2(memories.weight_words)
        super().__init__({
            "start": In(1),
            "total": In(32),
            "read": In(ReadPort.Signature(addr_width=self.addr_width,
                                          shape=weights_layout(config).size)),
            "weights": Out(stream.Signature(weights_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        words = self.memories.weight_words
        m.submodules.reader = reader = MemoryToStream(self.addr_width,
                                                      weights_layout(self.config))
        wiring.connect(m, reader.read, wiring.flipped(self.read))
        wiring.connect(m, reader.words, wiring.flipped(self.weights))
        total = Signal(range(words + 1))
        addr = Signal(range(words + 1))
        feed = Signal()
        request = reader.requests
        m.d.comb += [request.valid.eq(feed), request.payload.eq(addr)]
        with m.If(request.valid & request.ready):
            m.d.sync += addr.eq(addr + 1)
            with m.If(addr == total - 1):
                m.d.sync += feed.eq(0)
        with m.If(self.start):
            m.d.sync += [addr.eq(0), feed.eq(1), total.eq(self.total)]
        return m


class ActivationFeeder(wiring.Component):
    """Streams a layer's input vectors into the array's ``activations``, tile by tile.

    From the cycle after the ``start`` strobe, per output tile ``j < n_last + 1``, per K tile
    ``t < k_last + 1``, per vector ``i < batch_last + 1``, it sends word ``i * k_tiles + t`` of
    the activation buffer that ``input_buffer`` selects (vector ``i``'s ``t``-th word, the
    order of :func:`systolix.memory_map.pack_vectors`), with ``last`` on the batch's final
    vector (the last one that uses a weight tile), through a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage; then it stops until the next
    ``start``. While ``running`` is low its counters and address are held at zero; ``start``
    comes while it is low, the layer's fields and bounds must hold from the cycle after.

    Latency: the first word is valid 2 cycles after ``start``. Throughput: one word a cycle
    while ``activations`` is ready.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig

    Attributes
    ----------
    start, running : In(1)
    batch_last, k_last, n_last : In(...)
        The loop bounds (shapes of :class:`~systolix.hw.loops.Bounds`).
    k_tiles : In(Bounds.k_tiles_end)
        The words of an input vector, the vector stride.
    input_buffer : In(1)
        Which activation buffer holds the layer's input.
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    activations : Out(stream.Signature(activations_layout(config)))
    """

    def __init__(self, config, memories):
        _check(config, memories)
        self.config, self.memories = config, memories
        self.bounds = bounds = Bounds(config, memories)
        self.addr_width = ceil_log2(memories.activation_words)
        super().__init__({
            "start": In(1),
            "running": In(1),
            "batch_last": In(bounds.batch),
            "k_last": In(bounds.k_tiles),
            "n_last": In(bounds.n_tiles),
            "k_tiles": In(bounds.k_tiles_end),
            "input_buffer": In(1),
            "buffers": In(ReadPort.Signature(addr_width=self.addr_width,
                                             shape=activation_word_layout(config).size)
                          ).array(2),
            "activations": Out(stream.Signature(activations_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = MemoryToStream(
            self.addr_width, activation_word_layout(self.config), fields={"last": 1})
        wiring.connect(m, reader.words, wiring.flipped(self.activations))
        for port in self.buffers:
            m.d.comb += [port.en.eq(reader.read.en), port.addr.eq(reader.read.addr)]
        m.d.comb += reader.read.data.eq(Mux(self.input_buffer, self.buffers[1].data,
                                            self.buffers[0].data))

        feed = LoopCounters("feed", self.bounds)
        addr = Signal(range(self.memories.activation_words))
        feeding = Signal()
        request = reader.requests
        m.d.comb += [request.valid.eq(feeding), request.payload.addr.eq(addr),
                     request.payload.last.eq(feed.index == self.batch_last)]
        with m.If(request.valid & request.ready):
            feed.step(m, self.batch_last, self.k_last, self.n_last,
                      on_vector=[addr.eq(addr + self.k_tiles)],
                      on_k_tile=[addr.eq(feed.k_tile + 1)],
                      on_n_tile=[addr.eq(0)],
                      on_layer=[addr.eq(0), feeding.eq(0)])
        with m.If(self.start):
            m.d.sync += feeding.eq(1)
        # Between layers every loop restarts from zero.
        with m.If(~self.running):
            feed.reset(m)
            m.d.sync += addr.eq(0)
        return m
