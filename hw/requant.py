"""Requantization unit: one accumulator value a cycle becomes the next layer's code."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from systolix.numeric import BIAS_BITS, MULTIPLIER_BITS, SHIFT_BITS

__all__ = ["CODE_SHAPE", "requant_input_layout", "requant_output_layout", "code_ports",
           "scale_ports", "feed_requantizer", "Requantizer"]

CODE_SHAPE = signed(9)
"""Shape of a code, a zero point and a clamp bound: holds every 8-bit signed or unsigned code."""

_SUM = signed(BIAS_BITS + 1)                        # acc + bias, exact (P <= 32)
_PRODUCT = signed(BIAS_BITS + 1 + MULTIPLIER_BITS)  # (acc + bias) * M0, exact: |t| < 2^48
_LARGEST_SHIFT = _PRODUCT.width - 1                 # t >> (s - 1) for s >= 49 is -1 or 0
_SLICE = _SUM.width // 2                            # 16: the sum is 2 slices and a sign
_COARSE = 8                                         # the first shift stage moves whole bytes
_CODE_RANGE = 12                                    # bits that decide a clamped 9-bit code
_FINE = _CODE_RANGE + _COARSE - 1                   # bits kept after the coarse shift


def requant_input_layout(accumulator_bits, tag_shape):
    """Payload of :attr:`Requantizer.input`: one channel's value and constants, and a tag."""
    return data.StructLayout({
        "acc": signed(accumulator_bits),
        "bias": signed(BIAS_BITS),
        "multiplier": unsigned(MULTIPLIER_BITS),
        "shift": unsigned(SHIFT_BITS),
        "tag": tag_shape,
    })


def requant_output_layout(tag_shape):
    """Payload of :attr:`Requantizer.output`: the code and the tag it came with."""
    return data.StructLayout({"code": CODE_SHAPE, "tag": tag_shape})


def code_ports():
    """The ports of a layer's output codes, constants of a whole layer: the zero point, the
    clamp bounds and the index of the rounding in :data:`systolix.layer.ROUNDING_MODES` (a
    :class:`Requantizer`'s)."""
    return {"zero_point": In(CODE_SHAPE), "low": In(CODE_SHAPE), "high": In(CODE_SHAPE),
            "rounding": In(1)}


def scale_ports():
    """:func:`code_ports` and a layer's one multiplier and shift: the ports of a unit that ends
    in a :class:`Requantizer` with constants for the whole layer."""
    return {"multiplier": In(unsigned(MULTIPLIER_BITS)), "shift": In(unsigned(SHIFT_BITS)),
            **code_ports()}


def feed_requantizer(m, requant, unit, *, valid, acc, tag):
    """Drive ``requant``'s input with ``valid``, ``acc`` (bias 0) and ``tag`` and the scale of
    ``unit``'s :func:`scale_ports`, and its layer constants with ``unit``'s :func:`code_ports`."""
    payload = requant.input.payload
    m.d.comb += [requant.input.valid.eq(valid), payload.acc.eq(acc), payload.bias.eq(0),
                 payload.multiplier.eq(unit.multiplier), payload.shift.eq(unit.shift),
                 payload.tag.eq(tag)]
    m.d.comb += [getattr(requant, name).eq(getattr(unit, name)) for name in code_ports()]


def _fits(value, width):
    """Whether ``value`` (plain bits, two's complement) is a signed ``width``-bit integer."""
    top = value[width - 1:]
    return Const(1) if len(top) <= 1 else (top == 0) | (top == (1 << len(top)) - 1)


def _saturate(value, width, fits=None):
    """``value`` clamped to a signed ``width``-bit integer (plain bits, two's complement);
    ``fits``, if given, is :func:`_fits` of it."""
    sign = value[-1]
    largest = Cat(Cat(~sign).replicate(width - 1), sign)
    return Mux(_fits(value, width) if fits is None else fits, value[:width], largest)


