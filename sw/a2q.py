"""Accumulator-aware weight quantization (A2Q, A2Q+) and data-free accumulator widths.

The hardware adds the products ``x[k] * q[k, c]`` of ``N``-bit activation codes and integer
weight codes into a signed ``P``-bit accumulator. The sums it passes through are partial sums of
``sum_k x[k] q[k, c]`` (in the order ``k = 0..K-1``, or any other). With input codes in
``lo..hi``, every partial sum of channel ``c`` lies in

    ``[-(pos_c * (-lo) + neg_c * hi),  pos_c * hi + neg_c * (-lo)]``

where ``pos_c`` is the sum of the positive weights of the channel and ``neg_c`` the sum of the
magnitudes of its negative weights; both ends are reached by some input (the one that is ``hi``
where the weight is positive and ``lo`` where it is negative, or the other way round). So the
weights alone decide whether an accumulator of ``P`` bits can overflow
(:func:`partial_sum_range`, :func:`min_accumulator_bits`).

Two constraints keep every partial sum inside the ``P``-bit range for every input:

- **A2Q** (Colbert et al., 2023): ``||q_c||_1 <= (2^(P-1) - 1) * 2^(1[x signed] - N)``.
- **A2Q+** (Colbert et al., 2024), unsigned inputs: for zero-centred weights (``pos_c ==
  neg_c``) the bound becomes ``||q_c||_1 <= (2^P - 2) / (2^N - 1)``, about twice as large. The
  paper makes weights zero-centred during training; without retraining, subtracting the channel
  mean would change the function, so this compiler enforces the condition that the bound stands
  for and that holds with or without zero-centring: ``max(pos_c, neg_c) <= (2^(P-1) - 1) /
  (2^N - 1)``, half the A2Q+ L1 budget on each sign.

Quantization (:func:`constrain_codes`) keeps the round-to-nearest codes of every channel that
already meets its bound. Every other channel is replaced by the Euclidean projection of its real
codes onto the constraint set (the L1 ball for A2Q; for A2Q+ the positive and the negative part,
each onto its own L1 ball, which is the projection onto ``max(pos, neg) <= B``), rounded toward
zero: truncation never increases a magnitude, so the rounded channel still meets the bound.
:func:`accumulator_aware_quantize` also searches each channel's scale, which A2Q and A2Q+ learn
during training: with a tight bound a coarser scale loses less than pruning does.
"""

import numpy as np

from systolix.config import check_choice, check_int, code_range

from .quant import pow2_ceil, round_values

__all__ = ["METHODS", "partial_sum_range", "adversarial_inputs", "min_accumulator_bits", "a2q_l1_limit",
           "a2q_plus_l1_limit", "weight_budget", "min_feasible_accumulator_bits",
           "feasible_budget",
           "meets_bound", "project_l1_ball", "constrain_codes", "least_error",
           "accumulator_aware_quantize"]

METHODS = ("none", "a2q", "a2q+")


def _matrix(codes):
    """``codes`` as an int64 matrix (inputs, outputs); raises :class:`ValueError` otherwise."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.ndim != 2:
        raise ValueError(f"weight codes must be a matrix (inputs, outputs), not of shape "
                         f"{codes.shape}")
    return codes


def _sign_sums(codes):
    """Per channel (column): the sum of the positive codes and the sum of |negative codes|."""
    codes = _matrix(codes)
    return np.maximum(codes, 0).sum(axis=0), np.maximum(-codes, 0).sum(axis=0)


def sum_range(weights, low, high):
    """Per column: the smallest and largest partial sum of ``x @ weights`` over inputs in
    ``low..high`` and every subset of the terms (so every order of accumulation); both ends
    include the empty sum, so any range of input codes works (one clamped by ReLU, or shifted
    by a zero point, ``low`` above 0)."""
    weights = np.asarray(weights, dtype=np.int64)
    a, b = weights * low, weights * high
    return (np.minimum(0, np.minimum(a, b)).sum(axis=0),
            np.maximum(0, np.maximum(a, b)).sum(axis=0))


def signed_bits(low, high):
    """The fewest bits of a two's complement integer holding ``low..high`` (at least 1)."""
    return max(1, int(high).bit_length() + 1 if high > 0 else 1,
               int(-low - 1).bit_length() + 1 if low < 0 else 1)


def partial_sum_range(codes, input_bits, input_signed):
    """The smallest and largest partial sum of each channel over all inputs and all orders.

    Parameters
    ----------
    codes : array_like of int, shape (K, channels)
        Weight codes.
    input_bits : int
        ``N``, 1..8.
    input_signed : bool

    Returns
    -------
    low, high : numpy.ndarray of int64, shape (channels,)
        Both are reached: ``high`` by the input that is largest where the weight is positive and
        smallest where it is negative, ``low`` by the opposite one (:func:`sum_range` over the
        input codes).
    """
    check_int("input_bits", input_bits, 1, 8)
    return sum_range(_matrix(codes), *code_range(input_bits, input_signed))


