"""Weight-stationary systolic array with double-buffered weights and stream interfaces."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig
from systolix.memory_map import activation_word_layout, weights_layout
from systolix.timing import array_timing

from .mac import (DSPProcessingPair, DSPProcessingQuad, ProcessingElement,
                  SerialProcessingElement, accumulator_shape, activation_shape)

__all__ = ["FEED_COLUMNS", "count_up_down", "column_groups", "activations_layout",
           "activation_beat", "results_layout", "SystolicArray"]


FEED_COLUMNS = 4
"""Columns of LUT or DSP cells beyond which a row's activation register has a second copy."""


def count_up_down(m, counter, nonzero, up, down):
    """Add ``up - down`` (1-bit each) to ``counter`` and keep ``nonzero == (counter != 0)``
    registered.

    Both possible next values and flags are computed from the registers alone, so ``up`` and
    ``down``, which come from stream handshakes, only select among them (no carry chain after
    a handshake).
    """
    increment = Signal.like(counter, name=f"{counter.name}_increment")
    decrement = Signal.like(counter, name=f"{counter.name}_decrement")
    m.d.comb += [increment.eq(counter + 1), decrement.eq(counter - 1)]
    with m.If(up & ~down):
        m.d.sync += [counter.eq(increment), nonzero.eq(1)]
    with m.Elif(down & ~up):
        m.d.sync += [counter.eq(decrement), nonzero.eq(counter != 1)]


