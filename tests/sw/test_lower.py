import dataclasses

import numpy as np
import pytest

from systolix.sim.golden.program import run_layer, run_program
from systolix.sw.lower import lower
from systolix.sw.models import FloatModel, digits_mlp
from systolix.sw.program import IntegerLayer
from systolix.sw.qmodel import quantize


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


CONFIGS = [
    dict(weight_bits=4, activation_bits=4, accumulator_bits=12, method="a2q+"),
    dict(weight_bits=4, activation_bits=4, accumulator_bits=12, method="a2q"),
    dict(weight_bits=4, activation_bits=4, accumulator_bits=32, method="none"),
    dict(weight_bits=2, activation_bits=2, accumulator_bits=10, method="a2q+"),
    dict(weight_bits=8, activation_bits=8, accumulator_bits=18, method="a2q+", overflow="saturate"),
    dict(weight_bits=(3, 5, 8), activation_bits=(6, 3, 4), accumulator_bits=24, method="a2q",
         pow2=True),
    dict(weight_bits=4, activation_bits=4, accumulator_bits=32, per_channel=False,
         weight_clipping="max", activation_clipping="max", rounding="zero", output_bits=4),
]


@pytest.mark.parametrize("config", CONFIGS)
def test_program_matches_reference_on_the_test_split(digits, config):
    model, data = digits
    quantized = quantize(model, data.x_train, **config)
    program = lower(quantized)
    reference = quantized.reference(data.x_test)
    outputs = run_program(program, program.encode_input(data.x_test))
    assert np.abs(outputs - reference).max() <= 1
    np.testing.assert_array_equal(np.argmax(outputs, axis=1), quantized.predict(data.x_test))
    # Dequantized: within one output LSB of the reference.
    error = np.abs(program.decode_output(outputs) - quantized.decode_output(reference))
    assert error.max() <= quantized.layers[-1].output.scale * (1 + 1e-9)


def test_every_layer_matches_its_reference(digits):
    model, data = digits
    quantized = quantize(model, data.x_train, 4, 4, 13, "a2q+")
    program = lower(quantized)
    codes = quantized.encode_input(data.x_test)
    for reference_layer, integer_layer in zip(quantized.layers, program.layers):
        expected = reference_layer.reference(codes)
        np.testing.assert_array_equal(run_layer(integer_layer, codes), expected)
        codes = expected


def test_only_integers_in_the_layers(digits):
    model, data = digits
    program = lower(quantize(model, data.x_train, 4, 4, 12, "a2q+"))
    for layer in program.layers:
        for field in dataclasses.fields(IntegerLayer):
            value = getattr(layer, field.name)
            if isinstance(value, np.ndarray):
                assert value.dtype == np.int64
            else:
                assert isinstance(value, (int, str)) or (field.name == "window" and
                                                         value is None), field.name


def test_operand_reordering_folds_the_zero_point():
    rng = np.random.default_rng(3)
    model = FloatModel.mlp((rng.normal(size=(6, 4)), rng.normal(size=(4, 3))),
                       (rng.normal(size=4), rng.normal(size=3)))
    x = rng.normal(size=(300, 6))
    quantized = quantize(model, x, 6, 6, activation_clipping="max")
    first = quantized.layers[0]
    assert first.input.zero_point > 0
    program = lower(quantized)
    expected = first.bias_codes - first.input.zero_point * first.weight_codes.sum(axis=0)
    np.testing.assert_array_equal(program.layers[0].bias, expected)
    outputs = run_program(program, program.encode_input(x))
    np.testing.assert_array_equal(outputs, quantized.reference(x))
    assert np.mean(np.argmax(outputs, axis=1) == np.argmax(model.forward(x), axis=1)) > 0.9


def test_relu_is_folded_into_the_clamp(digits):
    model, data = digits
    program = lower(quantize(model, data.x_train, 4, 4))
    hidden, last = program.layers[0], program.layers[-1]
    assert (hidden.output_low, hidden.output_high) == (0, 15)
    assert (last.output_low, last.output_high) == (-127, 127)


def test_naive_wrap_around_breaks_at_small_widths(digits):
    model, data = digits
    safe = lower(quantize(model, data.x_train, 8, 8, 12, "a2q+"))
    naive = lower(quantize(model, data.x_train, 8, 8, 12, "none"))
    x = data.x_test
    safe_accuracy = np.mean(np.argmax(run_program(safe, safe.encode_input(x)), 1) == data.y_test)
    naive_accuracy = np.mean(np.argmax(run_program(naive, naive.encode_input(x)), 1)
                             == data.y_test)
    assert naive_accuracy < 0.2 < safe_accuracy


def test_lower_needs_a_quantized_model(digits):
    with pytest.raises(ValueError, match=r"model must be a QuantizedModel, not FloatModel"):
        lower(digits[0])


def test_quantize_and_lower_are_fast(digits):
    import time

    model, data = digits
    start = time.perf_counter()
    lower(quantize(model, data.x_train, 4, 4, 12, "a2q+"))
    assert time.perf_counter() - start < 2.0


def small_cnn():
    """Convolutions (strided, grouped, depthwise), average and global average pooling."""
    from systolix.sw.models import AvgPool2d, Conv2d, Dense, GlobalAvgPool
    rng = np.random.default_rng(7)
    return FloatModel((
        Conv2d(rng.normal(size=(3, 3, 2, 8)), rng.normal(size=8), 1, 1, relu=True),
        Conv2d(rng.normal(size=(3, 3, 4, 8)), rng.normal(size=8), 2, (1, 1, 0, 0), groups=2,
               relu=True),
        Conv2d(rng.normal(size=(3, 3, 1, 8)), rng.normal(size=8), 1, 1, groups=8, relu=True),
        AvgPool2d(2, 1), Conv2d(rng.normal(size=(1, 1, 8, 6)), rng.normal(size=6)),
        GlobalAvgPool(), Dense(rng.normal(size=(6, 4)), rng.normal(size=4))),
        input_shape=(6, 6, 2))


