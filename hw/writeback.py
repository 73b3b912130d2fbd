"""The engine's writeback: words into the activation buffers and the output memory."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import MemoryConfig, activation_word_layout
from systolix.numeric import CODE_BITS

from .issuer import check_lanes, tag_layout
from .requant import requant_output_layout

__all__ = ["input_word_layout", "Writeback"]


def input_word_layout(config):
    """Payload of the engine's ``inputs``: one activation buffer word
    (:func:`systolix.memory_map.activation_word_layout`) as plain bits: Yosys 0.70's ABC9 pass
    fails on ports named after array elements (Yosys issue 4349)."""
    return unsigned(activation_word_layout(config).size)


class Writeback(wiring.Component):
    """Writes the activation buffers and the output memory: the host's input words while the
    engine is idle, the requantized codes while it runs a layer.

    While ``idle``, each ``inputs`` word (``inputs.ready`` is ``idle``) goes to buffer 0 at the
    next address from 0; the ``rewind`` strobe (a ``start`` transfer) sets the address back to
    0. The codes come from ``lanes`` requantization units in step (lane 0's ``valid`` and
    :func:`~systolix.hw.issuer.tag_layout` tag speak for all): each code whose ``write`` bit is
    set goes, in the ``last`` layer, to its lane of output memory word ``tag.addr`` (masked to
    ``output_bits``, zero-extended to 8 bits); otherwise its low ``activation_bits`` go to lane
    ``tag.lane + l`` of word ``tag.addr`` (plus ``output_base`` with ``bases``) of the buffer
    that ``output_buffer`` selects.
    ``layer_done`` is set with the tag's ``final`` (the layer's last codes).

    Latency: 0 cycles (the write ports and ``layer_done`` follow the inputs combinationally;
    the memories write at the end of the cycle). Throughput: one input word, or ``lanes``
    codes, a cycle.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    lanes : int
        Requantization lanes (:func:`~systolix.hw.issuer.check_lanes`).
    bases : bool, optional
        Whether layer outputs start at ``output_base`` (an adder on the buffer address; an
        engine with windows has it), or always at word 0.

    Attributes
    ----------
    codes : In(stream.Signature(requant_output_layout(tag_layout(...)),
                                always_ready=True)).array(lanes)
    last, output_buffer : In(1)
    output_base : In(16)
    output_bits : In(4)
    idle, rewind : In(1)
    inputs : In(stream.Signature(input_word_layout(config)))
    buffers : In(WritePort.Signature(addr_width=ceil_log2(activation_words),
                                     shape=rows * activation_bits,
                                     granularity=activation_bits)).array(2)
    output : In(WritePort.Signature(addr_width=ceil_log2(output_codes), shape=8 * lanes,
                                    granularity=8))
    layer_done : Out(1)
    """

    def __init__(self, config, memories, lanes, *, bases=False):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        check_lanes(config, lanes)
        self.tag_layout = tag_layout(config, memories, lanes)
        self.config, self.memories, self.lanes, self.bases = config, memories, lanes, bases
        word_bits = activation_word_layout(config).size
        super().__init__({
            "codes": In(stream.Signature(requant_output_layout(self.tag_layout),
                                         always_ready=True)).array(lanes),
            "last": In(1),
            "output_buffer": In(1),
            "output_base": In(16),
            "output_bits": In(4),
            "idle": In(1),
            "rewind": In(1),
            "inputs": In(stream.Signature(input_word_layout(config))),
            "buffers": In(WritePort.Signature(addr_width=ceil_log2(memories.activation_words),
                                              shape=word_bits,
                                              granularity=config.activation_bits)).array(2),
            "output": In(WritePort.Signature(addr_width=ceil_log2(memories.output_codes),
                                             shape=CODE_BITS * lanes, granularity=CODE_BITS)),
            "layer_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, lanes, idle = self.config, self.lanes, self.idle
        rows = config.rows

        # -- Host input: words into buffer 0 while idle. ----------------------------------------
        input_addr = Signal(range(self.memories.activation_words))
        m.d.comb += self.inputs.ready.eq(idle)
        with m.If(self.inputs.valid & idle):
            m.d.sync += input_addr.eq(input_addr + 1)
        with m.If(self.rewind):
            m.d.sync += input_addr.eq(0)

        # -- Requantized codes into the other buffer or the output memory. -----------------------
        done = self.codes[0]
        tag = done.payload.tag
        codes = [lane.payload.code for lane in self.codes]
        write = Mux(done.valid, tag.write, 0)
        code_mask = (Const(1, CODE_BITS + 1) << self.output_bits) - 1
        m.d.comb += [
            self.layer_done.eq(done.valid & tag.final),
            self.output.addr.eq(tag.addr),
            self.output.data.eq(Cat((code & code_mask)[:CODE_BITS] for code in codes)),
            self.output.en.eq(Mux(self.last, write, 0)),
        ]
        addr = tag.addr + self.output_base if self.bases else tag.addr
        for index, port in enumerate(self.buffers):
            hidden = ~self.last & (self.output_buffer == index)
            m.d.comb += [
                port.addr.eq(addr),
                port.data.eq(Cat(code[:config.activation_bits] for code in codes)
                             .replicate(rows // lanes)),
                port.en.eq(Mux(hidden, write << tag.lane, 0)),
            ]
        with m.If(idle):
            m.d.comb += [self.buffers[0].addr.eq(input_addr),
                         self.buffers[0].data.eq(self.inputs.payload),
                         self.buffers[0].en.eq(Mux(self.inputs.valid, (1 << rows) - 1, 0))]
        return m
