"""The one frozen configuration that drives the RTL, the golden model, the tests and the reports.

Variants are made with :func:`dataclasses.replace`; every field is checked when the object is
built, so an invalid configuration never reaches the hardware generator or the golden model.
"""

import re
from dataclasses import dataclass

__all__ = ["OVERFLOW_MODES", "PE_KINDS", "DSP_OPERAND_BITS", "ArrayConfig", "DEFAULT_CONFIG",
           "check_int", "check_choice", "check_bool", "code_range"]


OVERFLOW_MODES = ("wrap", "saturate")

PE_KINDS = ("lut", "dsp", "dsp4", "serial")
"""Kinds of processing element (the ``pe`` field of :class:`ArrayConfig`)."""

DSP_OPERAND_BITS = 18
"""Widest operand of the DSP multipliers the boards have (ECP5's MULT18X18D; iCE40 UltraPlus's
SB_MAC16 takes 16 bits): a ``"dsp4"`` cell's packed operand must fit it."""


def check_int(name, value, low, high):
    """Return ``value`` if it is an integer in ``low..high``; raise :class:`ValueError` otherwise.

    The message names the parameter, the value and the allowed range, for example
    ``weight_bits must be an integer in 1..8, not 9``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}, not {value!r}")
    return value


def check_choice(name, value, choices):
    """Return ``value`` if it is one of ``choices``; raise :class:`ValueError` otherwise."""
    if value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}")
    return value


def check_bool(name, value):
    """Return ``value`` if it is ``True`` or ``False``; raise :class:`ValueError` otherwise."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def code_range(bits, signed):
    """Smallest and largest integer code of a ``bits``-wide two's complement or unsigned value."""
    if signed:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


