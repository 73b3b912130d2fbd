"""The timing contract: cycle counts that the gateware guarantees and the cycle models, the
testbenches and the reports rely on.

Each block's docstring states its latency and throughput; the numbers that other parts compute
with are defined here, once.
"""

from typing import NamedTuple

from .layer import EXP_BITS, NORM_BITS, ROOT_BITS

__all__ = ["ArrayTiming", "DSP4_EXTRA_LATENCY", "array_timing", "vector_planes",
           "macs_per_cycle", "REQUANT_LATENCY", "default_requant_lanes", "SOFTMAX_EXP_STAGES",
           "softmax_row_cycles", "softmax_row_latency", "LAYERNORM_OUTPUT_STAGES",
           "LAYERNORM_FACTOR_BITS", "layernorm_root_bits", "layernorm_row_cycles",
           "layernorm_row_latency"]


class ArrayTiming(NamedTuple):
    """Cycle counts of a :class:`systolix.hw.array.SystolicArray`, derived from its
    configuration.

    Every row gives its activation (its bit, with bit-serial cells) and its tile-swap flag to
    all its cells in the same cycle, so all columns write their sums into the one result memory
    in the same cycle. The loader may take the next tile's first row in the cycle after a
    tile's first vector is accepted: the swap reaches row ``r`` ``r`` cycles after acceptance
    (with bit-serial cells, ``r + 1``), and the loader writes row ``r``'s shadow registers
    ``r + 2`` cycles after it at the earliest, after they were copied.

    Attributes
    ----------
    latency : int
        Cycles from the cycle an activation vector is accepted to the first cycle its result is
        offered on ``results``: ``rows + 4`` with LUT and DSP cells (row ``r``'s activation
        register feeds its cells ``r + 1`` cycles after acceptance, the products are registered
        a cycle later, the bottom row's sums another cycle later, then the buffer's write,
        level and read registers; :data:`DSP4_EXTRA_LATENCY` more with ``pe="dsp4"``);
        ``rows + planes + 3`` with bit-serial cells
        (``pe="serial"``), ``planes`` being the vector's activation bits.
    column_write : int
        Cycles from acceptance to the cycle every column writes the result into the result
        buffer: ``rows + 2`` (plus :data:`DSP4_EXTRA_LATENCY` with ``pe="dsp4"``);
        ``rows + planes + 1`` with bit-serial cells.
    result_depth : int
        Entries of the result buffer, a power of two of at least ``rows + 5`` (the latency plus
        one of the fastest vectors; one more with ``pe="dsp4"``): enough credits to accept a
        vector every ``interval`` cycles while ``results`` is always ready.
    interval : int
        Cycles between the vectors the array accepts at full rate: 1, or ``planes`` with
        bit-serial cells.
    """
    latency: int
    column_write: int
    result_depth: int
    interval: int


DSP4_EXTRA_LATENCY = 1
"""Cycles a four-product DSP cell (``pe="dsp4"``, :class:`systolix.hw.mac.DSPProcessingQuad`)
takes more than the other cells from its activation to its partial sum: the correction terms
are subtracted in a stage of their own."""


def array_timing(config, planes=None):
    """The :class:`ArrayTiming` of an array built from ``config`` (an
    :class:`~systolix.config.ArrayConfig`), for vectors of ``planes`` activation bits with
    bit-serial cells (default ``config.activation_bits``; other cells ignore it)."""
    extra = DSP4_EXTRA_LATENCY if config.pe == "dsp4" else 0
    depth = 1 << (config.rows + 4 + extra).bit_length()
    if config.pe != "serial":
        return ArrayTiming(latency=config.rows + 4 + extra, column_write=config.rows + 2 + extra,
                           result_depth=depth, interval=1)
    planes = config.activation_bits if planes is None else planes
    if not 1 <= planes <= config.activation_bits:
        raise ValueError(f"planes must be an integer in 1..{config.activation_bits}, "
                         f"not {planes!r}")
    return ArrayTiming(latency=config.rows + planes + 3, column_write=config.rows + planes + 1,
                       result_depth=depth, interval=planes)


