"""The integer layers: the units of work of the accelerator, the same to the compiler, the
importers, the memory map, the golden model and the gateware.

An :class:`IntegerLayer` is an integer GEMM on raw codes into a ``P``-bit accumulator followed
by a per-channel fixed-point requantization: a dense layer, or with a :class:`Window` a 2-D
convolution (its GEMM runs on the patches of the input map, im2col); average pooling is a
convolution of ones. A :class:`MaxPoolLayer` takes the largest code of each window, an
:class:`AddLayer` adds two tensors of codes each requantized to a common scale. The layers of
a transformer: a :class:`MatMulLayer` multiplies two tensors of codes (both activations: the
``Q K^T`` and ``softmax(.) V`` of attention), with their zero points folded out of the raw code
product; :class:`SoftmaxLayer`, :class:`LayerNormLayer` and :class:`GeluLayer` are the integer
nonlinearities of :mod:`systolix.sim.golden.nonlinear`.
:func:`systolix.sim.golden.run_layer` executes each bit-exactly, :func:`systolix.sw.pack.pack`
packs them into the memory map and :func:`systolix.memory_map.packed_layers` reads them back.

Tensors between layers are flat vectors of codes, one per input of a batch: a map of
``height x width x channels`` is stored channel-fastest (NHWC), ``((y * width) + x) * channels
+ c``; a dense layer reads its input as one flat vector, whatever its map shape.
"""

from dataclasses import dataclass

import numpy as np

from .config import OVERFLOW_MODES, check_bool, check_choice, check_int, code_range
from .numeric import BIAS_BITS, CODE_BITS, MAX_SHIFT, MULTIPLIER_BITS

__all__ = ["ROUNDING_MODES", "MAX_MAP", "frozen_array", "integer_array", "Window",
           "IntegerLayer", "MaxPoolLayer", "AddLayer", "MatMulLayer", "SoftmaxLayer",
           "LayerNormLayer", "GeluLayer", "GELU_CONSTANT_MAX", "GELU_CLIP_MAX",
           "LAYERNORM_BIAS_BITS", "EXP_BITS", "EXP_COEFFICIENTS", "RECIPROCAL_BITS", "NORM_BITS",
           "ROOT_BITS"]

ROUNDING_MODES = ("half_up", "half_even")
"""How a requantization rounds ``t / 2^shift``: halves toward +inf (one constant added before
the shift, the cheapest in hardware), or halves to the even neighbour (ONNX's QuantizeLinear and
QONNX's ``ROUND``)."""

MAX_MAP = 4096
"""The largest height, width or channel count of a map, and the largest kernel side."""


def frozen_array(array, dtype):
    """A read-only copy of ``array`` as ``dtype``, so that frozen records stay frozen."""
    array = np.array(array, dtype=dtype)
    array.flags.writeable = False
    return array


def integer_array(name, values):
    """A read-only int64 copy of ``values``, which must already be integers: an integer numpy
    array or (nested) Python ints, never floats or booleans to truncate, nor an unsigned value
    above the int64 range to wrap. Raises :class:`ValueError` naming ``name``."""
    array = np.asarray(values)
    if array.size == 0 and not isinstance(values, np.ndarray):
        array = array.astype(np.int64)      # [] is float64 to numpy; it holds no float
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integers, not {array.dtype} values")
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must lie in the int64 range, not up to {int(array.max())}")
    return frozen_array(array, np.int64)


def _check_range(name, values, low, high):
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{name} must lie in {low}..{high}, not {values.min()}..{values.max()}")


