"""Low-bit multiply-accumulate processing elements of the weight-stationary systolic array.

:class:`ProcessingElement` is one cell with its own multiplier (``pe="lut"``).
:class:`DSPProcessingPair` is two cells of neighbouring columns sharing one multiplier
(``pe="dsp"``): both multiply the same activation, so one product with a packed operand gives
both (the guard-field packing of FINN and of Xilinx's INT4 note, here with the activation
shared instead of the weight)::

    R = act * (w0 + w1 * 2**F),  F = W + A (the bits of one product)
    p0 = R[0:F] (signed if products are)          = act * w0
    p1 = R[F:] + R[F-1] (signed; 0 if unsigned)   = act * w1

``R[F-1]`` is the borrow a negative ``p0`` takes from the upper field (exact because ``p0``
fits ``F`` bits). The packed operand has :attr:`~systolix.config.ArrayConfig.dsp_operand_bits`
bits; Yosys maps the multiplication to one SB_MAC16 (``synth_ice40 -dsp``) or MULT18X18D
(``synth_ecp5``) when that and ``A`` fit the DSP's operands.

:class:`DSPProcessingQuad` is four cells (two or three in a last group) of neighbouring columns
sharing one multiplier (``pe="dsp4"``): the weights are packed half a product apart,
``s = ceil(F / 2)``, so the products' fields overlap, and the low ``s`` bits of three of them,
made in logic, take the overlap back out (exact correction terms)::

    R = act * (w0 + w1 * 2**s + w2 * 2**2s + w3 * 2**3s) = p0 + p1 2**s + p2 2**2s + p3 2**3s
    l_i = p_i mod 2**s          (from the low s bits of w_i and act alone)
    T = R - (l1 2**s + l2 2**2s + l3 2**3s) = p0 + h1 2**2s + h2 2**3s + h3 2**4s
    p_i = h_i 2**s + l_i        (h_i = (p_i - l_i) / 2**s, i >= 1)

``p0`` fits ``2s`` bits and each ``h_i`` fits ``F - s <= s``, so ``T``'s fields are apart.
Where products are signed, ``T`` is taken with a bias ``B`` of half of each lower field's
range (``2**(2s-1) + 2**(3s-1) + 2**(4s-1)``): each biased field is then in ``0..2**k-1``,
with no borrow into the field above, and is its value with its top bit inverted (the top
field ``h3`` needs no bias). Why it is exact: ``l_i`` is ``p_i mod 2**s``, so ``p_i - l_i`` is
a multiple of ``2**s`` and ``h_i`` an integer; ``p_i`` has ``F`` bits, so ``h_i =
floor(p_i / 2**s)`` has ``F - s`` bits; a field of ``k`` bits holds a value ``v`` in
``-2**(k-1)..2**(k-1)-1`` (``0..2**k-1`` unsigned), so ``v + 2**(k-1)`` is in ``0..2**k-1`` and
``T + B`` is the concatenation of the biased fields, read modulo ``2**(3s+F)``. Where the packed
operand wraps around (:meth:`~systolix.config.ArrayConfig.packed_operand_bits` ``N`` bits, one
fewer than some sums need, on one side of the range only), the multiplier makes ``R -+ act *
2**N`` for the weights that wrap, and ``act * 2**N`` joins the subtracted terms with the sign
that takes it back. ``tests/hw/test_mac.py`` checks every code of every lane for the small
widths and every code combination of W4/A4 of the arithmetic above.

:class:`SerialProcessingElement` (``pe="serial"``) has no multiplier: it adds its weight or 0
to the partial sum of the cell above, as one bit of its activation (one bit-plane of the vector)
says; the array combines the column's plane sums ``s_b = sum_k x_k[b] w_k`` at the column's
bottom, most significant plane first, in a ``P``-bit register::

    acc = s_{b-1} (or -s_{b-1}: the sign plane of signed codes);  acc = 2 acc + s_i, i = b-2..0

which wraps modulo ``2**P`` exactly as the sum of the products does (wrap-around only: clamping
after every product has no equivalent here).
"""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig, check_int, code_range

