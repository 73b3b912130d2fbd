"""Post-training quantization of a :class:`~systolix.sw.models.FloatModel` into a :class:`QuantizedModel`.

Every layer of a float model is a GEMM on the windows of its input map
(:meth:`~systolix.sw.models.FloatModel.gemm`): a dense layer on the whole input, a convolution
on its patches (``K = kernel_height * kernel_width * channels``, its weight matrix zero outside
each output channel's group), a pooling layer with a fixed matrix. Per layer ``l``: the input
activation is quantized per tensor (scale ``s_x``, zero point
``z_x``, ``a_l`` bits; ranges from one float calibration pass), the weights symmetrically per
output channel (scale ``s_w[c]``, codes ``q_w``, ``w_l`` bits, constrained by A2Q or A2Q+ for the
accumulator width ``P`` when asked), the bias to an integer in units of ``s_x s_w[c]`` (as
TFLite does with 32-bit biases). The real output of the layer is

    ``y[c] = s_x s_w[c] * (sum_k (q_x[k] - z_x) q_w[k, c] + q_b[c])``

followed by ReLU where the float layer has it (its ``clip`` folded into the highest code of the
output quantizer), and quantized to the next layer's input codes
(the last layer to ``output_bits``-bit signed codes). A convolution computes this at each
output position, on the patch of its window (padding reads the input zero point: real zero).

Widths are chosen per learned layer (dense and convolution): ``weight_bits[l]`` for its weights,
``activation_bits[l]`` for its input codes. A pooling layer has the codes of the next learned
layer's input on both sides (each with its own calibrated scale), or ``output_bits`` after the
last learned layer. Its matrix is fixed: weight codes 1 inside each channel's window (2-bit
signed codes) and the weight scale ``1 / area``, nudged like every scale below; its sums are
never constrained, so with ``method`` ``"a2q"`` or ``"a2q+"`` the quantizer refuses an
accumulator too narrow for them. Max pooling (:class:`QuantizedMaxPool`) keeps the codes and the
quantizer of its input: quantizing is monotone, so the maximum of the codes is the code of the
maximum. :meth:`QuantizedModel.reference` evaluates
exactly this in floating point, with no accumulator limit: the reference the integer program
(:mod:`systolix.sw.lower`) is checked against.

The weight scales are nudged (by a relative ``2^-16`` at most) so that every requantization
multiplier ``s_x s_w[c] / s_y`` is exactly the fixed-point number ``M0 2^-shift`` the hardware
multiplies by (:func:`~systolix.sw.quant.fixed_point_multiplier`): the reference and the integer
program then compute the same function, not two functions a rounding apart.
"""

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np

from systolix.config import OVERFLOW_MODES, check_choice, check_int, code_range
from systolix.layer import Window, frozen_array
from systolix.numeric import MAX_SHIFT, MULTIPLIER_BITS

from .a2q import METHODS, accumulator_aware_quantize, min_accumulator_bits
from .axe import axe_quantize
from .io import exact_keys, field, layer_count, load_arrays, save_arrays
from .models import FloatModel, patches
from .program import QUANTIZER_FIELDS, check_quantizer
from .quant import CLIPPINGS, ROUNDINGS, QuantParams, activation_params, \
    fixed_point_multiplier, round_values, symmetric_params

__all__ = ["WEIGHT_ROUNDINGS", "QuantizedLayer", "QuantizedMaxPool", "QuantizedModel",
           "quantize", "fold_clip", "layer_from_codes", "per_layer"]

WEIGHT_ROUNDINGS = ROUNDINGS + ("axe",)
"""How :func:`quantize` rounds weights: to nearest, toward zero, or with error feedback from
the calibration data (:func:`~systolix.sw.axe.axe_quantize`)."""

_FORMAT = "systolix.QuantizedModel"
_VERSION = 2
_WINDOW_FIELDS = tuple(item.name for item in dataclasses.fields(Window))


