import numpy as np
import pytest

from systolix.config import code_range
from systolix.sim.golden.array import accumulate
from systolix.sw.a2q import a2q_l1_limit, a2q_plus_l1_limit, accumulator_aware_quantize, \
    adversarial_inputs, constrain_codes, meets_bound, min_accumulator_bits, min_feasible_accumulator_bits, \
    partial_sum_range, project_l1_ball

RNG = np.random.default_rng(1)


def prefix_sums(x, codes):
    """All partial sums, k in order: shape (n, K, C)."""
    return np.cumsum(x[:, :, None] * codes[None, :, :], axis=1)


def test_partial_sum_range_is_reached_and_never_exceeded():
    codes = RNG.integers(-7, 8, size=(12, 5))
    for bits, signed in [(4, False), (4, True), (1, False), (8, True)]:
        low, high = partial_sum_range(codes, bits, signed)
        x = adversarial_inputs(codes, bits, signed)
        exact = x @ codes
        np.testing.assert_array_equal(np.diag(exact[:5]), high)
        np.testing.assert_array_equal(np.diag(exact[5:]), low)
        lo, hi = code_range(bits, signed)
        sums = prefix_sums(RNG.integers(lo, hi + 1, size=(200, 12)), codes)
        assert np.all(sums <= high) and np.all(sums >= low)


def test_min_accumulator_bits_is_tight():
    for _ in range(20):
        codes = RNG.integers(-7, 8, size=(RNG.integers(1, 40), 6))
        for bits, signed in [(4, False), (3, True), (8, False)]:
            width = min_accumulator_bits(codes, bits, signed)
            low, high = partial_sum_range(codes, bits, signed)
            fits = lambda p: -(1 << (p - 1)) <= low.min() and high.max() <= (1 << (p - 1)) - 1
            assert fits(width) and (width == 1 or not fits(width - 1))
    assert min_accumulator_bits(np.zeros((4, 2), dtype=int), 4, False) == 1
    # One weight of 1 and 4-bit unsigned inputs: sums 0..15 need 5 bits.
    assert min_accumulator_bits(np.array([[1]]), 4, False) == 5


