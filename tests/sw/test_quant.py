import numpy as np
import pytest

from systolix.numeric import MAX_SHIFT, MULTIPLIER_BITS
from systolix.sw.quant import activation_params, fixed_point_multiplier, pow2_ceil, \
    round_values, sqnr_db, symmetric_params, wage_quantize

RNG = np.random.default_rng(0)


def test_rounding_modes():
    values = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 1.7, -1.7])
    np.testing.assert_array_equal(round_values(values, "nearest"), [-2, -1, 0, 1, 2, 3, 2, -2])
    np.testing.assert_array_equal(round_values(values, "zero"), [-2, -1, 0, 0, 1, 2, 1, -1])
    with pytest.raises(ValueError, match=r"rounding must be one of 'nearest', 'zero', not 'up'"):
        round_values(values, "up")


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_symmetric_per_channel(bits):
    weights = RNG.normal(size=(16, 5)) * np.array([1, 10, 0.1, 3, 0])
    params = symmetric_params(weights, bits, per_channel=True)
    high = 2 ** (bits - 1) - 1
    codes = params.quantize(weights)
    assert params.zero_point == 0 and params.signed
    assert codes.min() >= -high and codes.max() <= high
    # The largest magnitude of every nonzero channel maps to the largest code.
    np.testing.assert_array_equal(np.abs(codes[:, :4]).max(axis=0), high)
    np.testing.assert_array_equal(codes[:, 4], 0)
    assert np.all(np.abs(params.dequantize(codes) - weights)[:, :4] <= params.scale[:4] / 2 + 1e-12)


def test_per_tensor_and_pow2():
    weights = RNG.normal(size=(8, 3))
    params = symmetric_params(weights, 4, per_channel=False, pow2=True)
    assert np.ndim(params.scale) == 0
    assert np.log2(params.scale) == np.round(np.log2(params.scale))
    assert params.scale >= np.abs(weights).max() / 7
    np.testing.assert_array_equal(pow2_ceil(np.array([0.3, 1.0, 5.0])), [0.5, 1.0, 8.0])


def test_mse_clipping_is_no_worse_than_max():
    weights = RNG.standard_t(3, size=(64, 8))
    errors = {clipping: np.sum((symmetric_params(weights, 3, clipping=clipping)
                                .fake_quantize(weights) - weights) ** 2)
              for clipping in ("max", "mse")}
    assert errors["mse"] <= errors["max"]


def test_activation_schemes():
    relu = np.maximum(RNG.normal(size=(100, 4)), 0)
    params = activation_params(relu, 4, clipping="max")
    assert (params.signed, params.zero_point, params.low, params.high) == (False, 0, 0, 15)
    assert params.quantize(relu).max() == 15

    values = RNG.uniform(-1, 3, size=(100, 4))
    affine = activation_params(values, 4, "affine", clipping="max")
    assert not affine.signed and 0 < affine.zero_point < 15
    assert affine.dequantize(affine.quantize(0.0)) == 0.0
    symmetric = activation_params(values, 4, "symmetric", clipping="max")
    assert symmetric.signed and symmetric.zero_point == 0 and symmetric.low == -7
    assert np.max(np.abs(affine.fake_quantize(values) - values)) <= affine.scale / 2 + 1e-12


def test_one_bit_activations():
    params = activation_params(np.array([0.0, 0.2, 1.0]), 1, clipping="max")
    np.testing.assert_array_equal(params.quantize([0.0, 0.2, 0.6, 1.0]), [0, 0, 1, 1])


@pytest.mark.parametrize("call, message", [
    (lambda: symmetric_params(np.ones((2, 2)), 9),
     r"weight_bits must be an integer in 2..8, not 9"),
    (lambda: symmetric_params(np.ones((2, 2)), 1),
     r"weight_bits must be an integer in 2..8, not 1"),
    (lambda: activation_params(np.ones(3), 0),
     r"activation_bits must be an integer in 1..8, not 0"),
    (lambda: activation_params(-np.ones(3), 1, "symmetric"),
     r"activation_bits must be an integer in 2..8, not 1"),
    (lambda: symmetric_params(np.array([1.0, np.nan]), 4),
     r"weight values must be finite, but 1 are NaN or Inf"),
    (lambda: activation_params(np.ones(3), 4, "odd"),
     r"scheme must be one of 'symmetric', 'affine', not 'odd'"),
])
def test_bad_parameters(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_wage():
    values = np.array([-2.0, -0.3, 0.0, 0.1, 0.26, 2.0])
    sigma = 2.0 ** (1 - 3)
    expected = np.clip(sigma * np.floor(values / sigma + 0.5), -1 + sigma, 1 - sigma)
    np.testing.assert_array_equal(wage_quantize(values, 3), expected)
    params = symmetric_params(np.array([1 - sigma]), 3, pow2=True)
    assert params.scale == sigma
    np.testing.assert_array_equal(params.fake_quantize(values), expected)


def test_sqnr():
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == float("inf")
    assert sqnr_db([1.0, 0.0], [0.9, 0.0]) == pytest.approx(20.0)


def test_fixed_point_multiplier():
    real = np.concatenate([np.exp(RNG.uniform(np.log(1e-9), np.log(60000), 1000)),
                           [1.0, 0.5, 2.0 ** -20, 65535.4]])
    multiplier, shift = fixed_point_multiplier(real)
    assert multiplier.max() < 2 ** MULTIPLIER_BITS
    assert multiplier.min() >= 2 ** (MULTIPLIER_BITS - 1)
    assert shift.min() >= 0 and shift.max() <= MAX_SHIFT
    np.testing.assert_allclose(np.ldexp(multiplier.astype(float), -shift), real,
                               rtol=2.0 ** -MULTIPLIER_BITS)
    assert fixed_point_multiplier(np.array([1.0]))[0][0] == 2 ** 15
    with pytest.raises(ValueError, match=r"multipliers must be positive and below 65535.5"):
        fixed_point_multiplier(np.array([0.0]))
    with pytest.raises(ValueError, match=r"multipliers must be positive and below 65535.5"):
        fixed_point_multiplier(np.array([70000.0]))
