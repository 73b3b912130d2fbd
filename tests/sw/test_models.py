import numpy as np
import pytest

from systolix.sw.models import AvgPool2d, Conv2d, Dense, FloatModel, GlobalAvgPool, MaxPool2d, \
    digits_cnn, digits_mlp, digits_split


def small_model():
    rng = np.random.default_rng(0)
    return FloatModel.mlp((rng.normal(size=(5, 4)), rng.normal(size=(4, 3))),
                      (rng.normal(size=4), rng.normal(size=3)))


def test_forward_is_relu_mlp():
    model = small_model()
    x = np.random.default_rng(1).normal(size=(7, 5))
    first, second = model.layers
    hidden = np.maximum(x @ first.weight + first.bias, 0)
    np.testing.assert_allclose(model.forward(x), hidden @ second.weight + second.bias)
    assert (first.relu, second.relu) == (True, False)
    inputs = model.layer_inputs(x)
    assert len(inputs) == 3
    np.testing.assert_allclose(inputs[1], hidden)


def test_arrays_are_read_only():
    model = small_model()
    with pytest.raises(ValueError):
        model.layers[0].weight[0, 0] = 1.0


@pytest.mark.parametrize("weights, biases, message", [
    ((np.zeros((5, 4)), np.zeros((3, 2))), (np.zeros(4), np.zeros(2)),
     r"layers\[1\] \(Dense\): weight has 3 rows but the input 1x1x4 has 4 values"),
    ((np.zeros((5, 4)),), (np.zeros(3),),
     r"bias must have shape \(4,\) to match weight of shape \(5, 4\), not \(3,\)"),
    ((np.zeros(5),), (np.zeros(1),), r"weight must be a matrix"),
    ((np.zeros((5, 4)),), (), r"as many bias vectors as weight matrices"),
    ((np.array([[1.0, np.nan], [np.inf, 0.0]]),), (np.zeros(2),),
     r"weight must be finite, but it has 2 NaN or Inf values"),
    ((np.zeros((2, 2)),), (np.array([0.0, np.inf]),),
     r"bias must be finite, but it has 1 NaN or Inf values"),
])
def test_bad_models(weights, biases, message):
    with pytest.raises(ValueError, match=message):
        FloatModel.mlp(weights, biases)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(n, 5\), not \(2, 6\)"):
        small_model().forward(np.zeros((2, 6)))


def test_save_load(tmp_path):
    model = small_model()
    model.save(tmp_path / "float.npz")
    loaded = FloatModel.load(tmp_path / "float.npz")
    assert loaded.input_shape == model.input_shape
    for a, b in zip(model.layers, loaded.layers):
        np.testing.assert_array_equal(a.weight, b.weight)
        np.testing.assert_array_equal(a.bias, b.bias)
        assert a.relu == b.relu


def test_digits_split_is_stratified():
    data = digits_split()
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.min() == 0 and data.x_train.max() == 16
    train = np.bincount(data.y_train) / data.y_train.size
    test = np.bincount(data.y_test) / data.y_test.size
    np.testing.assert_allclose(train, test, atol=0.01)


def test_digits_mlp():
    model, data = digits_mlp()
    assert [layer.weight.shape for layer in model.layers] == [(64, 64), (64, 32), (32, 10)]
    accuracy = np.mean(np.argmax(model.forward(data.x_test), axis=1) == data.y_test)
    assert accuracy > 0.95


def conv_reference(maps, weight, bias, stride, pad, groups):
    """A direct convolution of NHWC ``maps`` (loops over positions and channels)."""
    count, height, width, _ = maps.shape
    kernel_height, kernel_width, group_channels, outputs = weight.shape
    padded = np.pad(maps, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out_height = (height + 2 * pad - kernel_height) // stride + 1
    out_width = (width + 2 * pad - kernel_width) // stride + 1
    out = np.zeros((count, out_height, out_width, outputs))
    per_group = outputs // groups
    for channel in range(outputs):
        group = channel // per_group
        for oy in range(out_height):
            for ox in range(out_width):
                patch = padded[:, oy * stride:oy * stride + kernel_height,
                               ox * stride:ox * stride + kernel_width,
                               group * group_channels:(group + 1) * group_channels]
                out[:, oy, ox, channel] = np.einsum("nabc,abc->n", patch,
                                                    weight[:, :, :, channel]) + bias[channel]
    return out


def small_cnn():
    rng = np.random.default_rng(2)
    return FloatModel((
        Conv2d(rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4), 1, 1, relu=True),
        Conv2d(rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4), 2, 1, groups=2, relu=True),
        Conv2d(rng.normal(size=(3, 3, 1, 4)), rng.normal(size=4), 1, 1, groups=4, relu=True),
        AvgPool2d(2), GlobalAvgPool(), Dense(rng.normal(size=(4, 3)), rng.normal(size=3))),
        input_shape=(8, 8, 1))


