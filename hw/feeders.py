"""The engine's feeders: the weight memory and the activation buffers into the array."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import (PROGRAM_WORD_BITS, MemoryConfig, activation_word_layout,
                                 feed_address_bits, weights_layout)

from .array import activations_layout
from .loops import Bounds
from .memory_stream import MemoryToStream
from .sequencer import layer_layout

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
    """Streams a layer's input maps into the array's ``activations``, tile by tile, generating
    the im2col addresses of its window (docs/memory-map.md).

    From the cycle after the ``start`` strobe, per output tile ``j < n_last + 1``, per kernel
    row ``ky``, column ``kx`` and channel tile ``ct`` (the layer's K tiles, the order of the
    weight image), per input ``b < batch_last + 1`` and output position ``(oy, ox)`` (the
    layer's vectors), it sends the word of input pixel ``(iy, ix) = (oy * stride_height -
    pad_top + ky, ox * stride_width - pad_left + kx)``, i.e. buffer word ``b * image_words +
    (iy * width + ix) * c_tiles + ct`` of the buffer that ``input_buffer`` selects, or, where
    the pixel lies outside the map, a word of ``rows`` copies of ``pad_code``; ``last`` is set
    on the final vector (the last one that uses a weight tile). Then it stops until the next
    ``start``. A dense layer is a window that covers its whole input map.

    The addresses need no multiplier: the address register adds the layer's ``x_step``,
    ``row_step`` or ``image_step`` (whichever loop moves on); a second register holds the K
    tile's first address, which adds 1 or ``tap_step`` for the next K tile
    (:func:`systolix.memory_map.layer_window`); the pixel coordinates ``(iy, ix)`` follow the
    same way, from ``(-pad_top, -pad_left)``. The words go through a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage. While ``running`` is low the
    counters and addresses are held at the start of the layer; ``start`` comes while it is low,
    and the layer's fields must hold from then on.

    Latency: the first word is valid 2 cycles after ``start``. Throughput: one word a cycle
    while ``activations`` is ready.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig

    Attributes
    ----------
    start, running : In(1)
    batch_last, n_last : In(...)
        The inputs of the run and the layer's output tiles, minus one (shapes of
        :class:`~systolix.hw.loops.Bounds`).
    layer : In(layer_layout())
        The layer's record (:class:`~systolix.hw.sequencer.Sequencer`'s ``layer``): its window
        fields.
    input_buffer : In(1)
        Which activation buffer holds the layer's input.
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    activations : Out(stream.Signature(activations_layout(config)))
    """

    def __init__(self, config, memories, program_width=PROGRAM_WORD_BITS):
        _check(config, memories)
        self.config, self.memories = config, memories
        self.bounds = bounds = Bounds(config, memories)
        self.addr_width = ceil_log2(memories.activation_words)
        super().__init__({
            "start": In(1),
            "running": In(1),
            "batch_last": In(bounds.batch),
            "n_last": In(bounds.n_tiles),
            "layer": In(layer_layout(program_width)),
            "input_buffer": In(1),
            "buffers": In(ReadPort.Signature(addr_width=self.addr_width,
                                             shape=activation_word_layout(config).size)
                          ).array(2),
            "activations": Out(stream.Signature(activations_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config, layer = self.config, self.layer
        word = activation_word_layout(config)
        m.submodules.reader = reader = MemoryToStream(
            self.addr_width, word, fields={"last": 1, "pad": 1})
        for port in self.buffers:
            m.d.comb += [port.en.eq(reader.read.en), port.addr.eq(reader.read.addr)]
        m.d.comb += reader.read.data.eq(Mux(self.input_buffer, self.buffers[1].data,
                                            self.buffers[0].data))
        pad_word = Cat(layer.pad_code[:config.activation_bits] for _ in range(config.rows))
        words, out = reader.words, self.activations
        m.d.comb += [
            out.valid.eq(words.valid), words.ready.eq(out.ready),
            out.payload.last.eq(words.payload.last),
            out.payload.data.eq(Mux(words.payload.pad, pad_word, words.payload.data)),
        ]

        # The loop counters, each from 1 to its span (no subtraction to compare with).
        bounds = self.bounds
        width = bounds.address.width
        spans = {name: field[:width] for name, field in (
            ("ox", layer.output_width), ("oy", layer.output_height), ("ct", layer.c_tiles),
            ("kx", layer.kernel_width), ("ky", layer.kernel_height))}
        ox, oy, ct, kx, ky = counters = [Signal(bounds.address, name=name, init=1)
                                         for name in spans]
        at_end = {name: counter == spans[name] for name, counter in zip(spans, counters)}
        b, n = Signal(bounds.batch), Signal(bounds.n_tiles)

        # The address and the first address of the K tile (signed: the padding), the pixel
        # and the K tile's first pixel.
        address = signed(feed_address_bits(self.memories))
        tap, addr = Signal(address), Signal(address)
        coordinate = signed(width + 2)
        tap_y, tap_x, iy, ix = (Signal(coordinate, name=name)
                                for name in ("tap_y", "tap_x", "iy", "ix"))
        top, left = -layer.pad_top[:width], -layer.pad_left[:width]
        feeding = Signal()
        request = reader.requests
        m.d.comb += [
            request.valid.eq(feeding),
            request.payload.addr.eq(addr[:self.addr_width]),
            request.payload.last.eq((b == self.batch_last) & at_end["oy"] & at_end["ox"]),
            request.payload.pad.eq((iy < 0) | (iy >= layer.height[:width])
                                   | (ix < 0) | (ix >= layer.width[:width])),
        ]

        def next_tap(step, y, x):
            """The next K tile: ``step`` added to its first address, its first pixel."""
            return [tap.eq(tap + step), addr.eq(tap + step), iy.eq(y), ix.eq(x)]

        with m.If(request.valid & request.ready):
            with m.If(~at_end["ox"]):
                m.d.sync += [ox.eq(ox + 1), addr.eq(addr + layer.x_step),
                             ix.eq(ix + layer.stride_width[:width])]
            with m.Elif(~at_end["oy"]):
                m.d.sync += [ox.eq(1), oy.eq(oy + 1), addr.eq(addr + layer.row_step),
                             iy.eq(iy + layer.stride_height[:width]), ix.eq(tap_x)]
            with m.Elif(b != self.batch_last):
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(b + 1), addr.eq(addr + layer.image_step),
                             iy.eq(tap_y), ix.eq(tap_x)]
            with m.Elif(~at_end["ct"]):
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(0), ct.eq(ct + 1),
                             *next_tap(1, tap_y, tap_x)]
            with m.Elif(~at_end["kx"]):
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(0), ct.eq(1), kx.eq(kx + 1),
                             tap_x.eq(tap_x + 1), *next_tap(1, tap_y, tap_x + 1)]
            with m.Elif(~at_end["ky"]):
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(0), ct.eq(1), kx.eq(1), ky.eq(ky + 1),
                             tap_y.eq(tap_y + 1), tap_x.eq(left),
                             *next_tap(layer.tap_step, tap_y + 1, left)]
            with m.Else():
                m.d.sync += [*(counter.eq(1) for counter in counters), b.eq(0),
                             tap_y.eq(top), tap_x.eq(left), tap.eq(layer.origin),
                             addr.eq(layer.origin), iy.eq(top), ix.eq(left)]
                with m.If(n != self.n_last):
                    m.d.sync += n.eq(n + 1)
                with m.Else():
                    m.d.sync += [n.eq(0), feeding.eq(0)]
        with m.If(self.start):
            m.d.sync += feeding.eq(1)
        # Between layers every loop restarts from the layer's origin.
        with m.If(~self.running):
            m.d.sync += [*(counter.eq(1) for counter in counters), b.eq(0), n.eq(0),
                         tap_y.eq(top), tap_x.eq(left), tap.eq(layer.origin),
                         addr.eq(layer.origin), iy.eq(top), ix.eq(left)]
        return m
