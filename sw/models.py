"""Float models the compiler reads: dense and convolution layers with ReLU, average pooling, and
the digits workloads.

A :class:`FloatModel` is an input shape ``(height, width, channels)`` and a sequence of layers,
each a GEMM on windows of its input map:

- :class:`Dense`: ``y = x @ weight + bias`` on the whole input, whatever its shape (a map is
  read flattened in NHWC order, channel fastest; no Flatten layer is needed);
- :class:`Conv2d`: a 2-D convolution (stride, padding, groups, depthwise included), weights
  ``(kernel_height, kernel_width, channels // groups, outputs)``;
- :class:`AvgPool2d` and :class:`GlobalAvgPool`: the mean of each window of each channel (the
  padding counts as zeros, PyTorch's ``count_include_pad=True``);
- :class:`MaxPool2d`: the largest value of each window of each channel (padding never wins).

ReLU is a flag of :class:`Dense` and :class:`Conv2d` (applied to their outputs), with an optional
upper bound ``clip`` (ReLU6 and PACT's learned bound: ``min(max(y, 0), clip)``). Tensors between
layers are ``(n, height * width * channels)`` NHWC-flattened, as in the integer program
(:mod:`systolix.layer`). Every layer is computed as its :meth:`~Conv2d.window`'s patches (the
im2col of :meth:`systolix.layer.Window.patches`) times its matrix of shape ``(patch, outputs)``
(:meth:`FloatModel.gemm`), zero outside each output channel's group; an average pooling layer's
matrix is the group mask divided by the window's area; max pooling has a window and no matrix.
That is the form the quantizer and the lowering read.

Workloads: the default MLP 64-64-32-10 trained with scikit-learn's ``MLPClassifier`` on the
bundled ``load_digits`` data set (8x8 images, pixel values 0..16, no download), with a fixed
seed and a stratified train/test split (:func:`digits_mlp`); and the digits CNN
(:func:`digits_cnn`), trained once by ``scripts/train_digits_cnn.py`` (PyTorch, the ``torch``
extra) and shipped as float weights, so that using it needs no PyTorch; the same for the tiny
vision transformer (:class:`VisionTransformer`, :func:`digits_vit`, ``scripts/train_digits_vit.py``),
a graph rather than a sequence of GEMMs, with its own float forward pass.
"""

import dataclasses
import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from systolix.config import check_bool, check_int
from systolix.layer import MAX_MAP, Window, frozen_array

from .io import exact_keys, field, layer_count, load_arrays, save_arrays

__all__ = ["Dense", "Conv2d", "AvgPool2d", "GlobalAvgPool", "MaxPool2d", "FloatModel",
           "DigitsSplit",
           "digits_split", "digits_mlp", "digits_cnn", "DIGITS_CNN_FILE", "accuracy",
           "VisionTransformer", "digits_vit", "DIGITS_VIT_FILE"]

_FORMAT = "systolix.FloatModel"
_VERSION = 2

DIGITS_CNN_FILE = "digits_cnn.npz"
"""The shipped float weights of the digits CNN, a file of the package ``systolix.sw``."""

DIGITS_VIT_FILE = "digits_vit.npz"
"""The shipped float weights of the digits vision transformer (:func:`digits_vit`)."""


def _pair(name, value):
    """``value`` (an int or two ints) as a checked pair ``(height, width)``."""
    values = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != 2:
        raise ValueError(f"{name} must be an integer or two (height, width), not {value!r}")
    return tuple(check_int(name, int(v) if isinstance(v, np.integer) else v, 1, MAX_MAP)
                 for v in values)


def _padding(value):
    """``value`` (an int, two ints (height, width) or four (top, left, bottom, right)) as four
    checked ints."""
    values = (value,) * 4 if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) == 2:
        values = values * 2
    if len(values) != 4:
        raise ValueError(f"padding must be an integer, two (height, width) or four (top, left, "
                         f"bottom, right), not {value!r}")
    return tuple(check_int("padding", int(v) if isinstance(v, np.integer) else v, 0, MAX_MAP)
                 for v in values)


