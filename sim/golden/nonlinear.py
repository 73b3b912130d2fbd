"""Integer-only nonlinearities of a transformer, bit-exact, and the float functions they stand
for.

Every function here takes integer codes and integer constants and computes with integers only
(shifts, small products, one integer square root and one integer division per row): what the
gateware units of :mod:`systolix.hw.nonlinear` compute. The float functions
(:func:`float_softmax`, :func:`float_layernorm`, :func:`float_gelu`) are the references their
errors are measured against (:func:`exp2_error`, :func:`gelu_error`, ``docs/vit.md``).

Softmax (:func:`integer_softmax`), after I-BERT and I-ViT's Shiftmax. The input codes carry the
scores in base-2 units: a code step is ``2^-F`` of a binary order of magnitude, so that
``exp(x) = 2^(x log2 e)`` needs no multiplication by ``log2 e`` (the matmul's requantizer before
it has folded ``log2 e`` into its multiplier). Per row, with ``d = max(q) - q >= 0``::

    z = d >> F,  r = d & (2^F - 1)                       integer and fraction of d / 2^F
    p = C0 + ((r * (((C2 * r) >> F) - C1)) >> F)        2^(-r / 2^F) * 2^15, a quadratic
    e = p >> z                                           2^(-d / 2^F) * 2^15
    reciprocal = floor(2^30 / sum(e))                    one integer division a row
    out = requantize(e * reciprocal, 0, M0, shift, ...)  e * reciprocal ~ softmax * 2^30

(``e * reciprocal <= 2^30``: the requantizer of a 32-bit accumulator takes it.)

LayerNorm (:func:`integer_layernorm`), after I-BERT: per row of ``C`` codes ``q``, ``s = sum q``,
``d = C q - s`` (``C`` times the centred value), ``S = C sum q^2 - s^2`` (``d / sqrt(S)`` is the
normalised value, exactly: ``S = sum d^2 / C``), ``root = isqrt(S << 16)`` (``sqrt(S) * 2^8``,
floored), ``factor = floor(2^38 / root)`` (``2^30 / sqrt(S)``), then per channel ``c`` the
requantizer with a signed multiplier: ``out = clamp(round_shift(d * factor * M[c] + B[c],
shift) + zp)``, where ``M[c] / 2^shift = gamma[c] / (s_out 2^30)`` and ``B[c] / 2^shift =
beta[c] / s_out``. LayerNorm's ``eps`` is left out (it matters only for rows that are nearly
constant; a constant row, ``S = 0``, normalises to 0).

GELU (:func:`integer_gelu`), I-BERT's i-GELU: ``erf`` by a clipped quadratic, ``erf(y) ~
sign(y) (1 - a (min(|y|, b) - b)^2)`` with ``a = 0.2888``, ``b = 1.769``. For ``x = q - z``
at scale ``s`` (``y = s x / sqrt 2``), with the integer constants ``clip = round(b sqrt 2 /
s)`` and ``constant = round(2 / (a s^2))``::

    t = min(|x|, clip) - clip
    P = x * (constant + sign(x) * (constant - t^2))      GELU(s x) ~ P * a s^3 / 4
    out = requantize(P, 0, M0, shift, zp, low, high)
"""

import math

import numpy as np

from systolix.layer import EXP_BITS, EXP_COEFFICIENTS, NORM_BITS, RECIPROCAL_BITS, ROOT_BITS

from .program import requantize, round_shift

__all__ = ["EXP_BITS", "EXP_COEFFICIENTS", "RECIPROCAL_BITS", "NORM_BITS", "ROOT_BITS",
           "GELU_A", "GELU_B", "exp2_fraction", "integer_exp2", "integer_softmax", "isqrt",
           "layernorm_factor", "integer_layernorm", "gelu_constants", "gelu_product", "integer_gelu",
           "float_softmax", "float_layernorm", "float_gelu", "exp2_error", "gelu_error",
           "softmax_error", "layernorm_error", "error_table"]

GELU_A = 0.2888
GELU_B = 1.769
"""I-BERT's erf approximation ``sign(y) (1 - a (min(|y|, b) - b)^2)``."""


def exp2_fraction(r, fraction_bits):
    """``2^(-r / 2^F) * 2^15`` for ``0 <= r < 2^F`` by the quadratic of
    :data:`EXP_COEFFICIENTS` (Horner, floor shifts): ``2^15 .. 2^14 + 1``."""
    c0, c1, c2 = EXP_COEFFICIENTS
    r = np.asarray(r, dtype=np.int64)
    return c0 + ((r * (((c2 * r) >> fraction_bits) - c1)) >> fraction_bits)