@dataclass(frozen=True)
class Window:
    """The sliding window of a convolution or a pooling layer over an input map.

    Output position ``(oy, ox)`` reads input positions ``(oy * stride_height - pad_top + ky,
    ox * stride_width - pad_left + kx)`` for ``ky < kernel_height``, ``kx < kernel_width``;
    positions outside the map read ``pad_code`` in every channel. A patch is the
    ``kernel_height * kernel_width * channels`` codes of one output position in ``(ky, kx, c)``
    order: the rows of a convolution's weight matrix (:meth:`patches`).

    Parameters
    ----------
    height, width, channels : int
        The input map, 1..:data:`MAX_MAP` each.
    kernel_height, kernel_width : int
        1..:data:`MAX_MAP`, at most the padded map.
    stride_height, stride_width : int
        1..:data:`MAX_MAP`.
    pad_top, pad_left, pad_bottom, pad_right : int
        0..kernel side - 1.
    groups : int
        Channel groups of a convolution: output channel ``n`` reads only the input channels of
        its group (the weight matrix is zero elsewhere). ``channels`` for a depthwise
        convolution and for pooling. Must divide ``channels``.
    pad_code : int
        The code read outside the map: the input zero point for a convolution (real zero), the
        smallest code for max pooling. Checked against the input codes by the layer.
    """

    height: int
    width: int
    channels: int
    kernel_height: int
    kernel_width: int
    stride_height: int = 1
    stride_width: int = 1
    pad_top: int = 0
    pad_left: int = 0
    pad_bottom: int = 0
    pad_right: int = 0
    groups: int = 1
    pad_code: int = 0

    def __post_init__(self):
        for name in ("height", "width", "channels", "kernel_height", "kernel_width",
                     "stride_height", "stride_width"):
            check_int(name, getattr(self, name), 1, MAX_MAP)
        for name, kernel in (("pad_top", "kernel_height"), ("pad_bottom", "kernel_height"),
                             ("pad_left", "kernel_width"), ("pad_right", "kernel_width")):
            check_int(name, getattr(self, name), 0, getattr(self, kernel) - 1)
        check_int("kernel_height", self.kernel_height, 1,
                  self.height + self.pad_top + self.pad_bottom)
        check_int("kernel_width", self.kernel_width, 1,
                  self.width + self.pad_left + self.pad_right)
        check_int("groups", self.groups, 1, self.channels)
        if self.channels % self.groups:
            raise ValueError(f"groups must divide channels ({self.channels}), not "
                             f"{self.groups}")
        check_int("pad_code", self.pad_code, -(1 << CODE_BITS), (1 << CODE_BITS) - 1)

    @property
    def output_height(self):
        return (self.height + self.pad_top + self.pad_bottom - self.kernel_height) \
            // self.stride_height + 1

    @property
    def output_width(self):
        return (self.width + self.pad_left + self.pad_right - self.kernel_width) \
            // self.stride_width + 1

    @property
    def positions(self):
        """Output positions of one input: ``output_height * output_width``."""
        return self.output_height * self.output_width

    @property
    def inputs(self):
        """Codes of one input map: ``height * width * channels``."""
        return self.height * self.width * self.channels

    @property
    def patch(self):
        """Codes of one patch: ``kernel_height * kernel_width * channels``."""
        return self.kernel_height * self.kernel_width * self.channels

    def patches(self, codes):
        """The patches of input maps (im2col).

        Parameters
        ----------
        codes : numpy.ndarray of int64, shape (n, inputs)
            Input maps, NHWC-flattened.

        Returns
        -------
        numpy.ndarray of int64, shape (n * positions, patch)
            Row ``i * positions + oy * output_width + ox``: the patch of output position
            ``(oy, ox)`` of input ``i``, in ``(ky, kx, c)`` order.
        """
        codes = np.asarray(codes, dtype=np.int64)
        maps = codes.reshape(-1, self.height, self.width, self.channels)
        padded = np.pad(maps, ((0, 0), (self.pad_top, self.pad_bottom),
                               (self.pad_left, self.pad_right), (0, 0)),
                        constant_values=self.pad_code)
        rows = self.stride_height * np.arange(self.output_height)
        cols = self.stride_width * np.arange(self.output_width)
        taps = [padded[:, rows[:, None] + ky, cols[None, :] + kx, :]
                for ky in range(self.kernel_height) for kx in range(self.kernel_width)]
        return np.stack(taps, axis=3).reshape(len(maps) * self.positions, self.patch)

    def group_mask(self, outputs):
        """Where the weight matrix of a convolution with ``outputs`` channels may be non-zero:
        a boolean ``(patch, outputs)`` matrix, true where the input channel is in the output
        channel's group."""
        if outputs % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide the output channels, not "
                             f"{outputs}")
        group_in = np.arange(self.channels) // (self.channels // self.groups)
        group_out = np.arange(outputs) // (outputs // self.groups)
        mask = group_in[:, None] == group_out[None, :]
        return np.tile(mask, (self.kernel_height * self.kernel_width, 1))


