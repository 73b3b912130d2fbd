"""Float models the compiler reads: dense layers with ReLU between them, and the digits MLP.

A :class:`FloatModel` is a list of weight matrices ``W[l]`` of shape ``(inputs, outputs)`` and
bias vectors ``b[l]``; it computes ``x[l+1] = relu(x[l] @ W[l] + b[l])`` with no ReLU after the
last layer (its outputs are logits). Any model of that form can be given as numpy arrays.

The default workload is an MLP 64-64-32-10 trained with scikit-learn's ``MLPClassifier`` on the
bundled ``load_digits`` data set (8x8 images, pixel values 0..16, no download), with a fixed
seed and a stratified train/test split.
"""

import functools
from dataclasses import dataclass

import numpy as np

from systolix.layer import frozen_array

from .io import exact_keys, field, load_arrays, save_arrays, MAX_LAYERS

__all__ = ["FloatModel", "DigitsSplit", "digits_split", "digits_mlp", "accuracy"]

_FORMAT = "systolix.FloatModel"
_VERSION = 1


@dataclass(frozen=True)
class FloatModel:
    """Dense layers with ReLU between them, in floating point.

    Parameters
    ----------
    weights : sequence of array_like, each of shape (inputs, outputs)
        ``y = x @ W``: one row per input, one column per output channel.
    biases : sequence of array_like, each of shape (outputs,)
    """

    weights: tuple
    biases: tuple

    def __post_init__(self):
        if len(self.weights) == 0 or len(self.weights) != len(self.biases):
            raise ValueError(f"a model needs as many bias vectors as weight matrices (at least "
                             f"one), not {len(self.weights)} and {len(self.biases)}")
        weights, biases = [], []
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            weight = frozen_array(weight, np.float64)
            bias = frozen_array(bias, np.float64)
            if weight.ndim != 2:
                raise ValueError(f"weights[{index}] must be a matrix (inputs, outputs), "
                                 f"not of shape {weight.shape}")
            if bias.shape != (weight.shape[1],):
                raise ValueError(f"biases[{index}] must have shape ({weight.shape[1]},) to match "
                                 f"weights[{index}] of shape {weight.shape}, not {bias.shape}")
            if index and weight.shape[0] != weights[-1].shape[1]:
                raise ValueError(f"weights[{index}] has {weight.shape[0]} rows but layer "
                                 f"{index - 1} has {weights[-1].shape[1]} outputs")
            for name, array in (("weights", weight), ("biases", bias)):
                bad = np.count_nonzero(~np.isfinite(array))
                if bad:
                    raise ValueError(f"{name}[{index}] must be finite, but it has {bad} NaN or "
                                     f"Inf values")
            weights.append(weight)
            biases.append(bias)
        object.__setattr__(self, "weights", tuple(weights))
        object.__setattr__(self, "biases", tuple(biases))

    @property
    def inputs(self):
        """Length of an input vector."""
        return self.weights[0].shape[0]

    def check_input(self, x):
        """Return ``x`` as a float64 matrix ``(n, inputs)``; raise :class:`ValueError` if not."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"x must have shape (n, {self.inputs}), not {x.shape}")
        return x

    def layer_inputs(self, x):
        """The input of every layer and the logits: ``[x, relu(x @ W0 + b0), ..., logits]``."""
        values = [self.check_input(x)]
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            y = values[-1] @ weight + bias
            values.append(y if index == len(self.weights) - 1 else np.maximum(y, 0.0))
        return values

    def forward(self, x):
        """Logits, shape ``(n, outputs)``."""
        return self.layer_inputs(x)[-1]

    def predict(self, x):
        """Predicted classes: the first largest logit of each row."""
        return np.argmax(self.forward(x), axis=1)

    def save(self, path):
        """Write the model to one ``.npz`` file (atomically, with a format version)."""
        arrays = {}
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            arrays[f"weight{index}"] = weight
            arrays[f"bias{index}"] = bias
        save_arrays(path, _FORMAT, _VERSION, {"layers": len(self.weights)}, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (strictly: :func:`~systolix.sw.io.load_arrays`;
        weights and biases stored as floats, of matching shapes, finite)."""
        def members(header):
            count = field(path, "", header, "layers", int, 1, MAX_LAYERS)
            return {f"{name}{index}": ("float", ndim) for index in range(count)
                    for name, ndim in (("weight", 2), ("bias", 1))}

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "layers"))
        count = range(header["layers"])
        try:
            return cls(tuple(arrays[f"weight{i}"] for i in count),
                       tuple(arrays[f"bias{i}"] for i in count))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def accuracy(predicted, labels):
    """The fraction of ``predicted`` classes equal to ``labels``."""
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


@dataclass(frozen=True)
class DigitsSplit:
    """The digits data set split into training and test images (raw pixel values 0..16)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=4)
def digits_split(seed=0, test_fraction=0.2):
    """Stratified train/test split of scikit-learn's bundled digits images.

    Returns
    -------
    DigitsSplit
        ``x_*`` float64 of shape ``(n, 64)`` with pixel values 0..16, ``y_*`` int64 labels 0..9.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed)
    return DigitsSplit(*(frozen_array(array, dtype) for array, dtype in (
        (x_train, np.float64), (y_train, np.int64), (x_test, np.float64), (y_test, np.int64))))


@functools.lru_cache(maxsize=4)
def digits_mlp(seed=0, hidden=(64, 32)):
    """The default workload: an MLP 64-``hidden``-10 trained on :func:`digits_split`.

    The network is trained by scikit-learn's ``MLPClassifier`` (Adam, L2 penalty 0.01, fixed
    ``seed``) on pixels scaled to 0..1; the scaling is folded into the first weight matrix, so
    the returned model reads raw pixel values 0..16. Training takes about 1.5 s; the result is
    cached per process.

    Returns
    -------
    model : FloatModel
    data : DigitsSplit
    """
    from sklearn.neural_network import MLPClassifier

    data = digits_split(seed)
    classifier = MLPClassifier(hidden_layer_sizes=hidden, alpha=1e-2, max_iter=500,
                               random_state=seed)
    classifier.fit(data.x_train / 16.0, data.y_train)
    weights = [weight.copy() for weight in classifier.coefs_]
    weights[0] /= 16.0
    return FloatModel(tuple(weights), tuple(classifier.intercepts_)), data
