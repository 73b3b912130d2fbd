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
from .loops import Bounds, LoopCounters
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
        before_final = Signal(range(-2, words + 1))    # total - 2
        addr = Signal(range(words + 1))
        feed = Signal()
        # Whether addr is the last word (addr == total - 1), kept registered: the array's
        # ready, which passes through the reader to request.ready, then only enables
        # registers (a compare after it was the iCEBreaker's critical path). It is set from a
        # compare with total - 2, registered (with addr + 2 == total, the adder's carry chain
        # before the compare was the iCEBreaker's critical path).
        final = Signal()
        request = reader.requests
        m.d.comb += [request.valid.eq(feed), request.payload.eq(addr)]
        with m.If(request.valid & request.ready):
            m.d.sync += [addr.eq(addr + 1), final.eq(addr == before_final)]
            with m.If(final):
                m.d.sync += feed.eq(0)
        with m.If(self.start):
            m.d.sync += [addr.eq(0), feed.eq(1), before_final.eq(self.total - 2),
                         final.eq(self.total == 1)]
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
    program_width : int, optional
        Bits of a program word.
    windows : bool, optional
        Whether to generate window addresses (the default). Without, the feeder runs only
        dense layers (one output position, no padding: every vector's K tiles are
        ``image_words`` consecutive words), with a counter per loop, as the engine of a
        program without convolutions does: about 300 logic cells fewer on iCE40.
    matmul : bool, optional
        Whether to add ``offset`` to the window's ``origin`` (an engine with matmul layers:
        the sequencer's ``input_offset``, where the head of a pass lies in the input map).

    Attributes
    ----------
    start, running : In(1)
    batch_last, k_last, n_last : In(...)
        The inputs of the run, the layer's K tiles and output tiles, minus one (shapes of
        :class:`~systolix.hw.loops.Bounds`; ``k_last`` is read only without ``windows``).
    layer : In(layer_layout())
        The layer's record (:class:`~systolix.hw.sequencer.Sequencer`'s ``layer``): its window
        fields.
    input_buffer : In(1)
        Which activation buffer holds the layer's input.
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    activations : Out(stream.Signature(activations_layout(config)))
        With bit-serial cells its ``planes`` are the layer's
        (:func:`~systolix.timing.vector_planes`).
    """

    def __init__(self, config, memories, program_width=PROGRAM_WORD_BITS, *, windows=True,
                 matmul=False):
        _check(config, memories)
        if not isinstance(windows, bool):
            raise TypeError(f"windows must be a bool, not {windows!r}")
        self.config, self.memories, self.windows = config, memories, windows
        self.matmul = matmul
        self.bounds = bounds = Bounds(config, memories)
        self.addr_width = ceil_log2(memories.activation_words)
        super().__init__({
            **({"offset": In(bounds.address)} if matmul else {}),
            "start": In(1),
            "running": In(1),
            "batch_last": In(bounds.batch),
            "k_last": In(bounds.k_tiles),
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
        words, out = reader.words, self.activations
        m.d.comb += [out.valid.eq(words.valid), words.ready.eq(out.ready),
                     out.payload.last.eq(words.payload.last)]
        if config.pe == "serial":
            # The layer's input bits (one more for unsigned codes on an array of signed ones:
            # its top bit-plane is the sign): systolix.timing.vector_planes.
            m.d.comb += out.payload.planes.eq(
                layer.input_bits + (config.activation_signed & ~layer.input_signed))
        feeding = Signal()
        with m.If(self.start):
            m.d.sync += feeding.eq(1)
        if not self.windows:
            m.d.comb += out.payload.data.eq(words.payload.data)
            self._dense(m, reader.requests, feeding)
            return m
        pad_word = Cat(layer.pad_code[:config.activation_bits] for _ in range(config.rows))
        m.d.comb += out.payload.data.eq(Mux(words.payload.pad, pad_word, words.payload.data))
        self._window(m, reader.requests, feeding)
        return m

    def _dense(self, m, request, feeding):
        """Dense layers: vector ``i``'s K tile ``t`` is word ``i * image_words + t``."""
        feed = LoopCounters("feed", self.bounds, registered=True)
        addr = Signal(range(self.memories.activation_words))
        m.d.comb += [request.valid.eq(feeding), request.payload.addr.eq(addr),
                     request.payload.last.eq(feed.index_last)]
        with m.If(request.valid & request.ready):
            feed.step(m, self.batch_last, self.k_last, self.n_last,
                      on_vector=[addr.eq(addr + self.layer.image_words)],
                      on_k_tile=[addr.eq(feed.k_tile + 1)],
                      on_n_tile=[addr.eq(0)],
                      on_layer=[addr.eq(0), feeding.eq(0)])
        with m.If(~self.running):
            feed.reset(m, self.batch_last, self.k_last)
            m.d.sync += addr.eq(0)

    def _window(self, m, request, feeding):
        """Any layer: the window's addresses, and padding words outside the map."""
        layer = self.layer
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

        # The address and the first address of the K tile (signed: the padding), through one
        # adder; the pixel, each coordinate through one adder too (it steps by the stride, or
        # back to the K tile's first output position, plus one for the next kernel column or
        # row).
        address = signed(feed_address_bits(self.memories))
        tap, addr = Signal(address), Signal(address)
        coordinate = signed(width + 2)
        iy, ix = Signal(coordinate), Signal(coordinate)
        top, left = -layer.pad_top[:width], -layer.pad_left[:width]
        m.d.comb += [
            request.valid.eq(feeding),
            request.payload.addr.eq(addr[:self.addr_width]),
            request.payload.last.eq((b == self.batch_last) & at_end["oy"] & at_end["ox"]),
            # (A negative coordinate, as an unsigned number, is past every side.)
            request.payload.pad.eq((iy.as_unsigned() >= layer.height[:width])
                                   | (ix.as_unsigned() >= layer.width[:width])),
        ]
        # Which loop moves on: ox, oy, b (the same K tile), a channel tile or kernel column, a
        # kernel row, or the whole window (the next output tile or layer).
        step_x, step_y, step_b = ~at_end["ox"], ~at_end["oy"], b != self.batch_last
        next_column = at_end["ct"] & ~at_end["kx"]
        next_row = at_end["ct"] & at_end["kx"] & ~at_end["ky"]
        new_tap = ~(step_x | step_y | step_b)
        step = Mux(step_x, layer.x_step, Mux(step_y, layer.row_step, Mux(
            step_b, layer.image_step, Mux(~next_row, 1, layer.tap_step))))
        moved, moved_x, moved_y = Signal(address), Signal(coordinate), Signal(coordinate)
        m.d.comb += [
            moved.eq(Mux(new_tap, tap, addr) + step),
            moved_x.eq(ix + Mux(step_x, layer.stride_width[:width], layer.x_back)
                       + (new_tap & next_column)),
            moved_y.eq(iy + Mux(step_y & ~step_x, layer.stride_height[:width], layer.y_back)
                       + (new_tap & next_row)),
        ]
        origin = layer.origin + self.offset if self.matmul else layer.origin
        start_window = [tap.eq(origin), addr.eq(origin), iy.eq(top), ix.eq(left)]

        with m.If(request.valid & request.ready):
            m.d.sync += [addr.eq(moved), ix.eq(moved_x)]
            with m.If(step_x):
                m.d.sync += ox.eq(ox + 1)
            with m.Elif(step_y):
                m.d.sync += [ox.eq(1), oy.eq(oy + 1), iy.eq(moved_y)]
            with m.Elif(step_b):
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(b + 1), iy.eq(moved_y)]
            with m.Else():
                m.d.sync += [ox.eq(1), oy.eq(1), b.eq(0), tap.eq(moved), iy.eq(moved_y)]
                with m.If(~at_end["ct"]):
                    m.d.sync += ct.eq(ct + 1)
                with m.Elif(~at_end["kx"]):
                    m.d.sync += [ct.eq(1), kx.eq(kx + 1)]
                with m.Elif(~at_end["ky"]):
                    m.d.sync += [ct.eq(1), kx.eq(1), ky.eq(ky + 1), ix.eq(left)]
                with m.Else():
                    m.d.sync += [*(counter.eq(1) for counter in counters), *start_window]
                    with m.If(n != self.n_last):
                        m.d.sync += n.eq(n + 1)
                    with m.Else():
                        m.d.sync += [n.eq(0), feeding.eq(0)]
        # Between layers every loop restarts from the layer's origin.
        with m.If(~self.running):
            m.d.sync += [*(counter.eq(1) for counter in counters), b.eq(0), n.eq(0),
                         *start_window]
