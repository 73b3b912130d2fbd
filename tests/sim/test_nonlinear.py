"""The integer nonlinearities against their float functions over the whole input code range
(max and mean errors printed: ``pytest -s``), and the transformer layers of the golden model."""

import math

import numpy as np
import pytest

from systolix.layer import GeluLayer, LayerNormLayer, MatMulLayer, SoftmaxLayer
from systolix.sim.golden import run_layer
from systolix.sim.golden.nonlinear import (
    EXP_BITS, exp2_error, exp2_fraction, float_gelu, gelu_constants, gelu_error, gelu_product,
    integer_exp2, integer_gelu, integer_layernorm, integer_softmax, isqrt, layernorm_error,
    layernorm_factor, softmax_error)


@pytest.mark.parametrize("fraction_bits", range(9))
def test_exp2_over_every_code_difference(fraction_bits):
    largest, mean = exp2_error(fraction_bits)
    print(f"\nexp2 F={fraction_bits}: max error {largest:.2e}, mean {mean:.2e}")
    assert largest < 2.5e-3 and mean < 1e-3
    e = integer_exp2(np.arange(4096), fraction_bits)
    assert e[0] == 1 << EXP_BITS and np.all(np.diff(e) <= 0) and e[-1] >= 0
    # The quadratic alone, on its whole domain: within 0.26 % of 2^-u, between 2^14 and 2^15.
    r = np.arange(1 << fraction_bits)
    p = exp2_fraction(r, fraction_bits)
    assert np.all(np.abs(p / 2 ** EXP_BITS - 2.0 ** (-r / (1 << fraction_bits))) < 2.7e-3)


def test_softmax_over_every_pair_of_codes_and_random_rows():
    codes = np.arange(-128, 128)
    pairs = np.stack(np.meshgrid(codes, codes), axis=-1).reshape(-1, 2)
    rows = np.random.default_rng(0).integers(-128, 128, size=(20000, 17))
    for fraction_bits in (2, 4, 6):
        for name, sample in (("every pair", pairs), ("rows of 17", rows)):
            largest, mean = softmax_error(sample, fraction_bits)
            print(f"\nsoftmax F={fraction_bits} {name}: max error {largest:.2e}, "
                  f"mean {mean:.2e}")
            assert largest < 2e-3 and mean < 5e-4
    # Output codes: probability * 15 rounded (M0 / 2^shift = 15 / 2^30).
    out = integer_softmax(rows, 4, 15, 30, 0, 0, 15)
    expected = np.round(15 * np.exp((rows - rows.max(axis=1, keepdims=True)) * math.log(2)
                                    / 16) / np.exp((rows - rows.max(axis=1, keepdims=True))
                                                   * math.log(2) / 16).sum(1, keepdims=True))
    assert np.mean(out != expected) < 0.01 and np.abs(out - expected).max() <= 1


def test_isqrt_is_exact():
    rng = np.random.default_rng(1)
    values = np.concatenate([np.arange(10000), rng.integers(0, 2 ** 62, 10000),
                             np.array([2 ** 62 - 1, 2 ** 62, (2 ** 31 - 1) ** 2,
                                       (2 ** 31 - 1) ** 2 - 1])])
    np.testing.assert_array_equal(isqrt(values), [math.isqrt(int(v)) for v in values])


def test_layernorm_over_the_whole_code_range():
    rng = np.random.default_rng(2)
    for bits, channels in ((8, 32), (8, 64), (4, 32), (8, 2)):
        rows = rng.integers(0, 1 << bits, size=(20000, channels))
        rows = rows[rows.min(axis=1) < rows.max(axis=1)]
        largest, mean = layernorm_error(rows)
        print(f"\nlayernorm {bits}-bit codes, {channels} channels: max error {largest:.2e}, "
              f"mean {mean:.2e}")
        assert largest < 2e-4 and mean < 2e-5
    # Extremes: a single outlier in the widest row, and a constant row (normalised to 0).
    row = np.zeros((1, 4096), dtype=np.int64)
    row[0, 0] = 255
    assert layernorm_error(row)[0] < 1e-3
    d, factor = layernorm_factor(np.full((1, 8), 7))
    assert not d.any() and not factor.any()
    # gamma 1, beta 0.5 at an output scale of 1/16: codes round(16 n + 8).
    out = integer_layernorm(rows[:100], [256] * 2, [8 << 34] * 2, 34, 0, -128, 127)
    n = (rows[:100] - rows[:100].mean(1, keepdims=True)) / rows[:100].std(1, keepdims=True)
    assert np.abs(out - np.clip(np.round(16 * n + 8), -128, 127)).max() <= 1