@dataclass(frozen=True)
class QuantizedLayer:
    """One quantized layer: dense, or with a window a convolution or a pooling layer.

    Parameters
    ----------
    weight_codes : numpy.ndarray of int64, shape (K, N)
        Symmetric signed codes, ``|q| <= 2^(weight_bits-1) - 1``.
    weight_scale : numpy.ndarray of float64, shape (N,)
        Per output channel.
    weight_bits : int
        2..8.
    bias_codes : numpy.ndarray of int64, shape (N,)
        The bias in units of ``input.scale * weight_scale``.
    input, output : QuantParams
        Per-tensor quantizers of the layer's input and output activations.
    relu : bool
        ReLU before the output quantization.
    window : Window or None
        ``None`` for a dense layer. A convolution's or a pooling layer's window: ``K =
        window.patch``, the codes zero outside each output channel's group, ``pad_code`` the
        input zero point.
    """

    weight_codes: np.ndarray
    weight_scale: np.ndarray
    weight_bits: int
    bias_codes: np.ndarray
    input: QuantParams
    output: QuantParams
    relu: bool
    window: Window = None

    def __post_init__(self):
        check_int("weight_bits", self.weight_bits, 2, 8)
        codes = frozen_array(self.weight_codes, np.int64)
        scale = frozen_array(self.weight_scale, np.float64)
        bias = frozen_array(self.bias_codes, np.int64)
        if codes.ndim != 2 or scale.shape != (codes.shape[1],) or bias.shape != scale.shape:
            raise ValueError(f"weight codes (K, N), weight scales (N,) and bias codes (N,) must "
                             f"agree, not {codes.shape}, {scale.shape} and {bias.shape}")
        high = (1 << (self.weight_bits - 1)) - 1
        if codes.size and np.abs(codes).max() > high:
            raise ValueError(f"weight codes must lie in {-high}..{high} for {self.weight_bits} "
                             f"bits, not {codes.min()}..{codes.max()}")
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(f"weight scales must be finite numbers above 0, not "
                             f"{float(scale[~(np.isfinite(scale) & (scale > 0))][0])!r}")
        window = self.window
        if window is not None:
            if not isinstance(window, Window):
                raise ValueError(f"window must be a Window or None, not {type(window).__name__}")
            if codes.shape[0] != window.patch:
                raise ValueError(f"weight codes must have {window.patch} rows, one per code of "
                                 f"a patch of the window, not {codes.shape[0]}")
            if np.any(codes[~window.group_mask(codes.shape[1])]):
                raise ValueError(f"weight codes must be zero outside each output channel's "
                                 f"group ({window.groups} groups)")
            if window.pad_code != self.input.zero_point:
                raise ValueError(f"the window's pad_code must be the input zero point "
                                 f"{self.input.zero_point}, not {window.pad_code}")
        object.__setattr__(self, "weight_codes", codes)
        object.__setattr__(self, "weight_scale", scale)
        object.__setattr__(self, "bias_codes", bias)

    @property
    def inputs(self):
        """Codes of one input: ``K``, or the input map of a window."""
        return self.weight_codes.shape[0] if self.window is None else self.window.inputs

    @property
    def outputs(self):
        """Codes of one output: ``N``, or ``N`` per output position of a window."""
        channels = self.weight_codes.shape[1]
        return channels if self.window is None else channels * self.window.positions

    def reference(self, codes):
        """The output codes of the layer for input ``codes`` (n, inputs), computed in float64
        (no P limit), shape ``(n, outputs)``."""
        codes = np.asarray(codes, dtype=np.int64)
        count = len(codes)
        if self.window is not None:
            codes = self.window.patches(codes)
        centred = (codes - self.input.zero_point) @ self.weight_codes + self.bias_codes
        real = self.input.scale * self.weight_scale * centred
        out = self.output.quantize(np.maximum(real, 0.0) if self.relu else real)
        return out.reshape(count, self.outputs)


