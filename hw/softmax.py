"""Integer softmax unit: rows of codes in, rows of probability codes out."""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.layer import EXP_BITS, EXP_COEFFICIENTS, RECIPROCAL_BITS
from systolix.timing import SOFTMAX_EXP_STAGES as _EXP_STAGES
from systolix.timing import softmax_row_cycles, softmax_row_latency

from .requant import (CODE_SHAPE, Requantizer, feed_requantizer, requant_output_layout,
                      scale_ports)

__all__ = ["softmax_row_cycles", "softmax_row_latency", "SoftmaxUnit"]

_RECIPROCAL = unsigned(EXP_BITS + 1)      # floor(2^30 / sum) <= 2^30 / 2^15


class SoftmaxUnit(wiring.Component):
    """The integer softmax of rows of codes, bit-exact with
    :func:`systolix.sim.golden.nonlinear.integer_softmax` (see there)::

        d = max(row) - q;  e = exp2(d)  (shift and quadratic)
        reciprocal = floor(2^30 / sum(e))
        out = requantize(e * reciprocal, 0, multiplier, shift, zero_point, low, high)

    A row of ``length`` codes is taken on :attr:`input` into one of two row buffers while its
    maximum is tracked (``length`` cycles, ``input.ready`` high while that buffer is free);
    then, once the row before has been read for the last time, the buffer is read once to sum
    the exponentials (a 5-stage pipeline: read, ``d``, the two Horner steps of the quadratic,
    the shift), ``sum(e)`` is divided into ``2^30`` one quotient bit a cycle (restoring
    division, 16 cycles: ``sum(e) >= 2^15``), and the buffer is read again, each ``e``
    recomputed, multiplied by the reciprocal and requantized by a
    :class:`~systolix.hw.requant.Requantizer` onto :attr:`output`, one code a cycle. The next
    row loads into the other buffer meanwhile, so a row's loading is hidden behind the row
    before.

    Latency and throughput: a row's last code leaves :func:`softmax_row_latency` cycles
    (``3 length + 32``) after its first input into an idle unit, and each following row's
    :func:`softmax_row_cycles` (``2 length + 26``) after the row before's, while the input
    keeps up (without stalls). ``output`` is always ready (like the requantizer's); its tag is
    the code's position in the row. The constants are those of one
    :class:`~systolix.layer.SoftmaxLayer` and must hold while a row is in the unit.

    Resources (``max_length`` 32, out of context, docs/vit.md): 1,316 logic cells, 6 SB_MAC16
    and a block RAM at 29 MHz on an iCE40UP5K (``synth_ice40 -dsp``); 1,190 and 5 MULT18X18D at
    56 MHz on an ECP5-85F.

    Parameters
    ----------
    max_length : int
        The longest row (the buffer's depth).

    Attributes
    ----------
    input : In(stream.Signature(CODE_SHAPE))
    output : Out(stream.Signature(requant_output_layout(unsigned(range(max_length))),
        always_ready=True))
    length : In(range(1, max_length + 1))
    fraction_bits : In(range(9))
    multiplier : In(unsigned(MULTIPLIER_BITS))
    shift : In(unsigned(SHIFT_BITS))
    zero_point, low, high : In(CODE_SHAPE)
    rounding : In(1)
    """

    def __init__(self, max_length):
        self.max_length = max_length
        self._position = Shape.cast(range(max(max_length, 2)))
        self._requant = Requantizer(32, self._position)
        super().__init__({
            "input": In(stream.Signature(CODE_SHAPE)),
            "output": Out(stream.Signature(requant_output_layout(self._position),
                                           always_ready=True)),
            "length": In(range(1, max_length + 1)),
            "fraction_bits": In(range(9)),
            **scale_ports(),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.requant = requant = self._requant
        # Two row buffers (banks): a row loads into one while the row before is computed from
        # the other; a bank is `full` from its row's last code in to its last exponential.
        m.submodules.buffer = buffer = Memory(shape=CODE_SHAPE,
                                              depth=2 << self._position.width, init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        c0, c1, c2 = EXP_COEFFICIENTS
        fraction = self.fraction_bits

        count = Signal(self._position)
        largest = Signal(CODE_SHAPE)
        total = Signal(EXP_BITS + 1 + self._position.width)
        reciprocal = Signal(_RECIPROCAL)
        remainder = Signal(RECIPROCAL_BITS + 1)
        bit = Signal(range(_RECIPROCAL.width))
        normalising = Signal()
        load_count, load_bank, bank, full = (Signal(self._position), Signal(), Signal(),
                                             Signal(2))
        load_largest, pending_largest = Signal(CODE_SHAPE), Signal(CODE_SHAPE)

        # The exponential pipeline, fed by `issue` (a buffer address this cycle).
        issue = Signal()
        last_issue = Signal()
        stages = [Signal(data.StructLayout({"valid": 1, "last": 1, "position": self._position}),
                         name=f"exp_stage{index}") for index in range(_EXP_STAGES)]
        m.d.sync += [stages[0].valid.eq(issue), stages[0].last.eq(last_issue),
                     stages[0].position.eq(count)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(stages, stages[1:])]
        difference = Signal(unsigned(CODE_SHAPE.width + 1))
        whole = Signal(range(EXP_BITS + 2))
        whole_delayed = Signal.like(whole)
        rest = Signal(8)
        inner = Signal(signed(18))
        power = Signal(EXP_BITS + 1)
        exp = Signal(EXP_BITS + 1)
        shifted = Signal(unsigned(CODE_SHAPE.width + 1))
        fraction_part = Signal(8)
        m.d.comb += [shifted.eq(difference >> fraction),
                     fraction_part.eq(difference & ((1 << fraction) - 1))]
        m.d.sync += [
            difference.eq(largest - read.data),                          # stage 1: d
            whole.eq(Mux(shifted > EXP_BITS + 1, EXP_BITS + 1, shifted)),  # stage 2: z, r and
            rest.eq(fraction_part),                                      # ((C2 r) >> F) - C1
            inner.eq(((c2 * fraction_part) >> fraction) - c1),
            power.eq(c0 + ((rest * inner) >> fraction)),                 # stage 3: p
            whole_delayed.eq(whole),
            exp.eq(power >> whole_delayed),                              # stage 4: p >> z
        ]
        exp_valid, exp_last, exp_position = (stages[-1].valid, stages[-1].last,
                                             stages[-1].position)

        # Loading: a row's codes into bank `load_bank` while it is free, its largest code kept
        # for the row's computation (`pending_largest`: at most one row waits for it).
        code = self.input.payload
        taken = self.input.valid & self.input.ready
        loaded, freed = Signal(), Signal()
        new_largest = Mux((load_count == 0) | (code.as_signed() > load_largest), code,
                          load_largest)
        m.d.comb += [self.input.ready.eq(~full.bit_select(load_bank, 1)),
                     write.addr.eq(Cat(load_count, load_bank)), write.data.eq(code),
                     write.en.eq(taken), loaded.eq(taken & (load_count == self.length - 1))]
        with m.If(taken):
            m.d.sync += [load_largest.eq(new_largest), load_count.eq(load_count + 1)]
        with m.If(loaded):
            m.d.sync += [load_count.eq(0), load_bank.eq(~load_bank),
                         pending_largest.eq(new_largest)]
        for index in range(2):
            with m.If(loaded & (load_bank == index)):
                m.d.sync += full[index].eq(1)
            with m.If(freed & (bank == index)):
                m.d.sync += full[index].eq(0)
        start = [largest.eq(pending_largest), count.eq(0), total.eq(0), normalising.eq(0)]

        # Computing bank `bank`: the sum of exponentials, the reciprocal, the codes out.
        with m.FSM():
            with m.State("IDLE"):
                with m.If(full.bit_select(bank, 1)):
                    m.d.sync += start
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [read.addr.eq(Cat(count, bank)), issue.eq(1),
                             last_issue.eq(count == self.length - 1)]
                m.d.sync += count.eq(count + 1)
                with m.If(count == self.length - 1):
                    m.d.sync += count.eq(0)
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(exp_valid & exp_last & ~normalising):
                    m.d.sync += [remainder.eq(1 << RECIPROCAL_BITS), reciprocal.eq(0),
                                 bit.eq(_RECIPROCAL.width - 1)]
                    m.next = "DIVIDE"
                with m.If(exp_valid & exp_last & normalising):
                    m.d.comb += freed.eq(1)
                    m.d.sync += bank.eq(~bank)
                    m.next = "IDLE"
                    with m.If(full.bit_select(~bank, 1)):
                        m.d.sync += start
                        m.next = "READ"
            with m.State("DIVIDE"):
                step = Signal(RECIPROCAL_BITS + 1 + _RECIPROCAL.width)
                m.d.comb += step.eq(total << bit)
                with m.If(remainder >= step):
                    m.d.sync += [remainder.eq(remainder - step),
                                 reciprocal.eq(reciprocal | (1 << bit))]
                m.d.sync += bit.eq(bit - 1)
                with m.If(bit == 0):
                    m.d.sync += normalising.eq(1)
                    m.next = "READ"
        with m.If(exp_valid & ~normalising):
            m.d.sync += total.eq(total + exp)

        product = Signal(data.StructLayout({"valid": 1, "position": self._position,
                                            "value": unsigned(32)}))
        m.d.sync += [product.valid.eq(exp_valid & normalising),
                     product.position.eq(exp_position), product.value.eq(exp * reciprocal)]
        feed_requantizer(m, requant, self, valid=product.valid, acc=product.value, tag=product.position)
        wiring.connect(m, requant.output, wiring.flipped(self.output))
        return m
