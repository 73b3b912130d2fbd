"""The integer arithmetic of training: declared accumulator widths, shifts, stochastic rounding,
the array layout of any GEMM, the loss interface, the export."""

import itertools

import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.sim.golden.array import accumulate
from systolix.sw.a2q import min_accumulator_bits
from systolix.sw.train import (GemmShape, accumulator_bits, array_tiles, assemble, gemm,
                               normalizing_shift, output_error, run_tiles, shift, split_codes,
                               stochastic_shift, training_gemms, digits_cnn, mlp)


@pytest.mark.parametrize("a_range, b_range, k", [
    ((-127, 127), (-1, 1), 64), ((0, 255), (-128, 127), 3), ((-8, 7), (-8, 7), 1),
    ((0, 1), (0, 1), 1), ((-511, 511), (-511, 511), 16)])
def test_accumulator_bits_is_the_smallest_safe_width(a_range, b_range, k):
    bits = accumulator_bits(a_range, b_range, k)
    # The extreme partial sums: every operand at the end of its range that gives the largest
    # (smallest) product, K times.
    products = [a * b for a in a_range for b in b_range]
    extremes = (k * min(products), k * max(products))
    assert all(-(1 << (bits - 1)) <= s < (1 << (bits - 1)) for s in extremes)
    assert not all(-(1 << (bits - 2)) <= s < (1 << (bits - 2)) for s in extremes)


def test_accumulator_bits_agrees_with_the_weight_based_bound():
    """For weights at the extreme of their range, the data-free width from the widths is the
    one A2Q's width from the weights gives."""
    for bits, k in itertools.product((2, 4, 8), (1, 7, 64)):
        high = (1 << (bits - 1)) - 1
        weights = np.full((k, 1), -high)
        assert accumulator_bits((-128, 127), (-high, high), k) == \
            max(2, min_accumulator_bits(weights, 8, True))


def test_gemm_refuses_codes_outside_the_declared_ranges_and_traces():
    shape = GemmShape("g", (-7, 7), (-1, 1), 3)
    a, b = np.array([[7, -7, 3]]), np.array([[1], [0], [-1]])
    trace = []
    assert gemm(shape, a, b, trace).tolist() == [[4]]
    assert trace[0][0] is shape and trace[0][3].tolist() == [[4]]
    with pytest.raises(ValueError, match="A codes must lie in -7..7"):
        gemm(shape, np.array([[8, 0, 0]]), b)
    with pytest.raises(ValueError, match="B codes must lie in -1..1"):
        gemm(shape, a, 2 * b)
    with pytest.raises(ValueError, match="K is 2, declared 3"):
        gemm(shape, a[:, :2], b[:2])


def test_shifts():
    values = np.array([-6, -5, -3, -2, 2, 3, 5, 6])
    assert shift(values, 2).tolist() == [-1, -1, -1, 0, 1, 1, 1, 2]   # halves up
    assert shift(values, -3).tolist() == (values * 8).tolist()
    assert normalizing_shift(np.array([-128, 5]), 8) == 1
    assert normalizing_shift(np.array([127]), 8) == 0


def test_stochastic_shift_is_unbiased_and_reproducible():
    values = np.full(40000, 5)          # 5 / 4 = 1.25
    first = stochastic_shift(values, 2, np.random.default_rng(7))
    again = stochastic_shift(values, 2, np.random.default_rng(7))
    assert np.array_equal(first, again)
    assert set(first.tolist()) == {1, 2}
    assert abs(first.mean() - 1.25) < 0.01
    negative = stochastic_shift(-values, 2, np.random.default_rng(8))
    assert set(negative.tolist()) == {-2, -1} and abs(negative.mean() + 1.25) < 0.01
    exact = np.array([-8, 4, 12])
    assert stochastic_shift(exact, 2, np.random.default_rng(0)).tolist() == [-2, 1, 3]
    assert stochastic_shift(exact, -1, np.random.default_rng(0)).tolist() == [-16, 8, 24]


@pytest.mark.parametrize("config", [
    ArrayConfig(rows=4, cols=4, weight_bits=8, weight_signed=True, activation_bits=8,
                activation_signed=True, accumulator_bits=24),
    ArrayConfig(rows=3, cols=5, weight_bits=2, weight_signed=True, activation_bits=8,
                activation_signed=True, accumulator_bits=16),
    ArrayConfig(rows=8, cols=1, weight_bits=8, weight_signed=True, activation_bits=8,
                activation_signed=True, accumulator_bits=32)])