@dataclass(frozen=True)
class QuantizedMaxPool:
    """Max pooling on codes: the largest code of each window of each channel. Quantizing is
    monotone, so it commutes with the maximum: the output codes keep the input's quantizer.

    Parameters
    ----------
    window : Window
        Groups = channels, ``pad_code`` the smallest code of ``quantizer``'s width (never the
        largest of a window).
    quantizer : QuantParams
        Of the input and the output.
    """

    window: Window
    quantizer: QuantParams
    relu = False

    def __post_init__(self):
        if not isinstance(self.window, Window):
            raise ValueError(f"window must be a Window, not {type(self.window).__name__}")
        low, _ = code_range(self.quantizer.bits, self.quantizer.signed)
        if self.window.groups != self.window.channels or self.window.pad_code != low:
            raise ValueError(f"a max pooling window must have groups = channels "
                             f"({self.window.channels}) and pad_code = {low}, not "
                             f"{self.window.groups} and {self.window.pad_code}")

    input = property(lambda self: self.quantizer)
    output = property(lambda self: self.quantizer)
    inputs = property(lambda self: self.window.inputs)
    outputs = property(lambda self: self.window.positions * self.window.channels)

    def reference(self, codes):
        """The output codes for input ``codes`` (n, inputs), shape ``(n, outputs)``."""
        codes = np.asarray(codes, dtype=np.int64)
        taps = self.window.kernel_height * self.window.kernel_width
        patches = self.window.patches(codes).reshape(-1, taps, self.window.channels)
        return patches.max(axis=1).reshape(len(codes), self.outputs)


