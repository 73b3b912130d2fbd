"""The engine's requantization issuer: finished sums into the requantization units, with where
their codes go."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import REQUANT_LAYOUT, MemoryConfig

from .accumulator import sums_layout
from .loops import Bounds, LoopCounters
from .mac import accumulator_shape
from .requant import requant_input_layout

__all__ = ["check_lanes", "tag_layout", "RequantIssuer"]


def check_lanes(config, lanes):
    """Raise unless ``lanes`` channels a cycle suit an array of ``config``."""
    if lanes not in (1, 2, 4, 8, 16, 32) or config.rows % lanes or config.cols % lanes:
        raise ValueError(f"requant_lanes must be a power of two that divides rows "
                         f"({config.rows}) and cols ({config.cols}), not {lanes!r}")


def tag_layout(config, memories, lanes):
    """What travels with ``lanes`` channels through the requantization units: where their
    codes go."""
    return data.StructLayout({
        "addr": Bounds(config, memories).address,   # buffer word, or output memory word
        "lane": range(config.rows),    # the first code's lane within a buffer word
        "write": lanes,                # per channel: a real one (not tile padding)
        "final": 1,                    # the last channels of the layer
    })


class RequantIssuer(wiring.Component):
    """Feeds the finished sums to ``lanes`` requantization units, ``lanes`` channels a cycle.

    While ``running``, it takes a vector from ``vectors`` when it has none or is issuing the
    vector's last channels, and issues channels ``c .. c + lanes - 1`` (``c = 0, lanes, ..``,
    one group a cycle) on ``channels``: lane ``l`` gets channel ``n + l`` of the output tile's
    ``cols`` with its constants, read from ``constants[l]`` at ``requant_base + n + l``, and a
    :func:`tag_layout` saying where the codes go. Vector ``i``'s channel ``n`` (a multiple of
    ``lanes``) of the layer goes to lane ``n % rows`` of buffer word
    ``i * output_words + n // rows``, or in the ``last`` layer to output memory word
    ``i * ceil(outputs / lanes) + n // lanes``; ``write`` marks the channels below ``outputs``
    (not tile padding) and ``final`` the layer's last group. The vectors come per output tile,
    per vector of the batch (``batch_last``, ``n_last``); while ``running`` is low the counters
    restart from zero.

    Latency: 2 cycles from a ``vectors`` transfer to its first group on ``channels`` (the
    vector register, then the registers of the channels, the tag and ``valid``; the constants
    come from synchronous read ports addressed a cycle ahead). Throughput: one vector every
    ``cols / lanes`` cycles, the next taken in the cycle the last group is issued.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    lanes : int
        A power of two that divides ``rows`` and ``cols``.
    matmul : bool, optional
        Whether to run matmul layers (``matmul`` input): there, the first vector of each output
        tile holds the column terms ``za sum_k (b[k, n] - zb)`` (the array's product of a
        vector of ``za`` codes); the issuer keeps it in a register (``cols`` sums) instead of
        issuing it, and issues every later vector of the tile minus it, lane by lane. The
        vectors it issues per tile (``batch_last + 1``) do not count it.

    Attributes
    ----------
    running : In(1)
    batch_last, n_last : In(...)
        Shapes of :class:`~systolix.hw.loops.Bounds`.
    last : In(1)
        The layer is the program's last.
    outputs, output_words, requant_base : In(16)
        The layer's record fields.
    vectors : In(stream.Signature(cols * accumulator_bits))
        Finished sums (the bits of a :func:`~systolix.hw.accumulator.sums_layout`).
    constants : In(ReadPort.Signature(addr_width=ceil_log2(requant_words),
                                      shape=REQUANT_LAYOUT.size)).array(lanes)
        The requantization memory (synchronous read ports, always enabled).
    channels : Out(stream.Signature(requant_input_layout(accumulator_bits, tag_layout(...)),
                                    always_ready=True)).array(lanes)
        To the requantization units; every lane carries the same tag.
    """

    def __init__(self, config, memories, lanes, *, matmul=False):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        check_lanes(config, lanes)
        self.config, self.memories, self.lanes = config, memories, lanes
        self.columns = matmul
        self.bounds = bounds = Bounds(config, memories)
        self.tag_layout = tag_layout(config, memories, lanes)
        super().__init__({
            **({"matmul": In(1)} if matmul else {}),
            "running": In(1),
            "batch_last": In(bounds.batch),
            "n_last": In(bounds.n_tiles),
            "last": In(1),
            "outputs": In(16),
            "output_words": In(16),
            "requant_base": In(16),
            "vectors": In(stream.Signature(sums_layout(config).size)),
            "constants": In(ReadPort.Signature(addr_width=ceil_log2(memories.requant_words),
                                               shape=REQUANT_LAYOUT.size)).array(lanes),
            "channels": Out(stream.Signature(
                requant_input_layout(config.accumulator_bits, self.tag_layout),
                always_ready=True)).array(lanes),
        })

    def elaborate(self, platform):
        m = Module()
        config, bounds, lanes = self.config, self.bounds, self.lanes
        rows, cols = config.rows, config.cols
        batch_last, n_last = self.batch_last, self.n_last

        # One vector every `cols / lanes` cycles, `lanes` channels a cycle.
        vector = Signal(sums_layout(config))
        have_vector = Signal()
        channel = Signal(range(cols))       # the first of the `lanes` channels being issued
        last_channel = Signal()
        take_vector = Signal()
        m.d.comb += [
            last_channel.eq(channel == cols - lanes),
            self.vectors.ready.eq(self.running & (~have_vector | last_channel)),
            take_vector.eq(self.vectors.valid & self.vectors.ready),
        ]
        take_sums = take_vector
        issue = LoopCounters("issue", bounds, registered=True)
        if self.columns:
            # The next vector taken is a tile's column terms: at the start of a layer (or
            # pass) and after a tile's last vector.
            columns = Signal(sums_layout(config))
            columns_next = Signal(init=1)
            tile_end = have_vector & last_channel & issue.index_last
            column = Signal()
            m.d.comb += column.eq(self.matmul & (columns_next | tile_end))
            take_sums = take_vector & ~column
            with m.If(tile_end):
                m.d.sync += columns_next.eq(1)
            with m.If(take_vector & column):
                m.d.sync += [columns.eq(self.vectors.payload), columns_next.eq(0)]
            with m.If(~self.running):
                m.d.sync += columns_next.eq(1)
        with m.If(take_sums):
            m.d.sync += [vector.eq(self.vectors.payload), have_vector.eq(1), channel.eq(0)]
        with m.Elif(have_vector & last_channel):
            m.d.sync += have_vector.eq(0)
        with m.If(have_vector & ~last_channel):
            m.d.sync += channel.eq(channel + lanes)

        # Where the codes go: channel n (a multiple of `lanes`) of vector i is lane n % rows of
        # buffer word i * output_words + n // rows, or in the last layer lane n % lanes of
        # output word i * ceil(outputs / lanes) + n // lanes.
        n, tile_n = Signal(bounds.channels_end), Signal(bounds.channels_end)
        word, tile_word = Signal(bounds.address), Signal(bounds.address)
        lane, tile_lane = Signal(range(rows)), Signal(range(rows))
        vector_base = Signal(bounds.address)
        lane_shift = lanes.bit_length() - 1
        stride = Signal(bounds.address)
        m.d.sync += stride.eq(Mux(self.last, (self.outputs + lanes - 1) >> lane_shift,
                                  self.output_words))
        next_word = Mux(lane == rows - lanes, word + 1, word)
        next_lane = Mux(lane == rows - lanes, 0, lane + lanes)
        with m.If(have_vector):
            with m.If(~last_channel):
                m.d.sync += [n.eq(n + lanes), word.eq(next_word), lane.eq(next_lane)]
            with m.Elif(~issue.index_last):
                m.d.sync += [n.eq(tile_n), word.eq(tile_word), lane.eq(tile_lane),
                             vector_base.eq(vector_base + stride)]
            with m.Else():
                m.d.sync += [n.eq(n + lanes), word.eq(next_word), lane.eq(next_lane),
                             tile_n.eq(n + lanes), tile_word.eq(next_word),
                             tile_lane.eq(next_lane), vector_base.eq(0)]
            with m.If(last_channel):
                issue.step(m, batch_last, 0, n_last)

        issued = Signal(data.StructLayout({"valid": 1, "tag": self.tag_layout,
                                           "acc": data.ArrayLayout(accumulator_shape(config),
                                                                   lanes)}))
        final_issue = last_channel & issue.is_last(batch_last, 0, n_last)
        m.d.sync += [
            issued.valid.eq(have_vector),
            issued.tag.addr.eq(vector_base + Mux(self.last, n >> lane_shift, word)),
            issued.tag.lane.eq(lane),
            issued.tag.write.eq(Cat(n + index < self.outputs[:bounds.channels_end.width]
                                    for index in range(lanes))),
            issued.tag.final.eq(have_vector & final_issue),
        ]
        for index, (read, out) in enumerate(zip(self.constants, self.channels)):
            constants = REQUANT_LAYOUT(read.data)
            m.d.comb += read.addr.eq(self.requant_base + n + index)
            value = vector[channel + index]
            if self.columns:
                value = value - Mux(self.matmul, columns[channel + index], 0)
            m.d.sync += issued.acc[index].eq(value)
            m.d.comb += [
                out.valid.eq(issued.valid),
                out.payload.acc.eq(issued.acc[index]),
                out.payload.bias.eq(constants.bias),
                out.payload.multiplier.eq(constants.multiplier),
                out.payload.shift.eq(constants.shift),
                out.payload.tag.eq(issued.tag),
            ]

        # Between layers every loop restarts from zero.
        with m.If(~self.running):
            issue.reset(m, batch_last, 0)
            m.d.sync += [n.eq(0), word.eq(0), lane.eq(0), tile_n.eq(0), tile_word.eq(0),
                         tile_lane.eq(0), vector_base.eq(0)]
        return m
