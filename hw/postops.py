"""The engine's post-op unit: max pooling, add and GELU layers, from the activation buffers into
the requantization units."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import (LAYER_KINDS, PROGRAM_WORD_BITS, MemoryConfig,
                                 activation_word_layout, feed_address_bits)
from systolix.numeric import CODE_BITS, MULTIPLIER_BITS

from .gelu import GELU_PRODUCT, gelu_clipped, gelu_factor
from .issuer import check_lanes, tag_layout
from .loops import Bounds
from .requant import requant_input_layout
from .sequencer import layer_layout

__all__ = ["SUM_BITS", "PostOps"]

SUM_BITS = CODE_BITS + 2 + MULTIPLIER_BITS + 1
"""Bits of an add layer's sum ``(a - za) * Ma + (b - zb) * Mb`` (codes and zero points of at
most 8 bits, signed or unsigned; 16-bit multipliers), the ``acc`` the unit sends."""

_ADD = LAYER_KINDS.index("add")
_GELU = LAYER_KINDS.index("gelu")


class PostOps(wiring.Component):
    """Runs a max pooling, an add or (with ``gelu``) a GELU layer (a record of ``kind``
    ``max_pool``, ``add`` or ``gelu``): reads its input words from the activation buffers and
    sends ``lanes`` codes a cycle, with the constants that make the requantization units
    compute the layer, to the units.

    From the cycle after the ``start`` strobe it computes the layer's output words in order,
    per input ``b < batch_last + 1``, output position ``(oy, ox)`` and channel tile ``ct``
    (the buffer layout of docs/memory-map.md: output word ``w = ((b * output_height + oy) *
    output_width + ox) * c_tiles + ct``). For each word it reads, one a cycle:

    * max pooling: the window's words, per kernel row ``ky`` and column ``kx``, the word of
      pixel ``(oy * stride_height - pad_top + ky, ox * stride_width - pad_left + kx)`` and
      channel tile ``ct`` of the buffer ``input_buffer`` selects (``origin``, ``x_step``,
      ``row_step``, ``image_step`` and ``window_row_step`` step its address, no multiplier), or
      ``rows`` copies of ``pad_code`` outside the map, and keeps the largest code of each lane;
    * add: word ``input_base + w`` of buffer ``input_buffer`` and word ``second_base + w`` of
      buffer ``second_buffer``;
    * GELU: word ``input_base + w`` (a 1x1 window);

    then, in ``rows / lanes`` cycles, sends the word's codes ``lanes`` at a time on
    ``channels``: ``acc`` the largest code (shift 0), or ``(a - zero_point_a) * multiplier_a +
    (b - zero_point_b) * multiplier_b`` (shift ``add_shift``), with bias 0 and multiplier 1, or
    GELU's product ``P = x * (gelu_constant + sign(x) * (gelu_constant - t^2))``, ``x = a -
    zero_point_a``, ``t = min(|x|, gelu_clip) - gelu_clip`` (bias 0, multiplier
    ``multiplier_a``, shift ``add_shift``), so that a
    :class:`~systolix.hw.requant.Requantizer` with the layer's ``output_zero_point``,
    ``output_low``, ``output_high`` and ``rounding`` gives the layer's code
    (:func:`systolix.sim.golden.program.run_layer`, bit-exact), and a
    :func:`~systolix.hw.issuer.tag_layout` tag as the :class:`~systolix.hw.issuer.RequantIssuer`
    makes them: codes ``n .. n + lanes - 1`` of the word go to lane ``n`` of buffer word ``w``,
    or in the ``last`` layer to output memory word ``v * ceil(outputs / lanes) + (ct * rows +
    n) // lanes`` (``v`` the word's output position of the batch); ``write`` marks the channels
    below ``outputs``, ``final`` the layer's last codes. Then it stops until the next
    ``start``. While ``running`` is low the counters and addresses are held at the start of the
    layer; ``start`` comes while it is low, and the layer's fields must hold from then on.

    Latency: the first codes are valid on ``channels`` ``taps + 2`` cycles after ``start``
    (``taps`` = ``kernel_height * kernel_width``, 2 for an add, 1 for a GELU). Throughput: one
    output word every ``taps + 1 + rows / lanes`` cycles (reads, the last read's data, the
    codes), so ``lanes`` codes a cycle while sending;
    :class:`systolix.sim.golden.components.PostOps` counts the same.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    lanes : int
        Requantization lanes (:func:`~systolix.hw.issuer.check_lanes`).
    program_width : int, optional
        Bits of a program word.
    gelu : bool, optional
        Whether it runs GELU layers (lanes of the GELU product: a 12-bit square and a 10 x
        24-bit product each); ``sum_bits`` is then 32.

    Attributes
    ----------
    start, running : In(1)
    batch_last : In(...)
        The inputs of the run minus one (the shape of :class:`~systolix.hw.loops.Bounds`).
    layer : In(layer_layout())
        The layer's record (:class:`~systolix.hw.sequencer.Sequencer`'s ``layer``).
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    channels : Out(stream.Signature(requant_input_layout(sum_bits, tag_layout(...)),
                                    always_ready=True)).array(lanes)
        To the requantization units; every lane carries the same tag.
    """

    def __init__(self, config, memories, lanes, program_width=PROGRAM_WORD_BITS, gelu=False):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        check_lanes(config, lanes)
        if not isinstance(gelu, bool):
            raise TypeError(f"gelu must be True or False, not {gelu!r}")
        self.config, self.memories, self.lanes, self.gelu = config, memories, lanes, gelu
        self.sum_bits = max(SUM_BITS, GELU_PRODUCT.width) if gelu else SUM_BITS
        self.bounds = bounds = Bounds(config, memories)
        self.tag_layout = tag_layout(config, memories, lanes)
        self.addr_width = ceil_log2(memories.activation_words)
        super().__init__({
            "start": In(1),
            "running": In(1),
            "batch_last": In(bounds.batch),
            "layer": In(layer_layout(program_width)),
            "buffers": In(ReadPort.Signature(addr_width=self.addr_width,
                                             shape=activation_word_layout(config).size)
                          ).array(2),
            "channels": Out(stream.Signature(requant_input_layout(self.sum_bits,
                                                                  self.tag_layout),
                                             always_ready=True)).array(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        config, layer, bounds, lanes = self.config, self.layer, self.bounds, self.lanes
        rows, groups = config.rows, config.rows // lanes
        word = activation_word_layout(config)
        adding = layer.kind == _ADD
        gelu = layer.kind == _GELU if self.gelu else 0

        # -- The words read: the window's loops, each counter from 1 to its span. -------------
        width = bounds.address.width
        spans = {"ox": layer.output_width, "oy": layer.output_height, "ct": layer.c_tiles,
                 "kx": Mux(adding, 2, layer.kernel_width), "ky": layer.kernel_height}
        spans = {name: span[:width] for name, span in spans.items()}
        ox, oy, ct, kx, ky = counters = [Signal(bounds.address, name=name, init=1)
                                         for name in spans]
        at_end = {name: counter == spans[name] for name, counter in zip(spans, counters)}
        b = Signal(bounds.batch)
        # The addresses: of the pixel's window (channel tile 0), of the word's (its channel
        # tile), of the tap; the window's first pixel and the tap's pixel.
        address = signed(feed_address_bits(self.memories))
        pixel, first, tap = Signal(address), Signal(address), Signal(address)
        coordinate = signed(width + 2)
        wy, wx, ty, tx = (Signal(coordinate, name=name) for name in ("wy", "wx", "ty", "tx"))
        top, left = -layer.pad_top[:width], -layer.pad_left[:width]
        written = Signal(bounds.address)        # output word w, relative to output_base
        second = adding & (kx == 2)             # an add's second input
        last_tap = at_end["kx"] & at_end["ky"]
        last_word = (b == self.batch_last) & at_end["oy"] & at_end["ox"] & at_end["ct"]

        reading, waiting, sending = Signal(), Signal(), Signal()
        group = Signal(range(groups))
        final_word, pixel_end = Signal(), Signal()
        for port in self.buffers:
            m.d.comb += [port.en.eq(reading),
                         port.addr.eq(Mux(second, layer.second_base + written, tap)
                                      [:self.addr_width])]

        # -- The data of each read, a cycle later: kept, or the lanes' largest codes. -------------
        fetched = Signal(data.StructLayout({"valid": 1, "first": 1, "second": 1, "buffer": 1,
                                            "pad": 1}))
        m.d.sync += [
            fetched.valid.eq(reading),
            fetched.first.eq((kx == 1) & (ky == 1)),
            fetched.second.eq(second),
            fetched.buffer.eq(Mux(second, layer.second_buffer, layer.input_buffer)),
            fetched.pad.eq(~second & ((ty.as_unsigned() >= layer.height[:width])
                                      | (tx.as_unsigned() >= layer.width[:width]))),
        ]
        pad_word = Cat(layer.pad_code[:config.activation_bits] for _ in range(rows))
        given = word(Mux(fetched.pad, pad_word,
                         Mux(fetched.buffer, self.buffers[1].data, self.buffers[0].data)))
        kept, other = Signal(word), Signal(word)     # the largest codes or a; b
        with m.If(fetched.valid):
            with m.If(fetched.first):
                m.d.sync += kept.eq(given)
            with m.Elif(fetched.second):
                m.d.sync += other.eq(given)
            with m.Else():
                m.d.sync += [kept[r].eq(Mux(given[r] > kept[r], given[r], kept[r]))
                             for r in range(rows)]

        # -- The codes out, `lanes` a cycle (the words shift down by `lanes` codes). -----------
        channel = Signal(17)        # the channel of the first code sent (below 2^16 + rows)
        out_word, vector_word = Signal(bounds.address), Signal(bounds.address)
        stride = Signal(bounds.address)
        lane_shift = lanes.bit_length() - 1
        m.d.sync += stride.eq((layer.outputs + lanes - 1) >> lane_shift)
        issued = Signal(data.StructLayout({
            "valid": 1, "tag": self.tag_layout,
            "acc": data.ArrayLayout(signed(self.sum_bits), lanes)}))
        sums = []
        for index in range(lanes):
            a, b_code = kept[index], other[index]
            value = Mux(adding, (a - layer.zero_point_a) * layer.multiplier_a
                        + (b_code - layer.zero_point_b) * layer.multiplier_b, a)
            if self.gelu:
                x = a - layer.zero_point_a
                t = gelu_clipped(x, layer.gelu_clip)
                value = Mux(gelu, x * gelu_factor(x, t * t, layer.gelu_constant), value)
            sums.append(value)
        m.d.sync += [
            issued.valid.eq(sending),
            issued.tag.addr.eq(Mux(layer.last, out_word, written)),
            issued.tag.lane.eq(group * lanes),
            issued.tag.write.eq(Cat(channel + index < layer.outputs for index in range(lanes))),
            issued.tag.final.eq(sending & final_word & (group == groups - 1)),
            *(issued.acc[index].eq(value) for index, value in enumerate(sums)),
        ]
        for out, value in zip(self.channels, issued.acc):
            m.d.comb += [
                out.valid.eq(issued.valid),
                out.payload.acc.eq(value),
                out.payload.bias.eq(0),
                out.payload.multiplier.eq(Mux(gelu, layer.multiplier_a, 1)),
                out.payload.shift.eq(Mux(adding | gelu, layer.add_shift, 0)),
                out.payload.tag.eq(issued.tag),
            ]

        # -- The schedule of a word: its reads, the last read's data, its groups of codes. ----
        start_layer = [pixel.eq(layer.origin), first.eq(layer.origin), tap.eq(layer.origin),
                       wy.eq(top), wx.eq(left), ty.eq(top), tx.eq(left)]
        with m.FSM(name="postops"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += reading.eq(1)
                with m.If(~last_tap):
                    with m.If(~at_end["kx"]):
                        m.d.sync += [kx.eq(kx + 1), tap.eq(tap + layer.c_tiles),
                                     tx.eq(tx + 1)]
                    with m.Else():
                        m.d.sync += [kx.eq(1), ky.eq(ky + 1), tx.eq(wx), ty.eq(ty + 1),
                                     tap.eq(tap + layer.window_row_step)]
                with m.Else():
                    m.next = "WAIT"
                    m.d.sync += [kx.eq(1), ky.eq(1), final_word.eq(last_word),
                                 pixel_end.eq(at_end["ct"])]
                    # On to the next word: the next channel tile, or the next window.
                    with m.If(~at_end["ct"]):
                        m.d.sync += [ct.eq(ct + 1), first.eq(first + 1), tap.eq(first + 1),
                                     ty.eq(wy), tx.eq(wx)]
                    with m.Else():
                        step = Mux(~at_end["ox"], layer.x_step,
                                   Mux(~at_end["oy"], layer.row_step, layer.image_step))
                        m.d.sync += [ct.eq(1), pixel.eq(pixel + step), first.eq(pixel + step),
                                     tap.eq(pixel + step)]
                        with m.If(~at_end["ox"]):
                            m.d.sync += [ox.eq(ox + 1), wx.eq(wx + layer.stride_width[:width]),
                                         tx.eq(wx + layer.stride_width[:width]), ty.eq(wy)]
                        with m.Elif(~at_end["oy"]):
                            m.d.sync += [ox.eq(1), oy.eq(oy + 1), wx.eq(left), tx.eq(left),
                                         wy.eq(wy + layer.stride_height[:width]),
                                         ty.eq(wy + layer.stride_height[:width])]
                        with m.Else():
                            m.d.sync += [ox.eq(1), oy.eq(1), b.eq(b + 1), wx.eq(left),
                                         tx.eq(left), wy.eq(top), ty.eq(top)]
            with m.State("WAIT"):
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += sending.eq(1)
                m.d.sync += [kept.eq(kept.as_value() >> lanes * config.activation_bits),
                             other.eq(other.as_value() >> lanes * config.activation_bits),
                             group.eq(group + 1), channel.eq(channel + lanes),
                             out_word.eq(out_word + 1)]
                with m.If(group == groups - 1):
                    m.d.sync += [group.eq(0), written.eq(written + 1)]
                    m.next = "READ"
                    with m.If(pixel_end):
                        m.d.sync += [channel.eq(0), vector_word.eq(vector_word + stride),
                                     out_word.eq(vector_word + stride)]
                    with m.If(final_word):
                        m.next = "IDLE"

        # Between layers every loop restarts from the layer's origin.
        with m.If(~self.running):
            m.d.sync += [*(counter.eq(1) for counter in counters), b.eq(0), *start_layer,
                         group.eq(0), channel.eq(0), written.eq(0), out_word.eq(0),
                         vector_word.eq(0)]
        return m