def vector_planes(config, bits, signed):
    """The bit-planes a bit-serial array of ``config`` takes for the vectors of a layer whose
    input codes have ``bits`` bits (``signed`` or not): ``bits``, one more for unsigned codes
    on an array of signed ones (whose top plane is the sign; the plane above an unsigned code
    is 0)."""
    return bits + int(config.activation_signed and not signed)


def macs_per_cycle(config, planes=None):
    """Multiply-accumulates an array of ``config`` makes a cycle at full rate: ``rows * cols``,
    divided by the vectors' bit-planes with bit-serial cells (default ``activation_bits``);
    an int where it is whole."""
    macs, interval = config.rows * config.cols, array_timing(config, planes).interval
    return macs // interval if macs % interval == 0 else macs / interval


REQUANT_LATENCY = 5
"""Cycles of :class:`systolix.hw.requant.Requantizer` from a value on ``input`` to its code on
``output``; one value a cycle."""


def default_requant_lanes(config):
    """Channels the engine requantizes a cycle unless told otherwise: 2 where they divide
    ``rows`` and ``cols`` (so that a K tile of at least ``cols / 2`` words keeps up with the
    array), else 1."""
    return 2 if config.rows % 2 == 0 and config.cols % 2 == 0 else 1


SOFTMAX_EXP_STAGES = 5
"""Stages of :class:`systolix.hw.softmax.SoftmaxUnit`'s exponential pipeline: read, ``d``, the
two Horner steps, the shift."""

_QUOTIENT_BITS = EXP_BITS + 1      # floor(2^30 / sum) <= 2^30 / 2^15: one division step each


def softmax_row_cycles(length):
    """Cycles between consecutive rows of ``length`` codes through
    :class:`systolix.hw.softmax.SoftmaxUnit` when the next row is loaded in time (it loads into
    the other row buffer while this one is computed): ``length + 5`` to sum, ``16`` to divide,
    ``length + 5`` to normalise; from one row's last code out to the next one's."""
    return 2 * length + 2 * SOFTMAX_EXP_STAGES + _QUOTIENT_BITS


def softmax_row_latency(length):
    """Cycles from a row's first input transfer into an idle
    :class:`systolix.hw.softmax.SoftmaxUnit` (without stalls) to its last code on ``output``:
    ``length`` to load, 1 to start, :func:`softmax_row_cycles`, and the requantizer's
    :data:`REQUANT_LATENCY`."""
    return length + 1 + softmax_row_cycles(length) + REQUANT_LATENCY


LAYERNORM_OUTPUT_STAGES = 6
"""Stages of :class:`systolix.hw.layernorm.LayerNormUnit`'s output pipeline: read, ``d``,
``d * factor``, ``* M + B``, round, clamp."""

LAYERNORM_FACTOR_BITS = NORM_BITS + 1
"""Bits of LayerNorm's ``factor = floor(2^38 / root) <= 2^30`` (``root >= 2^8``): one division
step each."""


def layernorm_root_bits(max_channels):
    """Bits of ``isqrt(S << 16)`` in a :class:`systolix.hw.layernorm.LayerNormUnit` of rows of
    up to ``max_channels`` codes (``S = C sum q^2 - (sum q)^2 <= C^2 2^16`` for 9-bit codes):
    one square root step each."""
    return (max_channels.bit_length() + 8 + ROOT_BITS) + 1


def layernorm_row_cycles(channels, max_channels):
    """Cycles between consecutive rows of ``channels`` codes through
    :class:`systolix.hw.layernorm.LayerNormUnit` (of ``max_channels``) when the next row is
    loaded in time (it loads into the other row buffer while this one is normalised): 1 for
    the spread, one a result bit for the square root, 31 for the division, ``channels + 5`` to
    normalise; from one row's spread to the next one's, or one row's last code out to the
    next one's."""
    return (1 + layernorm_root_bits(max_channels) + LAYERNORM_FACTOR_BITS + channels
            + LAYERNORM_OUTPUT_STAGES - 1)


def layernorm_row_latency(channels, max_channels):
    """Cycles from a row's first input transfer into an idle
    :class:`systolix.hw.layernorm.LayerNormUnit` (no stalls, constants always valid) to its
    last code on ``output``: ``channels`` to load, 1 to start, then
    :func:`layernorm_row_cycles`."""
    return channels + 1 + layernorm_row_cycles(channels, max_channels)