@dataclass(frozen=True)
class IntegerLayer:
    """One layer: ``out = requantize(accumulate(x, weights), bias, multiplier, shift, ...)``.

    Every array must be integers already (an integer numpy array or Python ints: nothing is
    truncated, wrapped or cast) of exactly its shape (nothing is broadcast); the flags must be
    ``True`` or ``False``.

    Parameters
    ----------
    weights : numpy.ndarray of int64, shape (K, N)
        Weight codes, ``y = x @ weights``: one row per input, one column per output channel.
    bias : numpy.ndarray of int64, shape (N,)
        Added to the accumulator before the multiplier; signed,
        :data:`~systolix.numeric.BIAS_BITS` bits. Holds the quantized bias and the input zero
        point term ``-z_x * sum_k weights[k, c]``.
    multiplier : numpy.ndarray of int64, shape (N,)
        ``M0``, unsigned, :data:`~systolix.numeric.MULTIPLIER_BITS` bits.
    shift : numpy.ndarray of int64, shape (N,)
        Right shift, ``0..``:data:`~systolix.numeric.MAX_SHIFT`; the real multiplier is
        ``M0 * 2^-shift``.
    output_zero_point : int
        Added after the shift.
    output_low, output_high : int
        Clamp range of the output codes (ReLU folded into ``output_low``).
    input_bits, weight_bits, output_bits : int
        Code widths, 1..8.
    input_signed, weight_signed, output_signed : bool
    accumulator_bits : int
        ``P``, 2..32.
    overflow : str
        ``"wrap"`` or ``"saturate"``.
    window : Window or None
        ``None`` for a dense layer (the input is one flat vector of ``K`` codes). A
        :class:`Window` for a convolution: ``weights`` then has one row per patch code
        (``K = window.patch``) and is zero outside each output channel's group; the input is a
        map of ``window.inputs`` codes, the output a map of ``window.positions * N`` codes
        (NHWC). ``window.pad_code`` must be an input code.
    rounding : str
        One of :data:`ROUNDING_MODES`.
    """

    weights: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    weight_bits: int
    weight_signed: bool
    output_bits: int
    output_signed: bool
    accumulator_bits: int
    overflow: str
    window: Window = None
    rounding: str = "half_up"

    def __post_init__(self):
        for name in ("input_bits", "weight_bits", "output_bits"):
            check_int(name, getattr(self, name), 1, CODE_BITS)
        for name in ("input_signed", "weight_signed", "output_signed"):
            check_bool(name, getattr(self, name))
        check_int("accumulator_bits", self.accumulator_bits, 2, 32)
        check_choice("overflow", self.overflow, OVERFLOW_MODES)
        weights = integer_array("weights", self.weights)
        if weights.ndim != 2 or 0 in weights.shape:
            raise ValueError(f"weights must be a matrix (K, N) of at least one row and column, "
                             f"not of shape {weights.shape}")
        channels = weights.shape[1]
        for name in ("bias", "multiplier", "shift"):
            array = integer_array(name, getattr(self, name))
            if array.shape != (channels,):
                raise ValueError(f"{name} must have shape ({channels},), one per output "
                                 f"channel of weights {weights.shape}, not {array.shape}")
            object.__setattr__(self, name, array)
        object.__setattr__(self, "weights", weights)
        _check_range("weights", weights, *code_range(self.weight_bits, self.weight_signed))
        _check_range("bias", self.bias, *code_range(BIAS_BITS, True))
        _check_range("multiplier", self.multiplier, 0, (1 << MULTIPLIER_BITS) - 1)
        _check_range("shift", self.shift, 0, MAX_SHIFT)
        low, high = code_range(self.output_bits, self.output_signed)
        check_int("output_zero_point", self.output_zero_point, low, high)
        check_int("output_low", self.output_low, low, high)
        check_int("output_high", self.output_high, self.output_low, high)
        check_choice("rounding", self.rounding, ROUNDING_MODES)
        window = self.window
        if window is not None:
            if not isinstance(window, Window):
                raise ValueError(f"window must be a Window or None, not "
                                 f"{type(window).__name__}")
            if weights.shape[0] != window.patch:
                raise ValueError(f"weights must have {window.patch} rows, one per code of a "
                                 f"{window.kernel_height}x{window.kernel_width}x"
                                 f"{window.channels} patch, not {weights.shape[0]}")
            if np.any(weights[~window.group_mask(channels)]):
                raise ValueError(f"weights must be zero outside each output channel's group "
                                 f"({window.groups} groups)")
            check_int("window.pad_code", window.pad_code,
                      *code_range(self.input_bits, self.input_signed))

    @property
    def inputs(self):
        """Codes of one input vector: ``K``, or the input map of a convolution."""
        return self.weights.shape[0] if self.window is None else self.window.inputs

    @property
    def outputs(self):
        """Codes of one output vector: ``N``, or the output map of a convolution."""
        channels = self.weights.shape[1]
        return channels if self.window is None else channels * self.window.positions

    @property
    def output_shape(self):
        """``(height, width, channels)`` of the output map; ``(1, 1, N)`` for a dense layer."""
        if self.window is None:
            return 1, 1, self.weights.shape[1]
        return self.window.output_height, self.window.output_width, self.weights.shape[1]