__all__ = ["weight_shape", "activation_shape", "accumulator_shape", "product_shape",
           "plane_sum_shape", "partial_sum_shape", "product_halves", "shift_add_product",
           "accumulate", "add_to_partial_sum", "low_product", "ProcessingElement",
           "DSPProcessingPair", "DSPProcessingQuad", "SerialProcessingElement"]


def weight_shape(config):
    """Amaranth shape of a weight code."""
    return Shape(config.weight_bits, config.weight_signed)


def activation_shape(config):
    """Amaranth shape of an activation code."""
    return Shape(config.activation_bits, config.activation_signed)


def accumulator_shape(config):
    """Amaranth shape of a partial sum: ``signed(P)``."""
    return signed(config.accumulator_bits)


def product_shape(config):
    """Smallest shape that holds every product of a weight code and an activation code."""
    return Shape(config.product_bits, config.product_signed)


def plane_sum_shape(config, terms):
    """Smallest shape that holds every sum of up to ``terms`` weight codes (a partial sum of
    one bit-plane after ``terms`` rows of bit-serial cells), or ``signed(P)`` if that is
    narrower: the plane sums are only needed modulo ``2**P``."""
    low, high = config.weight_range
    shape = Shape.cast(range(terms * min(low, 0), terms * max(high, 0) + 1))
    return shape if shape.width < config.accumulator_bits else accumulator_shape(config)


def partial_sum_shape(config, terms):
    """Smallest shape that holds every sum of up to ``terms`` products of a weight code and an
    activation code (the partial sum of a column after ``terms`` rows of LUT cells), or
    ``signed(P)`` if that is not narrower."""
    ends = [w * x for w in config.weight_range for x in config.activation_range]
    shape = Shape.cast(range(terms * min(min(ends), 0), terms * max(max(ends), 0) + 1))
    return shape if shape.width < config.accumulator_bits else accumulator_shape(config)


def product_halves(config):
    """The halves of the activation's bits that a :class:`ProcessingElement` makes its product
    in: ``(start, stop, signed, shape)`` each, ``act[start:stop]`` (two's complement if
    ``signed``: the top half of a signed code) times a weight code fitting ``shape``; the low
    ``ceil(A / 2)`` bits and the rest (one half for ``A = 1``)."""
    activation_bits = config.activation_bits
    split = (activation_bits + 1) // 2
    halves = []
    for start, stop in ((0, split), (split, activation_bits)):
        if start < stop:
            bits_signed = config.activation_signed and stop == activation_bits
            ends = [x * w for x in code_range(stop - start, bits_signed)
                    for w in config.weight_range]
            halves.append((start, stop, bits_signed,
                           Shape.cast(range(min(ends), max(ends) + 1))))
    return halves


def shift_add_product(bits, bits_signed, weight):
    """Expression for ``bits * weight`` as additions of ``weight << i`` chosen by the bits of
    ``bits`` (two's complement if ``bits_signed``: the top one subtracts), lowest first.

    Each addition ``Mux(bit, total + (weight << i), total)`` is one carry chain on iCE40 whose
    LUTs also make the choice (Yosys's ``opt_lut`` merges the multiplexer into the adder's
    LUT4, the carry's inputs being the adder's operands).
    """
    total = None
    for i in range(len(bits)):
        top = bits_signed and i == len(bits) - 1
        if total is None:
            total = Mux(bits[i], -weight if top else weight, 0)
        else:
            term = weight << i
            total = Mux(bits[i], total - term if top else total + term, total)
    return total


def accumulate(config, partial_sum, addend):
    """Expression for ``partial_sum + addend`` in the configured overflow mode.

    ``"wrap"`` truncates the exact sum to ``P`` bits (the carry out is dropped);
    ``"saturate"`` clamps it to ``-2**(P-1) .. 2**(P-1) - 1``.
    """
    total = partial_sum + addend
    if config.overflow == "wrap":
        return total[:config.accumulator_bits].as_signed()
    low, high = config.accumulator_range
    return Mux(total < low, low, Mux(total > high, high, total))