def _finite(name, array):
    bad = np.count_nonzero(~np.isfinite(array))
    if bad:
        raise ValueError(f"{name} must be finite, but it has {bad} NaN or Inf values")
    return array


def _set_weight_and_bias(layer, weight_shape, ndim=2):
    """Check and freeze ``layer.weight`` (finite, ``ndim`` dimensions, none empty, described as
    ``weight_shape``) and ``layer.bias`` (finite, one per output: the weight's last axis) and
    the layer's activation; return the weight."""
    weight = _finite("weight", frozen_array(layer.weight, np.float64))
    bias = _finite("bias", frozen_array(layer.bias, np.float64))
    if weight.ndim != ndim or 0 in weight.shape:
        raise ValueError(f"weight must be {weight_shape}, not of shape {weight.shape}")
    if bias.shape != (weight.shape[-1],):
        raise ValueError(f"bias must have shape ({weight.shape[-1]},) to match weight of "
                         f"shape {weight.shape}, not {bias.shape}")
    _check_activation(layer)
    object.__setattr__(layer, "weight", weight)
    object.__setattr__(layer, "bias", bias)
    return weight


def _check_activation(layer):
    check_bool("relu", layer.relu)
    if layer.clip is not None:
        if isinstance(layer.clip, bool) or not isinstance(layer.clip, (int, float, np.number)) \
                or not np.isfinite(layer.clip) or not layer.clip > 0 or not layer.relu:
            raise ValueError(f"clip must be None or a finite number above 0 after a ReLU (relu "
                             f"True), not {layer.clip!r} with relu {layer.relu}")
        object.__setattr__(layer, "clip", float(layer.clip))


def _map_window(shape, kernel, stride, padding, groups):
    height, width, channels = shape
    top, left, bottom, right = padding
    return Window(height, width, channels, kernel[0], kernel[1], stride[0], stride[1],
                  top, left, bottom, right, groups)


@dataclass(frozen=True)
class Dense:
    """A dense layer ``y = x @ weight + bias`` (ReLU after it if ``relu``) on the whole input.

    Parameters
    ----------
    weight : array_like of float, shape (inputs, outputs)
    bias : array_like of float, shape (outputs,)
    relu : bool
    clip : float, optional
        The upper bound of the ReLU (needs ``relu``).
    """

    weight: np.ndarray
    bias: np.ndarray
    relu: bool = False
    clip: float = None
    learned = True

    def __post_init__(self):
        _set_weight_and_bias(self, "a matrix (inputs, outputs)")

    def gemm(self, shape):
        """``(window, matrix, bias)`` on an input map of ``shape``: no window (the whole input
        flattened), ``weight``, ``bias``."""
        if np.prod(shape) != self.weight.shape[0]:
            raise ValueError(f"weight has {self.weight.shape[0]} rows but the input "
                             f"{'x'.join(map(str, shape))} has {np.prod(shape)} values")
        return None, self.weight, self.bias


