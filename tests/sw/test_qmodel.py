import numpy as np
import pytest

from systolix.sw.a2q import meets_bound, min_accumulator_bits
from systolix.sw.models import FloatModel, digits_mlp
from systolix.sw.qmodel import QuantizedModel, quantize


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


@pytest.mark.parametrize("method, accumulator_bits", [("a2q", 12), ("a2q+", 10), ("a2q+", 16)])
def test_constrained_layers_fit_the_accumulator(digits, method, accumulator_bits):
    model, data = digits
    quantized = quantize(model, data.x_train, 4, 4, accumulator_bits, method)
    for layer in quantized.layers:
        assert meets_bound(layer.weight_codes, method, accumulator_bits, layer.input.bits,
                           layer.input.signed).all()
        assert min_accumulator_bits(layer.weight_codes, layer.input.bits,
                                    layer.input.signed) <= accumulator_bits


def test_structure(digits):
    model, data = digits
    quantized = quantize(model, data.x_train, (4, 3, 5), (8, 4, 2), output_bits=6)
    assert [layer.weight_bits for layer in quantized.layers] == [4, 3, 5]
    assert [layer.input.bits for layer in quantized.layers] == [8, 4, 2]
    assert [layer.relu for layer in quantized.layers] == [True, True, False]
    first, last = quantized.layers[0], quantized.layers[-1]
    # Pixels and ReLU outputs are never negative: unsigned codes, zero point 0.
    assert all(not layer.input.signed and layer.input.zero_point == 0
               for layer in quantized.layers)
    assert last.output.signed and last.output.bits == 6
    assert np.abs(first.weight_codes).max() == 7
    assert quantized.encode_input(data.x_test).max() == 255


def test_accuracy_at_four_bits(digits):
    model, data = digits
    quantized = quantize(model, data.x_train, 4, 4, 12, "a2q+")
    float_accuracy = np.mean(np.argmax(model.forward(data.x_test), axis=1) == data.y_test)
    accuracy = np.mean(quantized.predict(data.x_test) == data.y_test)
    assert accuracy >= float_accuracy - 0.02


def test_pow2_scales_give_shift_only_multipliers(digits):
    model, data = digits
    quantized = quantize(model, data.x_train, 4, 4, pow2=True)
    for layer in quantized.layers:
        multiplier = layer.input.scale * layer.weight_scale / layer.output.scale
        np.testing.assert_array_equal(np.log2(multiplier), np.round(np.log2(multiplier)))


def test_affine_inputs():
    rng = np.random.default_rng(0)
    model = FloatModel.mlp((rng.normal(size=(6, 5)), rng.normal(size=(5, 3))),
                       (rng.normal(size=5), rng.normal(size=3)))
    x = rng.normal(size=(200, 6))
    affine = quantize(model, x, 6, 6, activation_clipping="max")
    assert not affine.layers[0].input.signed and affine.layers[0].input.zero_point > 0
    symmetric = quantize(model, x, 6, 6, activation_scheme="symmetric", method="a2q",
                         accumulator_bits=16)
    assert symmetric.layers[0].input.signed
    assert meets_bound(symmetric.layers[0].weight_codes, "a2q", 16, 6, True).all()
    with pytest.raises(ValueError, match=r"method 'a2q\+' needs unsigned inputs"):
        quantize(model, x, 6, 6, activation_scheme="symmetric", method="a2q+")


def test_save_load(digits, tmp_path):
    model, data = digits
    quantized = quantize(model, data.x_train, (4, 5, 6), 4, 14, "a2q", "saturate")
    quantized.save(tmp_path / "model.npz")
    loaded = QuantizedModel.load(tmp_path / "model.npz")
    assert (loaded.method, loaded.accumulator_bits, loaded.overflow) == ("a2q", 14, "saturate")
    for a, b in zip(quantized.layers, loaded.layers):
        np.testing.assert_array_equal(a.weight_codes, b.weight_codes)
        np.testing.assert_array_equal(a.weight_scale, b.weight_scale)
        assert a.input == b.input and a.output == b.output
    np.testing.assert_array_equal(loaded.reference(data.x_test), quantized.reference(data.x_test))


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight_bits=9), r"weight_bits must be an integer in 2..8, not 9"),
    (dict(activation_bits=(4, 4)), r"activation_bits must be an integer or 3 integers \(one "
                                   r"per layer\), not 2"),
    (dict(activation_bits=(4, 0, 4)), r"activation_bits must be an integer in 1..8, not 0"),
    (dict(accumulator_bits=33), r"accumulator_bits must be an integer in 2..32, not 33"),
    (dict(accumulator_bits=5, method="a2q"),
     r"accumulator_bits=5 is too small for any nonzero weight"),
    (dict(method="naive"), r"method must be one of 'none', 'a2q', 'a2q\+', not 'naive'"),
    (dict(overflow="clip"), r"overflow must be one of 'wrap', 'saturate', not 'clip'"),
])
def test_bad_parameters(digits, kwargs, message):
    model, data = digits
    with pytest.raises(ValueError, match=message):
        quantize(model, data.x_train, **kwargs)


