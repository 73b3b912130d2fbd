"""The integer widths every part of the accelerator agrees on.

The requantization constants of one output channel (see :func:`systolix.sim.golden.requantize`
for what they compute):

* ``bias``: a signed :data:`BIAS_BITS`-bit integer, added to the accumulator exactly (``P``
  is at most 32, so ``acc + bias`` needs 33 bits);
* ``multiplier`` ``M0``: unsigned, at most :data:`MULTIPLIER_BITS` bits;
* ``shift``: ``0..``:data:`MAX_SHIFT` (:data:`SHIFT_BITS` bits).

``(acc + bias) * M0`` therefore stays below ``2^49`` in magnitude: exact in int64 and in the
gateware's 49-bit product. Codes are at most :data:`CODE_BITS` bits, signed or unsigned.
"""

__all__ = ["BIAS_BITS", "MULTIPLIER_BITS", "MAX_SHIFT", "SHIFT_BITS", "CODE_BITS"]

BIAS_BITS = 32
"""Bits of a requantization bias (signed)."""

MULTIPLIER_BITS = 16
"""Bits of a requantization multiplier ``M0`` (unsigned)."""

MAX_SHIFT = 63
"""The largest requantization right shift."""

SHIFT_BITS = MAX_SHIFT.bit_length()
"""Bits of a requantization shift (unsigned)."""

CODE_BITS = 8
"""The widest code of a weight, an activation or an output; also the bits of an output code on
the engine's ``outputs`` stream and in the output memory."""