@dataclass(frozen=True)
class ArrayConfig:
    """Parameters of a weight-stationary systolic array of multiply-accumulate units.

    The array computes ``Y = X @ W`` for a preloaded weight tile ``W`` of ``rows x cols`` codes
    and a stream of activation vectors ``X`` of ``rows`` codes each.

    Parameters
    ----------
    rows : int
        Rows of processing elements, 1..32: the length of an activation vector (the reduction
        dimension of one tile).
    cols : int
        Columns of processing elements, 1..32: the length of a result vector.
    weight_bits, activation_bits : int
        Code widths, 1..8 each.
    weight_signed, activation_signed : bool
        Two's complement (``True``) or unsigned (``False``) codes.
    accumulator_bits : int
        Width ``P`` of every partial sum, 2..32, two's complement.
    overflow : str
        ``"wrap"``: partial sums wrap around modulo ``2**P`` (what a plain adder does).
        ``"saturate"``: each partial sum is clamped to the ``P``-bit range after every addition.
    pe : str
        How the products are made; the results and the timing are the same either way.
        ``"lut"``: one multiplier in logic per cell. ``"dsp"``: the cells of two neighbouring
        columns share one multiplier, ``act * (w0 + w1 * 2**(W+A))``, which Yosys maps to one
        DSP (iCE40 UltraPlus SB_MAC16, ECP5 MULT18X18D) while the packed operand has at most
        :attr:`dsp_operand_bits` bits (see :mod:`systolix.hw.mac`). ``"dsp4"``: the cells of
        four neighbouring columns share one multiplier, ``act * (w0 + w1 * 2**s + w2 * 2**2s +
        w3 * 2**3s)`` with ``s`` = :attr:`dsp4_spacing`, the overlapping fields corrected with
        the low ``s`` bits of three products made in logic; its operand of
        :attr:`dsp4_operand_bits` bits must fit :data:`DSP_OPERAND_BITS`.
        ``"serial"``: bit-serial cells without a multiplier, one activation bit-plane a cycle,
        so a vector of ``b``-bit codes takes ``b`` cycles (the layer's input bits, not
        ``activation_bits``); wrap-around only (:mod:`systolix.hw.mac`).
        ``systolix.boards.synth.choose_pe`` picks ``"lut"``, ``"dsp"`` or ``"dsp4"`` for an
        FPGA.
    """

    rows: int = 8
    cols: int = 8
    weight_bits: int = 4
    weight_signed: bool = True
    activation_bits: int = 4
    activation_signed: bool = False
    accumulator_bits: int = 16
    overflow: str = "wrap"
    pe: str = "lut"

    def __post_init__(self):
        check_int("rows", self.rows, 1, 32)
        check_int("cols", self.cols, 1, 32)
        check_int("weight_bits", self.weight_bits, 1, 8)
        check_int("activation_bits", self.activation_bits, 1, 8)
        check_int("accumulator_bits", self.accumulator_bits, 2, 32)
        check_bool("weight_signed", self.weight_signed)
        check_bool("activation_signed", self.activation_signed)
        check_choice("overflow", self.overflow, OVERFLOW_MODES)
        check_choice("pe", self.pe, PE_KINDS)
        if self.pe == "serial" and self.overflow != "wrap":
            raise ValueError(f"pe 'serial' needs overflow 'wrap' (a bit-serial sum is built "
                             f"plane by plane, so clamping after every addition cannot be "
                             f"exact), not {self.overflow!r}")
        if self.pe == "dsp4" and self.cols < 2:
            raise ValueError(f"pe 'dsp4' needs at least 2 columns (a column alone would be a "
                             f"LUT cell a cycle faster), not {self.cols}")
        if self.pe == "dsp4" and self.dsp4_operand_bits > DSP_OPERAND_BITS:
            raise ValueError(f"pe 'dsp4' needs a packed operand of at most {DSP_OPERAND_BITS} "
                             f"bits (a DSP multiplier's), not {self.dsp4_operand_bits} "
                             f"(weight and activation bits {self.weight_bits} and "
                             f"{self.activation_bits}); use pe 'dsp'")

    @property
    def weight_range(self):
        """``(lowest, highest)`` weight code."""
        return code_range(self.weight_bits, self.weight_signed)

    @property
    def activation_range(self):
        """``(lowest, highest)`` activation code."""
        return code_range(self.activation_bits, self.activation_signed)

    @property
    def accumulator_range(self):
        """``(lowest, highest)`` partial sum."""
        return code_range(self.accumulator_bits, True)

    @property
    def product_bits(self):
        """Bits of a product of a weight and an activation code: ``W + A``."""
        return self.weight_bits + self.activation_bits

    @property
    def product_signed(self):
        """Whether products are two's complement (either code is)."""
        return self.weight_signed or self.activation_signed

    @property
    def dsp_operand_bits(self):
        """Bits of the packed weight operand ``w0 + w1 * 2**(W+A)`` of a ``"dsp"`` cell pair:
        ``2W + A``, one more where the products are signed (the upper field takes the borrow
        of a negative lower weight)."""
        return 2 * self.weight_bits + self.activation_bits + int(self.product_signed)

    @property
    def dsp4_spacing(self):
        """Bits ``s = ceil((W + A) / 2)`` between the weights packed into a ``"dsp4"`` cell's
        operand: half a product, so neighbouring products overlap by ``W + A - s`` bits."""
        return (self.product_bits + 1) // 2

    def packed_operand_bits(self, lanes):
        """Bits of the packed weight operand ``w0 + w1 * 2**s + ...`` of a ``"dsp4"`` group of
        ``lanes`` columns (2..4; ``s`` = :attr:`dsp4_spacing`; two's complement where the
        products are): the fewest that hold every such sum, or one fewer where only the lowest
        or only the highest sums then wrap around (the multiplier then makes ``x * 2**bits``
        too much or too little, which the cell takes back; see
        :class:`systolix.hw.mac.DSPProcessingQuad`). 16 for four lanes at W4/A4."""
        check_int("lanes", lanes, 2, 4)
        spacing, signed = self.dsp4_spacing, self.product_signed
        low, high = (sum(code << (lane * spacing) for lane in range(lanes))
                     for code in self.weight_range)
        exact = max(high.bit_length(), (~low).bit_length() if low < 0 else 0) + int(signed)
        operand_low, operand_high = code_range(exact - 1, signed)
        return exact - 1 if (low < operand_low) != (high > operand_high) else exact

    @property
    def dsp4_operand_bits(self):
        """:meth:`packed_operand_bits` of four lanes."""
        return self.packed_operand_bits(4)

    @classmethod
    def from_name(cls, name):
        """The configuration whose :attr:`name` is ``name``, for example
        ``"8x8-W4s-A4u-P16-wrap"`` or, with DSP or bit-serial cells,
        ``"8x8-W4s-A4u-P16-wrap-dsp"``, ``"8x8-W4s-A4u-P16-wrap-dsp4"`` or
        ``"8x8-W4s-A4u-P16-wrap-serial"``."""
        match = re.fullmatch(r"(\d+)x(\d+)-W(\d+)([su])-A(\d+)([su])-P(\d+)-([a-z]+)"
                             r"(?:-([a-z0-9]+))?", str(name))
        if match is None:
            raise ValueError(f"config must be a name like 8x8-W4s-A4u-P16-wrap or "
                             f"8x8-W4s-A4u-P16-wrap-dsp (rows x cols, weight and activation "
                             f"bits with s or u, accumulator bits, overflow, processing "
                             f"element if not lut: dsp, dsp4 or serial), not {name!r}")
        rows, cols, weight_bits, weight_sign, activation_bits, activation_sign, \
            accumulator_bits, overflow, pe = match.groups()
        return cls(rows=int(rows), cols=int(cols), weight_bits=int(weight_bits),
                   weight_signed=weight_sign == "s", activation_bits=int(activation_bits),
                   activation_signed=activation_sign == "s",
                   accumulator_bits=int(accumulator_bits), overflow=overflow, pe=pe or "lut")

    @property
    def name(self):
        """A short label such as ``8x8-W4s-A4u-P16-wrap``, used in tables and build folders;
        ``-dsp``, ``-dsp4`` or ``-serial`` is appended for DSP or bit-serial cells."""
        sign = {True: "s", False: "u"}
        return (f"{self.rows}x{self.cols}-W{self.weight_bits}{sign[self.weight_signed]}"
                f"-A{self.activation_bits}{sign[self.activation_signed]}"
                f"-P{self.accumulator_bits}-{self.overflow}"
                + ("" if self.pe == "lut" else f"-{self.pe}"))


DEFAULT_CONFIG = ArrayConfig(rows=8, cols=8, weight_bits=4, weight_signed=True,
                             activation_bits=4, activation_signed=False, accumulator_bits=12)
"""The default array: 8x8 W4/A4 with the 12-bit accumulator that the default model is quantized
for (A2Q+); what ``make sim`` simulates and the ECP5 boards build."""
