"""Integer LayerNorm unit: rows of codes in, normalised and requantized codes out."""

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.layer import LAYERNORM_BIAS_BITS, NORM_BITS, ROOT_BITS
from systolix.numeric import MULTIPLIER_BITS, SHIFT_BITS
from systolix.timing import LAYERNORM_FACTOR_BITS as _FACTOR_BITS
from systolix.timing import LAYERNORM_OUTPUT_STAGES as _OUTPUT_STAGES
from systolix.timing import layernorm_root_bits as _root_bits
from systolix.timing import layernorm_row_cycles, layernorm_row_latency

from .requant import CODE_SHAPE, code_ports

__all__ = ["layernorm_constants_layout", "layernorm_row_cycles", "layernorm_row_latency",
           "LayerNormUnit"]


def layernorm_constants_layout():
    """Payload of :attr:`LayerNormUnit.constants`: one channel's multiplier and bias."""
    return data.StructLayout({"multiplier": signed(MULTIPLIER_BITS + 1),
                              "bias": signed(LAYERNORM_BIAS_BITS)})


class LayerNormUnit(wiring.Component):
    """The integer LayerNorm of rows of codes and its per-channel affine map, bit-exact with
    :func:`systolix.sim.golden.nonlinear.integer_layernorm` (see there)::

        s = sum q,  S = C sum q^2 - s^2,  root = isqrt(S << 16),  factor = floor(2^38 / root)
        out[c] = clamp(round_shift((C q[c] - s) * factor * M[c] + B[c], shift) + zp, low, high)

    A row of ``channels`` codes is taken on :attr:`input` into one of two row buffers while
    ``s`` and ``sum q^2`` accumulate (``channels`` cycles, ``input.ready`` high while that
    buffer is free); then, once the row before has left, ``S`` (one cycle), the square root one
    result bit a cycle (digit by digit, no multiplier), ``factor`` one quotient bit a cycle
    (restoring division, 31 cycles), and the buffer is read again, one code a cycle, each with
    its channel's constants from :attr:`constants` (a stream: a code is issued only when its
    constants are valid), through a 6-stage pipeline onto :attr:`output`. The next row loads
    into the other buffer meanwhile, so a row's loading is hidden behind the row before.

    Latency and throughput: a row's last code leaves :func:`layernorm_row_latency` cycles
    (``2 channels + root bits + 38``) after its first input into an idle unit, and each
    following row's :func:`layernorm_row_cycles` (``channels + root bits + 37``) after the row
    before's, while the input keeps up (without stalls). ``output`` is always ready; its tag is
    the channel. ``channels`` and the other layer constants are those of one
    :class:`~systolix.layer.LayerNormLayer` and must hold while a row is in the unit.

    Resources: multipliers of 9 x 9 (squares), about ``log2 C + 9`` x ``log2 C + 9`` (the
    spread), ``log2 C + 10`` x 31 and 44 x 17 bits (the output), and comparators of about 2 x
    ``log2 C + 17`` and 70 bits for the root and the division. Out of context (``max_channels``
    32, docs/vit.md): 2,819 logic cells and 10 MULT18X18D at 48 MHz on an ECP5-85F; more than the
    8 SB_MAC16 of an iCE40UP5K.

    Parameters
    ----------
    max_channels : int
        The longest row (the buffer's depth).

    Attributes
    ----------
    input : In(stream.Signature(CODE_SHAPE))
    constants : In(stream.Signature(layernorm_constants_layout()))
    output : Out(stream.Signature(StructLayout({"code": CODE_SHAPE, "tag": channel}),
        always_ready=True))
    channels : In(range(1, max_channels + 1))
    shift : In(unsigned(SHIFT_BITS))
    zero_point, low, high : In(CODE_SHAPE)
    rounding : In(1)
    """

    def __init__(self, max_channels):
        self.max_channels = max_channels
        self._channel = Shape.cast(range(max(max_channels, 2)))
        super().__init__({
            "input": In(stream.Signature(CODE_SHAPE)),
            "constants": In(stream.Signature(layernorm_constants_layout())),
            "output": Out(stream.Signature(data.StructLayout({"code": CODE_SHAPE,
                                                              "tag": self._channel}),
                                           always_ready=True)),
            "channels": In(range(1, max_channels + 1)),
            "shift": In(unsigned(SHIFT_BITS)),
            **code_ports(),
        })

    def elaborate(self, platform):
        m = Module()
        # Two row buffers (banks): a row loads into one while the row before is normalised
        # from the other; a bank is `full` from its row's last code in to its last code out.
        m.submodules.buffer = buffer = Memory(shape=CODE_SHAPE,
                                              depth=2 << self._channel.width, init=[])
        write = buffer.write_port()
        read = buffer.read_port()
        channel_bits = self.max_channels.bit_length()
        root_bits = _root_bits(self.max_channels)
        count = Signal(self._channel)
        total = Signal(signed(CODE_SHAPE.width + channel_bits))
        squares = Signal(unsigned(2 * CODE_SHAPE.width + channel_bits))
        load_count, load_bank, bank, full = (Signal(self._channel), Signal(), Signal(),
                                             Signal(2))
        load_total, pending_total = Signal.like(total), Signal.like(total)
        load_squares, pending_squares = Signal.like(squares), Signal.like(squares)
        radicand = Signal(unsigned(2 * root_bits))
        root = Signal(unsigned(2 * root_bits))    # the digit-by-digit partial results are wide
        one = Signal(unsigned(2 * root_bits))
        factor = Signal(unsigned(_FACTOR_BITS))
        remainder = Signal(unsigned(NORM_BITS + ROOT_BITS + 1))
        bit = Signal(range(_FACTOR_BITS))

        issue = Signal()
        stages = [Signal(data.StructLayout({"valid": 1, "last": 1, "channel": self._channel,
                                            "multiplier": signed(MULTIPLIER_BITS + 1),
                                            "bias": signed(LAYERNORM_BIAS_BITS)}),
                         name=f"norm_stage{index}") for index in range(_OUTPUT_STAGES - 1)]
        m.d.sync += [stages[0].valid.eq(issue), stages[0].last.eq(count == self.channels - 1),
                     stages[0].channel.eq(count),
                     stages[0].multiplier.eq(self.constants.payload.multiplier),
                     stages[0].bias.eq(self.constants.payload.bias)]
        m.d.sync += [later.eq(earlier) for earlier, later in zip(stages, stages[1:])]

        # Loading: a row's codes into bank `load_bank` while it is free, its sums kept for the
        # row's normalisation (`pending_*`: at most one row waits for it).
        code = self.input.payload
        taken = self.input.valid & self.input.ready
        loaded, freed = Signal(), Signal()
        new_total = Mux(load_count == 0, 0, load_total) + code
        new_squares = Mux(load_count == 0, 0, load_squares) + code * code
        m.d.comb += [self.input.ready.eq(~full.bit_select(load_bank, 1)),
                     write.addr.eq(Cat(load_count, load_bank)), write.data.eq(code),
                     write.en.eq(taken), loaded.eq(taken & (load_count == self.channels - 1))]
        with m.If(taken):
            m.d.sync += [load_total.eq(new_total), load_squares.eq(new_squares),
                         load_count.eq(load_count + 1)]
        with m.If(loaded):
            m.d.sync += [load_count.eq(0), load_bank.eq(~load_bank),
                         pending_total.eq(new_total), pending_squares.eq(new_squares)]
        for index in range(2):
            with m.If(loaded & (load_bank == index)):
                m.d.sync += full[index].eq(1)
            with m.If(freed & (bank == index)):
                m.d.sync += full[index].eq(0)
        start = [total.eq(pending_total), squares.eq(pending_squares)]

        # Normalising bank `bank`: the spread, the root, the factor, then the codes out.
        with m.FSM():
            with m.State("IDLE"):
                with m.If(full.bit_select(bank, 1)):
                    m.d.sync += start
                    m.next = "SPREAD"
            with m.State("SPREAD"):
                m.d.sync += [radicand.eq((self.channels * squares - total * total)
                                         << (2 * ROOT_BITS)),
                             root.eq(0), one.eq(1 << (2 * (root_bits - 1)))]
                m.next = "ROOT"
            with m.State("ROOT"):
                trial = root + one
                with m.If(radicand >= trial):
                    m.d.sync += [radicand.eq(radicand - trial), root.eq((root >> 1) + one)]
                with m.Else():
                    m.d.sync += root.eq(root >> 1)
                m.d.sync += one.eq(one >> 2)
                with m.If(one == 1):
                    m.d.sync += [remainder.eq(1 << (NORM_BITS + ROOT_BITS)), factor.eq(0),
                                 bit.eq(_FACTOR_BITS - 1)]
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                step = Signal(unsigned(root_bits + _FACTOR_BITS))
                m.d.comb += step.eq(root << bit)
                with m.If((root != 0) & (remainder >= step)):
                    m.d.sync += [remainder.eq(remainder - step), factor.eq(factor | (1 << bit))]
                m.d.sync += bit.eq(bit - 1)
                with m.If(bit == 0):
                    m.next = "NORMALISE"
            with m.State("NORMALISE"):
                m.d.comb += [read.addr.eq(Cat(count, bank)), issue.eq(self.constants.valid),
                             self.constants.ready.eq(1)]
                with m.If(self.constants.valid):
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == self.channels - 1):
                        m.d.sync += count.eq(0)
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(stages[-1].valid & stages[-1].last):
                    m.d.comb += freed.eq(1)
                    m.d.sync += bank.eq(~bank)
                    m.next = "IDLE"
                    with m.If(full.bit_select(~bank, 1)):
                        m.d.sync += start
                        m.next = "SPREAD"

        # stage 1 (read data of stages[0]): d; stage 2: d * factor; stage 3: * M + B.
        centred = Signal(signed(CODE_SHAPE.width + 2 * channel_bits + 1))
        scaled = Signal(signed(centred.shape().width + _FACTOR_BITS + 1))
        width = scaled.shape().width + MULTIPLIER_BITS + 2
        affine = Signal(signed(max(width, LAYERNORM_BIAS_BITS + 1)))
        m.d.sync += [centred.eq(self.channels * read.data - total),
                     scaled.eq(centred * factor),
                     affine.eq(scaled * stages[2].multiplier + stages[2].bias)]
        # stage 4: round and shift; stage 5: zero point and clamp.
        rounded = Signal(signed(affine.shape().width))
        odd = (affine >> self.shift)[0]
        half = Signal(signed(affine.shape().width))
        with m.If(self.shift == 0):
            m.d.comb += half.eq(0)
        with m.Elif(self.rounding):
            m.d.comb += half.eq((1 << (self.shift - 1)[:SHIFT_BITS]) - 1 + odd)
        with m.Else():
            m.d.comb += half.eq(1 << (self.shift - 1)[:SHIFT_BITS])
        m.d.sync += rounded.eq((affine + half) >> self.shift)
        total_code = rounded + self.zero_point
        m.d.sync += [
            self.output.valid.eq(stages[4].valid),
            self.output.payload.tag.eq(stages[4].channel),
            self.output.payload.code.eq(Mux(total_code < self.low, self.low,
                                            Mux(total_code > self.high, self.high,
                                                total_code))),
        ]
        return m