def test_bad_calibration(digits):
    model, data = digits
    with pytest.raises(ValueError, match=r"x must have shape \(n, 64\), not \(5, 63\)"):
        quantize(model, np.zeros((5, 63)))
    with pytest.raises(ValueError, match=r"model must be a FloatModel, not list"):
        quantize([np.zeros((64, 10))], data.x_train)


@pytest.fixture(scope="module")
def cnn():
    from systolix.sw.models import digits_cnn
    return digits_cnn()


def test_cnn_layers(cnn):
    model, data = cnn
    quantized = quantize(model, data.x_train, 4, (8, 4, 5), 12, "a2q+")
    first, second, pool, dense = quantized.layers
    assert [layer.input.bits for layer in quantized.layers] == [8, 4, 5, 5]
    assert [layer.weight_bits for layer in quantized.layers] == [4, 4, 2, 4]
    assert first.weight_codes.shape == (9, 16) and second.weight_codes.shape == (144, 32)
    assert (first.window.stride_height, second.window.stride_height) == (1, 2)
    assert second.window.positions == 16 and first.outputs == 8 * 8 * 16
    # Global average pooling: ones over the whole map of each channel, 1/16 in the scale.
    assert pool.window.patch == 16 * 32 and pool.outputs == 32
    np.testing.assert_array_equal(pool.weight_codes, pool.window.group_mask(32))
    np.testing.assert_allclose(pool.weight_scale, 1 / 16, rtol=2 ** -15)
    assert dense.window is None and dense.output.bits == 8
    for layer in (first, second, dense):
        assert meets_bound(layer.weight_codes, "a2q+", 12, layer.input.bits, False).all()
    assert quantized.reference(data.x_test[:5]).shape == (5, 10)


def test_cnn_at_four_bits(cnn):
    model, data = cnn
    quantized = quantize(model, data.x_train, 4, 4, 12, "a2q+")
    float_accuracy = np.mean(model.predict(data.x_test) == data.y_test)
    assert np.mean(quantized.predict(data.x_test) == data.y_test) >= float_accuracy - 0.03


def test_cnn_save_load(cnn, tmp_path):
    model, data = cnn
    quantized = quantize(model, data.x_train, 4, 4, 12, "a2q+")
    quantized.save(tmp_path / "model.npz")
    loaded = QuantizedModel.load(tmp_path / "model.npz")
    assert [layer.window for layer in loaded.layers] == [layer.window
                                                         for layer in quantized.layers]
    np.testing.assert_array_equal(loaded.reference(data.x_test), quantized.reference(data.x_test))


def test_pooling_needs_its_accumulator(cnn):
    model, data = cnn
    with pytest.raises(ValueError, match=r"layer 2 \(GlobalAvgPool\) adds 16 codes of 8 bits and "
                                         r"needs an accumulator of 13 bits, not "
                                         r"accumulator_bits=12"):
        quantize(model, data.x_train, 4, (4, 4, 8), 12, "a2q+")


def test_dead_channels_get_a_representable_scale():
    from systolix.sw.models import Conv2d, Dense
    rng = np.random.default_rng(5)
    weight = rng.normal(size=(3, 3, 1, 4))
    weight[..., 1] = 1e-39
    model = FloatModel((Conv2d(weight, np.zeros(4), padding=1, relu=True),
                        Dense(rng.normal(size=(64, 2)), np.zeros(2))), (4, 4, 1))
    quantized = quantize(model, rng.uniform(size=(50, 16)), 4, 4)
    assert not quantized.layers[0].weight_codes[:, 1].any()


@pytest.mark.parametrize("change, message", [
    (lambda header: header["layers"][1].update(kind="avg"),
     r"header field layers\[1\].kind: must be gemm or max_pool, not 'avg'"),
    (lambda header: header["layers"][1]["window"].update(pad_code=3),
     r"layer 1: a max pooling window must have groups = channels \(16\) and pad_code = 0"),
    (lambda header: header["layers"][0].update(window=None),
     r"layer 1 has 1024 inputs but layer 0 has 16 outputs"),
    (lambda header: header["layers"][0]["input"].update(bits=9),
     r"layer 0: input.bits must be an integer in 1..8, not 9"),
])
def test_bad_cnn_files(tmp_path, change, message):
    import json
    from systolix.sw.models import Conv2d, Dense, MaxPool2d
    rng = np.random.default_rng(13)
    model = FloatModel((Conv2d(rng.normal(size=(3, 3, 1, 16)), rng.normal(size=16), padding=1,
                               relu=True), MaxPool2d(2), Dense(rng.normal(size=(256, 3)),
                                                               rng.normal(size=3))), (8, 8, 1))
    quantize(model, rng.normal(size=(50, 64)), 4, 4).save(tmp_path / "model.npz")
    with np.load(tmp_path / "model.npz") as archive:
        arrays = dict(archive)
    header = json.loads(str(arrays.pop("header")))
    change(header)
    np.savez(tmp_path / "bad.npz", header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match=message):
        QuantizedModel.load(tmp_path / "bad.npz")
