from fractions import Fraction

import numpy as np
import pytest

from systolix.layer import AddLayer, IntegerLayer, MaxPoolLayer, Window
from systolix.sim.golden import run_layer, run_layers
from systolix.sim.golden.program import round_shift


def reference_patch(maps, window, n, oy, ox):
    """The patch of output position (oy, ox) of map n, by the definition of a window."""
    codes = []
    for ky in range(window.kernel_height):
        for kx in range(window.kernel_width):
            y = oy * window.stride_height - window.pad_top + ky
            x = ox * window.stride_width - window.pad_left + kx
            for c in range(window.channels):
                inside = 0 <= y < window.height and 0 <= x < window.width
                codes.append(int(maps[n, y, x, c]) if inside else window.pad_code)
    return codes


@pytest.mark.parametrize("shape", [
    dict(height=5, width=4, channels=3, kernel_height=3, kernel_width=3, pad_top=1, pad_left=1,
         pad_bottom=1, pad_right=1),
    dict(height=8, width=8, channels=2, kernel_height=3, kernel_width=2, stride_height=2,
         stride_width=3, pad_top=2, pad_right=1),
    dict(height=4, width=4, channels=5, kernel_height=4, kernel_width=4),
])
def test_patches_follow_the_window(shape):
    window = Window(**shape, pad_code=7)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 16, (2, window.inputs))
    maps = codes.reshape(2, window.height, window.width, window.channels)
    expected = [reference_patch(maps, window, n, oy, ox) for n in range(2)
                for oy in range(window.output_height) for ox in range(window.output_width)]
    np.testing.assert_array_equal(window.patches(codes), expected)


def test_window_checks_its_fields():
    with pytest.raises(ValueError, match=r"pad_top must be an integer in 0..2, not 3"):
        Window(4, 4, 1, 3, 3, pad_top=3)
    with pytest.raises(ValueError, match=r"kernel_height must be an integer in 1..4, not 5"):
        Window(4, 4, 1, 5, 1)
    with pytest.raises(ValueError, match=r"groups must divide channels \(6\), not 4"):
        Window(4, 4, 6, 1, 1, groups=4)


def conv_layer(window, weights, **changes):
    channels = weights.shape[1]
    fields = dict(weights=weights, bias=np.zeros(channels, dtype=np.int64),
                  multiplier=np.ones(channels, dtype=np.int64),
                  shift=np.zeros(channels, dtype=np.int64), output_zero_point=0,
                  output_low=-128, output_high=127, input_bits=4, input_signed=False,
                  weight_bits=4, weight_signed=True, output_bits=8, output_signed=True,
                  accumulator_bits=16, overflow="wrap", window=window)
    fields.update(changes)
    return IntegerLayer(**fields)


def test_convolution_is_the_gemm_of_its_patches():
    window = Window(6, 6, 2, 3, 3, stride_height=2, stride_width=2, pad_top=1, pad_left=1,
                    pad_bottom=1, pad_right=1, pad_code=3)
    rng = np.random.default_rng(1)
    weights = rng.integers(-8, 8, (window.patch, 4))
    layer = conv_layer(window, weights)
    codes = rng.integers(0, 16, (3, window.inputs))
    maps = codes.reshape(3, 6, 6, 2)
    out = run_layer(layer, codes).reshape(3, window.output_height, window.output_width, 4)
    for n in range(3):
        for oy in range(window.output_height):
            for ox in range(window.output_width):
                patch = reference_patch(maps, window, n, oy, ox)
                np.testing.assert_array_equal(out[n, oy, ox], np.clip(patch @ weights, -128, 127))
    assert layer.inputs == 72 and layer.outputs == 9 * 4 and layer.output_shape == (3, 3, 4)


def test_grouped_weights_must_be_zero_outside_their_group():
    window = Window(3, 3, 4, 1, 1, groups=2)
    weights = np.where(window.group_mask(2), 1, 0)
    assert weights.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1]]
    conv_layer(window, weights)
    with pytest.raises(ValueError, match=r"weights must be zero outside each output channel's "
                                         r"group \(2 groups\)"):
        conv_layer(window, np.ones((4, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=r"window.pad_code must be an integer in 0..15, not -1"):
        conv_layer(Window(3, 3, 4, 1, 1, pad_code=-1), np.ones((4, 2), dtype=np.int64))


def test_rounding_modes():
    values = np.arange(-40, 41)
    for shift in range(0, 5):
        for mode, rule in (("half_up", lambda f: (f + Fraction(1, 2)).__floor__()),
                           ("half_even", round)):
            expected = [rule(Fraction(int(v), 2 ** shift)) for v in values]
            np.testing.assert_array_equal(round_shift(values, shift, mode), expected)


def test_max_pooling_and_add():
    window = Window(4, 4, 2, 2, 2, stride_height=2, stride_width=2, groups=2, pad_code=-8)
    pool = MaxPoolLayer(window, 4, True)
    codes = np.random.default_rng(2).integers(-8, 8, (1, 32))
    maps = codes.reshape(4, 4, 2)
    expected = maps.reshape(2, 2, 2, 2, 2).max(axis=(1, 3)).reshape(1, 8)
    np.testing.assert_array_equal(run_layer(pool, codes), expected)
    with pytest.raises(ValueError, match=r"pad_code = -8"):
        MaxPoolLayer(Window(4, 4, 2, 2, 2, groups=2), 4, True)
    add = AddLayer((2, 2, 2), (1, -2), (3, 5), 2, 0, -128, 127, 4, True, 8, True, "half_even")
    a, b = codes[:, :8], codes[:, 8:16]
    total = [round(Fraction(int((x - 1) * 3 + (y + 2) * 5), 4)) for x, y in zip(a[0], b[0])]
    np.testing.assert_array_equal(run_layer(add, a, b), [total])
    # Sources: the add reads the pool's output twice.
    np.testing.assert_array_equal(
        run_layers([pool, add], codes[:, :32], [(-1,), (0, 0)]),
        run_layer(add, run_layer(pool, codes[:, :32]), run_layer(pool, codes[:, :32])))