@dataclass(frozen=True)
class Conv2d:
    """A 2-D convolution (ReLU after it if ``relu``), PyTorch's ``Conv2d`` on NHWC maps.

    Parameters
    ----------
    weight : array_like of float, shape (kernel_height, kernel_width, channels // groups, outputs)
        PyTorch's ``(outputs, channels // groups, kh, kw)`` transposed by ``(2, 3, 1, 0)``.
    bias : array_like of float, shape (outputs,)
    stride : int or (int, int)
    padding : int, (height, width) or (top, left, bottom, right)
        Zeros around the map.
    groups : int
        Divides the input and the output channels; ``channels`` for a depthwise convolution.
    relu : bool
    clip : float, optional
        The upper bound of the ReLU (needs ``relu``).
    """

    weight: np.ndarray
    bias: np.ndarray
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    groups: int = 1
    relu: bool = False
    clip: float = None
    learned = True

    def __post_init__(self):
        weight = _set_weight_and_bias(self, "of shape (kernel_height, kernel_width, "
                                            "channels // groups, outputs)", 4)
        check_int("groups", self.groups, 1, MAX_MAP)
        if weight.shape[3] % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide the {weight.shape[3]} outputs")
        object.__setattr__(self, "stride", _pair("stride", self.stride))
        object.__setattr__(self, "padding", _padding(self.padding))

    def gemm(self, shape):
        """``(window, matrix, bias)`` on an input map of ``shape``: the convolution's window, its
        weights as a ``(patch, outputs)`` matrix in ``(ky, kx, c)`` row order, zero outside each
        output channel's group, and ``bias``."""
        kernel_height, kernel_width, group_channels, outputs = self.weight.shape
        if shape[2] != group_channels * self.groups:
            raise ValueError(f"weight reads {group_channels} channels per group x "
                             f"{self.groups} groups but the input map has {shape[2]}")
        window = _map_window(shape, (kernel_height, kernel_width), self.stride, self.padding,
                             self.groups)
        taps = kernel_height * kernel_width
        matrix = np.zeros((taps, shape[2], outputs))
        per_group = outputs // self.groups
        compact = self.weight.reshape(taps, group_channels, outputs)
        for group in range(self.groups):
            rows = slice(group * group_channels, (group + 1) * group_channels)
            cols = slice(group * per_group, (group + 1) * per_group)
            matrix[:, rows, cols] = compact[:, :, cols]
        return window, matrix.reshape(window.patch, outputs), self.bias


class _Pool:
    """The mean of each window of each channel: a depthwise GEMM with a fixed matrix."""

    learned = False
    relu = False
    clip = None

    def gemm(self, shape):
        """``(window, matrix, bias)`` on an input map of ``shape``: the pooling window (groups =
        channels), its group mask divided by the window's area, zeros."""
        window = self.window(shape)
        area = window.kernel_height * window.kernel_width
        matrix = window.group_mask(shape[2]) / area
        return window, matrix, np.zeros(shape[2])


@dataclass(frozen=True)
class AvgPool2d(_Pool):
    """Average pooling (padding counts as zeros).

    Parameters
    ----------
    kernel : int or (int, int)
    stride : int or (int, int), optional
        The kernel by default.
    padding : int, (height, width) or (top, left, bottom, right)
    """

    kernel: tuple
    stride: tuple = None
    padding: tuple = (0, 0, 0, 0)

    def __post_init__(self):
        object.__setattr__(self, "kernel", _pair("kernel", self.kernel))
        object.__setattr__(self, "stride", _pair("stride", self.kernel if self.stride is None
                                                 else self.stride))
        object.__setattr__(self, "padding", _padding(self.padding))

    def window(self, shape):
        return _map_window(shape, self.kernel, self.stride, self.padding, shape[2])


@dataclass(frozen=True)
class GlobalAvgPool(_Pool):
    """The mean of each channel over the whole map: output ``(1, 1, channels)``."""

    def window(self, shape):
        return _map_window(shape, shape[:2], (1, 1), (0, 0, 0, 0), shape[2])


@dataclass(frozen=True)
class MaxPool2d:
    """Max pooling: the largest value of each window of each channel (PyTorch's ``MaxPool2d``:
    padding reads minus infinity).

    Parameters
    ----------
    kernel : int or (int, int)
    stride : int or (int, int), optional
        The kernel by default.
    padding : int, (height, width) or (top, left, bottom, right)
    """

    kernel: tuple
    stride: tuple = None
    padding: tuple = (0, 0, 0, 0)
    learned = False
    relu = False
    clip = None
    __post_init__ = AvgPool2d.__post_init__
    window = AvgPool2d.window

    def gemm(self, shape):
        """``(window, None, None)``: the pooling window (groups = channels), no matrix."""
        return self.window(shape), None, None