def _check_codes(where, bits, signed_codes):
    check_int(f"{where}bits", bits, 1, CODE_BITS)
    check_bool(f"{where}signed", signed_codes)


@dataclass(frozen=True)
class MaxPoolLayer:
    """The largest code of each window of each channel of a map (no arithmetic: the codes keep
    their scale and zero point).

    Parameters
    ----------
    window : Window
        ``groups`` equal to ``channels``; ``pad_code`` the smallest code (never larger than a
        code of the map, so padding never wins).
    bits : int
        Code width of the input and the output, 1..8.
    signed : bool
    """

    window: Window
    bits: int
    signed: bool

    def __post_init__(self):
        _check_codes("", self.bits, self.signed)
        if not isinstance(self.window, Window):
            raise ValueError(f"window must be a Window, not {type(self.window).__name__}")
        low, _ = code_range(self.bits, self.signed)
        if self.window.groups != self.window.channels or self.window.pad_code != low:
            raise ValueError(f"a max pooling window must have groups = channels "
                             f"({self.window.channels}) and pad_code = {low}, not "
                             f"{self.window.groups} and {self.window.pad_code}")

    input_bits = property(lambda self: self.bits)
    input_signed = property(lambda self: self.signed)
    output_bits = property(lambda self: self.bits)
    output_signed = property(lambda self: self.signed)
    inputs = property(lambda self: self.window.inputs)
    outputs = property(lambda self: self.window.positions * self.window.channels)

    @property
    def output_shape(self):
        window = self.window
        return window.output_height, window.output_width, window.channels


@dataclass(frozen=True)
class AddLayer:
    """The sum of two tensors of codes, each requantized to the output's scale.

    ``t = (a - zero_points[0]) * multipliers[0] + (b - zero_points[1]) * multipliers[1]``,
    ``out = clamp(round(t / 2^shift) + output_zero_point, output_low, output_high)`` with the
    layer's :data:`ROUNDING_MODES`: real ``a * s_a + b * s_b`` at the output scale ``s_y`` when
    ``multipliers[i] / 2^shift = s_i / s_y``.

    Parameters
    ----------
    shape : tuple of int
        ``(height, width, channels)`` of both inputs and of the output.
    zero_points : tuple of int
        The zero point of each input, among its codes.
    multipliers : tuple of int
        Unsigned, :data:`~systolix.numeric.MULTIPLIER_BITS` bits each.
    shift : int
        0..:data:`~systolix.numeric.MAX_SHIFT`.
    output_zero_point, output_low, output_high : int
    input_bits, output_bits : int
        Code widths, 1..8 (both inputs have the same codes).
    input_signed, output_signed : bool
    rounding : str
    """

    shape: tuple
    zero_points: tuple
    multipliers: tuple
    shift: int
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    output_bits: int
    output_signed: bool
    rounding: str = "half_up"

    def __post_init__(self):
        _check_codes("input_", self.input_bits, self.input_signed)
        _check_codes("output_", self.output_bits, self.output_signed)
        for name in ("shape", "zero_points", "multipliers"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"{name} must be a tuple, not {type(value).__name__}")
            object.__setattr__(self, name, tuple(value))
        if len(self.shape) != 3:
            raise ValueError(f"shape must be (height, width, channels), not {self.shape}")
        for name, size in zip(("height", "width", "channels"), self.shape):
            check_int(f"shape {name}", size, 1, MAX_MAP)
        if len(self.zero_points) != 2 or len(self.multipliers) != 2:
            raise ValueError("an add layer needs two zero points and two multipliers, one "
                             "per input")
        for index in range(2):
            check_int(f"zero_points[{index}]", self.zero_points[index],
                      *code_range(self.input_bits, self.input_signed))
            check_int(f"multipliers[{index}]", self.multipliers[index], 0,
                      (1 << MULTIPLIER_BITS) - 1)
        check_int("shift", self.shift, 0, MAX_SHIFT)
        low, high = code_range(self.output_bits, self.output_signed)
        check_int("output_zero_point", self.output_zero_point, low, high)
        check_int("output_low", self.output_low, low, high)
        check_int("output_high", self.output_high, self.output_low, high)
        check_choice("rounding", self.rounding, ROUNDING_MODES)

    inputs = property(lambda self: self.shape[0] * self.shape[1] * self.shape[2])
    outputs = inputs
    output_shape = property(lambda self: self.shape)