def test_convolution_pooling_and_dense_against_direct_loops():
    model = small_cnn()
    assert model.shapes == ((8, 8, 1), (8, 8, 4), (4, 4, 4), (4, 4, 4), (2, 2, 4), (1, 1, 4),
                            (1, 1, 3))
    assert model.learned == (0, 1, 2, 5)
    x = np.random.default_rng(3).normal(size=(5, 64))
    conv = [layer for layer in model.layers if isinstance(layer, Conv2d)]
    first = np.maximum(conv_reference(x.reshape(5, 8, 8, 1), conv[0].weight, conv[0].bias,
                                      1, 1, 1), 0)
    second = np.maximum(conv_reference(first, conv[1].weight, conv[1].bias, 2, 1, 2), 0)
    depthwise = np.maximum(conv_reference(second, conv[2].weight, conv[2].bias, 1, 1, 4), 0)
    pooled = depthwise.reshape(5, 2, 2, 2, 2, 4).mean(axis=(2, 4))
    average = pooled.mean(axis=(1, 2))
    expected = [first, second, depthwise, pooled, average,
                average @ model.layers[-1].weight + model.layers[-1].bias]
    for value, reference in zip(model.layer_inputs(x)[1:], expected):
        np.testing.assert_allclose(value, reference.reshape(5, -1), atol=1e-12)


def test_convolution_matrix_is_zero_outside_groups():
    window, matrix, _ = small_cnn().gemm(1)
    assert matrix.shape == (window.patch, 4) == (36, 4)
    assert not matrix[~window.group_mask(4)].any()


def test_cnn_save_load(tmp_path):
    model = small_cnn()
    model.save(tmp_path / "cnn.npz")
    loaded = FloatModel.load(tmp_path / "cnn.npz")
    assert loaded.layers[3] == model.layers[3] and loaded.shapes == model.shapes
    x = np.random.default_rng(4).normal(size=(3, 64))
    np.testing.assert_array_equal(loaded.forward(x), model.forward(x))


@pytest.mark.parametrize("layers, shape, message", [
    ((Conv2d(np.zeros((3, 3, 2, 4)), np.zeros(4)),), (8, 8, 1),
     r"layers\[0\] \(Conv2d\): weight reads 2 channels per group x 1 groups but the input "
     r"map has 1"),
    ((Conv2d(np.zeros((3, 3, 1, 4)), np.zeros(4)),), None,
     r"input_shape \(height, width, channels\) is needed when the first layer is a Conv2d"),
    ((Conv2d(np.zeros((9, 9, 1, 4)), np.zeros(4)),), (8, 8, 1),
     r"layers\[0\] \(Conv2d\): kernel_height must be an integer in 1..8"),
    ((GlobalAvgPool(), "relu"), (8, 8, 1), r"layers\[1\] must be a Dense, Conv2d"),
])
def test_bad_cnn(layers, shape, message):
    with pytest.raises(ValueError, match=message):
        FloatModel(layers, shape)


@pytest.mark.parametrize("change, message", [
    (lambda header: header["layers"][0].update(kind="lstm"),
     r"header field layers\[0\].kind: must be one of dense, conv2d, avg_pool2d, "
     r"global_avg_pool, max_pool2d, not 'lstm'"),
    (lambda header: header["layers"][0].update(groups=1.5),
     r"header field layers\[0\].groups: must be an integer, not 1.5"),
    (lambda header: header["layers"][3].update(stride=[0, 2]),
     r"layer 3: stride must be an integer in 1..4096, not 0"),
    (lambda header: header.update(version=1),
     r"is systolix.FloatModel version 1; this systolix reads version 2"),
])
def test_bad_cnn_files(tmp_path, change, message):
    import json
    small_cnn().save(tmp_path / "cnn.npz")
    with np.load(tmp_path / "cnn.npz") as archive:
        arrays = dict(archive)
    header = json.loads(str(arrays.pop("header")))
    change(header)
    np.savez(tmp_path / "bad.npz", header=np.array(json.dumps(header)), **arrays)
    with pytest.raises(ValueError, match=message):
        FloatModel.load(tmp_path / "bad.npz")


def test_digits_cnn():
    model, data = digits_cnn()
    assert model.input_shape == (8, 8, 1)
    assert [type(layer) for layer in model.layers] == [Conv2d, Conv2d, GlobalAvgPool, Dense]
    assert model.shapes[-2:] == ((1, 1, model.layers[1].weight.shape[3]), (1, 1, 10))
    accuracy = np.mean(model.predict(data.x_test) == data.y_test)
    assert accuracy > 0.93


def test_max_pooling_pads_with_minus_infinity():
    model = FloatModel((MaxPool2d(3, 2, 1), MaxPool2d((2, 1))), (4, 4, 2))
    assert model.shapes == ((4, 4, 2), (2, 2, 2), (1, 2, 2)) and model.learned == ()
    x = -1.0 - np.random.default_rng(5).uniform(size=(3, 32))     # all negative: pads must lose
    maps = x.reshape(3, 4, 4, 2)
    padded = np.pad(maps, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    first = np.stack([np.stack([padded[:, 2 * oy:2 * oy + 3, 2 * ox:2 * ox + 3].max(axis=(1, 2))
                                for ox in range(2)], axis=1) for oy in range(2)], axis=1)
    second = first.max(axis=1, keepdims=True)
    values = model.layer_inputs(x)
    np.testing.assert_array_equal(values[1], first.reshape(3, -1))
    np.testing.assert_array_equal(values[2], second.reshape(3, -1))