@pytest.mark.parametrize("scale", [0.01, 0.03, 0.1, 0.3])
def test_gelu_over_every_code(scale):
    largest, mean = gelu_error(scale)
    print(f"\ngelu scale {scale}: max error {largest:.2e}, mean {mean:.2e}")
    assert largest < 0.02 + 0.15 * scale and mean < 0.01
    clip, constant = gelu_constants(scale)
    x = np.arange(-128, 128)
    product = gelu_product(x, clip, constant)
    assert np.all(product[x < 0] <= 0) and np.all(np.diff(product[x >= 0]) > 0)
    # Requantized to the input scale: within one code of the float GELU.
    out = integer_gelu(x + 3, 3, clip, constant, *_multiplier(0.2888 * scale ** 2 / 4), 0,
                       -128, 127)
    reference = np.clip(np.round(float_gelu(scale * x) / scale), -128, 127)
    assert np.abs(out - reference).max() <= 1 + largest / scale


def _multiplier(real, bits=16):
    """``(M0, shift)`` with ``M0 < 2^bits`` close to ``real``."""
    shift = bits - 1 - math.floor(math.log2(real))
    return round(real * 2 ** shift), shift


def transformer_layers():
    """One small layer of each transformer kind (4-bit unsigned codes where they feed a
    matmul, 8-bit signed elsewhere)."""
    common = dict(output_zero_point=0, output_low=-128, output_high=127, output_bits=8,
                  output_signed=True)
    return {
        "scores": MatMulLayer(5, 2, 3, 5, True, (7, 8), 0, 3, 2, input_bits=4,
                              input_signed=False, accumulator_bits=12, overflow="wrap",
                              **common),
        "softmax": SoftmaxLayer((5, 2, 5), 4, 15, 30, 0, 0, 15, 8, True, 4, False),
        "context": MatMulLayer(5, 2, 5, 3, False, (0, 8), 0, 1, 4, input_bits=4,
                               input_signed=False, accumulator_bits=12, overflow="wrap",
                               **common),
        "layernorm": LayerNormLayer((1, 5, 6), np.arange(-3, 3) << 10, np.arange(6) << 20,
                                    30, 8, 0, 15, 8, True, 4, False),
        "gelu": GeluLayer((1, 5, 6), -2, 25, 693, 40000, 20, 3, 0, 15, 8, True, 4, False),
    }


def test_matmul_layer_folds_the_zero_points_out():
    rng = np.random.default_rng(3)
    layers = transformer_layers()
    for layer in (layers["scores"], layers["context"]):
        a, b = (rng.integers(0, 16, size=(4, size)) for size in layer.operand_inputs)
        za, zb = layer.zero_points
        ta = (a - za).reshape(4, layer.rows, layer.groups, layer.inner)
        tb = (b - zb).reshape((4, layer.cols, layer.groups, layer.inner) if layer.transpose
                              else (4, layer.inner, layer.groups, layer.cols))
        exact = (np.einsum("nigk,njgk->nigj", ta, tb) if layer.transpose
                 else np.einsum("nigk,nkgj->nigj", ta, tb))
        real = exact * layer.multiplier / 2 ** layer.shift
        expected = np.clip(np.floor(real + 0.5), -128, 127).reshape(4, -1)
        np.testing.assert_array_equal(run_layer(layer, a, b), expected)


def test_accumulator_of_the_matmul_layer_holds_the_raw_code_product():
    layer = MatMulLayer(1, 1, 1, 1, False, (0, 0), 0, 1, 0, 0, -128, 127, 4, False, 8, True,
                        6, "wrap")
    # The raw product 3 * 15 = 45 leaves the 6-bit accumulator: it wraps to -19 or saturates
    # at 31, as an IntegerLayer's does.
    assert run_layer(layer, [[3]], [[15]])[0, 0] == -19
    saturating = MatMulLayer(**{**layer.__dict__, "overflow": "saturate"})
    assert run_layer(saturating, [[3]], [[15]])[0, 0] == 31