_LAYER_KINDS = {Dense: "dense", Conv2d: "conv2d", AvgPool2d: "avg_pool2d",
                GlobalAvgPool: "global_avg_pool", MaxPool2d: "max_pool2d"}


def output_shape(window, matrix):
    """``(height, width, channels)`` of a layer's output: ``(1, 1, N)`` without a window, the
    window's channels without a matrix (max pooling)."""
    if window is None:
        return 1, 1, matrix.shape[1]
    channels = window.channels if matrix is None else matrix.shape[1]
    return window.output_height, window.output_width, channels


@dataclass(frozen=True)
class FloatModel:
    """A sequence of float layers on an input map.

    Parameters
    ----------
    layers : sequence of Dense, Conv2d, AvgPool2d, GlobalAvgPool, MaxPool2d
    input_shape : (int, int, int), optional
        ``(height, width, channels)`` of an input; by default ``(1, 1, inputs)`` of the first
        layer, which must then be :class:`Dense`.
    """

    layers: tuple
    input_shape: tuple = None

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("a model needs at least one layer")
        for index, layer in enumerate(layers):
            if type(layer) not in _LAYER_KINDS:
                raise ValueError(f"layers[{index}] must be a Dense, Conv2d, AvgPool2d, "
                                 f"GlobalAvgPool or MaxPool2d, not {type(layer).__name__}")
        shape = self.input_shape
        if shape is None:
            if not isinstance(layers[0], Dense):
                raise ValueError(f"input_shape (height, width, channels) is needed when the "
                                 f"first layer is a {type(layers[0]).__name__}")
            shape = (1, 1, layers[0].weight.shape[0])
        shape = tuple(shape)
        if len(shape) != 3:
            raise ValueError(f"input_shape must be (height, width, channels), not {shape}")
        for name, size in zip(("height", "width", "channels"), shape):
            check_int(f"input_shape {name}", size, 1, MAX_MAP)
        shapes, gemms = [shape], []
        for index, layer in enumerate(layers):
            try:
                gemm = layer.gemm(shapes[-1])
            except ValueError as error:
                raise ValueError(f"layers[{index}] ({type(layer).__name__}): {error}") from None
            gemms.append(gemm)
            shapes.append(output_shape(gemm[0], gemm[1]))
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "_shapes", tuple(shapes))
        object.__setattr__(self, "_gemms", tuple(gemms))

    @classmethod
    def mlp(cls, weights, biases):
        """Dense layers ``weights[l]`` (inputs, outputs) and ``biases[l]`` with ReLU between
        them (none after the last)."""
        if len(weights) == 0 or len(weights) != len(biases):
            raise ValueError(f"a model needs as many bias vectors as weight matrices (at least "
                             f"one), not {len(weights)} and {len(biases)}")
        count = len(weights)
        return cls(tuple(Dense(w, b, index < count - 1)
                         for index, (w, b) in enumerate(zip(weights, biases))))

    @property
    def inputs(self):
        """Length of an input vector: ``height * width * channels``."""
        return int(np.prod(self.input_shape))

    @property
    def shapes(self):
        """``(height, width, channels)`` of the input and of every layer's output."""
        return self._shapes

    def gemm(self, index):
        """``(window, matrix, bias)`` of layer ``index``: its output is ``patches @ matrix +
        bias`` (see the module docstring); ``(window, None, None)`` for max pooling."""
        return self._gemms[index]

    @property
    def learned(self):
        """Indices of the layers with learned weights (:class:`Dense`, :class:`Conv2d`)."""
        return tuple(index for index, layer in enumerate(self.layers) if layer.learned)

    def check_input(self, x):
        """Return ``x`` as a float64 matrix ``(n, inputs)``; raise :class:`ValueError` if not."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"x must have shape (n, {self.inputs}), not {x.shape}")
        return x

    def layer_inputs(self, x):
        """The input of every layer and the model's output: ``[x, layer 0's output, ...]``,
        each ``(n, height * width * channels)``."""
        values = [self.check_input(x)]
        for layer, (window, matrix, bias) in zip(self.layers, self._gemms):
            if matrix is None:
                taps = window.kernel_height * window.kernel_width
                y = patches(window, values[-1], -np.inf).reshape(-1, taps, window.channels)
                y = y.max(axis=1)
            else:
                y = patches(window, values[-1]) @ matrix + bias
            y = y.reshape(len(values[-1]), -1)
            if layer.relu:
                y = np.maximum(y, 0.0) if layer.clip is None else np.clip(y, 0.0, layer.clip)
            values.append(y)
        return values

    def forward(self, x):
        """The last layer's outputs (logits), shape ``(n, outputs)``."""
        return self.layer_inputs(x)[-1]

    def predict(self, x):
        """Predicted classes: the first largest logit of each row."""
        return np.argmax(self.forward(x), axis=1)

    def save(self, path):
        """Write the model to one ``.npz`` file (atomically, with a format version)."""
        entries, arrays = [], {}
        for index, layer in enumerate(self.layers):
            entry = {"kind": _LAYER_KINDS[type(layer)]}
            for item in dataclasses.fields(layer):
                value = getattr(layer, item.name)
                if isinstance(value, np.ndarray):
                    arrays[f"{item.name}{index}"] = value
                else:
                    entry[item.name] = list(value) if isinstance(value, tuple) else value
            entries.append(entry)
        save_arrays(path, _FORMAT, _VERSION, {"input_shape": list(self.input_shape),
                                              "layers": entries}, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (strictly: :func:`~systolix.sw.io.load_arrays`;
        every header field checked, weights and biases stored as floats, of matching shapes,
        finite)."""
        by_name = {name: kind for kind, name in _LAYER_KINDS.items()}

        def kinds(header):
            layer_count(path, header)
            result = []
            for index, entry in enumerate(header["layers"]):
                name = field(path, f"layers[{index}].", entry, "kind", str)
                if name not in by_name:
                    raise ValueError(f"{path}: header field layers[{index}].kind: must be one "
                                     f"of {', '.join(by_name)}, not {name!r}")
                result.append(by_name[name])
            return result

        def members(header):
            return {f"{item.name}{index}": ("float", 2 if kind is Dense and item.name == "weight"
                                            else 4 if item.name == "weight" else 1)
                    for index, kind in enumerate(kinds(header))
                    for item in dataclasses.fields(kind) if item.name in ("weight", "bias")}

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "input_shape", "layers"))
        shape = field(path, "", header, "input_shape", list)
        layers = []
        for index, (kind, entry) in enumerate(zip(kinds(header), header["layers"])):
            where = f"layers[{index}]."
            names = [item.name for item in dataclasses.fields(kind)]
            scalars = [name for name in names if name not in ("weight", "bias")]
            exact_keys(path, where, entry, ["kind"] + scalars)
            values = {name: arrays[f"{name}{index}"] for name in names if name not in scalars}
            for name in scalars:
                if name == "clip" and entry[name] is None:
                    values[name] = None
                    continue
                values[name] = field(path, where, entry, name, bool if name == "relu" else
                                     int if name == "groups" else float if name == "clip"
                                     else list, low=0 if name == "clip" else None)
            try:
                layers.append(kind(**values))
            except ValueError as error:
                raise ValueError(f"{path}: layer {index}: {error}") from None
        try:
            return cls(tuple(layers), tuple(shape))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def patches(window, x, pad=0.0):
    """The patches of ``window`` over float input maps ``x`` (n, inputs), shape ``(n *
    positions, patch)`` in the row order of :meth:`systolix.layer.Window.patches`, whose index
    arithmetic this reuses (padding reads ``pad``); ``x`` itself without a window."""
    if window is None:
        return x
    index = _patch_index(window)
    padded = np.concatenate([x, np.full((len(x), 1), pad)], axis=1)
    return padded[:, index].reshape(len(x) * window.positions, window.patch)


def unpatch(window, values, count):
    """The transpose of :func:`patches`: each entry of ``values`` (``count * positions``,
    patch) added into the input it reads (padding dropped), shape ``(count, inputs)``; the
    backward pass of im2col. ``values`` itself without a window."""
    if window is None:
        return values
    # Padding (index -1) reads the extra last input, dropped at the end.
    index = _patch_index(window).reshape(1, -1) % (window.inputs + 1)
    flat = np.arange(count)[:, None] * (window.inputs + 1) + index
    sums = np.bincount(flat.ravel(), values.ravel(), count * (window.inputs + 1))
    return sums.reshape(count, window.inputs + 1)[:, :-1]


@functools.lru_cache(maxsize=64)
def _patch_index(window):
    """Per patch entry, the input index it reads, -1 for padding."""
    return dataclasses.replace(window, pad_code=-1).patches(np.arange(window.inputs)[None])


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
    return FloatModel.mlp(weights, classifier.intercepts_), data


@functools.lru_cache(maxsize=1)
def digits_cnn():
    """The digits CNN: conv 3x3 (16 channels, padding 1, ReLU) -> conv 3x3 stride 2 (32
    channels, padding 1, ReLU) -> global average pool -> dense 10, on 8x8x1 maps of raw pixel
    values 0..16, trained on :func:`digits_split` by ``scripts/train_digits_cnn.py`` (with W4/A4
    quantization-aware fine-tuning) and shipped as float weights (:data:`DIGITS_CNN_FILE`).

    Returns
    -------
    model : FloatModel
    data : DigitsSplit
    """
    with resources.as_file(resources.files(__package__) / DIGITS_CNN_FILE) as path:
        return FloatModel.load(path), digits_split()


@dataclass(frozen=True)
class VisionTransformer:
    """A tiny vision transformer on single-channel square images: patches, pre-LayerNorm
    encoder blocks, mean pooling, a linear head.

    ``x`` (raw pixels, ``(n, side * side)``) is cut into ``(side / patch)^2`` tokens of
    ``patch * patch`` pixels (row-major, pixels ``(dy, dx)`` within a patch); then::

        h = tokens @ embed_weight + embed_bias + position
        for each block:
            y = LayerNorm(h) (norm1); q, k, v = y @ W + b (query, key, value)
            h = h + concat_heads(softmax(q k^T / sqrt(d_head)) v) @ out_weight + out_bias
            y = LayerNorm(h) (norm2)
            h = h + GELU(y @ fc1_weight + fc1_bias) @ fc2_weight + fc2_bias
        logits = mean_tokens(LayerNorm(h) (norm)) @ head_weight + head_bias

    LayerNorm with ``eps`` :data:`LAYERNORM_EPS`, the exact (erf) GELU. Head ``h`` of ``heads``
    reads channels ``h * d_head .. (h + 1) * d_head`` of ``q``, ``k``, ``v``.

    Parameters
    ----------
    params : dict of str to numpy.ndarray
        The arrays of :meth:`names` (float64; shapes checked).
    heads : int
    patch : int
        The side of a patch; divides ``side``.
    side : int
        The side of an image.
    """

    params: dict
    heads: int
    patch: int = 2
    side: int = 8

    LAYERNORM_EPS = 1e-5

    def __post_init__(self):
        check_int("heads", self.heads, 1, MAX_MAP)
        check_int("side", self.side, 1, MAX_MAP)
        check_int("patch", self.patch, 1, self.side)
        if self.side % self.patch:
            raise ValueError(f"patch must divide side ({self.side}), not {self.patch}")
        params = dict(self.params)
        if "embed_weight" not in params or np.ndim(params["embed_weight"]) != 2:
            raise ValueError("params must hold embed_weight, a matrix (patch pixels, width)")
        width = np.shape(params["embed_weight"])[1]
        if width % self.heads:
            raise ValueError(f"heads must divide the width ({width}), not {self.heads}")
        depth = sum(1 for name in params if name.endswith("_query_weight"))
        hidden = np.shape(params.get("block0_fc1_weight", np.zeros((0, 0))))[-1]
        classes = np.shape(params.get("head_weight", np.zeros((0, 0))))[-1]
        shapes = self.shapes(self.tokens, self.patch, width, depth, hidden, classes)
        if set(params) != set(shapes):
            missing = sorted(set(shapes) - set(params)) or sorted(set(params) - set(shapes))
            raise ValueError(f"params must hold exactly the arrays of {depth} blocks: "
                             f"{missing[0]} is {'missing' if missing[0] in shapes else 'unknown'}")
        for name, shape in shapes.items():
            array = _finite(name, frozen_array(params[name], np.float64))
            if array.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, not {array.shape}")
            params[name] = array
        object.__setattr__(self, "params", params)

    @staticmethod
    def shapes(tokens, patch, width, depth, hidden, classes):
        """The name and shape of every array of a model of these sizes."""
        shapes = {"embed_weight": (patch * patch, width), "embed_bias": (width,),
                  "position": (tokens, width)}
        for block in range(depth):
            prefix = f"block{block}_"
            for name in ("norm1", "norm2"):
                shapes.update({f"{prefix}{name}_weight": (width,), f"{prefix}{name}_bias": (width,)})
            for name in ("query", "key", "value", "out"):
                shapes.update({f"{prefix}{name}_weight": (width, width),
                               f"{prefix}{name}_bias": (width,)})
            shapes.update({f"{prefix}fc1_weight": (width, hidden), f"{prefix}fc1_bias": (hidden,),
                           f"{prefix}fc2_weight": (hidden, width), f"{prefix}fc2_bias": (width,)})
        shapes.update({"norm_weight": (width,), "norm_bias": (width,),
                       "head_weight": (width, classes), "head_bias": (classes,)})
        return shapes

    tokens = property(lambda self: (self.side // self.patch) ** 2)
    width = property(lambda self: self.params["embed_weight"].shape[1])
    depth = property(lambda self: sum(1 for name in self.params if name.endswith("_query_weight")))
    inputs = property(lambda self: self.side * self.side)

    def patches(self, x):
        """The tokens' pixels of images ``x`` (n, side * side): ``(n, tokens, patch^2)``."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"x must have shape (n, {self.inputs}), not {x.shape}")
        grid, p = self.side // self.patch, self.patch
        return x.reshape(len(x), grid, p, grid, p).transpose(0, 1, 3, 2, 4) \
            .reshape(len(x), grid * grid, p * p)

    def forward(self, x, matmul_input=lambda name, value: value, observe=None):
        """The logits of images ``x`` (n, side * side).

        ``matmul_input(name, value)`` sees (and may replace: a fake quantizer) every operand of
        a matrix product on activations before the product, by name: ``input`` (the patches),
        per block ``block{b}_``: ``norm1``, ``query``, ``key``, ``value``, ``attention``
        (the softmax), ``context``, ``norm2``, ``gelu``; then ``norm`` (the head's input,
        before pooling, which is a mean). ``observe(name, value)``, if given, sees (and may
        replace, returning another value) the other tensors: ``embed`` (the tokens after the embedding), per block ``scores`` (``q k^T /
        sqrt(d_head)``), ``out`` (the attention's output projection), ``residual1``, ``fc1``
        (before the GELU), ``fc2``, ``residual2``; then ``logits``.
        """
        def seen(name, value):
            return value if observe is None else observe(name, value)

        from systolix.sim.golden.nonlinear import float_gelu, float_layernorm, float_softmax

        p = self.params
        h = seen("embed", matmul_input("input", self.patches(x)) @ p["embed_weight"]
                 + p["embed_bias"] + p["position"])
        n, tokens, width = h.shape
        heads = self.heads
        split = (n, tokens, heads, width // heads)
        for block in range(self.depth):
            b = f"block{block}_"

            def norm(name, value):
                return matmul_input(b + name, float_layernorm(value, p[f"{b}{name}_weight"],
                                                               p[f"{b}{name}_bias"],
                                                               self.LAYERNORM_EPS))

            y = norm("norm1", h)
            q, k, v = (matmul_input(b + name, y @ p[f"{b}{name}_weight"] + p[f"{b}{name}_bias"])
                       .reshape(split) for name in ("query", "key", "value"))
            scores = seen(b + "scores", np.einsum("nihd,njhd->nhij", q, k) / np.sqrt(split[3]))
            attention = matmul_input(b + "attention", float_softmax(scores))
            context = np.einsum("nhij,njhd->nihd", attention, v).reshape(n, tokens, width)
            out = seen(b + "out", matmul_input(b + "context", context) @ p[f"{b}out_weight"]
                       + p[f"{b}out_bias"])
            h = seen(b + "residual1", h + out)
            y = norm("norm2", h)
            u = seen(b + "fc1", y @ p[f"{b}fc1_weight"] + p[f"{b}fc1_bias"])
            u = seen(b + "fc2", matmul_input(b + "gelu", float_gelu(u)) @ p[f"{b}fc2_weight"]
                     + p[f"{b}fc2_bias"])
            h = seen(b + "residual2", h + u)
        y = matmul_input("norm", float_layernorm(h, p["norm_weight"], p["norm_bias"],
                                                  self.LAYERNORM_EPS))
        return seen("logits", y.mean(axis=1) @ p["head_weight"] + p["head_bias"])

    def predict(self, x):
        """Predicted classes: the first largest logit of each row."""
        return np.argmax(self.forward(x), axis=1)

    def save(self, path):
        """Write the model to one ``.npz`` file (atomically, with a format version)."""
        save_arrays(path, _VIT_FORMAT, _VIT_VERSION,
                    {"heads": self.heads, "patch": self.patch, "side": self.side,
                     "arrays": sorted(self.params)},
                    dict(self.params))

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (strictly, like :meth:`FloatModel.load`)."""
        def members(header):
            names = header.get("arrays")
            if not isinstance(names, list) or not all(isinstance(name, str) for name in names) \
                    or len(names) > _VIT_MAX_ARRAYS:
                raise ValueError(f"{path}: header field arrays: must list the names of the "
                                 f"arrays, not {names!r}")
            return {name: ("float", 2 if name.endswith(("_weight", "position")) and not
                           name.endswith(("norm1_weight", "norm2_weight", "norm_weight"))
                           else 1) for name in names}

        header, arrays = load_arrays(path, _VIT_FORMAT, _VIT_VERSION, members)
        exact_keys(path, "", header, ("format", "version", "heads", "patch", "side", "arrays"))
        sizes = {name: field(path, "", header, name, int, 1, MAX_MAP)
                 for name in ("heads", "patch", "side")}
        try:
            return cls(arrays, **sizes)
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


_VIT_FORMAT = "systolix.VisionTransformer"
_VIT_VERSION = 1
_VIT_MAX_ARRAYS = 1024


@functools.lru_cache(maxsize=1)
def digits_vit():
    """The digits vision transformer: 16 patches of 2x2 pixels, width 32, 2 heads, 2 pre-LN
    encoder blocks (MLP 64 wide, GELU), mean pooling, a linear head, on raw pixel values
    0..16; trained on :func:`digits_split` by ``scripts/train_digits_vit.py`` and shipped as
    float weights (:data:`DIGITS_VIT_FILE`).

    Returns
    -------
    model : VisionTransformer
    data : DigitsSplit
    """
    with resources.as_file(resources.files(__package__) / DIGITS_VIT_FILE) as path:
        return VisionTransformer.load(path), digits_split()