class Requantizer(wiring.Component):
    """Fixed-point requantization of one channel a cycle, bit-exact with
    :func:`systolix.sim.golden.program.requantize`::

        code = clamp(round_shift((acc + bias) * M0, shift) + zero_point, low, high)

    with halves rounded up (``rounding`` 0: ``(t + 2^(shift-1)) >> shift``) or to even
    (``rounding`` 1, :func:`systolix.sim.golden.program.round_shift`).

    Pipeline (one register after each step):

    1. ``acc + bias``, exact in 33 bits;
    2. ``t = (acc + bias) * M0``, exact in 49 bits (``|t| < 2^48``), as two unsigned 16x16
       products of ``M0`` and the sum's low and middle 16 bits, the sum's sign bit taking
       ``M0 << 32`` off (DSP blocks where the synthesis script maps multipliers to them: then
       only the two adders that join the products are logic);
    3. and 4. ``u = t >> a`` with ``a = min(max(shift, 1) - 1, 48)``: first by whole bytes, then
       by ``a mod 8``, each step saturating to the bits that can still matter (19, then 12);
    5. ``r = (u + 1 - tie) >> 1`` if ``shift > 0`` (else ``r = u``) plus the zero point
       ``z``, clamped; ``r + z`` is one adder, ``(u + 1 - tie + 2 z) >> 1`` (``(2 u + 2 z) >> 1``
       if ``shift = 0``), from what step 4 keeps: ``u``, whether to double it, and the
       increment ``1 - tie`` or 0. ``tie`` is 1 only when rounding to even, ``t`` is exactly
       halfway (``u`` odd and no bit shifted out below it: steps 3 and 4 keep a sticky bit of
       them) and ``u >> 1`` is even.

    This is exact: ``floor((t + 2^(s-1)) / 2^s) = floor((floor(t / 2^(s-1)) + 1) / 2)``, so
    rounding needs no wide adder; halfway to even takes the lower neighbour where it is even;
    for ``s >= 49`` both sides are 0 because ``|t| < 2^48`` (then ``u`` is 0 or -1, never a tie);
    and a ``u`` outside 12 signed bits gives ``|r| >= 1023``, which every clamp to 9-bit codes
    maps to ``low`` or ``high``, as does the saturated ``u``.

    Latency: :data:`systolix.timing.REQUANT_LATENCY` cycles. Throughput: one channel a cycle. The streams are
    always ready and carry a ``tag`` (for example the destination address) through unchanged.
    ``zero_point``, ``low``, ``high`` and ``rounding`` are constants of a whole layer: they are
    read in the last two stages and must hold while a value is in flight.

    Resources (iCE40UP5K, ``synth_ice40 -dsp``): two SB_MAC16 and about 500 logic cells with
    a 10-bit tag (out of context, placed).

    Parameters
    ----------
    accumulator_bits : int
        ``P``, the width of ``acc``.
    tag_shape : shape-castable
        Shape of the tag.

    Attributes
    ----------
    input : In(stream.Signature(requant_input_layout(...), always_ready=True))
    output : Out(stream.Signature(requant_output_layout(...), always_ready=True))
    zero_point, low, high : In(CODE_SHAPE)
        The output zero point and the clamp range of the codes.
    rounding : In(1)
        The index of the layer's rounding in :data:`systolix.layer.ROUNDING_MODES`: 0 halves
        up, 1 halves to even.
    """

    def __init__(self, accumulator_bits, tag_shape):
        self.tag_shape = tag_shape
        super().__init__({
            "input": In(stream.Signature(requant_input_layout(accumulator_bits, tag_shape),
                                         always_ready=True)),
            "output": Out(stream.Signature(requant_output_layout(tag_shape),
                                           always_ready=True)),
            **code_ports(),
        })

    def elaborate(self, platform):
        m = Module()
        given = self.input.payload

        def stage(name, fields, values):
            """One pipeline register holding ``values`` (a dict), the valid bit and the tag."""
            registers = Signal(data.StructLayout({"valid": 1, "tag": self.tag_shape, **fields}),
                               name=name)
            m.d.sync += [registers[key].eq(value) for key, value in values.items()]
            return registers

        def carried(previous):
            return {"valid": previous.valid, "tag": previous.tag}

        amount = Shape.cast(range(_LARGEST_SHIFT + 1))
        summed = stage("requant_sum", {"value": _SUM, "multiplier": unsigned(MULTIPLIER_BITS),
                                       "amount": amount, "round": 1},
                       {"valid": self.input.valid, "tag": given.tag,
                        "value": given.acc + given.bias, "multiplier": given.multiplier,
                        "amount": Mux(given.shift == 0, 0,
                                      Mux(given.shift > _LARGEST_SHIFT, _LARGEST_SHIFT,
                                          given.shift - 1)),
                        "round": given.shift != 0})
        # (acc + bias) * M0 from two unsigned 16x16 products (a DSP block each where there are
        # DSPs), the sign of the 33-bit sum as M0 << 32 taken off: a signed 33x16 product
        # became DSP slices and two wider adders, 24 logic cells more.
        value, multiplier, half = summed.value, summed.multiplier, _SLICE
        product = Signal(_PRODUCT)
        m.d.comb += product.eq(value[:half] * multiplier
                               + ((value[half:2 * half] * multiplier
                                   - Mux(value[2 * half], multiplier << half, 0)).as_signed()
                                  << half))
        scaled = stage("requant_product", {"value": _PRODUCT, "amount": amount, "round": 1},
                       {**carried(summed), "value": product,
                        "amount": summed.amount, "round": summed.round})
        fine_shift = unsigned(_COARSE.bit_length() - 1)
        bytes_out = scaled.amount[fine_shift.width:]       # whole bytes shifted out
        nonzero_bytes = Cat(scaled.value[8 * index:8 * index + 8] != 0
                            for index in range(_LARGEST_SHIFT // _COARSE))
        # Whether the value shifted by each number of bytes fits: from the product's bits,
        # beside the shift rather than after it (in a row they were the critical path).
        fits = Cat(_fits(scaled.value[8 * index:], _FINE)
                   for index in range(1 << len(bytes_out)))
        coarse = stage("requant_coarse", {"value": signed(_FINE), "amount": fine_shift,
                                          "round": 1, "sticky": 1},
                       {**carried(scaled),
                        "value": _saturate(scaled.value >> Cat(Const(0, fine_shift.width),
                                                               bytes_out), _FINE,
                                           fits.bit_select(bytes_out, 1)),
                        "amount": scaled.amount[:fine_shift.width], "round": scaled.round,
                        "sticky": (nonzero_bytes & ((Const(1, len(nonzero_bytes) + 1)
                                                     << bytes_out) - 1)) != 0})
        bits_out = coarse.value[:_COARSE] & ((Const(1, _COARSE + 1) << coarse.amount) - 1)
        unsaturated = coarse.value >> coarse.amount
        shifted = Signal(signed(_CODE_RANGE))
        m.d.comb += shifted.eq(_saturate(unsaturated, _CODE_RANGE))
        sticky = coarse.sticky | (bits_out != 0)
        # From the bits before the saturation (off the tie's path: a saturated u gives a code
        # clamped to low or high, with or without the increment).
        tie = self.rounding & unsaturated[0] & ~unsaturated[1] & ~sticky
        # The rounding and the zero point in one adder of the last stage:
        # r + z = (u + 1 - tie + 2 z) >> 1 when rounding, (2 u + 2 z) >> 1 when not, so this
        # stage keeps u (doubled when not rounding) and the increment, the low bit beside 2 z.
        # No carry chain here (the shift, saturation and a rounding adder in one stage were the
        # iCEBreaker's critical path), and the last stage still has one adder before its clamp.
        # u is doubled when not rounding in the last stage, before its adder: in this stage
        # the doubling's multiplexer after the saturation was on the iCEBreaker's critical
        # path.
        fine = stage("requant_fine", {"value": signed(_CODE_RANGE), "round": 1, "increment": 1},
                     {**carried(coarse), "value": shifted, "round": coarse.round,
                      "increment": coarse.round & ~tie})
        total = Signal(signed(_CODE_RANGE + 1))
        m.d.comb += total.eq((Mux(fine.round, fine.value, fine.value << 1)
                              + Cat(fine.increment, self.zero_point).as_signed()) >> 1)
        m.d.sync += [
            self.output.valid.eq(fine.valid),
            self.output.payload.code.eq(Mux(total < self.low, self.low,
                                            Mux(total > self.high, self.high, total))),
            self.output.payload.tag.eq(fine.tag),
        ]
        return m
