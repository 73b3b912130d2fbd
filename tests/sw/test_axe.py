import numpy as np
import pytest

from systolix.sim.golden.program import run_program
from systolix.sw.a2q import meets_bound
from systolix.sw.axe import axe_quantize
from systolix.sw.lower import lower
from systolix.sw.models import Conv2d, Dense, FloatModel, GlobalAvgPool, digits_mlp
from systolix.sw.qmodel import quantize
from systolix.sw.report import program_accuracy

from .bound import assert_within_bound

RNG = np.random.default_rng(3)


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


@pytest.mark.parametrize("method, accumulator_bits, signed", [
    ("a2q", 10, False), ("a2q", 9, True), ("a2q+", 8, False), ("a2q+", 11, False)])
def test_codes_meet_the_bound_and_beat_plain_rounding(method, accumulator_bits, signed):
    x = RNG.normal(size=(400, 40)) @ RNG.normal(size=(40, 40)) * 0.3
    weights = RNG.normal(size=(40, 12))
    scale = np.abs(weights).max(axis=0) / 7
    quantized = x + RNG.normal(scale=0.05, size=x.shape)
    codes, chosen = axe_quantize(weights, scale, 4, method, accumulator_bits, 4, signed, x,
                                 quantized)
    assert np.abs(codes).max() <= 7 and meets_bound(codes, method, accumulator_bits, 4,
                                                    signed).all()
    assert np.all(chosen >= scale * (1 - 1e-12))
    # Error feedback: closer to the float outputs than rounding each weight on its own.
    from systolix.sw.a2q import accumulator_aware_quantize
    plain, plain_scale = accumulator_aware_quantize(weights, scale, 4, method, accumulator_bits,
                                                    4, signed)
    error = np.sum((x @ weights - quantized @ (codes * chosen)) ** 2)
    assert error < np.sum((x @ weights - quantized @ (plain * plain_scale)) ** 2)


def test_no_bound_is_gptq_and_a_too_narrow_accumulator_is_refused():
    x = RNG.normal(size=(200, 16))
    weights = RNG.normal(size=(16, 4))
    scale = np.abs(weights).max(axis=0) / 7
    codes, chosen = axe_quantize(weights, scale, 4, "none", 8, 4, False, x, x)
    np.testing.assert_array_equal(chosen, scale)
    assert np.abs(codes).max() <= 7 and np.abs(codes).sum(axis=0).max() > 10
    with pytest.raises(ValueError, match="accumulator_bits=8 is too small for any nonzero "
                                         "weight with 8-bit unsigned inputs under a2q\\+"):
        axe_quantize(weights, scale, 4, "a2q+", 8, 8, False, x, x)


def test_digits_mlp_narrow_accumulator(digits):
    """W4/A4 at P = 9: the integer program stays inside the bound and AXE-style rounding is
    far above rounding each weight on its own (projection)."""
    model, data = digits
    axe = lower(quantize(model, data.x_train, 4, 4, 9, "a2q+", rounding="axe"))
    plain = lower(quantize(model, data.x_train, 4, 4, 9, "a2q+"))
    assert_within_bound(axe)
    with pytest.raises(AssertionError, match="leave 9 bits"):
        assert_within_bound(lower(quantize(model, data.x_train, 4, 4, 9, "none")))
    accuracy = program_accuracy(axe, data.x_test, data.y_test)
    assert accuracy >= 0.95 and accuracy > program_accuracy(plain, data.x_test, data.y_test)


def test_convolutions_keep_their_groups_and_run_bit_exactly():
    model = FloatModel((
        Conv2d(RNG.normal(size=(3, 3, 1, 8)), RNG.normal(size=8), padding=1, relu=True),
        Conv2d(RNG.normal(size=(3, 3, 2, 8)), RNG.normal(size=8), stride=2, padding=1,
               groups=4, relu=True),
        GlobalAvgPool(),
        Dense(RNG.normal(size=(8, 10)), RNG.normal(size=10))), input_shape=(6, 6, 1))
    x = RNG.uniform(0, 16, size=(150, 36))
    quantized = quantize(model, x, 4, 4, 11, "a2q+", rounding="axe")
    program = lower(quantized)
    assert_within_bound(program)
    grouped = program.layers[1]
    assert not np.any(grouped.weights[~grouped.window.group_mask(8)])
    np.testing.assert_array_equal(run_program(program, program.encode_input(x)),
                                  quantized.reference(x))


@pytest.mark.parametrize("bits, accumulator_bits, method", [
    (4, 8, "a2q+"), (4, 12, "a2q+"), (8, 11, "a2q+"), (2, 8, "a2q+"), (4, 10, "a2q")])
def test_bound_at_every_width(digits, bits, accumulator_bits, method):
    model, data = digits
    assert_within_bound(lower(quantize(model, data.x_train, bits, bits, accumulator_bits,
                                       method, rounding="axe")))
