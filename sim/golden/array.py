"""Bit-exact numpy model of integer matrix products with a ``P``-bit accumulator.

The hardware adds the products of one output in a fixed order: ``k = 0, 1, ..., K-1`` (top to
bottom through the array, then tile after tile). With ``overflow="wrap"`` the order does not
matter (two's complement addition is associative modulo ``2**P``); with ``overflow="saturate"``
every partial sum is clamped, so the order does, and this model follows the hardware's.

Speed: products of integer codes are summed with float64 BLAS, which is exact while every partial
sum stays below ``2**53`` (checked); saturation is evaluated step by step only for the outputs
whose worst partial sum can leave the ``P``-bit range.
"""

import numpy as np

from systolix.config import OVERFLOW_MODES, check_choice, check_int, code_range

__all__ = ["wrap", "accumulate", "array_matmul"]


_EXACT_FLOAT = 2 ** 53


def wrap(values, bits):
    """Reduce integers to ``bits``-bit two's complement, as a ``bits``-wide register does."""
    values = np.asarray(values, dtype=np.int64)
    half = np.int64(1) << (bits - 1)
    return ((values + half) & ((np.int64(1) << bits) - 1)) - half


def _exact_matmul(x, w):
    """``x @ w`` for int64 arrays, through float64 BLAS when that is exact."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).max(initial=0)) * x.shape[-1]
    if bound < _EXACT_FLOAT:
        return (x.astype(np.float64) @ w.astype(np.float64)).astype(np.int64)
    return x @ w


def accumulate(x, w, accumulator_bits, overflow="wrap"):
    """Integer ``x @ w`` with a ``P``-bit accumulator, bit-exact with the hardware.

    Parameters
    ----------
    x : array_like of int, shape (n, K)
        Activation codes.
    w : array_like of int, shape (K, cols)
        Weight codes.
    accumulator_bits : int
        ``P``, 2..32.
    overflow : str
        ``"wrap"`` or ``"saturate"`` (clamp after every addition, in the order ``k = 0..K-1``).

    Returns
    -------
    numpy.ndarray of int64, shape (n, cols)
    """
    check_int("accumulator_bits", accumulator_bits, 2, 32)
    check_choice("overflow", overflow, OVERFLOW_MODES)
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
        raise ValueError(f"x and w must be matrices with x.shape[1] == w.shape[0], "
                         f"not {x.shape} and {w.shape}")
    exact = _exact_matmul(x, w)
    if overflow == "wrap":
        return wrap(exact, accumulator_bits)
    low, high = code_range(accumulator_bits, True)
    # A partial sum can only leave the range if the sum of absolute products can; that sum is
    # bounded by an outer product first, and computed only where the bound is not enough.
    abs_x, abs_w = np.abs(x), np.abs(w)
    if not np.any(np.outer(abs_x.max(axis=1, initial=0), abs_w.sum(axis=0)) > high):
        return exact
    rows, cols = np.nonzero(_exact_matmul(abs_x, abs_w) > high)
    if rows.size:
        partial = np.zeros(rows.size, dtype=np.int64)
        for k in range(x.shape[1]):
            partial = np.clip(partial + x[rows, k] * w[k, cols], low, high)
        exact[rows, cols] = partial
    return exact


def array_matmul(config, x, w):
    """``Y = X @ W`` exactly as an array built from ``config`` computes it for one weight tile.

    Checks that the codes fit the configured widths and the tile fits the array.

    Parameters
    ----------
    config : ArrayConfig
    x : array_like of int, shape (n, config.rows)
    w : array_like of int, shape (config.rows, config.cols)
    """
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(w, dtype=np.int64)
    if x.ndim != 2 or x.shape[1] != config.rows:
        raise ValueError(f"x must have shape (n, {config.rows}), not {x.shape}")
    if w.shape != (config.rows, config.cols):
        raise ValueError(f"w must have shape ({config.rows}, {config.cols}), not {w.shape}")
    for name, codes, (low, high) in (("x", x, config.activation_range),
                                     ("w", w, config.weight_range)):
        if codes.size and (codes.min() < low or codes.max() > high):
            raise ValueError(f"{name} codes must lie in {low}..{high}, "
                             f"not {codes.min()}..{codes.max()}")
    return accumulate(x, w, config.accumulator_bits, config.overflow)