def test_nonlinear_layers_run_their_functions():
    rng = np.random.default_rng(4)
    layers = transformer_layers()
    x = rng.integers(-128, 128, size=(3, 50))
    rows = x.reshape(-1, 5)
    softmax = layers["softmax"]
    np.testing.assert_array_equal(run_layer(softmax, x).reshape(-1, 5),
                                  integer_softmax(rows, 4, 15, 30, 0, 0, 15))
    x = rng.integers(-128, 128, size=(3, 30))
    norm = layers["layernorm"]
    np.testing.assert_array_equal(
        run_layer(norm, x).reshape(-1, 6),
        integer_layernorm(x.reshape(-1, 6), norm.multiplier, norm.bias, 30, 8, 0, 15))
    gelu = layers["gelu"]
    np.testing.assert_array_equal(run_layer(gelu, x),
                                  integer_gelu(x, -2, 25, 693, 40000, 20, 3, 0, 15))


def test_transformer_layers_check_their_fields():
    with pytest.raises(ValueError, match=r"zero_points\[1\] must be an integer in 0..15"):
        MatMulLayer(1, 1, 2, 1, False, (0, 16), 0, 1, 0, 0, -128, 127, 4, False, 8, True, 8,
                    "wrap")
    with pytest.raises(ValueError, match=r"fraction_bits must be an integer in 0..8"):
        SoftmaxLayer((1, 1, 4), 9, 15, 32, 0, 0, 15, 8, True, 4, False)
    with pytest.raises(ValueError, match=r"multiplier must have shape \(6,\)"):
        LayerNormLayer((1, 5, 6), [1, 2], [0] * 6, 30, 8, 0, 15, 8, True, 4, False)
    with pytest.raises(ValueError, match=r"constant must be an integer in 1..4194304"):
        GeluLayer((1, 5, 6), 0, 25, 0, 1, 20, 3, 0, 15, 8, True, 4, False)


def test_matmul_layer_random_shapes_and_codes():
    """Random shapes, widths, signedness, zero points, transposition and requantizations: the
    layer is ``sum (a - za)(b - zb)`` requantized, whenever the raw product fits ``P``."""
    from fractions import Fraction

    from systolix.config import code_range

    rng = np.random.default_rng(5)
    for _ in range(40):
        rows, groups, inner, cols = (int(v) for v in rng.integers(1, 6, 4))
        bits, signed = int(rng.integers(1, 9)), bool(rng.integers(2))
        low, high = code_range(bits, signed)
        za, zb = (int(v) for v in rng.integers(low, high + 1, 2))
        transpose = bool(rng.integers(2))
        layer = MatMulLayer(rows, groups, inner, cols, transpose, (za, zb),
                            int(rng.integers(-100, 100)), int(rng.integers(1, 1 << 16)),
                            int(rng.integers(0, 30)), 0, -128, 127, bits, signed, 8, True, 32,
                            "wrap", ("half_up", "half_even")[int(rng.integers(2))])
        a, b = (rng.integers(low, high + 1, size=(3, size)) for size in layer.operand_inputs)
        ta = (a - za).reshape(3, rows, groups, inner)
        tb = (b - zb).reshape((3, cols, groups, inner) if transpose else (3, inner, groups, cols))
        exact = (np.einsum("nigk,njgk->nigj", ta, tb) if transpose
                 else np.einsum("nigk,nkgj->nigj", ta, tb)) + layer.bias
        expected = []
        for value in exact.ravel():
            real = Fraction(int(value) * layer.multiplier, 1 << layer.shift)
            down = real.numerator // real.denominator
            rest = real - down
            up = rest > Fraction(1, 2) or (rest == Fraction(1, 2) and (
                layer.rounding == "half_up" or down % 2))
            expected.append(min(max(down + up, -128), 127))
        np.testing.assert_array_equal(run_layer(layer, a, b).ravel(), expected)