def _check_shape(shape):
    if not isinstance(shape, (tuple, list)):
        raise ValueError(f"shape must be a tuple, not {type(shape).__name__}")
    shape = tuple(shape)
    if len(shape) != 3:
        raise ValueError(f"shape must be (height, width, channels), not {shape}")
    for name, size in zip(("height", "width", "channels"), shape):
        check_int(f"shape {name}", size, 1, MAX_MAP)
    return shape


def _check_output(layer):
    """The output codes, zero point and clamp range, the rounding and the input codes of a
    layer with these fields; its ``shape`` if it has one."""
    _check_codes("input_", layer.input_bits, layer.input_signed)
    _check_codes("output_", layer.output_bits, layer.output_signed)
    low, high = code_range(layer.output_bits, layer.output_signed)
    check_int("output_zero_point", layer.output_zero_point, low, high)
    check_int("output_low", layer.output_low, low, high)
    check_int("output_high", layer.output_high, layer.output_low, high)
    check_choice("rounding", layer.rounding, ROUNDING_MODES)
    if hasattr(layer, "shape"):
        object.__setattr__(layer, "shape", _check_shape(layer.shape))


class _Elementwise:
    """A layer whose output map has its input's shape ``(height, width, channels)``."""

    inputs = property(lambda self: self.shape[0] * self.shape[1] * self.shape[2])
    outputs = inputs
    output_shape = property(lambda self: self.shape)


