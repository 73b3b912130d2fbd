"""The engine's stationary-operand feeder: the array's weight tiles, from the weight memory in
dense and convolution layers, from an activation buffer in matmul layers."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import (LAYER_KINDS, MAX_WORDS, PROGRAM_WORD_BITS, MemoryConfig,
                                 activation_word_layout, weights_layout)

from .loops import Bounds
from .sequencer import layer_layout

__all__ = ["StationaryFeeder"]

_GEMM, _MATMUL = LAYER_KINDS.index("gemm"), LAYER_KINDS.index("matmul")


class StationaryFeeder(wiring.Component):
    """Sends the array its weight tiles, layer by layer: in a dense or convolution layer the
    weight feeder's words, in a matmul layer tiles of its operand ``b`` read from an activation
    buffer.

    A ``gemm`` layer (the ``start`` strobe with ``layer.kind`` 0) opens a gate that passes
    exactly its ``k_tiles * n_tiles`` tiles (``rows`` words each) from ``gemm`` to ``weights``,
    then closes: no tile of a later layer enters the array before that layer starts, since a
    matmul layer between the two sends its own. (The weight feeder streams the whole weight
    memory once a run; its words wait at the closed gate.)

    A ``matmul`` layer (:class:`~systolix.layer.MatMulLayer`; docs/memory-map.md) sends, per
    input ``n < batch_last + 1``, head ``g < groups``, output tile ``j`` and K tile ``t``, the
    tile whose row ``k`` and column ``c`` is ``b[g, t * rows + k, j * cols + c] - zb`` (0 past
    ``inner`` or ``cols``), in the array's signed weight codes. The tile is read into a register
    tile of ``rows`` lines, one buffer word a line from the buffer ``second_buffer`` (``rows``
    cycles and one for the last word's data), then sent row by row:

    - ``b`` stored ``(inner, groups, cols)``: line ``k`` is row ``t * rows + k`` of ``b``,
      buffer word ``second_base + n * b_image_words + ((t * rows + k) * groups + g) *
      output_words + j``, and becomes row ``k`` of the tile;
    - ``b`` stored ``(cols, groups, inner)`` (``transpose``, ``K`` for ``Q K^T``): line ``c``
      is token ``j * cols + c``, word ``second_base + n * b_image_words + ((j * cols + c) *
      groups + g) * c_tiles + t``, whose code ``k`` becomes row ``k`` of column ``c``: the
      register tile shifts left instead of up.

    The record's fields (aliases of a matmul record, docs/memory-map.md): ``row_step`` (with
    ``transpose``) or ``window_row_step`` is the step from one line to the next
    (``groups * c_tiles`` or ``groups * output_words``), ``multiplier_a`` the words of one
    input's ``b``, ``zero_point_b`` ``zb``; ``channels`` is ``inner``, ``outputs`` ``cols``.
    The tiles do not depend on the sequencer's passes over the heads: the feeder runs through
    all of them, and the array's double buffering takes each tile as soon as it may.

    Latency: the first row is valid ``rows + 3`` cycles after ``start`` (a cycle to take the
    record's fields, ``rows + 1`` to read the tile). Throughput: ``rows`` words a tile in
    ``2 rows + 1`` cycles (read, then send); a ``gemm`` layer's words pass combinationally.
    Square arrays only (``rows == cols``).

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    program_width : int, optional

    Attributes
    ----------
    start : In(1)
        The sequencer's ``layer_start``.
    layer : In(layer_layout())
    batch_last, k_last, n_last : In(...)
        The inputs of the run, the layer's K tiles and output tiles, minus one (shapes of
        :class:`~systolix.hw.loops.Bounds`), valid from the cycle after ``start``.
    gemm : In(stream.Signature(weights_layout(config)))
        The weight feeder's words.
    buffers : In(ReadPort.Signature(addr_width=ceil_log2(activation_words),
                                    shape=rows * activation_bits)).array(2)
        The two activation buffers (synchronous read ports): both read, one chosen.
    weights : Out(stream.Signature(weights_layout(config)))
        To the array.
    """

    def __init__(self, config, memories, program_width=PROGRAM_WORD_BITS):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        if config.rows != config.cols:
            raise ValueError(f"the stationary feeder needs a square array, not "
                             f"{config.rows}x{config.cols}")
        self.config, self.memories = config, memories
        self.bounds = bounds = Bounds(config, memories)
        self.addr_width = ceil_log2(memories.activation_words)
        super().__init__({
            "start": In(1),
            "layer": In(layer_layout(program_width)),
            "batch_last": In(bounds.batch),
            "k_last": In(bounds.k_tiles),
            "n_last": In(bounds.n_tiles),
            "gemm": In(stream.Signature(weights_layout(config))),
            "buffers": In(ReadPort.Signature(addr_width=self.addr_width,
                                             shape=activation_word_layout(config).size)
                          ).array(2),
            "weights": Out(stream.Signature(weights_layout(config))),
        })

    def elaborate(self, platform):
        m = Module()
        config, layer, bounds = self.config, self.layer, self.bounds
        size = config.rows
        beat = weights_layout(config)
        transpose = layer.transpose

        # The gate of gemm layers: this layer's k_tiles * n_tiles tiles, then closed.
        gate = Signal()
        gate_row = Signal(range(size))
        gate_k, gate_n = Signal(bounds.k_tiles), Signal(bounds.n_tiles)
        with m.If(self.gemm.valid & self.gemm.ready):
            m.d.sync += gate_row.eq(gate_row + 1)
            with m.If(gate_row == size - 1):
                m.d.sync += [gate_row.eq(0), gate_k.eq(gate_k + 1)]
                with m.If(gate_k == self.k_last):
                    m.d.sync += [gate_k.eq(0), gate_n.eq(gate_n + 1)]
                    with m.If(gate_n == self.n_last):
                        m.d.sync += [gate_n.eq(0), gate.eq(0)]
        with m.If(self.start & (layer.kind == _GEMM)):
            m.d.sync += gate.eq(1)

        # Matmul layers: the loops (input, head, output tile, K tile, line) and addresses.
        address = range(2 * MAX_WORDS)
        n, g = Signal(bounds.batch), Signal(range(MAX_WORDS))
        j, t = Signal(bounds.n_tiles), Signal(bounds.k_tiles)
        input_base, head_base = Signal(address), Signal(address)   # b of input n, of head g
        line_addr, line = Signal(address), Signal(address)         # the next line, its index
        tile_addr, tile_line = Signal(address), Signal(address)    # the line an output tile
        codes_left = Signal(range(MAX_WORDS + 1))                  # codes within b a line
        groups_last = Signal(range(MAX_WORDS))
        step = Mux(transpose, layer.row_step, layer.window_row_step)[:len(line_addr)]
        head_words = Mux(transpose, layer.c_tiles, layer.output_words)
        lines_end = Mux(transpose, layer.outputs, layer.channels)
        codes_end = Mux(transpose, layer.channels, layer.outputs)
        fill = Signal(range(size + 1))
        line_ok = Signal()
        tile = [Signal(beat, name=f"tile_{k}") for k in range(size)]

        # The buffer word of a line (both buffers read, one chosen), as weight codes b - zb.
        for port in self.buffers:
            m.d.comb += port.addr.eq(line_addr + Mux(transpose, t, j))
        word = activation_word_layout(config)(Mux(layer.second_buffer, self.buffers[1].data,
                                                  self.buffers[0].data))
        codes = [Mux(line_ok & (c < codes_left),
                     (word[c] - layer.zero_point_b).as_signed()[:config.weight_bits], 0)
                 for c in range(size)]

        def restart_head(base):
            """Lines from the first of head base, output tile 0, K tile 0."""
            return [head_base.eq(base), line_addr.eq(base), line.eq(0), tile_addr.eq(base),
                    tile_line.eq(0), j.eq(0), t.eq(0), codes_left.eq(codes_end)]

        m.d.comb += [self.weights.payload.eq(Mux(gate, self.gemm.payload, tile[0])),
                     self.weights.valid.eq(gate & self.gemm.valid),
                     self.gemm.ready.eq(gate & self.weights.ready)]
        with m.FSM(name="stationary"):
            with m.State("IDLE"):
                with m.If(self.start & (layer.kind == _MATMUL)):
                    m.next = "INIT"
            with m.State("INIT"):
                m.d.sync += [n.eq(0), g.eq(0), input_base.eq(layer.second_base),
                             groups_last.eq(layer.groups - 1), fill.eq(0),
                             *restart_head(layer.second_base)]
                m.next = "FILL"
            with m.State("FILL"):
                with m.If(fill != size):
                    m.d.comb += [port.en.eq(1) for port in self.buffers]
                    m.d.sync += [line_addr.eq(line_addr + step), line.eq(line + 1),
                                 line_ok.eq(line < lines_end)]
                with m.If(fill != 0):
                    with m.If(transpose):     # the word is column `size - 1`, the tile moves left
                        m.d.sync += [tile[k][c].eq(tile[k][c + 1] if c < size - 1 else codes[k])
                                     for k in range(size) for c in range(size)]
                    with m.Else():            # the word is row `size - 1`, the tile moves up
                        m.d.sync += [tile[k].eq(tile[k + 1]) for k in range(size - 1)]
                        m.d.sync += tile[size - 1].eq(Cat(*codes))
                m.d.sync += fill.eq(fill + 1)
                with m.If(fill == size):
                    m.d.sync += fill.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.weights.valid.eq(1)
                with m.If(self.weights.ready):
                    m.d.sync += [tile[k].eq(tile[k + 1]) for k in range(size - 1)]
                    m.d.sync += fill.eq(fill + 1)
                    with m.If(fill == size - 1):
                        m.d.sync += fill.eq(0)
                        m.next = "FILL"
                        self._next_tile(m, transpose, head_words, restart_head,
                                        n, g, j, t, input_base, head_base, line_addr, line,
                                        tile_addr, tile_line, codes_left, groups_last)
        return m

    def _next_tile(self, m, transpose, head_words, restart_head, n, g, j, t, input_base,
                   head_base, line_addr, line, tile_addr, tile_line, codes_left, groups_last):
        """After a tile's last row: on to the next K tile, output tile, head, input or done."""
        size, layer = self.config.rows, self.layer
        with m.If(t != self.k_last):
            m.d.sync += t.eq(t + 1)
            with m.If(transpose):       # the same tokens again, the next codes of each
                m.d.sync += [line_addr.eq(tile_addr), line.eq(tile_line),
                             codes_left.eq(codes_left - size)]
        with m.Elif(j != self.n_last):
            m.d.sync += [t.eq(0), j.eq(j + 1)]
            with m.If(transpose):       # the next tokens
                m.d.sync += [tile_addr.eq(line_addr), tile_line.eq(line),
                             codes_left.eq(layer.channels)]
            with m.Else():              # rows from the first again, the next columns
                m.d.sync += [line_addr.eq(head_base), line.eq(0),
                             codes_left.eq(codes_left - size)]
        with m.Elif(g != groups_last):
            m.d.sync += [g.eq(g + 1), *restart_head(head_base + head_words)]
        with m.Elif(n != self.batch_last):
            m.d.sync += [n.eq(n + 1), g.eq(0), input_base.eq(input_base + layer.multiplier_a),
                         *restart_head(input_base + layer.multiplier_a)]
        with m.Else():
            m.next = "IDLE"
