import math
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest

from systolix.sim.golden import run_layer, run_program
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS
from systolix.sim.golden.program import requantize


def ref_requantize(acc, bias, multiplier, shift, zero_point, low, high):
    """floor((acc + bias) * M0 / 2^shift + 1/2) + zero_point, clamped, in exact rationals."""
    value = Fraction((acc + bias) * multiplier, 2 ** shift) + Fraction(1, 2)
    return min(max(math.floor(value) + zero_point, low), high)


def test_requantize_matches_exact_rationals():
    rng = np.random.default_rng(0)
    n = 2000
    acc = rng.integers(-2 ** 31, 2 ** 31, size=n)
    bias = rng.integers(-2 ** (BIAS_BITS - 1), 2 ** (BIAS_BITS - 1), size=n)
    multiplier = rng.integers(0, 2 ** MULTIPLIER_BITS, size=n)
    shift = rng.integers(0, MAX_SHIFT + 1, size=n)
    out = requantize(acc, bias, multiplier, shift, 3, -2 ** 40, 2 ** 40)
    expected = [ref_requantize(int(a), int(b), int(m), int(s), 3, -2 ** 40, 2 ** 40)
                for a, b, m, s in zip(acc, bias, multiplier, shift)]
    np.testing.assert_array_equal(out, expected)


def test_requantize_rounds_halves_up_and_clamps():
    # (acc + bias) * M0 / 2^shift = -2.5, -1.5, -0.5, 0.5, 1.5, 2.5 with M0 = 1, shift = 1.
    acc = np.array([[-5, -3, -1, 1, 3, 5]])
    np.testing.assert_array_equal(requantize(acc, 0, 1, 1, 0, -8, 7), [[-2, -1, 0, 1, 2, 3]])
    np.testing.assert_array_equal(requantize(acc, 0, 1, 1, 0, 0, 2), [[0, 0, 0, 1, 2, 2]])
    # Shift 0: no rounding term; the zero point is added after the shift.
    np.testing.assert_array_equal(requantize(acc, 1, 3, 0, 10, -100, 100),
                                  [[-2, 4, 10, 16, 22, 28]])
    # Per-channel parameters broadcast over rows.
    out = requantize(np.array([[10, 10], [20, 20]]), np.array([0, 2]), np.array([1, 3]),
                     np.array([1, 2]), 0, -100, 100)
    np.testing.assert_array_equal(out, [[5, 9], [10, 17]])


def layer(weights, **changes):
    fields = dict(weights=np.asarray(weights), bias=np.zeros(np.shape(weights)[1], dtype=int),
                  multiplier=np.ones(np.shape(weights)[1], dtype=int),
                  shift=np.zeros(np.shape(weights)[1], dtype=int), output_zero_point=0,
                  output_low=-2 ** 20, output_high=2 ** 20, input_bits=4, input_signed=False,
                  accumulator_bits=8, overflow="wrap", window=None, rounding="half_up",
                  inputs=np.shape(weights)[0], outputs=np.shape(weights)[1])
    fields.update(changes)
    return SimpleNamespace(**fields)


def test_layer_accumulates_with_p_bits():
    weights = np.array([[7], [7], [7]])
    x = np.array([[15, 15, 15]])  # 315 does not fit in 8 bits.
    assert run_layer(layer(weights), x)[0, 0] == 315 - 256
    assert run_layer(layer(weights, overflow="saturate"), x)[0, 0] == 127
    assert run_layer(layer(weights, accumulator_bits=10), x)[0, 0] == 315


def test_program_chains_layers():
    first = layer(np.array([[1, 2], [3, 4]]), bias=np.array([1, -100]), output_low=0,
                  output_high=15, accumulator_bits=16)
    second = layer(np.array([[2], [1]]), multiplier=np.array([1]), shift=np.array([1]),
                   accumulator_bits=16)
    x = np.array([[1, 2], [3, 0]])
    hidden = np.clip(x @ first.weights + first.bias, 0, 15)
    expected = np.floor((hidden @ second.weights) / 2 + 0.5).astype(int)
    np.testing.assert_array_equal(run_program(SimpleNamespace(layers=[first, second], sources=None), x),
                                  expected)


def test_input_codes_are_checked():
    record = layer(np.ones((3, 2), dtype=int))
    with pytest.raises(ValueError, match=r"input codes must lie in 0..15, not -1..16"):
        run_layer(record, np.array([[-1, 0, 16]]))
    with pytest.raises(ValueError, match=r"input codes must have shape \(n, 3\), not \(1, 2\)"):
        run_layer(record, np.array([[1, 2]]))