@dataclass(frozen=True)
class MatMulLayer:
    """The product of two tensors of codes, both computed by earlier layers, in ``groups``
    independent products (the heads of attention), requantized.

    Operand ``a`` is a ``(rows, groups, inner)`` tensor, operand ``b`` an ``(inner, groups,
    cols)`` one, stored ``(cols, groups, inner)`` if ``transpose`` (``K`` for ``Q K^T``: both
    operands in the layout of a sequence of tokens); the output is ``(rows, groups, cols)``,
    all three C order (a map of height ``rows``, width ``groups``, ``cols`` channels)::

        acc[i, g, n] = sum_k a[i, g, k] * b[g, k, n]                   raw codes, P bits
        t = acc - zb * sum_k a[i, g, k] - za * sum_k b[g, k, n] + inner * za * zb + bias
        out = clamp(round_shift(t * multiplier, shift) + output_zero_point, low, high)

    that is ``sum_k (a - za)(b - zb)`` by operand reordering: the array computes only the raw
    code product ``acc`` (wrapping or saturating to ``accumulator_bits`` like an
    :class:`IntegerLayer`), the row sums of ``a`` and the column sums of ``b`` are exact
    integers, and the scales ``s_a s_b / s_out = multiplier * 2^-shift`` are applied once after.
    The engine runs it as ``sum (a - za)(b - zb) + bias`` (``b - zb`` on the array's weight path,
    the ``za`` terms from the array too: docs/engine.md), which is the same only where ``acc``
    cannot wrap or saturate: the packer refuses a layer whose sums could overflow.

    Parameters
    ----------
    rows, groups, inner, cols : int
        1..:data:`MAX_MAP` each.
    transpose : bool
        ``b`` stored ``(cols, groups, inner)``.
    zero_points : tuple of int
        ``(za, zb)``, among the input codes.
    bias : int
        Signed, :data:`~systolix.numeric.BIAS_BITS` bits.
    multiplier, shift : int
        As an :class:`IntegerLayer`'s (one for the whole tensor).
    output_zero_point, output_low, output_high : int
    input_bits, output_bits : int
        Code widths, 1..8 (both operands have the same codes).
    input_signed, output_signed : bool
    accumulator_bits : int
        ``P``, 2..32, of the raw code product.
    overflow, rounding : str
    """

    rows: int
    groups: int
    inner: int
    cols: int
    transpose: bool
    zero_points: tuple
    bias: int
    multiplier: int
    shift: int
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    output_bits: int
    output_signed: bool
    accumulator_bits: int
    overflow: str
    rounding: str = "half_up"

    def __post_init__(self):
        for name in ("rows", "groups", "inner", "cols"):
            check_int(name, getattr(self, name), 1, MAX_MAP)
        check_bool("transpose", self.transpose)
        _check_output(self)
        if not isinstance(self.zero_points, (tuple, list)) or len(self.zero_points) != 2:
            raise ValueError(f"zero_points must be a tuple (za, zb), one per operand, not "
                             f"{self.zero_points!r}")
        object.__setattr__(self, "zero_points", tuple(self.zero_points))
        for index in range(2):
            check_int(f"zero_points[{index}]", self.zero_points[index],
                      *code_range(self.input_bits, self.input_signed))
        check_int("bias", self.bias, *code_range(BIAS_BITS, True))
        check_int("multiplier", self.multiplier, 0, (1 << MULTIPLIER_BITS) - 1)
        check_int("shift", self.shift, 0, MAX_SHIFT)
        check_int("accumulator_bits", self.accumulator_bits, 2, 32)
        check_choice("overflow", self.overflow, OVERFLOW_MODES)

    @property
    def operand_inputs(self):
        """Codes of one vector of each operand: ``(rows * groups * inner, inner * groups *
        cols)``."""
        return self.rows * self.groups * self.inner, self.inner * self.groups * self.cols

    inputs = property(lambda self: self.operand_inputs[0])
    outputs = property(lambda self: self.rows * self.groups * self.cols)
    output_shape = property(lambda self: (self.rows, self.groups, self.cols))


@dataclass(frozen=True)
class SoftmaxLayer(_Elementwise):
    """The integer softmax over the channels of each position of a map
    (:func:`systolix.sim.golden.nonlinear.integer_softmax`).

    Parameters
    ----------
    shape : tuple of int
        ``(height, width, channels)``.
    fraction_bits : int
        ``F``, 0..8: an input code step is ``2^-F`` in ``log2`` units.
    multiplier, shift : int
        The requantization of a probability times ``2^30`` (unsigned
        :data:`~systolix.numeric.MULTIPLIER_BITS` bits; ``0..MAX_SHIFT``).
    output_zero_point, output_low, output_high : int
    input_bits, output_bits : int
    input_signed, output_signed : bool
    rounding : str
    """

    shape: tuple
    fraction_bits: int
    multiplier: int
    shift: int
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    output_bits: int
    output_signed: bool
    rounding: str = "half_up"

    def __post_init__(self):
        _check_output(self)
        check_int("fraction_bits", self.fraction_bits, 0, CODE_BITS)
        check_int("multiplier", self.multiplier, 0, (1 << MULTIPLIER_BITS) - 1)
        check_int("shift", self.shift, 0, MAX_SHIFT)


