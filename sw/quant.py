"""Uniform quantizers: symmetric and affine, per tensor and per output channel, 1..8 bits.

A quantizer maps a real value ``v`` to an integer code ``q = clamp(round(v / s) + z)`` and back
to ``s * (q - z)``, with a scale ``s > 0`` and a zero point ``z``.

- **Symmetric** (signed codes, ``z = 0``): the narrow range ``-(2^(b-1)-1) .. 2^(b-1)-1``, so
  that ``-v`` is as representable as ``v`` (needs ``b >= 2``). Used for weights.
- **Unsigned** (``z = 0``, codes ``0 .. 2^b-1``): for tensors that are never negative, such as
  ReLU outputs and pixel values.
- **Affine** (unsigned codes, integer ``z``): any range ``[lo, hi]`` that contains 0 (so that 0
  is exact: padding and ReLU stay exact).

Scales are per tensor or per output channel (the last axis: weights are ``(inputs, outputs)``).
They come from the range of the values (``clipping="max"``) or from a search for the clipping
range that minimises the mean squared quantization error (``clipping="mse"``). With
``pow2=True`` each scale is rounded up to a power of two, as in dynamic fixed point and WAGE,
so that the requantization multiplier becomes a pure shift.

Rounding is ``"nearest"`` (half up: ``floor(v + 1/2)``, the rounding the hardware requantizer
uses) or ``"zero"`` (truncation toward zero, which never increases a magnitude).
"""

from dataclasses import dataclass

import numpy as np

from systolix.config import check_choice, check_int, code_range
from systolix.numeric import MAX_SHIFT, MULTIPLIER_BITS

__all__ = ["ROUNDINGS", "CLIPPINGS", "QuantParams", "round_values", "pow2_ceil", "symmetric_params",
           "activation_params", "fixed_point_multiplier", "wage_quantize", "sqnr_db"]

ROUNDINGS = ("nearest", "zero")
CLIPPINGS = ("max", "mse")
ACTIVATION_SCHEMES = ("symmetric", "affine")

# Clipping ranges tried by ``clipping="mse"``, as fractions of the largest magnitude.
_CLIP_FRACTIONS = np.linspace(0.2, 1.0, 33)
# The clipping search for activations looks at an evenly strided sample of at most this many.
_CLIP_SAMPLE = 8192


def round_values(values, rounding="nearest"):
    """Round to integers (as float64): ``"nearest"`` rounds halves up, ``"zero"`` truncates."""
    check_choice("rounding", rounding, ROUNDINGS)
    values = np.asarray(values, dtype=np.float64)
    if rounding == "nearest":
        return np.floor(values + 0.5)
    return np.trunc(values)


@dataclass(frozen=True)
class QuantParams:
    """Scale and zero point of a uniform quantizer.

    Parameters
    ----------
    bits : int
        Code width, 1..8.
    signed : bool
        Two's complement or unsigned codes.
    scale : float or numpy.ndarray
        Positive; one per output channel (the last axis) or one for the tensor.
    zero_point : int
        The code of the real value 0.
    low, high : int
        The smallest and largest code used (symmetric quantizers leave out ``-2^(b-1)``).
    """

    bits: int
    signed: bool
    scale: object
    zero_point: int
    low: int
    high: int

    def quantize(self, values, rounding="nearest"):
        """Integer codes (int64) of ``values``."""
        codes = round_values(np.asarray(values, dtype=np.float64) / self.scale, rounding)
        return np.clip(codes + self.zero_point, self.low, self.high).astype(np.int64)

    def dequantize(self, codes):
        """Real values (float64) of ``codes``."""
        return self.scale * (np.asarray(codes, dtype=np.float64) - self.zero_point)

    def fake_quantize(self, values, rounding="nearest"):
        """``dequantize(quantize(values))``."""
        return self.dequantize(self.quantize(values, rounding))


def pow2_ceil(scale):
    """The smallest power of two that is at least ``scale`` (elementwise)."""
    return np.exp2(np.ceil(np.log2(scale)))


def _best_fraction(values, make_params, per_channel):
    """The clipping fraction of :data:`_CLIP_FRACTIONS` with the smallest squared error.

    ``make_params(fraction)`` returns the :class:`QuantParams` for that fraction; the result is
    an array over the last axis of ``values`` when ``per_channel`` and a float otherwise.
    """
    axis = tuple(range(values.ndim - 1)) if per_channel else None
    errors = [np.sum((make_params(f).fake_quantize(values) - values) ** 2, axis=axis)
              for f in _CLIP_FRACTIONS]
    return _CLIP_FRACTIONS[np.argmin(errors, axis=0)]


def _checked_values(name, values):
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError(f"{name} values must not be empty")
    bad = np.count_nonzero(~np.isfinite(values))
    if bad:
        raise ValueError(f"{name} values must be finite, but {bad} are NaN or Inf")
    return values


