import numpy as np
import pytest

from systolix.sw.models import FloatModel, digits_mlp, digits_split


def small_model():
    rng = np.random.default_rng(0)
    return FloatModel((rng.normal(size=(5, 4)), rng.normal(size=(4, 3))),
                      (rng.normal(size=4), rng.normal(size=3)))


def test_forward_is_relu_mlp():
    model = small_model()
    x = np.random.default_rng(1).normal(size=(7, 5))
    hidden = np.maximum(x @ model.weights[0] + model.biases[0], 0)
    np.testing.assert_allclose(model.forward(x), hidden @ model.weights[1] + model.biases[1])
    inputs = model.layer_inputs(x)
    assert len(inputs) == 3
    np.testing.assert_allclose(inputs[1], hidden)


def test_arrays_are_read_only():
    model = small_model()
    with pytest.raises(ValueError):
        model.weights[0][0, 0] = 1.0


@pytest.mark.parametrize("weights, biases, message", [
    ((np.zeros((5, 4)), np.zeros((3, 2))), (np.zeros(4), np.zeros(2)),
     r"weights\[1\] has 3 rows but layer 0 has 4 outputs"),
    ((np.zeros((5, 4)),), (np.zeros(3),),
     r"biases\[0\] must have shape \(4,\) to match weights\[0\] of shape \(5, 4\), not \(3,\)"),
    ((np.zeros(5),), (np.zeros(1),), r"weights\[0\] must be a matrix"),
    ((np.zeros((5, 4)),), (), r"as many bias vectors as weight matrices"),
    ((np.array([[1.0, np.nan], [np.inf, 0.0]]),), (np.zeros(2),),
     r"weights\[0\] must be finite, but it has 2 NaN or Inf values"),
    ((np.zeros((2, 2)),), (np.array([0.0, np.inf]),),
     r"biases\[0\] must be finite, but it has 1 NaN or Inf values"),
])
def test_bad_models(weights, biases, message):
    with pytest.raises(ValueError, match=message):
        FloatModel(weights, biases)


def test_bad_input_shape():
    with pytest.raises(ValueError, match=r"x must have shape \(n, 5\), not \(2, 6\)"):
        small_model().forward(np.zeros((2, 6)))


def test_save_load(tmp_path):
    model = small_model()
    model.save(tmp_path / "float.npz")
    loaded = FloatModel.load(tmp_path / "float.npz")
    for a, b in zip(model.weights + model.biases, loaded.weights + loaded.biases):
        np.testing.assert_array_equal(a, b)


def test_digits_split_is_stratified():
    data = digits_split()
    assert data.x_train.shape == (1437, 64) and data.x_test.shape == (360, 64)
    assert data.x_train.min() == 0 and data.x_train.max() == 16
    train = np.bincount(data.y_train) / data.y_train.size
    test = np.bincount(data.y_test) / data.y_test.size
    np.testing.assert_allclose(train, test, atol=0.01)


def test_digits_mlp():
    model, data = digits_mlp()
    assert [w.shape for w in model.weights] == [(64, 64), (64, 32), (32, 10)]
    accuracy = np.mean(np.argmax(model.forward(data.x_test), axis=1) == data.y_test)
    assert accuracy > 0.95