def adversarial_inputs(codes, input_bits, input_signed):
    """Per channel, the two inputs that reach the ends of :func:`partial_sum_range`.

    Row ``c`` is the largest code where channel ``c``'s weight is positive and the smallest
    elsewhere (every partial sum of channel ``c``, in any order, at most its ``high``); row
    ``channels + c`` the opposite (its ``low``).

    Returns
    -------
    numpy.ndarray of int64, shape (2 * channels, K)
    """
    codes = _matrix(codes)
    low, high = code_range(input_bits, input_signed)
    return np.concatenate([np.where(codes.T > 0, high, low), np.where(codes.T > 0, low, high)])


def min_accumulator_bits(codes, input_bits, input_signed):
    """The data-free minimal safe accumulator width for integer weights.

    The smallest ``P`` such that no partial sum of any channel, for any ``input_bits``-bit
    input and in any order, leaves the signed ``P``-bit range (FINN's accumulator minimisation,
    with the exact extremes of :func:`partial_sum_range`). All-zero weights need ``P = 1``.
    """
    low, high = partial_sum_range(codes, input_bits, input_signed)
    return signed_bits(low.min(initial=0), high.max(initial=0))


def a2q_l1_limit(accumulator_bits, input_bits, input_signed):
    """A2Q's bound on ``||q_c||_1``: ``(2^(P-1) - 1) * 2^(1[x signed] - N)``."""
    check_int("accumulator_bits", accumulator_bits, 2, 32)
    check_int("input_bits", input_bits, 1, 8)
    return ((1 << (accumulator_bits - 1)) - 1) * 2.0 ** (int(input_signed) - input_bits)


def a2q_plus_l1_limit(accumulator_bits, input_bits):
    """A2Q+'s bound on ``||q_c||_1``: ``(2^P - 2) / (2^N - 1)``.

    For zero-centred weights and unsigned inputs.
    """
    check_int("accumulator_bits", accumulator_bits, 2, 32)
    check_int("input_bits", input_bits, 1, 8)
    return ((1 << accumulator_bits) - 2) / ((1 << input_bits) - 1)


def weight_budget(method, accumulator_bits, input_bits, input_signed):
    """What :func:`meets_bound` limits for ``method`` (``"a2q"`` or ``"a2q+"``).

    A2Q: the L1 norm of each channel. A2Q+: each of ``pos_c`` and ``neg_c``, half the A2Q+ L1
    bound. A2Q+ needs unsigned inputs.
    """
    check_choice("method", method, METHODS[1:])
    if method == "a2q":
        return a2q_l1_limit(accumulator_bits, input_bits, input_signed)
    if input_signed:
        raise ValueError("method 'a2q+' needs unsigned inputs; use 'a2q' for signed inputs")
    return a2q_plus_l1_limit(accumulator_bits, input_bits) / 2


def min_feasible_accumulator_bits(method, input_bits, input_signed):
    """The smallest ``P`` whose budget under ``method`` admits a weight of magnitude 1."""
    bits = 2
    while weight_budget(method, bits, input_bits, input_signed) < 1:
        bits += 1
    return bits


def feasible_budget(method, accumulator_bits, input_bits, input_signed):
    """:func:`weight_budget`, refused (:class:`ValueError`) when it admits no nonzero weight."""
    budget = weight_budget(method, accumulator_bits, input_bits, input_signed)
    if budget < 1:
        kind = "signed" if input_signed else "unsigned"
        needed = min_feasible_accumulator_bits(method, input_bits, input_signed)
        raise ValueError(f"accumulator_bits={accumulator_bits} is too small for any nonzero "
                         f"weight with {input_bits}-bit {kind} inputs under {method}; it needs "
                         f"at least {needed}")
    return budget


def meets_bound(codes, method, accumulator_bits, input_bits, input_signed):
    """Per channel: whether the integer weight ``codes`` meet the ``method`` bound."""
    budget = weight_budget(method, accumulator_bits, input_bits, input_signed)
    positive, negative = _sign_sums(codes)
    if method == "a2q":
        return positive + negative <= budget
    return np.maximum(positive, negative) <= budget


def project_l1_ball(values, radius):
    """Euclidean projection of each column of ``values`` onto the L1 ball of ``radius``.

    The sort-based algorithm of Duchi et al. (2008): soft-thresholding by the ``theta >= 0`` that
    makes the L1 norm equal to ``radius``; columns already inside the ball are unchanged.

    Parameters
    ----------
    values : array_like of float, shape (K, channels)
    radius : float
        Positive.
    """
    values = np.asarray(values, dtype=np.float64)
    magnitudes = np.abs(values)
    ordered = -np.sort(-magnitudes, axis=0)
    cumulative = np.cumsum(ordered, axis=0)
    ranks = np.arange(1, values.shape[0] + 1)[:, None]
    # The largest rank whose threshold keeps its entry positive.
    support = np.sum(ordered - (cumulative - radius) / ranks > 0, axis=0)
    support = np.maximum(support, 1)
    theta = (cumulative[support - 1, np.arange(values.shape[1])] - radius) / support
    theta = np.where(magnitudes.sum(axis=0) > radius, np.maximum(theta, 0.0), 0.0)
    return np.sign(values) * np.maximum(magnitudes - theta, 0.0)