def column_groups(config):
    """The columns of an array of LUT or DSP cells that share a cell, as ranges, left to right:
    one column each with LUT cells; pairs with ``pe="dsp"`` (an odd last column a LUT cell);
    groups of four with ``pe="dsp4"``, a last one of two or three, or of three and two where
    one column is left: all four-product cells, whose latency differs from the others'
    (:data:`~systolix.timing.DSP4_EXTRA_LATENCY`)."""
    cols = config.cols
    if config.pe == "dsp":
        sizes = [2] * (cols // 2) + [1] * (cols % 2)
    elif config.pe == "dsp4":
        quads, rest = divmod(cols, 4)
        sizes = [4] * quads + ([rest] if rest else [])
        if rest == 1:
            sizes[-2:] = [3, 2]
    else:
        sizes = [1] * cols
    starts = [sum(sizes[:group]) for group in range(len(sizes))]
    return [range(start, start + size) for start, size in zip(starts, sizes)]


def activations_layout(config):
    """Payload of the ``activations`` stream: ``rows`` codes and ``last``, set on the last
    vector that uses the current weight tile; with bit-serial cells (``pe="serial"``) also
    ``planes``, the bits of the vector's codes (``1..activation_bits``: its low ``planes`` bits
    are the code, the top one the sign for signed codes)."""
    fields = {"data": activation_word_layout(config), "last": 1}
    if config.pe == "serial":
        fields["planes"] = range(1, config.activation_bits + 1)
    return data.StructLayout(fields)


def activation_beat(config, data, last, planes=None):
    """A payload of the ``activations`` stream as a dict: ``data``, ``last`` and, with
    bit-serial cells, ``planes`` (default ``activation_bits``)."""
    beat = {"data": data, "last": last}
    if config.pe == "serial":
        beat["planes"] = config.activation_bits if planes is None else planes
    return beat


def results_layout(config):
    """Payload of the ``results`` stream: ``cols`` partial sums and the vector's ``last``."""
    return data.StructLayout({
        "data": data.ArrayLayout(accumulator_shape(config), config.cols),
        "last": 1,
    })


class SystolicArray(wiring.Component):
    """Weight-stationary ``rows x cols`` array of multiply-accumulate cells: ``Y = X @ W``.

    Usage: send a weight tile ``W`` as ``rows`` beats on ``weights`` (beat ``k`` is row ``k``,
    ``cols`` codes), then activation vectors ``X[i]`` (``rows`` codes each) on
    ``activations``; each result ``Y[i] = X[i] @ W`` (``cols`` partial sums of ``P`` bits,
    wrapped or saturated after every addition in the order ``k = 0 .. rows-1``) leaves on
    ``results`` in the order the vectors came in. Set ``last`` on the final vector that uses a
    tile; the next vector uses the next tile sent on ``weights``.

    Weights are double-buffered: each cell has a shadow register that the loader fills while the
    array computes with the active registers. The next tile may be sent as soon as the first
    vector of the current tile has been accepted; the switch to the new tile travels down the
    rows with the first vector that uses it, ahead of the loader's writes.

    Each row gives its activation (input-skewed: row ``r`` gets it ``r`` cycles after row 0)
    and its swap flag to all its cells in the same cycle, so every column finishes in the same
    cycle. The array never stalls internally: vectors enter the pipeline only when the result
    buffer has room for them (credit counting), and results leave through one memory of
    ``result_depth`` entries of ``cols`` sums, written as the sums leave the bottom row.

    Throughput: one vector per cycle while both input streams are valid and ``results`` is
    ready (one per ``planes`` cycles with bit-serial cells, ``planes`` being the vector's
    activation bits, from its payload); a new tile costs no cycles if it has been loaded while
    the previous one computed, i.e. if the previous tile is used for at least ``rows + 2``
    cycles.

    Latency: ``rows + 4`` cycles from the cycle a vector is accepted to the first cycle its
    result is valid (``rows + 5`` with four-product DSP cells, ``pe="dsp4"``);
    ``rows + planes + 3`` with bit-serial cells
    (:func:`~systolix.timing.array_timing`). A vector that starts a tile is accepted no earlier
    than 2 cycles after the tile's last row.

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    weights : In(stream.Signature(weights_layout(config)))
    activations : In(stream.Signature(activations_layout(config)))
    results : Out(stream.Signature(results_layout(config)))
    """

    def __init__(self, config):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        self.timing = array_timing(config)
        super().__init__({
            "weights":     In(stream.Signature(weights_layout(config))),
            "activations": In(stream.Signature(activations_layout(config))),
            "results":     Out(stream.Signature(results_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.config.rows, self.config.cols
        timing = self.timing
        depth = timing.result_depth

        # Weight loader: a row is captured, then written into one row of shadow registers.
        shadow_full  = Signal()     # the loader has taken a whole tile not yet swapped in
        tile_ready   = Signal()     # ... and it is written into the shadow registers
        # ~tile_ready, a second copy for the grid's swap flag, which fans out to the weight
        # registers of row 0: the controls' swap (from tile_ready) stays off that net. The copy is
        # complemented, or Yosys would merge the two registers and ABC the two swap conditions.
        tile_ready_n = Signal(init=1)
        load_row     = Signal(range(rows))
        row_data     = Signal(weights_layout(self.config))
        row_write    = Signal(rows)  # one-hot: which row of shadow registers takes row_data

        # Activation intake.
        credits      = Signal(range(depth + 1), init=depth)
        has_credit   = Signal(init=1)  # credits != 0, registered
        need_swap    = Signal(init=1)  # the next vector starts a new tile
        accept       = Signal()
        swap         = Signal()     # for the controls
        grid_swap    = Signal()     # the same, for the grid
        # Bit-serial cells: the serializer takes the vector (set in its last plane's cycle).
        free         = Signal(init=1) if self.config.pe == "serial" else Const(1)

        m.d.comb += [
            self.weights.ready.eq(~shadow_full),
            self.activations.ready.eq(has_credit & free & (~need_swap | tile_ready)),
            accept.eq(self.activations.valid & self.activations.ready),
            # The same as accept & need_swap, written flat: this is the intake's longest path.
            swap.eq(self.activations.valid & has_credit & free & need_swap & tile_ready),
            grid_swap.eq(self.activations.valid & has_credit & free & need_swap & ~tile_ready_n),
        ]

        # The payload is captured every cycle (no enable to fan out); it is written into the
        # shadow registers only in the cycle after a transfer.
        m.d.sync += [row_data.eq(self.weights.payload), row_write.eq(0)]
        with m.If(self.weights.valid & self.weights.ready):
            m.d.sync += row_write.eq(Const(1, rows) << load_row)
            with m.If(load_row == rows - 1):
                m.d.sync += [load_row.eq(0), shadow_full.eq(1)]
            with m.Else():
                m.d.sync += load_row.eq(load_row + 1)
        with m.If(accept):
            m.d.sync += need_swap.eq(self.activations.payload.last)
        with m.If(row_write[rows - 1]):
            m.d.sync += [tile_ready.eq(1), tile_ready_n.eq(0)]
        with m.If(swap):
            m.d.sync += [shadow_full.eq(0), tile_ready.eq(0), tile_ready_n.eq(1)]

        # accepted[k]: a vector was accepted k + 1 cycles ago.
        accepted = Signal(1 if self.config.pe == "serial" else timing.column_write)
        m.d.sync += accepted.eq(Cat(accept, accepted))
        if self.config.pe == "serial":
            sums, complete = self._serial_grid(m, accept, grid_swap, free, row_write, row_data)
        else:
            sums = self._grid(m, grid_swap, row_write, row_data)
            complete = accepted[timing.column_write - 1]

        # Result buffer: one memory for all columns, which finish in the same cycle, written as
        # their sums leave the bottom row.
        level     = Signal(range(depth + 1))  # results fully written and not yet read
        has_result = Signal()                 # level != 0, registered
        read_addr = Signal(range(depth))
        read      = Signal()
        out_valid = Signal()
        m.d.comb += read.eq(has_result & (~out_valid | self.results.ready))

        result_sums = Memory(shape=data.ArrayLayout(accumulator_shape(self.config), cols),
                             depth=depth, init=[])
        m.submodules.result_sums = result_sums
        sums_write = result_sums.write_port()
        sums_read = result_sums.read_port()
        write_addr = Signal(range(depth))
        m.d.comb += [
            sums_write.en.eq(complete),
            sums_write.addr.eq(write_addr),
            sums_write.data.eq(Cat(sums)),
            sums_read.en.eq(read),
            sums_read.addr.eq(read_addr),
            self.results.payload.data.eq(sums_read.data),
        ]
        with m.If(complete):
            m.d.sync += write_addr.eq(write_addr + 1)

        # The `last` flags are stored in the cycle after their vector is accepted, in order.
        last_flags = Memory(shape=1, depth=depth, init=[])
        m.submodules.result_last = last_flags
        last_write = last_flags.write_port()
        last_read = last_flags.read_port()
        accept_addr = Signal(range(depth))
        accepted_last = Signal()
        m.d.sync += accepted_last.eq(self.activations.payload.last)
        m.d.comb += [
            last_write.en.eq(accepted[0]),
            last_write.addr.eq(accept_addr),
            last_write.data.eq(accepted_last),
            last_read.en.eq(read),
            last_read.addr.eq(read_addr),
            self.results.payload.last.eq(last_read.data),
            self.results.valid.eq(out_valid),
        ]
        with m.If(accepted[0]):
            m.d.sync += accept_addr.eq(accept_addr + 1)

        sent = Signal()
        m.d.comb += sent.eq(self.results.valid & self.results.ready)
        count_up_down(m, level, has_result, up=complete, down=read)
        count_up_down(m, credits, has_credit, up=sent, down=accept)
        with m.If(read):
            m.d.sync += [read_addr.eq(read_addr + 1), out_valid.eq(1)]
        with m.Elif(sent):
            m.d.sync += out_valid.eq(0)
        return m

    def _grid(self, m, swap, row_write, row_data):
        """The grid of LUT or DSP cells. Row r's swap flag reaches all its cells ``r`` cycles
        after the vector was accepted, its activation (from registers that the row's cells
        share) one cycle later; partial sums move one row down a cycle, so every column's sum
        leaves the bottom row ``rows + 2`` cycles after acceptance. Returns those sums, one per
        column.

        Beyond :data:`FEED_COLUMNS` columns a row's activation register has a second copy, which
        feeds the right half of the row, so that no register drives the multipliers of a whole
        row. The copy holds the complement of the code, which its cells undo: Yosys would merge
        identical copies, and the inversion folds into the LUTs that read it (and into the LUT
        in the copy's logic cell)."""
        config = self.config
        rows, cols = config.rows, config.cols
        copies = 2 if cols > FEED_COLUMNS else 1
        above = [0] * cols       # psum_out of the row above, per column
        payload = self.activations.payload.data
        act, row_swap = [payload[k] for k in range(rows)], swap   # the codes of rows r and below
        for r in range(rows):
            # Row r's code and those of the rows below, one cycle later. No reset: the swap
            # flags and the acceptance strobes say what counts.
            codes = []
            for g in range(copies):
                feed = Signal(config.activation_bits, name=f"act_{r}_{g}", reset_less=True)
                code = Signal(activation_shape(config), name=f"act_{r}_{g}_code")
                m.d.sync += feed.eq(~Value.cast(act[0]) if g else act[0])
                m.d.comb += code.eq(~feed if g else feed)
                codes.append(code)
            if r + 1 < rows:
                below = Signal(data.ArrayLayout(activation_shape(config), rows - r - 1),
                               name=f"skew_{r}", reset_less=True)
                m.d.sync += below.eq(Cat(act[1:]))
                act = [below[k] for k in range(rows - r - 1)]
            for lanes in column_groups(config):
                c = lanes.start
                if len(lanes) == 1:
                    cell = ProcessingElement(config, r)
                    psum_in, psum_out, weight = [cell.psum_in], [cell.psum_out], [cell.weight]
                else:
                    cell = (DSPProcessingQuad(config, len(lanes), r) if config.pe == "dsp4"
                            else DSPProcessingPair(config, r))
                    psum_in, psum_out, weight = cell.psum_in, cell.psum_out, cell.weight
                m.submodules[f"pe_{r}_{c}"] = cell
                m.d.comb += [
                    cell.act_in.eq(codes[c * copies // cols]),
                    cell.swap_in.eq(row_swap),
                    cell.weight_write.eq(row_write[r]),
                ]
                for lane, column in enumerate(lanes):
                    m.d.comb += [
                        psum_in[lane].eq(above[column]),
                        weight[lane].eq(row_data[column]),
                    ]
                    above[column] = psum_out[lane]
            if r + 1 < rows:
                swap_next = Signal(name=f"swap_{r + 1}")
                m.d.sync += swap_next.eq(row_swap)
                row_swap = swap_next
        return above

    def _serial_grid(self, m, accept, swap, free, row_write, row_data):
        """The grid of bit-serial cells, what feeds it and what ends it.

        A serializer holds the accepted vector and sends one bit-plane a cycle, most
        significant first, from the cycle after the vector was accepted (``planes`` cycles;
        ``free`` lets the next vector in during the last one). Row r's bits reach its cells
        ``r + 1`` cycles after the serializer sends them, the tile swap one cycle ahead of
        them; each row gives its bit to all its cells. At the bottom of each column a ``P``-bit
        register combines the plane sums (``acc = 2 acc + s``, the first plane negated for
        signed codes), and the sum of the final plane goes straight into the result buffer:
        in cycle ``rows + planes + 1`` after the vector was accepted. Returns the sums written
        and the strobe that writes them."""
        config = self.config
        rows, cols = config.rows, config.cols
        payload = self.activations.payload
        # The data path has no reset (a vector's flags, which have, say what counts).
        hold = Signal(activation_word_layout(config), reset_less=True)
        plane = Signal(range(config.activation_bits), reset_less=True)  # the bit sent now
        sending = Signal()
        first = Signal()                                   # ... is the vector's first one
        final = Signal()                                   # ... is the vector's last one
        tile_swap = Signal()                               # the vector starts a new tile
        m.d.comb += final.eq(sending & (plane == 0))
        m.d.sync += [first.eq(accept), tile_swap.eq(swap)]
        # While free, the payload is captured whether or not it is accepted (no enable from the
        # handshake to fan out); only `sending`, `free` and `first` follow the handshake.
        with m.If(free):
            m.d.sync += [hold.eq(payload.data), plane.eq(payload.planes - 1),
                         sending.eq(accept), free.eq(~accept | (payload.planes == 1))]
        with m.Else():
            m.d.sync += [plane.eq(plane - 1), free.eq(plane == 1)]

        bits = Signal(rows, reset_less=True)
        codes = hold.as_value()
        m.d.sync += bits.eq(Cat(codes.word_select(r, config.activation_bits).bit_select(plane, 1)
                                for r in range(rows)))
        column = [0] * cols
        for r in range(rows):
            row_bit, row_swap = bits[r], tile_swap
            for stage in range(r):
                bit_next = Signal(name=f"skew_bit_{r}_{stage}", reset_less=True)
                swap_next = Signal(name=f"skew_swap_{r}_{stage}")
                m.d.sync += [bit_next.eq(row_bit), swap_next.eq(row_swap)]
                row_bit, row_swap = bit_next, swap_next
            for c in range(cols):
                cell = SerialProcessingElement(config, r)
                m.submodules[f"pe_{r}_{c}"] = cell
                m.d.comb += [
                    cell.bit.eq(row_bit),
                    cell.swap_in.eq(row_swap),
                    cell.weight_write.eq(row_write[r]),
                    cell.weight.eq(row_data[c]),
                    cell.psum_in.eq(column[c]),
                ]
                column[c] = cell.psum_out

        # The first and final flags reach the bottom with the plane's sums (`coming`: the
        # first flag of the plane that reaches it in the next cycle).
        for stage in range(rows + 1):
            first_next, final_next = Signal(name=f"first_{stage}"), Signal(name=f"final_{stage}")
            m.d.sync += [first_next.eq(first), final_next.eq(final)]
            coming, first, final = first, first_next, final_next
        sums = []
        for c in range(cols):
            # base = 2 acc, or 0 before a vector's first plane: set a cycle ahead, so that only
            # an adder lies between the column and the result buffer.
            base = Signal(accumulator_shape(config), name=f"plane_base_{c}", reset_less=True)
            total = Signal(accumulator_shape(config), name=f"plane_total_{c}")
            addend = Mux(first, -column[c], column[c]) if config.activation_signed else column[c]
            m.d.comb += total.eq(base + addend)
            m.d.sync += base.eq(Mux(coming, 0, total << 1))
            sums.append(total)
        return sums, final
