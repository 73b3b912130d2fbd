"""The engine's sequencer: reads the program and runs it layer by layer."""

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import (HEADER_WORDS, LAYER_KINDS, LAYER_LAYOUTS, MAX_WORDS,
                                 PROGRAM_WORD_BITS, TOTALS_LAYOUT, MemoryConfig)

from .loops import Bounds

__all__ = ["RECORD_REGISTER_WORDS", "layer_layout", "Sequencer"]

RECORD_REGISTER_WORDS = max(HEADER_WORDS, len(LAYER_LAYOUTS))
"""Program words the sequencer's record register holds: the header, then each layer record."""


def layer_layout(program_width=PROGRAM_WORD_BITS):
    """The fields of a layer record (:data:`systolix.memory_map.LAYER_LAYOUTS`) where the
    sequencer's record register holds them: field ``f`` of record word ``w`` at bit
    ``w * program_width + offset``. Payload of :attr:`Sequencer.layer`."""
    return data.FlexibleLayout(RECORD_REGISTER_WORDS * program_width, {
        name: data.Field(field.shape, index * program_width + field.offset)
        for index, layout in enumerate(LAYER_LAYOUTS) for name, field in layout})


class Sequencer(wiring.Component):
    """Runs a program: the header, then per layer its record and the layer, then the outputs.

    A transfer on ``start`` (``start.ready`` is ``idle``) with a batch size of ``1..max_batch``
    starts a run; a batch size of 0 only gives the ``started`` strobe (only the bits of
    ``memories.batch`` are tested: a batch above it is not a batch size). The sequencer then reads
    the header, ``HEADER_WORDS`` program words from address 0 (``HEADER_WORDS + 1`` cycles, the
    last of them with the ``header_done`` strobe and the header's ``weight_words``), and per
    layer its record (``len(LAYER_LAYOUTS) + 1`` cycles, the last with ``layer_start``) into
    the record register, whose fields are on ``layer`` from the cycle after ``layer_start``.
    ``running`` is high from that cycle until the cycle of the ``layer_done`` strobe. After the
    last layer (the record's ``last``) it waits in the output state for ``outputs_sent`` and is
    idle again in the next cycle.

    ``batch_last``, ``vectors_last``, ``k_last``, ``n_last`` and ``outputs_last`` are
    registers: the batch size minus one from ``start``, and the layer's vectors (``batch *
    positions``), the record's ``k_tiles``, ``n_tiles`` and ``outputs`` minus one, registered
    every cycle off the record register (valid, like ``layer``, in every cycle of ``running``:
    the record's last word, which the gateware does not read, is the only one written in the
    cycle of ``layer_start``), each only as wide as the memories need
    (:class:`~systolix.hw.loops.Bounds`). ``cycles`` counts the header, record and layer cycles
    of the run (from the cycle after ``start``: it holds the last run's count until the
    header's first cycle, 1 after it), ``busy`` is ``~idle``.

    Latency: ``HEADER_WORDS + 1`` cycles from ``start`` to ``header_done``,
    ``len(LAYER_LAYOUTS) + 1`` from ``layer_done`` to the next ``layer_start``, 1 from
    ``outputs_sent`` to idle. Every output is a register or a decode of the state; ``started``
    and ``start.ready`` follow ``start.valid`` and the state combinationally.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    program_width : int, optional
        Bits of a program word (:data:`~systolix.memory_map.PROGRAM_WORD_BITS`).
    windows : bool, optional
        Whether layers may have more than one output position (convolutions); without,
        ``vectors_last`` is ``batch_last`` and needs no multiplier.
    matmul : bool, optional
        Whether the program has matmul layers (:class:`~systolix.layer.MatMulLayer`). A matmul
        layer runs as ``batch * groups`` passes, one per input ``n`` and head ``g``, each with
        the ``positions`` vectors of one head (the first of ``za`` codes, then its ``rows``):
        after each pass but the last (its ``layer_done``) the sequencer spends a cycle in the
        ``REPEAT`` state (``running`` low, so every component restarts its loops) with the
        ``repeat`` strobe, which starts the activation feeder again; ``input_offset`` (``n *
        image_words + g * c_tiles``) and ``output_offset`` (``n * multiplier_b + g *
        output_words``) say where the pass's head lies in the input and output maps.
        ``vectors_last`` is ``positions - 1`` in a matmul layer and ``issues_last`` the vectors
        the issuer requantizes minus one (``positions - 2``: all but the first).

    Attributes
    ----------
    start : In(stream.Signature(unsigned(16)))
        The batch size.
    program : In(ReadPort.Signature(addr_width=ceil_log2(program_words), shape=program_width))
        The program memory (a synchronous read port, always enabled).
    layer_done, outputs_sent : In(1)
        Strobes: the layer's last code is written; the run's final output is sent.
    started, header_done, layer_start : Out(1)
        Strobes: a ``start`` transfer; the header is read; a layer record is read.
    idle, running, busy : Out(1)
    weight_words : Out(32)
        The header's :data:`~systolix.memory_map.TOTALS_LAYOUT` word, with ``header_done``.
    layer : Out(layer_layout(program_width))
        The record register's layer fields.
    batch_last, vectors_last, k_last, n_last, outputs_last : Out(...)
        The loop bounds of the run and the layer.
    cycles : Out(32)
    """

    def __init__(self, config, memories, *, program_width=PROGRAM_WORD_BITS, windows=True,
                 matmul=False):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        if program_width != PROGRAM_WORD_BITS:
            raise ValueError(f"program_width must be {PROGRAM_WORD_BITS} (memory map "
                             f"PROGRAM_WORD_BITS), not {program_width!r}")
        self.config, self.memories, self.windows = config, memories, windows
        self.matmul = matmul
        self.program_width = program_width
        self.bounds = bounds = Bounds(config, memories)
        members = {}
        if matmul:
            members = {"repeat": Out(1), "issues_last": Out(bounds.batch),
                       "input_offset": Out(bounds.address), "output_offset": Out(bounds.address)}
        super().__init__({
            **members,
            "start": In(stream.Signature(unsigned(16))),
            "program": In(ReadPort.Signature(addr_width=ceil_log2(memories.program_words),
                                             shape=program_width)),
            "layer_done": In(1),
            "outputs_sent": In(1),
            "started": Out(1),
            "header_done": Out(1),
            "layer_start": Out(1),
            "idle": Out(1),
            "running": Out(1),
            "busy": Out(1),
            "weight_words": Out(32),
            "layer": Out(layer_layout(program_width)),
            "batch_last": Out(bounds.batch),
            "vectors_last": Out(bounds.batch),
            "k_last": Out(bounds.k_tiles),
            "n_last": Out(bounds.n_tiles),
            "outputs_last": Out(bounds.channels),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        idle, layer, start = Signal(), self.layer, self.start
        # The record register is the `layer` port, word by word.
        record = data.ArrayLayout(self.program_width, RECORD_REGISTER_WORDS)(layer.as_value())
        fetch_addr = Signal(range(self.memories.program_words + 1))
        fetch_count = Signal(range(RECORD_REGISTER_WORDS + 1))
        cycles = Signal(32)
        m.d.comb += [
            self.weight_words.eq(TOTALS_LAYOUT(record[2]).weight_words),
            self.program.addr.eq(fetch_addr), self.cycles.eq(cycles), self.idle.eq(idle),
            self.busy.eq(~idle), start.ready.eq(idle), self.started.eq(start.valid & idle),
        ]
        # The loop bounds of the layer, registered off the record (so that no counter compares
        # against a subtraction) and only as wide as the memories need: the packer's fit check
        # keeps every program field within them.
        m.d.sync += [self.k_last.eq(layer.k_tiles - 1), self.n_last.eq(layer.n_tiles - 1),
                     self.outputs_last.eq(layer.outputs - 1)]
        # The layer's vectors: an output position of an input each (a small multiplier off
        # the critical path: its operands hold for the whole layer).
        count = len(self.vectors_last) + 1
        vectors_last = ((self.batch_last + 1)[:count] * layer.positions[:count] - 1
                        if self.windows else self.batch_last)
        if self.matmul:
            matmul = layer.kind == LAYER_KINDS.index("matmul")
            vectors_last = Mux(matmul, layer.positions - 1, vectors_last)
            m.d.sync += self.issues_last.eq(Mux(matmul, layer.positions - 2, vectors_last))
        m.d.sync += self.vectors_last.eq(vectors_last)
        with m.Switch(fetch_count):
            for index in range(RECORD_REGISTER_WORDS):
                with m.Case(index + 1):
                    m.d.sync += record[index].eq(self.program.data)

        def fetch(words):
            with m.If(fetch_count != words):
                m.d.sync += [fetch_addr.eq(fetch_addr + 1), fetch_count.eq(fetch_count + 1)]
            with m.Else():
                m.d.sync += fetch_count.eq(0)

        with m.FSM(name="sequencer") as sequencer:
            with m.State("IDLE"):
                # The bits a batch of 1..memories.batch has, not all 16: this test is on the
                # path from the link's start into every counter of the run.
                batch_size = start.payload[:len(self.batch_last) + 1]
                # It enables only batch_last: the fetch counters restart in every idle cycle,
                # and the run's cycles count from 1 in the header's first (fetch_count 0).
                m.d.sync += [fetch_addr.eq(0), fetch_count.eq(0)]
                with m.If(start.valid & (batch_size != 0)):
                    m.d.sync += self.batch_last.eq(start.payload - 1)
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.sync += cycles.eq(Mux(fetch_count == 0, 1, cycles + 1))
                fetch(HEADER_WORDS)
                with m.If(fetch_count == HEADER_WORDS):
                    m.d.comb += self.header_done.eq(1)
                    m.next = "RECORD"
            with m.State("RECORD"):
                m.d.sync += cycles.eq(cycles + 1)
                fetch(len(LAYER_LAYOUTS))
                with m.If(fetch_count == len(LAYER_LAYOUTS)):
                    m.d.comb += self.layer_start.eq(1)
                    m.next = "LAYER"
            with m.State("LAYER"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(self.layer_done):
                    m.next = "RECORD"
                    with m.If(layer.last):
                        m.next = "OUTPUT"
                    if self.matmul:
                        self._next_pass(m, matmul, layer)
            if self.matmul:
                with m.State("REPEAT"):
                    m.d.sync += cycles.eq(cycles + 1)
                    m.d.comb += self.repeat.eq(1)
                    m.next = "LAYER"
            with m.State("OUTPUT"):
                with m.If(self.outputs_sent):
                    m.next = "IDLE"
        # (Flags of the state as plain expressions: a simulator evaluates them from time 0.)
        m.d.comb += [idle.eq(sequencer.ongoing("IDLE")),
                     self.running.eq(sequencer.ongoing("LAYER"))]
        return m

    def _next_pass(self, m, matmul, layer):
        """At the end of a matmul layer's pass: on to the next head or input, or the next
        layer after the last."""
        address = self.bounds.address
        head, image = Signal(range(MAX_WORDS)), Signal(self.bounds.batch)
        input_image, output_image = Signal(address), Signal(address)
        with m.If(matmul & ((head != layer.groups - 1) | (image != self.batch_last))):
            m.next = "REPEAT"
            with m.If(head != layer.groups - 1):
                m.d.sync += [head.eq(head + 1),
                             self.input_offset.eq(self.input_offset + layer.c_tiles),
                             self.output_offset.eq(self.output_offset + layer.output_words)]
            with m.Else():
                next_input = input_image + layer.image_words
                next_output = output_image + layer.multiplier_b
                m.d.sync += [head.eq(0), image.eq(image + 1),
                             input_image.eq(next_input), output_image.eq(next_output),
                             self.input_offset.eq(next_input),
                             self.output_offset.eq(next_output)]
        with m.Else():      # (0 again for the next layer, before its record is read)
            m.d.sync += [head.eq(0), image.eq(0), input_image.eq(0), output_image.eq(0),
                         self.input_offset.eq(0), self.output_offset.eq(0)]