def symmetric_params(values, bits, per_channel=True, pow2=False, clipping="max",
                     name="weight"):
    """A symmetric signed quantizer for ``values`` (weights): ``z = 0``, narrow range.

    Parameters
    ----------
    values : array_like
        The tensor; channels along the last axis.
    bits : int
        2..8 (a signed symmetric code needs at least 2 bits to hold -1, 0 and 1).
    per_channel : bool
        One scale per output channel (last axis), or one for the tensor.
    pow2 : bool
        Round each scale up to a power of two.
    clipping : str
        ``"max"``: the largest magnitude maps to the largest code. ``"mse"``: the clipping range
        that minimises the squared error.
    name : str
        What ``values`` are, for error messages: the bit width is called ``{name}_bits``.
    """
    check_int(f"{name}_bits", bits, 2, 8)
    check_choice("clipping", clipping, CLIPPINGS)
    values = _checked_values(name, values)
    high = (1 << (bits - 1)) - 1
    axis = tuple(range(values.ndim - 1)) if per_channel else None
    largest = np.max(np.abs(values), axis=axis)
    # An all-zero channel gets scale 1: every code is 0 whatever the scale.
    largest = np.where(largest > 0, largest, float(high))

    def make(fraction):
        scale = fraction * largest / high
        return QuantParams(bits, True, pow2_ceil(scale) if pow2 else scale, 0, -high, high)

    return make(_best_fraction(values, make, per_channel) if clipping == "mse" else 1.0)


def activation_params(values, bits, scheme="affine", pow2=False, clipping="max",
                      name="activation"):
    """A per-tensor quantizer for the activations ``values`` of a calibration batch.

    Never-negative activations get unsigned codes with ``z = 0`` under either scheme. Others
    get signed symmetric codes (``scheme="symmetric"``, ``bits >= 2``) or unsigned codes with a
    zero point (``scheme="affine"``). The ``"mse"`` clipping search looks at an evenly strided
    sample of at most 8192 values.

    Parameters
    ----------
    values : array_like
        Calibration activations.
    bits : int
        1..8.
    scheme : str
        ``"affine"`` or ``"symmetric"``.
    pow2, clipping, name
        As for :func:`symmetric_params`.
    """
    check_int(f"{name}_bits", bits, 1, 8)
    check_choice("scheme", scheme, ACTIVATION_SCHEMES)
    check_choice("clipping", clipping, CLIPPINGS)
    values = _checked_values(name, values)
    lowest, highest = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    if lowest < 0.0 and scheme == "symmetric":
        return symmetric_params(values, bits, False, pow2, clipping, name)
    low, high = code_range(bits, False)

    def make(fraction):
        """Unsigned codes for ``fraction * [lowest, highest]`` (``z = 0`` when ``lowest`` is 0)."""
        span = fraction * (highest - lowest)
        scale = span / high if span > 0 else 1.0
        if pow2:
            scale = float(pow2_ceil(scale))
        zero_point = int(np.clip(np.floor(-fraction * lowest / scale + 0.5), low, high))
        return QuantParams(bits, False, scale, zero_point, low, high)

    if clipping == "max":
        return make(1.0)
    sample = values.ravel()[::-(-values.size // _CLIP_SAMPLE)]
    return make(float(_best_fraction(sample, make, False)))


def fixed_point_multiplier(real):
    """``(M0, shift)`` with ``M0 * 2^-shift`` closest to each positive ``real`` multiplier.

    ``M0`` uses all :data:`MULTIPLIER_BITS` bits (``2^15 <= M0 < 2^16``, a relative error of at
    most ``2^-16``) unless the shift would exceed :data:`MAX_SHIFT`.

    Parameters
    ----------
    real : array_like of float
        Positive multipliers below ``2^MULTIPLIER_BITS - 1/2``.

    Returns
    -------
    multiplier, shift : numpy.ndarray of int64
    """
    real = np.asarray(real, dtype=np.float64)
    # The largest multiplier that rounds to a MULTIPLIER_BITS-bit M0 with shift 0.
    largest = (1 << MULTIPLIER_BITS) - 0.5
    if np.any(~(real > 0)) or np.any(real >= largest):
        raise ValueError(f"requantization multipliers must be positive and below {largest}, "
                         f"not {real.min()}..{real.max()}")
    shift = np.clip(MULTIPLIER_BITS - 1 - np.floor(np.log2(real)), 0, MAX_SHIFT).astype(np.int64)
    multiplier = np.floor(np.ldexp(real, shift) + 0.5).astype(np.int64)
    # Rounding up to 2^MULTIPLIER_BITS: halve the multiplier (exact) and the shift with it.
    full = multiplier == 1 << MULTIPLIER_BITS
    return np.where(full, multiplier >> 1, multiplier), np.where(full, shift - 1, shift)


def wage_quantize(values, bits):
    """WAGE's quantizer ``Q(x, k) = clip(sigma * round(x / sigma), -1 + sigma, 1 - sigma)``.

    ``sigma = 2^(1-k)``; the result is a real value. It equals the symmetric quantizer with the
    power-of-two scale ``sigma`` and codes ``-(2^(k-1)-1) .. 2^(k-1)-1`` (``k >= 2``).
    """
    check_int("bits", bits, 2, 8)
    sigma = 2.0 ** (1 - bits)
    return np.clip(sigma * round_values(np.asarray(values, dtype=np.float64) / sigma),
                   -1 + sigma, 1 - sigma)


def sqnr_db(reference, approximation):
    """Signal-to-quantization-noise ratio in dB: ``10 log10(sum(ref^2) / sum((ref - approx)^2))``.

    ``inf`` when the approximation is exact.
    """
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.sum((reference - np.asarray(approximation, dtype=np.float64)) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0.0:
        return float("inf")
    return 10.0 * np.log10(signal / noise) if signal > 0 else float("-inf")