CNN_CONFIGS = [
    dict(weight_bits=4, activation_bits=4, accumulator_bits=16, method="a2q"),
    dict(weight_bits=(4, 3, 5, 6, 8), activation_bits=(6, 4, 4, 5, 3), accumulator_bits=32),
    dict(weight_bits=8, activation_bits=8, accumulator_bits=32, pow2=True,
         activation_clipping="max"),
]


@pytest.mark.parametrize("config", CNN_CONFIGS)
def test_cnn_program_is_bit_exact_layer_by_layer(config):
    model = small_cnn()
    rng = np.random.default_rng(8)
    x = rng.normal(size=(200, model.inputs))     # signed inputs: affine codes, zero point > 0
    quantized = quantize(model, x, **config)
    program = lower(quantized)
    assert quantized.layers[0].input.zero_point > 0
    windows = [layer.window for layer in program.layers]
    assert windows == [layer.window for layer in quantized.layers]
    assert windows[0].pad_code == quantized.layers[0].input.zero_point
    assert windows[-1] is None and windows[5].groups == windows[5].channels == 6
    codes = quantized.encode_input(x)
    for reference_layer, integer_layer in zip(quantized.layers, program.layers):
        expected = reference_layer.reference(codes)
        np.testing.assert_array_equal(run_layer(integer_layer, codes), expected)
        codes = expected
    outputs = run_program(program, program.encode_input(x))
    np.testing.assert_array_equal(outputs, quantized.reference(x))


def test_digits_cnn_program_matches_reference():
    from systolix.sw.models import digits_cnn
    model, data = digits_cnn()
    quantized = quantize(model, data.x_train, 4, 4, 12, "a2q+")
    program = lower(quantized)
    pool = program.layers[2]
    assert pool.window.kernel_height == pool.window.height == 4 and pool.weight_bits == 2
    assert pool.bias.tolist() == [0] * 32            # zero point 0: no offset to remove
    codes = quantized.encode_input(data.x_test)
    for reference_layer, integer_layer in zip(quantized.layers, program.layers):
        expected = reference_layer.reference(codes)
        np.testing.assert_array_equal(run_layer(integer_layer, codes), expected)
        codes = expected
    outputs = run_program(program, program.encode_input(data.x_test))
    assert np.abs(outputs - quantized.reference(data.x_test)).max() <= 1
    np.testing.assert_array_equal(outputs.argmax(1), quantized.predict(data.x_test))


def test_dense_after_a_map_reads_nhwc():
    """A dense layer after a convolution reads its map channel-fastest, as the float model."""
    from systolix.sw.models import Conv2d, Dense
    rng = np.random.default_rng(9)
    model = FloatModel((Conv2d(rng.normal(size=(2, 2, 1, 3)), rng.normal(size=3), relu=True),
                        Dense(rng.normal(size=(27, 5)), rng.normal(size=5))), (4, 4, 1))
    x = rng.uniform(size=(400, 16))
    quantized = quantize(model, x, 8, 8)
    outputs = run_program(lower(quantized), quantized.encode_input(x))
    real = quantized.decode_output(outputs)
    assert np.corrcoef(real.ravel(), model.forward(x).ravel())[0, 1] > 0.99


@pytest.mark.parametrize("scheme", ["affine", "symmetric"])
def test_max_pooling_keeps_the_codes(scheme):
    from systolix.sw.models import Conv2d, Dense, MaxPool2d
    from systolix.sw.program import MaxPoolLayer
    from systolix.sw.qmodel import QuantizedModel
    rng = np.random.default_rng(11)
    model = FloatModel((Conv2d(rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4), padding=1),
                        MaxPool2d(3, 2, 1),
                        Conv2d(rng.normal(size=(3, 3, 4, 4)), rng.normal(size=4), padding=1,
                               relu=True),
                        MaxPool2d(2), Dense(rng.normal(size=(16, 3)), rng.normal(size=3))),
                       (8, 8, 1))
    x = rng.normal(size=(300, 64))
    options = dict(method="a2q", accumulator_bits=16) if scheme == "symmetric" else {}
    quantized = quantize(model, x, 4, 4, activation_scheme=scheme, **options)
    pool = quantized.layers[1]
    assert pool.input == pool.output == quantized.layers[0].output
    program = lower(quantized)
    assert [type(layer) for layer in program.layers].count(MaxPoolLayer) == 2
    outputs = run_program(program, program.encode_input(x))
    np.testing.assert_array_equal(outputs, quantized.reference(x))
    real = quantized.decode_output(outputs)
    assert np.corrcoef(real.ravel(), model.forward(x).ravel())[0, 1] > 0.9


def test_quantized_max_pooling_save_load(tmp_path):
    from systolix.sw.models import Conv2d, Dense, MaxPool2d
    from systolix.sw.qmodel import QuantizedModel
    rng = np.random.default_rng(12)
    model = FloatModel((Conv2d(rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4), padding=1,
                               relu=True), MaxPool2d(2), Dense(rng.normal(size=(64, 3)),
                                                               rng.normal(size=3))), (8, 8, 1))
    x = rng.normal(size=(100, 64))
    quantized = quantize(model, x, 4, 4)
    quantized.save(tmp_path / "model.npz")
    loaded = QuantizedModel.load(tmp_path / "model.npz")
    assert loaded.layers[1] == quantized.layers[1]
    np.testing.assert_array_equal(loaded.reference(x), quantized.reference(x))