@dataclass(frozen=True)
class QuantizedModel:
    """A quantized model: its chain of layers and the accumulator they were quantized for.

    Parameters
    ----------
    layers : tuple of QuantizedLayer and QuantizedMaxPool
        Each layer's ``output`` quantizer is the next layer's ``input`` quantizer.
    method : str
        ``"none"``, ``"a2q"`` or ``"a2q+"``: the weight constraint used.
    accumulator_bits : int
        ``P``, 2..32, of the hardware accumulator this model targets.
    overflow : str
        ``"wrap"`` or ``"saturate"``.
    """

    layers: tuple
    method: str
    accumulator_bits: int
    overflow: str

    def __post_init__(self):
        check_choice("method", self.method, METHODS)
        check_int("accumulator_bits", self.accumulator_bits, 2, 32)
        check_choice("overflow", self.overflow, OVERFLOW_MODES)
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("a quantized model needs at least one layer")
        for index, (layer, following) in enumerate(zip(self.layers, self.layers[1:])):
            if layer.outputs != following.inputs:
                raise ValueError(f"layer {index + 1} has {following.inputs} inputs but layer "
                                 f"{index} has {layer.outputs} outputs")
            if layer.output != following.input:
                raise ValueError(f"the output quantizer of layer {index} must be the input "
                                 f"quantizer of layer {index + 1}")

    def encode_input(self, x):
        """Input codes of the first layer for real inputs ``x`` of shape ``(n, K)``."""
        return self.layers[0].input.quantize(x)

    def decode_output(self, codes):
        """Real values of output codes."""
        return self.layers[-1].output.dequantize(codes)

    def reference(self, x):
        """Output codes for real inputs ``x``, from the float64 reference of every layer."""
        codes = self.encode_input(x)
        for layer in self.layers:
            codes = layer.reference(codes)
        return codes

    def predict(self, x):
        """Predicted classes: the first largest output code of each row."""
        return np.argmax(self.reference(x), axis=1)

    def save(self, path):
        """Write the model to one ``.npz`` file (atomically, with a format version)."""
        header = {"method": self.method, "accumulator_bits": self.accumulator_bits,
                  "overflow": self.overflow, "layers": []}
        arrays = {}
        for index, layer in enumerate(self.layers):
            if isinstance(layer, QuantizedMaxPool):
                header["layers"].append({"kind": "max_pool", "quantizer": asdict(layer.input),
                                         "window": asdict(layer.window)})
                continue
            header["layers"].append({
                "kind": "gemm", "weight_bits": layer.weight_bits, "relu": layer.relu,
                "input": asdict(layer.input), "output": asdict(layer.output),
                "window": None if layer.window is None else asdict(layer.window)})
            arrays[f"weight_codes{index}"] = layer.weight_codes
            arrays[f"weight_scale{index}"] = layer.weight_scale
            arrays[f"bias_codes{index}"] = layer.bias_codes
        save_arrays(path, _FORMAT, _VERSION, header, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (strictly: :func:`~systolix.sw.io.load_arrays`;
        codes stored as integers, scales as finite positive floats, every header field
        checked)."""
        def kinds(header):
            layer_count(path, header)
            result = []
            for index, entry in enumerate(header["layers"]):
                kind = field(path, f"layers[{index}].", entry, "kind", str)
                if kind not in ("gemm", "max_pool"):
                    raise ValueError(f"{path}: header field layers[{index}].kind: must be gemm "
                                     f"or max_pool, not {kind!r}")
                result.append(kind)
            return result

        def members(header):
            return {f"{name}{index}": (kind, ndim)
                    for index, layer in enumerate(kinds(header)) if layer == "gemm"
                    for name, kind, ndim in (("weight_codes", "int", 2),
                                             ("weight_scale", "float", 1),
                                             ("bias_codes", "int", 1))}

        def quantizer(where, entry, name):
            exact_keys(path, f"{where}{name}.", entry[name], QUANTIZER_FIELDS)
            for part, kind in (("bits", int), ("signed", bool), ("zero_point", int),
                               ("low", int), ("high", int)):
                field(path, f"{where}{name}.", entry[name], part, kind)
            field(path, f"{where}{name}.", entry[name], "scale", float, low=0)
            params = QuantParams(**entry[name])
            check_quantizer(name, params)
            return params

        def window_of(where, entry):
            if entry["window"] is None:
                return None
            window = field(path, where, entry, "window", dict)
            exact_keys(path, f"{where}window.", window, _WINDOW_FIELDS)
            for name in _WINDOW_FIELDS:
                field(path, f"{where}window.", window, name, int)
            return Window(**window)

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "method", "accumulator_bits",
                                      "overflow", "layers"))
        field(path, "", header, "method", str)
        field(path, "", header, "accumulator_bits", int)
        field(path, "", header, "overflow", str)
        layers = []
        for i, (kind, entry) in enumerate(zip(kinds(header), header["layers"])):
            where = f"layers[{i}]."
            try:
                if kind == "max_pool":
                    exact_keys(path, where, entry, ("kind", "quantizer", "window"))
                    field(path, where, entry, "window", dict)
                    layers.append(QuantizedMaxPool(window_of(where, entry),
                                                   quantizer(where, entry, "quantizer")))
                    continue
                exact_keys(path, where, entry, ("kind", "weight_bits", "relu", "input", "output",
                                                "window"))
                field(path, where, entry, "weight_bits", int)
                field(path, where, entry, "relu", bool)
                window = window_of(where, entry)
                quantizers = [quantizer(where, entry, name) for name in ("input", "output")]
                layers.append(QuantizedLayer(
                    arrays[f"weight_codes{i}"], arrays[f"weight_scale{i}"], entry["weight_bits"],
                    arrays[f"bias_codes{i}"], *quantizers, entry["relu"], window))
            except ValueError as error:
                message = str(error)
                if message.startswith(f"{path}: "):
                    raise
                raise ValueError(f"{path}: layer {i}: {message}") from None
        try:
            return cls(tuple(layers), header["method"], header["accumulator_bits"],
                       header["overflow"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def fold_clip(params, clip):
    """The quantizer ``params`` of a ReLU's output with the ReLU's upper bound ``clip`` (or
    None) folded into its highest code: quantizing is monotone."""
    if clip is None:
        return params
    return dataclasses.replace(params, high=min(params.high, int(params.quantize(clip))))


def layer_from_codes(codes, scale, bits, bias, source, target, relu, window=None):
    """The :class:`QuantizedLayer` of weight ``codes`` at per-channel ``scale`` and the real
    ``bias``: the scales nudged (by a relative ``2^-16`` at most) so that every requantization
    multiplier ``s_x s_w[c] / s_y`` is a fixed-point number of the hardware, the bias rounded
    in units of ``s_x s_w[c]``."""
    multiplier, shift = fixed_point_multiplier(source.scale * scale / target.scale)
    scale = np.ldexp(multiplier.astype(np.float64), -shift) * target.scale / source.scale
    bias_codes = round_values(bias / (source.scale * scale)).astype(np.int64)
    return QuantizedLayer(codes, scale, bits, bias_codes, source, target, relu, window)


def per_layer(name, value, layers, low, high):
    """``value`` (an int or a sequence of ints) as a checked tuple with one entry per (learned)
    layer."""
    values = (value,) * layers if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != layers:
        raise ValueError(f"{name} must be an integer or {layers} integers (one per layer), "
                         f"not {len(values)}")
    return tuple(check_int(name, int(v) if isinstance(v, np.integer) else v, low, high)
                 for v in values)


def quantize(model, calibration, weight_bits=4, activation_bits=4, accumulator_bits=32,
             method="none", overflow="wrap", output_bits=8, per_channel=True, pow2=False,
             weight_clipping="mse", activation_clipping="mse", activation_scheme="affine",
             rounding="nearest"):
    """Quantize a float model after training (no retraining).

    Parameters
    ----------
    model : FloatModel
    calibration : array_like of float, shape (n, inputs)
        Inputs whose float activations set the activation ranges.
    weight_bits : int or sequence of int
        2..8, for all learned layers (dense and convolution) or one per learned layer (mixed
        precision).
    activation_bits : int or sequence of int
        1..8: the width of each learned layer's input codes (all, or one per learned layer);
        a pooling layer takes the width of the next learned layer's input.
    accumulator_bits : int
        ``P``, 2..32: the hardware accumulator width.
    method : str
        ``"none"``: plain rounding, nothing keeps the sums inside ``P`` bits. ``"a2q"`` or
        ``"a2q+"``: every channel meets that bound for ``P`` (:mod:`systolix.sw.a2q`), so no
        partial sum can overflow.
    overflow : str
        ``"wrap"`` or ``"saturate"``: what the accumulator does when a sum leaves ``P`` bits.
    output_bits : int
        2..8: the signed codes of the last layer's outputs.
    per_channel : bool
        One weight scale per output channel, or one per layer.
    pow2 : bool
        Power-of-two scales (dynamic fixed point): the requantization becomes a shift.
    weight_clipping, activation_clipping : str
        ``"max"`` or ``"mse"`` (see :mod:`systolix.sw.quant`). Outputs always use ``"max"``:
        clipping the largest logits would merge classes.
    activation_scheme : str
        ``"affine"`` or ``"symmetric"``, for inputs that can be negative.
    rounding : str
        For weights: ``"nearest"`` or ``"zero"`` (each weight on its own), or ``"axe"`` (row by
        row with error feedback from the calibration inputs of the layers quantized before,
        :func:`~systolix.sw.axe.axe_quantize`, and each bias corrected for the mean error of its
        channel on them).

    Returns
    -------
    QuantizedModel
    """
    if not isinstance(model, FloatModel):
        raise ValueError(f"model must be a FloatModel, not {type(model).__name__}")
    learned = model.learned
    if not learned:
        raise ValueError("a model needs at least one dense or convolution layer to quantize")
    weight_bits = per_layer("weight_bits", weight_bits, len(learned), 2, 8)
    activation_bits = per_layer("activation_bits", activation_bits, len(learned), 1, 8)
    check_int("accumulator_bits", accumulator_bits, 2, 32)
    check_int("output_bits", output_bits, 2, 8)
    check_choice("method", method, METHODS)
    check_choice("overflow", overflow, OVERFLOW_MODES)
    check_choice("weight_clipping", weight_clipping, CLIPPINGS)
    check_choice("rounding", rounding, WEIGHT_ROUNDINGS)
    values = model.layer_inputs(calibration)
    activations = []
    for index in range(len(model.layers)):
        following = [position for position, layer in enumerate(learned) if layer >= index]
        bits = activation_bits[following[0]] if following else output_bits
        activations.append(activation_params(values[index], bits, activation_scheme, pow2,
                                             activation_clipping))
    activations.append(activation_params(values[-1], output_bits, "symmetric", pow2, "max",
                                         name="output"))
    for index, layer in enumerate(model.layers):
        activations[index + 1] = fold_clip(activations[index + 1], layer.clip)
    for index in range(len(model.layers)):
        if model.gemm(index)[1] is None:
            # Max pooling: the maximum commutes with quantizing, the codes keep their quantizer.
            activations[index + 1] = activations[index]
    layers = []
    # With "axe": the calibration codes at the input of the next layer of the quantized model.
    codes_in = activations[0].quantize(values[0]) if rounding == "axe" else None
    for index, layer in enumerate(model.layers):
        window, weight, bias = model.gemm(index)
        source, target = activations[index], activations[index + 1]
        if weight is None:
            low, _ = code_range(source.bits, source.signed)
            layers.append(QuantizedMaxPool(dataclasses.replace(window, pad_code=low), source))
            codes_in = None if codes_in is None else layers[-1].reference(codes_in)
            continue
        if window is not None:
            window = dataclasses.replace(window, pad_code=int(source.zero_point))
        if layer.learned:
            bits = weight_bits[learned.index(index)]
            params = symmetric_params(weight, bits, per_channel, pow2, weight_clipping)
            # A channel of (nearly) zero weights, such as a dead channel's: a scale no finer
            # than the smallest requantization multiplier of full precision.
            finest = target.scale / source.scale * 2.0 ** (MULTIPLIER_BITS - 1 - MAX_SHIFT)
            scale = np.maximum(np.broadcast_to(params.scale, (weight.shape[1],)), finest)
            params = dataclasses.replace(params, scale=scale if per_channel else scale.max())
            plain = "nearest" if rounding == "axe" else rounding
            if method == "none":
                codes = params.quantize(weight, plain)
            else:
                codes, scale = accumulator_aware_quantize(
                    weight, scale, bits, method, accumulator_bits, source.bits, source.signed,
                    plain, per_channel, pow2)
            if rounding == "axe":
                float_inputs = patches(window, values[index])
                centred = source.scale * (patches(window, codes_in.astype(np.float64),
                                                  source.zero_point) - source.zero_point)
                codes, scale = axe_quantize(
                    weight, params.scale * np.ones(weight.shape[1]), bits, method,
                    accumulator_bits, source.bits, source.signed, float_inputs, centred,
                    None if window is None else window.group_mask(weight.shape[1]),
                    per_channel, pow2, (codes, np.broadcast_to(scale, (weight.shape[1],))))
                # Bias correction: the mean error of each channel on the calibration inputs.
                bias = bias + np.mean(float_inputs @ weight - centred @ (codes * scale), axis=0)
        else:
            bits, codes, scale = 2, (weight != 0).astype(np.int64), weight.max(axis=0)
            needed = min_accumulator_bits(codes, source.bits, source.signed)
            if method != "none" and needed > accumulator_bits:
                raise ValueError(f"layer {index} ({type(layer).__name__}) adds "
                                 f"{int(codes[:, 0].sum())} codes of {source.bits} bits and "
                                 f"needs an accumulator of {needed} bits, not "
                                 f"accumulator_bits={accumulator_bits}")
        layers.append(layer_from_codes(codes, scale, bits, bias, source, target, layer.relu,
                                       window))
        codes_in = None if codes_in is None else layers[-1].reference(codes_in)
    return QuantizedModel(tuple(layers), method, accumulator_bits, overflow)