def constrain_codes(real_codes, method, accumulator_bits, input_bits, input_signed,
                    rounding="nearest"):
    """Integer weight codes that meet the ``method`` bound, from real-valued codes ``w / s``.

    Channels whose rounded codes meet the bound keep them; the others are projected onto the
    constraint set and rounded toward zero (see the module docstring).

    Parameters
    ----------
    real_codes : array_like of float, shape (K, channels)
        Weights divided by their scale, already clipped to the code range.
    method : str
        ``"a2q"`` or ``"a2q+"``.
    accumulator_bits : int
        ``P``, 2..32.
    input_bits : int
        ``N``, 1..8.
    input_signed : bool
    rounding : str
        How channels that need no projection are rounded (``"nearest"`` or ``"zero"``).

    Returns
    -------
    numpy.ndarray of int64, shape (K, channels)
    """
    budget = feasible_budget(method, accumulator_bits, input_bits, input_signed)
    real_codes = np.asarray(real_codes, dtype=np.float64)
    codes = round_values(real_codes, rounding).astype(np.int64)
    over = ~meets_bound(codes, method, accumulator_bits, input_bits, input_signed)
    if np.any(over):
        excess = real_codes[:, over]
        if method == "a2q":
            projected = project_l1_ball(excess, budget)
        else:
            projected = (project_l1_ball(np.maximum(excess, 0.0), budget)
                         - project_l1_ball(np.maximum(-excess, 0.0), budget))
        codes[:, over] = np.trunc(projected).astype(np.int64)
    return codes


def accumulator_aware_quantize(weights, scale, bits, method, accumulator_bits, input_bits,
                               input_signed, rounding="nearest", per_channel=True, pow2=False):
    """Quantize ``weights`` under the ``method`` bound, searching the scale as well.

    A tight bound leaves few codes to spend on a channel. Spending them at the original scale
    zeroes most weights; a coarser scale keeps more of them. Like the learned scales of A2Q, this
    tries scales from ``scale`` up to the one at which the unrounded channel meets its bound (25
    steps, geometrically), constrains the codes at each (:func:`constrain_codes`) and keeps,
    per channel, the scale with the smallest squared error ``||w - s q||^2``. Every candidate
    meets the bound, so the result does too.

    Parameters
    ----------
    weights : array_like of float, shape (K, channels)
    scale : array_like of float, shape (channels,)
        The starting scale of each channel (for example from
        :func:`~systolix.sw.quant.symmetric_params`).
    bits : int
        Weight bits, 2..8: codes in ``-(2^(bits-1)-1) .. 2^(bits-1)-1``.
    method, accumulator_bits, input_bits, input_signed, rounding
        As for :func:`constrain_codes`.
    per_channel : bool
        Search one scale per channel, or one factor for the whole tensor.
    pow2 : bool
        Round every candidate scale up to a power of two.

    Returns
    -------
    codes : numpy.ndarray of int64, shape (K, channels)
    scale : numpy.ndarray of float64, shape (channels,)
    """
    weights = np.asarray(weights, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    high = (1 << (bits - 1)) - 1
    budget = weight_budget(method, accumulator_bits, input_bits, input_signed)
    positive = np.maximum(weights, 0.0).sum(axis=0) / scale
    negative = np.maximum(-weights, 0.0).sum(axis=0) / scale
    needed = positive + negative if method == "a2q" else np.maximum(positive, negative)
    axis = 0 if per_channel else None

    def trial(factor):
        candidate = pow2_ceil(scale * factor) if pow2 else scale * factor
        codes = constrain_codes(np.clip(weights / candidate, -high, high), method,
                                accumulator_bits, input_bits, input_signed, rounding)
        error = np.broadcast_to(np.sum((weights - candidate * codes) ** 2, axis=axis),
                                scale.shape)
        return codes, candidate, error

    return least_error(trial(factor) for factor in
                       np.geomspace(1.0, max(1.0, float(needed.max()) / budget), 25))


def least_error(trials):
    """Per channel, the trial of least error: ``trials`` yields ``(values, scale, error)``
    (``values`` of shape (K, channels), ``scale`` and ``error`` of shape (channels,)); returns
    the ``values`` and ``scale`` of each channel's best trial (the first of equal errors)."""
    best = None
    for trial in trials:
        if best is None:
            best = trial
        else:
            better = trial[2] < best[2]
            best = tuple(np.where(better, new, old) for new, old in zip(trial, best))
    return best[0], best[1]