def add_to_partial_sum(m, config, row, partial_sum, addend, psum_out):
    """Register ``partial_sum + addend`` onto ``psum_out`` (one cycle) in the configured
    overflow mode (:func:`accumulate`). Where ``row``, the cell's row, is given and every sum of
    ``row + 1`` products fits fewer than ``P`` bits (:func:`partial_sum_shape`), the register
    has only those bits and nothing is wrapped or clamped: exact, since ``partial_sum`` is then
    a sum of ``row`` products (the cells above make it) and ``addend`` one product."""
    shape = accumulator_shape(config) if row is None else partial_sum_shape(config, row + 1)
    if shape.width < config.accumulator_bits:
        narrow = Signal(shape)
        m.d.sync += narrow.eq(partial_sum + addend)
        m.d.comb += psum_out.eq(narrow)
    else:
        m.d.sync += psum_out.eq(accumulate(config, partial_sum, addend))


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell of the weight-stationary array.

    The cell holds two weight registers: ``shadow``, written by the loader through
    ``weight``/``weight_write`` while the array computes, and ``active``, which the multiplier
    reads. ``swap_in`` copies the shadow into the active register at the end of the cycle, so
    it must come one cycle before the first activation that uses the new weight; the array
    sends it down the rows with the first vector of a tile, so vectors in flight keep the tile
    they started with.

    The activation and ``swap_in`` are not passed on: the array gives all cells of a row the
    same ones in the same cycle (``act_in`` from a register, which the row's cells share);
    partial sums move one cell down per cycle.

    The product is made in two halves of the activation's bits, ``act = lo + hi * 2**h``
    (``h = ceil(A / 2)``; ``hi`` signed for signed codes): ``lo * weight`` and ``hi * weight``
    are registered, and the partial sum adds ``lo * weight + (hi * weight << h)``. Each half is
    made by :func:`shift_add_product`, additions of ``weight << i`` chosen by the bits, which
    Yosys maps to iCE40 carry chains whose LUT also selects (one LUT4 a bit of each addition);
    a ``*`` of the whole codes costs about 33 LUT4s at W4/A4 against 18 here, and the two
    halves put at most two carry chains between two registers. With ``row`` given, the partial
    sum is kept in the bits that sums of ``row + 1`` products need (:func:`partial_sum_shape`:
    8 to 11 bits down an 8-row W4s/A4u column instead of ``P``), which no clamp or wrap-around
    can reach before ``P``.

    Latency: the products of the halves of the activation on ``act_in`` in cycle ``t`` are
    registered in ``t + 1`` and added to the partial sum of the cell above, which must be on
    ``psum_in`` in that cycle, to give ``psum_out`` in ``t + 2``. Throughput: one
    multiply-accumulate per cycle.

    Parameters
    ----------
    config : ArrayConfig
    row : int or None
        The cell's row in its array: ``psum_in`` is then a sum of ``row`` products (0 in the top
        row), as the cells above make it. ``None``: any ``signed(P)`` partial sum.

    Attributes
    ----------
    act_in : activation code, the row's (registered outside the cell).
    swap_in : 1 bit, the row's; set the cycle before the first vector of a tile arrives.
    psum_in : signed(P), the partial sum from the cell above (0 in the top row).
    psum_out : signed(P), registered ``psum_in + act * weight`` (wrapped or saturated).
    weight, weight_write : the loader's write port into the shadow register.
    """

    def __init__(self, config, row=None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        self.row = None if row is None else check_int("row", row, 0, config.rows - 1)
        super().__init__({
            "act_in":       In(activation_shape(config)),
            "swap_in":      In(1),
            "psum_in":      In(accumulator_shape(config)),
            "psum_out":     Out(accumulator_shape(config)),
            "weight":       In(weight_shape(config)),
            "weight_write": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        # No reset on the weights and the products: a reset that overrides an enable costs a
        # LUT on iCE40, and a tile is written and swapped in before a vector uses it.
        shadow = Signal(weight_shape(config), reset_less=True)
        active = Signal(weight_shape(config), reset_less=True)

        with m.If(self.weight_write):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow)

        act = Value.cast(self.act_in)
        # The whole product, in its own bits: Yosys then adds the halves before the partial sum
        # (with `psum_in + lo + (hi << h)` in one expression it makes a wider adder tree).
        product = Signal(product_shape(config))
        sum_of_halves = 0
        for index, (start, stop, bits_signed, shape) in enumerate(product_halves(config)):
            half = Signal(shape, name=f"product_{index}", reset_less=True)
            m.d.sync += half.eq(shift_add_product(act[start:stop], bits_signed, active))
            sum_of_halves = sum_of_halves + (half << start)
        m.d.comb += product.eq(sum_of_halves)

        add_to_partial_sum(m, config, self.row, self.psum_in, product, self.psum_out)
        return m


class DSPProcessingPair(wiring.Component):
    """Two multiply-accumulate cells of neighbouring columns ``c`` and ``c + 1`` of one row,
    with one multiplier for both (see the module documentation for the packing).

    Both lanes work in the same cycle, with the latency of a :class:`ProcessingElement`: both
    products of the activation on ``act_in`` in cycle ``t`` are made in ``t`` and registered
    (in the DSP) in ``t + 1``, when both partial sums must be on ``psum_in``, to give
    ``psum_out`` in ``t + 2``. ``swap_in`` swaps both lanes' active weights at the end of its
    cycle, one cycle before the first activation that uses them. Throughput: two
    multiply-accumulates per cycle.

    Parameters
    ----------
    config : ArrayConfig
    row : int or None
        As :class:`ProcessingElement`'s: each lane's partial sum in the bits its row reaches.

    Attributes
    ----------
    act_in, swap_in : as :class:`ProcessingElement`'s.
    psum_in, psum_out : ``ArrayLayout(signed(P), 2)``, one partial sum per lane.
    weight : ``ArrayLayout(weight_shape, 2)``, the loader's codes of both lanes.
    weight_write : In(1)
    """

    def __init__(self, config, row=None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        self.row = None if row is None else check_int("row", row, 0, config.rows - 1)
        sums = data.ArrayLayout(accumulator_shape(config), 2)
        super().__init__({
            "act_in":       In(activation_shape(config)),
            "swap_in":      In(1),
            "psum_in":      In(sums),
            "psum_out":     Out(sums),
            "weight":       In(data.ArrayLayout(weight_shape(config), 2)),
            "weight_write": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        field = config.product_bits
        # No reset on the weights, as in ProcessingElement.
        shadow = Signal(data.ArrayLayout(weight_shape(config), 2), reset_less=True)
        active = Signal(Shape(config.dsp_operand_bits, config.product_signed), reset_less=True)
        # The product (all its bits: act * active has 2F + 1), without reset: Yosys can then
        # put this register into the DSP.
        packed = Signal(2 * field + 1, reset_less=True)

        with m.If(self.weight_write):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow[0] + (shadow[1] << field))
        m.d.sync += packed.eq(self.act_in * active)
        upper = packed[field:].as_signed()
        if config.product_signed:
            lower = packed[:field].as_signed()
            upper = upper + packed[field - 1]
        else:
            lower = packed[:field]
        for lane, addend in enumerate((lower, upper)):
            add_to_partial_sum(m, config, self.row, self.psum_in[lane], addend,
                               self.psum_out[lane])
        return m


def low_product(config, weight, act):
    """Expression for ``(weight * act) mod 2**s`` (``s`` = the config's
    :attr:`~systolix.config.ArrayConfig.dsp4_spacing``): shifts and adds of the codes' low ``s``
    bits, which alone decide it (so no synthesis tool puts it into a DSP)."""
    spacing = config.dsp4_spacing

    def low_bits(value):
        value = Value.cast(value)
        extension = (value[-1] if value.shape().signed else Const(0)).replicate(
            max(spacing - len(value), 0))
        return Cat(value, extension)[:spacing]

    low_weight, low_act = low_bits(weight), low_bits(act)
    return sum(Mux(low_act[bit], low_weight << bit, 0) for bit in range(spacing))[:spacing]


class DSPProcessingQuad(wiring.Component):
    """Two to four multiply-accumulate cells of neighbouring columns of one row with one
    multiplier for all (``pe="dsp4"``; see the module documentation for the packing and its
    correction terms).

    All lanes work in the same cycle, one cycle later than a :class:`ProcessingElement` or a
    :class:`DSPProcessingPair` (:data:`~systolix.timing.DSP4_EXTRA_LATENCY`): the packed
    product (in the DSP) and the low products (in logic) of the activation on ``act_in`` in
    cycle ``t`` are registered in ``t + 1``, the products taken apart in ``t + 2``, when the
    partial sums must be on ``psum_in``, to give ``psum_out`` in ``t + 3``. (Subtracting the
    correction terms and accumulating in one cycle took the clock of a 4x4 array on the UP5K
    from 70 to 44 MHz: two carry chains in a row.) ``swap_in`` swaps the lanes' active weights
    at the end of its cycle, one cycle before the first activation that uses them. Throughput:
    ``lanes`` multiply-accumulates per cycle.

    Parameters
    ----------
    config : ArrayConfig
    lanes : int
        Columns, 2 to 4.
    row : int or None
        As :class:`ProcessingElement`'s: each lane's partial sum in the bits its row reaches.

    Attributes
    ----------
    act_in, swap_in : as :class:`ProcessingElement`'s.
    psum_in, psum_out : ``ArrayLayout(signed(P), lanes)``, one partial sum per lane.
    weight : ``ArrayLayout(weight_shape, lanes)``, the loader's codes of all lanes.
    weight_write : In(1)
    """

    def __init__(self, config, lanes=4, row=None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        self.lanes = check_int("lanes", lanes, 2, 4)
        self.row = None if row is None else check_int("row", row, 0, config.rows - 1)
        sums = data.ArrayLayout(accumulator_shape(config), lanes)
        super().__init__({
            "act_in":       In(activation_shape(config)),
            "swap_in":      In(1),
            "psum_in":      In(sums),
            "psum_out":     Out(sums),
            "weight":       In(data.ArrayLayout(weight_shape(config), lanes)),
            "weight_write": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config, lanes = self.config, self.lanes
        spacing, field, signed_ = config.dsp4_spacing, config.product_bits, config.product_signed
        bits = config.packed_operand_bits(lanes)
        width = (lanes - 1) * spacing + field          # T's bits
        # No reset on the weights, as in ProcessingElement.
        shadow = Signal(data.ArrayLayout(weight_shape(config), lanes), reset_less=True)
        operand = Signal(Shape(bits, signed_), reset_less=True)
        wrapped = Signal(reset_less=True)              # the operand is the sum -+ 2**bits
        active = Signal(data.ArrayLayout(weight_shape(config), lanes - 1),  # lanes 1..
                        reset_less=True)

        # The sum of the packed weights, in one bit more than the operand: it wraps where
        # that bit differs from the operand's top bit (signed), or is set (unsigned). Where
        # the codes fit their fields (W <= s), it is their bits side by side less each sign
        # bit's weight, 2**W (one subtraction instead of an adder per lane).
        packed_weights = Signal(Shape(bits + 1, signed_))
        codes = [Value.cast(shadow[lane]) for lane in range(lanes)]
        if config.weight_bits <= spacing:
            fields = [Cat(code.as_unsigned(), Const(0, spacing - config.weight_bits))
                      for code in codes[:-1]]
            side_by_side = Cat(*fields, codes[-1].as_unsigned())
            if config.weight_signed:
                signs = [Const(0, 1)] * ((lanes - 1) * spacing + config.weight_bits + 1)
                for lane, code in enumerate(codes):
                    signs[lane * spacing + config.weight_bits] = code[-1]
                side_by_side = side_by_side - Cat(*signs)
            m.d.comb += packed_weights.eq(side_by_side)
        else:
            m.d.comb += packed_weights.eq(sum(code << (lane * spacing)
                                              for lane, code in enumerate(codes)))
        with m.If(self.weight_write):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap_in):
            m.d.sync += [
                operand.eq(packed_weights),
                wrapped.eq(packed_weights[bits] ^ packed_weights[bits - 1] if signed_
                           else packed_weights[bits]),
                active.eq(shadow.as_value()[config.weight_bits:]),
            ]

        # Stage 1: the packed product, all its bits, without reset (so Yosys can put the
        # register into the DSP); the low bits of lanes 1.. and the activation times 2**bits
        # where the weights' sum wraps (R misses it where the sum is below the operand's range,
        # the operand being the sum + 2**bits, and has it too much where it is above), in logic.
        act = self.act_in
        product = act * operand
        packed = Signal(len(product), reset_less=True)
        lows = [Signal(spacing, name=f"low_{lane}", reset_less=True) for lane in range(1, lanes)]
        lowest = sum(config.weight_range[0] << (lane * spacing) for lane in range(lanes))
        below = lowest < code_range(bits, signed_)[0]
        wrap = Signal(Shape(len(act) + 1, True), reset_less=True)
        m.d.sync += [
            packed.eq(product),
            [low.eq(low_product(config, active[lane - 1], act))
             for lane, low in zip(range(1, lanes), lows)],
            wrap.eq(Mux(wrapped, act if below else -act, 0)),
        ]

        # Stage 2: T + B (B: the bias, where products are signed) and its fields, the products.
        bias = (sum(1 << ((lane + 2) * spacing - 1) for lane in range(lanes - 1))
                if signed_ else 0)
        total = Signal(width)
        m.d.comb += total.eq(packed[:width] - (Cat(Const(0, spacing), *lows) + (wrap << bits)
                                               - bias))

        def field_value(start, stop, biased):
            value = total[start:stop]
            if not signed_:
                return value
            if biased:
                value = Cat(value[:-1], ~value[-1])
            return value.as_signed()

        products = [Signal(product_shape(config), name=f"product_{lane}", reset_less=True)
                    for lane in range(lanes)]
        m.d.sync += products[0].eq(field_value(0, 2 * spacing, biased=True))
        for lane in range(1, lanes):
            start = (lane + 1) * spacing
            stop = start + (spacing if lane < lanes - 1 else field - spacing)
            high_part = field_value(start, stop, biased=lane < lanes - 1)
            m.d.sync += products[lane].eq(Cat(lows[lane - 1], high_part))

        # Stage 3: accumulated.
        for lane, addend in enumerate(products):
            add_to_partial_sum(m, config, self.row, self.psum_in[lane], addend,
                               self.psum_out[lane])
        return m


class SerialProcessingElement(wiring.Component):
    """One bit-serial cell of the weight-stationary array (``pe="serial"``): adds its weight to
    the partial sum of the cell above where its activation bit is set.

    The weights are double-buffered as in :class:`ProcessingElement`: ``swap_in`` copies the
    shadow register into the active one at the end of the cycle, so it must come one cycle
    before the first bit that uses the new weight. The activation bit and ``swap_in`` are not
    passed on: the array gives all cells of a row the same ones.

    Latency: ``psum_out`` is ``psum_in + (bit ? weight : 0)``, registered: one cycle, wrapped
    to the width of ``psum_out``. Throughput: one bit-plane a cycle.

    Parameters
    ----------
    config : ArrayConfig
    row : int
        The cell's row: ``psum_in`` is :func:`plane_sum_shape` ``(config, row)``, ``psum_out``
        ``plane_sum_shape(config, row + 1)``.

    Attributes
    ----------
    bit, swap_in : In(1)
    psum_in, psum_out : the plane's partial sums from the cell above and to the cell below.
    weight, weight_write : the loader's write port into the shadow register.
    """

    def __init__(self, config, row):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        super().__init__({
            "bit":          In(1),
            "swap_in":      In(1),
            "psum_in":      In(plane_sum_shape(config, row)),
            "psum_out":     Out(plane_sum_shape(config, row + 1)),
            "weight":       In(weight_shape(config)),
            "weight_write": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        # No reset: a reset that overrides an enable costs a LUT on iCE40, and the weights are
        # written before a vector uses them (the partial sums only count once a vector's
        # planes pass).
        shadow = Signal(weight_shape(self.config), reset_less=True)
        active = Signal(weight_shape(self.config), reset_less=True)
        psum = Signal.like(self.psum_out, reset_less=True)
        m.d.comb += self.psum_out.eq(psum)
        with m.If(self.weight_write):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow)
        m.d.sync += psum.eq(self.psum_in + Mux(self.bit, active, 0))
        return m