def integer_exp2(d, fraction_bits):
    """``2^(-d / 2^F) * 2^15`` for integers ``d >= 0``: the quadratic on the fraction, shifted
    right by the integer part (0 from ``d / 2^F >= 16`` on)."""
    d = np.asarray(d, dtype=np.int64)
    whole = np.minimum(d >> fraction_bits, EXP_BITS + 1)
    return exp2_fraction(d & ((1 << fraction_bits) - 1), fraction_bits) >> whole


def integer_softmax(codes, fraction_bits, multiplier, shift, zero_point, low, high,
                    rounding="half_up"):
    """Softmax of each row (the last axis) of integer ``codes`` (see the module docstring).

    Parameters
    ----------
    codes : array_like of int, shape (..., length)
        Scores, one code a ``2^-F`` step of ``log2``: real ``2^(q / 2^F)`` up to a factor.
    fraction_bits : int
        ``F``.
    multiplier, shift, zero_point, low, high : int
        The requantization of ``e * reciprocal`` (a probability times ``2^30``) to output codes.
    rounding : str

    Returns
    -------
    numpy.ndarray of int64, the shape of ``codes``
    """
    codes = np.asarray(codes, dtype=np.int64)
    e = integer_exp2(codes.max(axis=-1, keepdims=True) - codes, fraction_bits)
    reciprocal = (1 << RECIPROCAL_BITS) // e.sum(axis=-1, keepdims=True)
    return requantize(e * reciprocal, 0, multiplier, shift, zero_point, low, high, rounding)


def isqrt(values):
    """``floor(sqrt(v))`` of int64 values ``0 <= v <= 2^62``, exactly (what a digit-by-digit
    square root computes)."""
    values = np.asarray(values, dtype=np.int64)
    root = np.floor(np.sqrt(values.astype(np.float64))).astype(np.int64)
    root -= root * root > values                # float64 may round up near 2^53 and above
    root += (root + 1) * (root + 1) <= values
    return root