def test_bounds():
    assert a2q_l1_limit(16, 4, False) == (2 ** 15 - 1) / 16
    assert a2q_l1_limit(16, 4, True) == (2 ** 15 - 1) / 8
    assert a2q_plus_l1_limit(16, 4) == (2 ** 16 - 2) / 15
    # A zero-centred integer vector at the A2Q+ bound is safe for unsigned inputs.
    limit = int(a2q_plus_l1_limit(12, 4)) // 2 * 2
    codes = np.zeros((limit, 1), dtype=int)
    codes[: limit // 2] = 1
    codes[limit // 2:] = -1
    assert codes.sum() == 0 and np.abs(codes).sum() <= a2q_plus_l1_limit(12, 4)
    assert meets_bound(codes, "a2q+", 12, 4, False).all()
    assert min_accumulator_bits(codes, 4, False) <= 12
    assert min_feasible_accumulator_bits("a2q", 4, False) == 6
    assert min_feasible_accumulator_bits("a2q", 4, True) == 5
    assert min_feasible_accumulator_bits("a2q+", 4, False) == 5


def test_projection_onto_l1_ball():
    values = RNG.normal(size=(30, 8)) * 3
    radius = 10.0
    projected = project_l1_ball(values, radius)
    norms = np.abs(values).sum(axis=0)
    np.testing.assert_allclose(np.abs(projected).sum(axis=0), np.minimum(norms, radius))
    inside = project_l1_ball(values, norms.max() + 1)
    np.testing.assert_array_equal(inside, values)
    # Optimality: <v - p, u - p> <= 0 for every u in the ball.
    for _ in range(50):
        u = RNG.normal(size=values.shape)
        u *= radius * RNG.uniform(0, 1) / np.abs(u).sum(axis=0)
        assert np.all(np.sum((values - projected) * (u - projected), axis=0) <= 1e-9)


CASES = [(method, accumulator_bits, input_bits, signed)
         for method in ("a2q", "a2q+")
         for input_bits in (1, 2, 4, 8)
         for signed in ((False, True) if method == "a2q" else (False,))
         for accumulator_bits in range(min_feasible_accumulator_bits(method, input_bits, signed),
                                       21, 3)]


@pytest.mark.parametrize("method, accumulator_bits, input_bits, signed", CASES)
def test_constrained_codes_never_overflow(method, accumulator_bits, input_bits, signed):
    weights = RNG.standard_t(4, size=(64, 16))
    weights[:, 0] = 0.0
    scale = np.abs(weights).max(axis=0) / 7
    scale[0] = 1.0
    codes, _ = accumulator_aware_quantize(weights, scale, 4, method, accumulator_bits,
                                          input_bits, signed)
    assert np.abs(codes).max() <= 7
    assert meets_bound(codes, method, accumulator_bits, input_bits, signed).all()
    assert min_accumulator_bits(codes, input_bits, signed) <= accumulator_bits
    low, high = code_range(accumulator_bits, True)
    x = adversarial_inputs(codes, input_bits, signed)
    sums = prefix_sums(x, codes)
    assert sums.min() >= low and sums.max() <= high
    exact = x @ codes
    np.testing.assert_array_equal(accumulate(x, codes, accumulator_bits, "wrap"), exact)
    np.testing.assert_array_equal(accumulate(x, codes, accumulator_bits, "saturate"), exact)
    # In any order, too.
    order = RNG.permutation(64)
    assert prefix_sums(x[:, order], codes[order]).max() <= high


@pytest.mark.parametrize("accumulator_bits", [8, 9, 10])
def test_naive_codes_overflow_at_small_widths(accumulator_bits):
    weights = RNG.standard_t(4, size=(64, 16))
    codes = np.clip(np.floor(weights / (np.abs(weights).max(axis=0) / 7) + 0.5), -7, 7)
    codes = codes.astype(np.int64)
    assert not meets_bound(codes, "a2q", accumulator_bits, 4, False).all()
    x = adversarial_inputs(codes, 4, False)
    exact = x @ codes
    wrapped = accumulate(x, codes, accumulator_bits, "wrap")
    assert np.any(wrapped != exact)
    low, high = code_range(accumulator_bits, True)
    assert exact.max() > high or exact.min() < low


def test_a2q_plus_allows_more_than_a2q():
    weights = RNG.normal(size=(64, 32))
    real = weights / (np.abs(weights).max(axis=0) / 7)
    a2q = constrain_codes(real, "a2q", 10, 4, False)
    plus = constrain_codes(real, "a2q+", 10, 4, False)
    assert np.abs(plus).sum() > 1.5 * np.abs(a2q).sum()
    assert np.sum((plus - real) ** 2) < np.sum((a2q - real) ** 2)


def test_channels_within_the_bound_keep_nearest_rounding():
    real = np.array([[0.6, 3.0], [-0.4, 3.0], [1.5, 3.0]])
    codes = constrain_codes(real, "a2q", 8, 4, False)
    np.testing.assert_array_equal(codes[:, 0], [1, 0, 2])
    assert np.abs(codes[:, 1]).sum() <= a2q_l1_limit(8, 4, False)


def test_scale_search_keeps_more_weights():
    weights = RNG.normal(size=(64, 8))
    scale = np.abs(weights).max(axis=0) / 127
    codes, searched = accumulator_aware_quantize(weights, scale, 8, "a2q+", 14, 8, False)
    fixed = constrain_codes(np.clip(weights / scale, -127, 127), "a2q+", 14, 8, False)
    assert np.all(searched >= scale)
    assert np.sum((weights - searched * codes) ** 2) < np.sum((weights - scale * fixed) ** 2)
    per_tensor, tensor_scale = accumulator_aware_quantize(weights, np.full(8, scale.max()), 8,
                                                          "a2q", 14, 8, False, per_channel=False)
    assert np.unique(tensor_scale).size == 1
    assert meets_bound(per_tensor, "a2q", 14, 8, False).all()


@pytest.mark.parametrize("call, message", [
    (lambda: constrain_codes(np.ones((4, 1)), "a2q", 5, 4, False),
     r"accumulator_bits=5 is too small for any nonzero weight with 4-bit unsigned inputs under "
     r"a2q; it needs at least 6"),
    (lambda: constrain_codes(np.ones((4, 1)), "a2q+", 8, 8, False),
     r"accumulator_bits=8 is too small .* 8-bit unsigned inputs under a2q\+; it needs at least 9"),
    (lambda: constrain_codes(np.ones((4, 1)), "a2q+", 16, 4, True),
     r"method 'a2q\+' needs unsigned inputs; use 'a2q' for signed inputs"),
    (lambda: constrain_codes(np.ones((4, 1)), "a3q", 16, 4, False),
     r"method must be one of 'a2q', 'a2q\+', not 'a3q'"),
    (lambda: a2q_l1_limit(40, 4, False), r"accumulator_bits must be an integer in 2..32, not 40"),
    (lambda: partial_sum_range(np.ones(3), 4, False), r"weight codes must be a matrix"),
])
def test_bad_parameters(call, message):
    with pytest.raises(ValueError, match=message):
        call()