@pytest.mark.parametrize("n, k, m", [(1, 1, 1), (5, 7, 9), (16, 64, 10), (3, 8, 4)])
def test_array_tiles_compute_any_gemm(config, n, k, m):
    rng = np.random.default_rng(n * k * m)
    a = rng.integers(*config.activation_range, (n, k), endpoint=True)
    b = rng.integers(*config.weight_range, (k, m), endpoint=True)
    tiles = array_tiles(a, b, config)
    assert len(tiles.parts) == 1
    _, weights, activations = tiles.parts[0]
    assert weights.shape[1:] == (config.rows, config.cols)
    assert activations.shape[1:] == (n, config.rows)
    # The tiles of W^T and X^T: the transposes are GEMMs like any other.
    result = assemble(tiles, run_tiles(tiles, config), config.accumulator_bits)
    assert np.array_equal(result, accumulate(a, b, config.accumulator_bits))


def test_wide_operands_split_into_digits():
    """10-bit DFP codes on an 8-bit array: two digits each, four exact parts."""
    config = ArrayConfig(rows=4, cols=3, weight_bits=8, weight_signed=True, activation_bits=8,
                         activation_signed=True, accumulator_bits=25)
    rng = np.random.default_rng(0)
    a = rng.integers(-511, 511, (6, 9), endpoint=True)
    b = rng.integers(-511, 511, (9, 5), endpoint=True)
    a[0, 0], b[0, 0] = -511, 511
    tiles = array_tiles(a, b, config)
    assert sorted(amount for amount, _, _ in tiles.parts) == [0, 7, 7, 14]
    result = assemble(tiles, run_tiles(tiles, config), config.accumulator_bits)
    assert np.array_equal(result, a @ b)
    digits, step = split_codes(np.array([-511, -1, 0, 127, 128, 511]), 8, True)
    assert step == 7 and len(digits) == 2
    assert np.array_equal(digits[0] + (digits[1] << 7), [-511, -1, 0, 127, 128, 511])
    assert all(d.min() >= -128 and d.max() <= 127 for d in digits)
    unsigned, step = split_codes(np.array([0, 300, 65535]), 4, False)
    assert step == 4 and len(unsigned) == 4 and all(d.max() <= 15 for d in unsigned)
    with pytest.raises(ValueError, match="negative codes"):
        split_codes(np.array([-1]), 4, False)


def test_output_error_is_the_cross_entropy_gradient_in_codes():
    codes = np.array([[64, 0, -64], [0, 0, 0]])
    errors, loss = output_error(codes, -5, np.array([0, 2]), 8)
    assert errors.dtype == np.int64 and np.abs(errors).max() <= 127
    # Each row of softmax - onehot sums to zero: so do the codes, up to rounding.
    assert np.all(np.abs(errors.sum(axis=1)) <= 2)
    assert errors[0, 0] < 0 < errors[0, 1] and errors[1, 2] < 0
    assert errors[1, 0] == errors[1, 1] == round(128 / 3)
    assert loss > 0


def test_training_gemms_list_every_gemm_of_a_step():
    shapes = training_gemms(mlp(), 16, (-127, 127), (-1, 1), (-127, 127))
    assert list(shapes) == [
        "layer 0 forward X W", "layer 0 gradient X^T E",
        "layer 1 forward X W", "layer 1 error E W^T", "layer 1 gradient X^T E",
        "layer 2 forward X W", "layer 2 error E W^T", "layer 2 gradient X^T E"]
    assert shapes["layer 1 error E W^T"].k == 32
    assert shapes["layer 0 gradient X^T E"].accumulator_bits == 19    # 127 * 127 * 16
    cnn = training_gemms(digits_cnn(), 16, (-127, 127), (-1, 1), (-127, 127))
    assert cnn["layer 0 forward X W"].k == 9 and cnn["layer 1 forward X W"].k == 144
    assert cnn["layer 0 gradient X^T E"].k == 16 * 64      # the batch times the positions
    assert cnn["layer 1 gradient X^T E"].k == 16 * 16
    assert "layer 2 gradient X^T E" not in cnn              # the average pool is fixed
    assert cnn["layer 2 error E W^T"].k == 32


def test_convolution_patches_and_their_adjoint():
    """gather is the IR's im2col for codes; scatter (col2im) is its adjoint, so the error of a
    convolution's input is E W^T scattered back."""
    rng = np.random.default_rng(0)
    for layer in digits_cnn():
        x = rng.integers(-5, 6, (3, layer.map_inputs))
        patches = layer.gather(x)
        if layer.window is not None:
            assert np.array_equal(patches, layer.window.patches(x))
        d = rng.integers(-5, 6, patches.shape)
        assert (patches * d).sum() == (x * layer.scatter(d, 3)).sum()