def layernorm_factor(codes):
    """``(d, factor)`` of LayerNorm over the last axis of ``codes``: ``d = C q - sum q`` and
    ``factor = floor(2^38 / isqrt((C sum q^2 - (sum q)^2) << 16))`` (0 for a constant row), so
    that ``d * factor`` is the normalised value times ``2^30``."""
    codes = np.asarray(codes, dtype=np.int64)
    channels = codes.shape[-1]
    total = codes.sum(axis=-1, keepdims=True)
    spread = channels * (codes * codes).sum(axis=-1, keepdims=True) - total * total
    root = isqrt(spread << (2 * ROOT_BITS))
    factor = np.where(root > 0, (1 << (NORM_BITS + ROOT_BITS)) // np.maximum(root, 1), 0)
    return channels * codes - total, factor


def integer_layernorm(codes, multiplier, bias, shift, zero_point, low, high,
                      rounding="half_up"):
    """LayerNorm of each row (the last axis, ``C`` channels) of integer ``codes`` and its
    per-channel affine map, requantized (see the module docstring).

    Parameters
    ----------
    codes : array_like of int, shape (..., C)
    multiplier : array_like of int, shape (C,)
        Signed: ``gamma[c] / (s_out 2^30) * 2^shift``.
    bias : array_like of int, shape (C,)
        ``beta[c] / s_out * 2^shift``.
    shift, zero_point, low, high : int
    rounding : str
    """
    d, factor = layernorm_factor(codes)
    total = d * factor * np.asarray(multiplier, dtype=np.int64) + np.asarray(bias, np.int64)
    return np.clip(round_shift(total, shift, rounding) + zero_point, low, high)


def gelu_product(x, clip, constant):
    """I-BERT's integer GELU product ``P = x * (constant + sign(x) * (constant - (min(|x|,
    clip) - clip)^2))`` of centred codes ``x``: ``GELU(s x) ~ P * a s^3 / 4``."""
    x = np.asarray(x, dtype=np.int64)
    t = np.minimum(np.abs(x), clip) - clip
    return x * (constant + np.sign(x) * (constant - t * t))


def integer_gelu(codes, input_zero_point, clip, constant, multiplier, shift, zero_point, low,
                 high, rounding="half_up"):
    """GELU of integer ``codes`` (real ``s (q - input_zero_point)``), requantized: see the
    module docstring; ``clip`` and ``constant`` as there."""
    product = gelu_product(np.asarray(codes, dtype=np.int64) - input_zero_point, clip,
                           constant)
    return requantize(product, 0, multiplier, shift, zero_point, low, high, rounding)


def float_softmax(x, axis=-1):
    """``exp(x) / sum exp(x)`` along ``axis``, stable."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def float_layernorm(x, gamma=1.0, beta=0.0, eps=1e-5):
    """``(x - mean) / sqrt(var + eps) * gamma + beta`` along the last axis."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + eps) * gamma + beta


_erf = np.frompyfunc(math.erf, 1, 1)


def float_gelu(x):
    """``x / 2 (1 + erf(x / sqrt 2))``, the exact GELU."""
    x = np.asarray(x, dtype=np.float64)
    return x / 2 * (1 + _erf(x / math.sqrt(2)).astype(np.float64))


def _errors(approximate, exact):
    error = np.abs(np.asarray(approximate, np.float64) - np.asarray(exact, np.float64))
    return float(error.max()), float(error.mean())


def exp2_error(fraction_bits):
    """``(max, mean)`` absolute error of :func:`integer_exp2` ``/ 2^15`` against
    ``2^(-d / 2^F)`` over every difference ``d`` of two 8-bit codes (0..255)."""
    d = np.arange(256)
    return _errors(integer_exp2(d, fraction_bits) / (1 << EXP_BITS),
                   2.0 ** (-d / (1 << fraction_bits)))


def softmax_error(codes, fraction_bits):
    """``(max, mean)`` absolute error of the probabilities ``e * reciprocal / 2^30`` of
    :func:`integer_softmax` (before the output requantization) against the float softmax of
    the real scores ``codes * ln 2 / 2^F``, over the rows of ``codes``."""
    codes = np.asarray(codes, dtype=np.int64)
    e = integer_exp2(codes.max(axis=-1, keepdims=True) - codes, fraction_bits)
    probability = e * ((1 << RECIPROCAL_BITS) // e.sum(axis=-1, keepdims=True))
    return _errors(probability / 2.0 ** RECIPROCAL_BITS,
                   float_softmax(codes * math.log(2) / (1 << fraction_bits)))


def layernorm_error(codes):
    """``(max, mean)`` absolute error of the normalised values ``d * factor / 2^30`` of
    :func:`integer_layernorm` (before its affine map and requantization) against the float
    LayerNorm (``eps`` 0) of ``codes``, over the rows of non-constant ``codes``."""
    d, factor = layernorm_factor(codes)
    codes = np.asarray(codes, dtype=np.float64)
    return _errors(d * factor / 2.0 ** NORM_BITS, float_layernorm(codes, eps=0.0))


def gelu_error(scale, bits=8, signed=True, zero_point=0):
    """``(max, mean)`` absolute error of the real value ``P a s^3 / 4`` of
    :func:`gelu_product` against :func:`float_gelu` over every ``bits``-bit input code at
    ``scale`` (constants rounded as in the module docstring)."""
    low = -(1 << (bits - 1)) if signed else 0
    x = np.arange(low, low + (1 << bits)) - zero_point
    clip, constant = gelu_constants(scale)
    return _errors(gelu_product(x, clip, constant) * GELU_A * scale ** 3 / 4,
                   float_gelu(scale * x))


def gelu_constants(scale):
    """``(clip, constant)`` of :func:`gelu_product` for input scale ``scale``."""
    return max(1, round(GELU_B * math.sqrt(2) / scale)), round(2 / (GELU_A * scale ** 2))


def error_table(seed=0):
    """``(function, inputs, max error, mean error)`` rows: each integer nonlinearity against
    its float function over the whole range of its input codes (what ``docs/vit.md``
    tabulates)."""
    rng = np.random.default_rng(seed)
    codes = np.arange(-128, 128)
    pairs = np.stack(np.meshgrid(codes, codes), axis=-1).reshape(-1, 2)
    rows = []
    for fraction_bits in (0, 3, 6):
        rows.append((f"exp2, F={fraction_bits}", "every code difference 0..255",
                     *exp2_error(fraction_bits)))
    for fraction_bits in (3, 6):
        rows.append((f"softmax, F={fraction_bits}", "every pair of 8-bit codes",
                     *softmax_error(pairs, fraction_bits)))
        rows.append((f"softmax, F={fraction_bits}", "20,000 rows of 17 random 8-bit codes",
                     *softmax_error(rng.integers(-128, 128, (20000, 17)), fraction_bits)))
    for bits, channels in ((8, 32), (4, 32), (8, 2)):
        sample = rng.integers(0, 1 << bits, (20000, channels))
        sample = sample[sample.min(axis=1) < sample.max(axis=1)]
        rows.append((f"LayerNorm, {channels} channels", f"{len(sample):,} rows of random "
                     f"{bits}-bit codes", *layernorm_error(sample)))
    for scale in (0.01, 0.03, 0.1, 0.3):
        rows.append((f"GELU, scale {scale}", "every 8-bit code", *gelu_error(scale)))
    return rows