@dataclass(frozen=True)
class LayerNormLayer(_Elementwise):
    """The integer LayerNorm over the channels of each position of a map, with its
    per-channel affine map (:func:`systolix.sim.golden.nonlinear.integer_layernorm`).

    Parameters
    ----------
    shape : tuple of int
        ``(height, width, channels)``.
    multiplier : numpy.ndarray of int64, shape (channels,)
        Signed, ``|M| < 2^16``.
    bias : numpy.ndarray of int64, shape (channels,)
        Signed, :data:`LAYERNORM_BIAS_BITS` bits.
    shift : int
        0..:data:`~systolix.numeric.MAX_SHIFT`.
    output_zero_point, output_low, output_high : int
    input_bits, output_bits : int
    input_signed, output_signed : bool
    rounding : str
    """

    shape: tuple
    multiplier: np.ndarray
    bias: np.ndarray
    shift: int
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    output_bits: int
    output_signed: bool
    rounding: str = "half_up"

    def __post_init__(self):
        _check_output(self)
        channels = self.shape[2]
        for name, bits in (("multiplier", MULTIPLIER_BITS + 1), ("bias", LAYERNORM_BIAS_BITS)):
            array = integer_array(name, getattr(self, name))
            if array.shape != (channels,):
                raise ValueError(f"{name} must have shape ({channels},), one per channel, not "
                                 f"{array.shape}")
            _check_range(name, array, *code_range(bits, True))
            object.__setattr__(self, name, array)
        check_int("shift", self.shift, 0, MAX_SHIFT)


@dataclass(frozen=True)
class GeluLayer(_Elementwise):
    """The integer GELU of each code of a map
    (:func:`systolix.sim.golden.nonlinear.integer_gelu`).

    Parameters
    ----------
    shape : tuple of int
        ``(height, width, channels)``.
    input_zero_point : int
        Among the input codes.
    clip : int
        ``round(1.769 sqrt 2 / s)``, 1..:data:`GELU_CLIP_MAX`.
    constant : int
        ``round(2 / (0.2888 s^2))``, 1..:data:`GELU_CONSTANT_MAX`.
    multiplier, shift : int
        The requantization of the product (unsigned
        :data:`~systolix.numeric.MULTIPLIER_BITS` bits; ``0..MAX_SHIFT``).
    output_zero_point, output_low, output_high : int
    input_bits, output_bits : int
    input_signed, output_signed : bool
    rounding : str
    """

    shape: tuple
    input_zero_point: int
    clip: int
    constant: int
    multiplier: int
    shift: int
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    output_bits: int
    output_signed: bool
    rounding: str = "half_up"

    def __post_init__(self):
        _check_output(self)
        check_int("input_zero_point", self.input_zero_point,
                  *code_range(self.input_bits, self.input_signed))
        check_int("clip", self.clip, 1, GELU_CLIP_MAX)
        check_int("constant", self.constant, 1, GELU_CONSTANT_MAX)
        check_int("multiplier", self.multiplier, 0, (1 << MULTIPLIER_BITS) - 1)
        check_int("shift", self.shift, 0, MAX_SHIFT)


GELU_CONSTANT_MAX = 1 << 22
GELU_CLIP_MAX = 1 << 11
"""The largest ``constant`` and ``clip`` of a :class:`GeluLayer`: its product ``P`` (``|x| <
2^8``, ``t^2 <= 2^22``) then fits 32 bits signed, a requantizer's accumulator."""

LAYERNORM_BIAS_BITS = 48
"""Bits of the bias of a :class:`LayerNormLayer` (signed): it is added to ``d * factor * M``,
the normalised value times ``2^30`` times the multiplier."""

# The fixed-point formats of the integer nonlinearities (systolix.sim.golden.nonlinear), shared
# by the golden model and the gateware units.

EXP_BITS = 15
"""Fraction bits of :func:`~systolix.sim.golden.nonlinear.integer_exp2`: ``2^0`` is ``2^15``."""

EXP_COEFFICIENTS = (1 << EXP_BITS, 22141, 5841)
"""``C0, C1, C2``: ``2^-u ~ 1 - 0.67568 u + 0.17825 u^2`` on ``0 <= u < 1`` (least squares
with ``P(0) = 1``; at most 0.26 % off), times ``2^15``."""

RECIPROCAL_BITS = 30
"""``reciprocal = floor(2^30 / sum(e))``: ``e * reciprocal`` is a probability times ``2^30``."""

NORM_BITS = 30
"""``d * factor`` is the normalised value times ``2^30``."""

ROOT_BITS = 8
"""Fraction bits of the integer square root of LayerNorm."""
