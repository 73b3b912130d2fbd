"""The engine's row unit: softmax and LayerNorm layers, rows of codes from the activation
buffers through :class:`~systolix.hw.softmax.SoftmaxUnit` or
:class:`~systolix.hw.layernorm.LayerNormUnit` into the writeback."""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import (LAYER_KINDS, LAYERNORM_WORDS, PROGRAM_WORD_BITS,
                                 REQUANT_LAYOUT, MemoryConfig, activation_word_layout)

from .issuer import check_lanes, tag_layout
from .layernorm import LayerNormUnit, layernorm_constants_layout
from .loops import Bounds
from .memory_stream import MemoryToStream
from .requant import CODE_SHAPE, requant_output_layout
from .sequencer import layer_layout
from .softmax import SoftmaxUnit

__all__ = ["RowOps"]

_SOFTMAX = LAYER_KINDS.index("softmax")
_LAYERNORM = LAYER_KINDS.index("layernorm")


class RowOps(wiring.Component):
    """Runs a softmax or a LayerNorm layer (a record of ``kind`` ``softmax`` or ``layernorm``)
    on its unit: the rows of codes (the ``channels`` codes of each position of each input) from
    the activation buffers into the unit, one code a cycle while the unit loads a row, and the
    unit's codes to the writeback with a tag saying where they go.

    From the cycle after the ``start`` strobe: for a LayerNorm layer, first its per-channel
    constants, ``2 channels`` words of the requantization memory from ``requant_base``
    (:func:`systolix.memory_map.layernorm_words`), one a cycle on ``constants`` into a table of
    the unit's ``max_channels`` entries (read back, channel by channel, as the unit's
    ``constants`` stream while it normalises each row); then (at once for a softmax layer) the
    words ``input_base .. input_base + rows * c_tiles - 1`` of buffer ``input_buffer`` in
    order (``rows = rows_last + 1`` = the inputs of the run times the ``positions`` of the
    layer; a row is ``c_tiles`` words), each word's codes one a cycle into the unit (a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage and a register that shifts a word
    out code by code, the last word of a row up to its ``channels``-th code). The unit's codes
    leave on ``codes``: every lane carries the code, and a
    :func:`~systolix.hw.issuer.tag_layout` tag as the
    :class:`~systolix.hw.issuer.RequantIssuer` makes them: code ``p`` of row ``r`` goes to lane
    ``p % rows`` of buffer word ``r * c_tiles + p // rows`` (the writeback adds
    ``output_base``), or in the ``last`` layer to lane ``p % lanes`` of output memory word ``r
    * ceil(channels / lanes) + p // lanes``; ``final`` marks the layer's last code. While
    ``running`` is low every counter is at the start of a layer.

    The softmax layer's ``fraction_bits``, ``multiplier_a`` and ``add_shift``, the LayerNorm
    layer's ``add_shift``, and both layers' ``output_zero_point``, ``output_low``,
    ``output_high`` and ``rounding`` are the units' constants
    (:func:`systolix.sim.golden.program.run_layer`, bit-exact).

    Latency and throughput: the first code reaches the unit 3 cycles after ``start`` (a
    softmax layer) or ``2 channels + 4`` (a LayerNorm layer, after its constants), the buffer
    words always a code ahead of the unit; the first row's last code is on ``codes``
    :func:`~systolix.timing.softmax_row_latency` ``(channels)`` (``3 channels + 32``) or
    :func:`~systolix.timing.layernorm_row_latency` ``(channels, max_channels)`` (``2 channels
    + r + 38``, ``r`` = :func:`~systolix.timing.layernorm_root_bits`) cycles after its first,
    every later row's :func:`~systolix.timing.softmax_row_cycles` (``2 channels + 26``) or
    :func:`~systolix.timing.layernorm_row_cycles` (``channels + r + 37``) cycles after the row
    before's (each unit loads a row while it computes the row before).
    :class:`systolix.sim.golden.components.RowOps` counts the same.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    lanes : int
        Requantization lanes (:func:`~systolix.hw.issuer.check_lanes`): the writeback's.
    softmax_length : int
        The longest softmax row it runs (its unit's ``max_length``), 0 for no softmax unit.
    layernorm_channels : int
        The longest LayerNorm row (its unit's ``max_channels``), 0 for no LayerNorm unit.
    program_width : int, optional
        Bits of a program word.

    Attributes
    ----------
    start, running : In(1)
    rows_last : In(...)
        The layer's rows minus one (the sequencer's ``vectors_last``).
    layer : In(layer_layout())
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    constants : In(ReadPort.Signature(addr_width=ceil_log2(requant_words), shape=56))
        Only with ``layernorm_channels``: the requantization memory.
    codes : Out(stream.Signature(requant_output_layout(tag_layout(...)),
                                 always_ready=True)).array(lanes)
        To the writeback.
    """

    def __init__(self, config, memories, lanes, *, softmax_length=0, layernorm_channels=0,
                 program_width=PROGRAM_WORD_BITS):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        check_lanes(config, lanes)
        for name, value in (("softmax_length", softmax_length),
                            ("layernorm_channels", layernorm_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if not softmax_length and not layernorm_channels:
            raise ValueError("a row unit needs softmax_length or layernorm_channels")
        self.config, self.memories, self.lanes = config, memories, lanes
        self.softmax_length, self.layernorm_channels = softmax_length, layernorm_channels
        self.bounds = bounds = Bounds(config, memories)
        self.tag_layout = tag_layout(config, memories, lanes)
        self.addr_width = ceil_log2(memories.activation_words)
        members = {
            "start": In(1),
            "running": In(1),
            "rows_last": In(bounds.batch),
            "layer": In(layer_layout(program_width)),
            "buffers": In(ReadPort.Signature(addr_width=self.addr_width,
                                             shape=activation_word_layout(config).size)
                          ).array(2),
            "codes": Out(stream.Signature(requant_output_layout(self.tag_layout),
                                          always_ready=True)).array(lanes),
        }
        if layernorm_channels:
            members["constants"] = In(ReadPort.Signature(
                addr_width=ceil_log2(memories.requant_words), shape=REQUANT_LAYOUT.size))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config, layer, bounds, lanes = self.config, self.layer, self.bounds, self.lanes
        rows = config.rows
        word = activation_word_layout(config)
        width = bounds.address.width
        channels = layer.channels[:width]
        units = []
        loading_kind = Const(0)     # the layer's constants are loaded first
        if self.softmax_length:
            m.submodules.softmax = softmax = SoftmaxUnit(self.softmax_length)
            is_softmax = layer.kind == _SOFTMAX
            m.d.comb += [softmax.length.eq(channels), softmax.fraction_bits.eq(layer.fraction_bits),
                         softmax.multiplier.eq(layer.multiplier_a),
                         softmax.shift.eq(layer.add_shift)]
            units.append((is_softmax, softmax))
        if self.layernorm_channels:
            m.submodules.layernorm = layernorm = LayerNormUnit(self.layernorm_channels)
            is_layernorm = loading_kind = layer.kind == _LAYERNORM
            m.d.comb += [layernorm.channels.eq(channels), layernorm.shift.eq(layer.add_shift)]
            units.append((is_layernorm, layernorm))
        for _, unit in units:
            m.d.comb += [unit.zero_point.eq(layer.output_zero_point),
                         unit.low.eq(layer.output_low), unit.high.eq(layer.output_high),
                         unit.rounding.eq(layer.rounding)]

        # -- A LayerNorm layer's constants: requantization words into the table. ---------------
        reading = Signal()          # the rows' words are requested
        if self.layernorm_channels:
            entries = layernorm_constants_layout()      # multiplier (17 bits), then bias (48)
            table = m.submodules.table = Memory(shape=entries.size,
                                                depth=self.layernorm_channels, init=[])
            table_write = table.write_port()
            index = Signal(range(LAYERNORM_WORDS * self.layernorm_channels + 1))
            loading, table_ready = Signal(), Signal()    # the words are read; the table is full
            fetched = Signal(data.StructLayout({"valid": 1, "odd": 1, "channel": width,
                                                "done": 1}))
            even = Signal(REQUANT_LAYOUT)       # a channel's multiplier word
            given = REQUANT_LAYOUT(self.constants.data)
            m.d.comb += [self.constants.en.eq(loading),
                         self.constants.addr.eq(layer.requant_base + index)]
            m.d.sync += [fetched.valid.eq(loading), fetched.odd.eq(index[0]),
                         fetched.channel.eq(index >> 1),
                         fetched.done.eq(index == LAYERNORM_WORDS * channels - 1)]
            with m.If(loading):
                m.d.sync += index.eq(index + 1)
                with m.If(index == LAYERNORM_WORDS * channels - 1):
                    m.d.sync += loading.eq(0)
            with m.If(fetched.valid & ~fetched.odd):
                m.d.sync += even.eq(given)
            m.d.comb += [
                table_write.en.eq(fetched.valid & fetched.odd),
                table_write.addr.eq(fetched.channel),
                table_write.data.eq(Cat(even.bias[:entries["multiplier"].shape.width],
                                        given.multiplier, given.bias)),
            ]
            # The unit's constants stream: the table in channel order, a channel ahead.
            table_reader = MemoryToStream(ceil_log2(self.layernorm_channels), entries)
            m.submodules.table_reader = ResetInserter(~self.running)(table_reader)
            wiring.connect(m, table_reader.read, table.read_port())
            wiring.connect(m, table_reader.words, layernorm.constants)
            entry = Signal(range(self.layernorm_channels))
            m.d.comb += [table_reader.requests.valid.eq(table_ready),
                         table_reader.requests.payload.eq(entry)]
            with m.If(table_reader.requests.valid & table_reader.requests.ready):
                m.d.sync += entry.eq(Mux(entry == channels - 1, 0, entry + 1))
            with m.If(fetched.valid & fetched.done):
                m.d.sync += [reading.eq(1), table_ready.eq(1)]
            with m.If(~self.running):
                m.d.sync += [entry.eq(0), table_ready.eq(0)]
            with m.If(self.start & is_layernorm):
                m.d.sync += [loading.eq(1), index.eq(0)]

        # -- The rows' words from the buffer, then their codes one a cycle. --------------------
        words_reader = MemoryToStream(self.addr_width, word)
        m.submodules.words = ResetInserter(~self.running)(words_reader)
        request = Signal(bounds.address)        # word of the layer's input, from 0
        tile = Signal(bounds.address, init=1)   # its channel tile, from 1
        row = Signal(bounds.batch)
        m.d.comb += [words_reader.requests.valid.eq(reading),
                     words_reader.requests.payload.eq(layer.input_base + request)]
        for port in self.buffers:
            m.d.comb += [port.en.eq(words_reader.read.en), port.addr.eq(words_reader.read.addr)]
        m.d.comb += words_reader.read.data.eq(Mux(layer.input_buffer, self.buffers[1].data,
                                                  self.buffers[0].data))
        with m.If(words_reader.requests.valid & words_reader.requests.ready):
            m.d.sync += [request.eq(request + 1), tile.eq(tile + 1)]
            with m.If(tile == layer.c_tiles[:width]):
                m.d.sync += [tile.eq(1), row.eq(row + 1)]
                with m.If(row == self.rows_last):
                    m.d.sync += reading.eq(0)

        held = Signal(word)                     # the word's codes not yet sent, shifted down
        left = Signal(range(rows + 1))          # how many
        position = Signal(bounds.address)       # the channel of held[0]
        code = stream.Signature(CODE_SHAPE).create()
        row_end = position == channels - 1
        taken = code.valid & code.ready
        finishing = (left == 0) | taken & ((left == 1) | row_end)
        m.d.comb += [code.valid.eq(left != 0), code.payload.eq(held[0]),
                     words_reader.words.ready.eq(finishing)]
        with m.If(taken):
            m.d.sync += [held.eq(held.as_value() >> config.activation_bits),
                         left.eq(left - 1), position.eq(Mux(row_end, 0, position + 1))]
        with m.If(finishing):
            m.d.sync += left.eq(0)
            with m.If(words_reader.words.valid):
                m.d.sync += [held.eq(words_reader.words.payload), left.eq(rows)]
        for selected, unit in units:
            m.d.comb += [unit.input.valid.eq(code.valid & selected),
                         unit.input.payload.eq(code.payload)]
        m.d.comb += code.ready.eq(Mux(units[0][0], units[0][1].input.ready,
                                      units[-1][1].input.ready))

        with m.If(self.start & ~loading_kind):
            m.d.sync += reading.eq(1)

        # -- The unit's codes out, with where they go. ------------------------------------------
        out_valid = Cat(unit.output.valid for _, unit in units).any()
        out_code = Mux(units[0][0], units[0][1].output.payload.code,
                       units[-1][1].output.payload.code)
        out_position = Signal(bounds.address)   # the code's channel p
        out_row = Signal(bounds.batch)
        group = Signal(range(rows))             # p % rows rounded down to lanes
        lane = Signal(range(lanes))             # p % lanes
        buffer_word = Signal(bounds.address)    # r * c_tiles + p // rows
        memory_word = Signal(bounds.address)    # r * ceil(channels / lanes) + p // lanes
        out_end = out_position == channels - 1
        for port in self.codes:
            m.d.comb += [
                port.valid.eq(out_valid),
                port.payload.code.eq(out_code),
                port.payload.tag.addr.eq(Mux(layer.last, memory_word, buffer_word)),
                port.payload.tag.lane.eq(group),
                port.payload.tag.write.eq(1 << lane),
                port.payload.tag.final.eq(out_end & (out_row == self.rows_last)),
            ]
        with m.If(out_valid):
            with m.If(out_end):
                m.d.sync += [out_position.eq(0), out_row.eq(out_row + 1), group.eq(0),
                             lane.eq(0), buffer_word.eq(buffer_word + 1),
                             memory_word.eq(memory_word + 1)]
            with m.Else():
                m.d.sync += [out_position.eq(out_position + 1), lane.eq(lane + 1)]
                with m.If(lane == lanes - 1):
                    m.d.sync += [lane.eq(0), memory_word.eq(memory_word + 1),
                                 group.eq(group + lanes)]
                    with m.If(group == rows - lanes):
                        m.d.sync += [group.eq(0), buffer_word.eq(buffer_word + 1)]

        # Between layers every counter restarts.
        with m.If(~self.running):
            m.d.sync += [request.eq(0), tile.eq(1), row.eq(0), left.eq(0), position.eq(0),
                         out_position.eq(0), out_row.eq(0), group.eq(0), lane.eq(0),
                         buffer_word.eq(0), memory_word.eq(0)]
            with m.If(~self.start):
                m.d.sync += reading.eq(0)
        return m
