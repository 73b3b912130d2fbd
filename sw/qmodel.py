"""Post-training quantization of a :class:`~systolix.sw.models.FloatModel` into a :class:`QuantizedModel`.

Per layer ``l``: the input activation is quantized per tensor (scale ``s_x``, zero point
``z_x``, ``a_l`` bits; ranges from one float calibration pass), the weights symmetrically per
output channel (scale ``s_w[c]``, codes ``q_w``, ``w_l`` bits, constrained by A2Q or A2Q+ for the
accumulator width ``P`` when asked), the bias to an integer in units of ``s_x s_w[c]`` (as
TFLite does with 32-bit biases). The real output of the layer is

    ``y[c] = s_x s_w[c] * (sum_k (q_x[k] - z_x) q_w[k, c] + q_b[c])``

followed by ReLU for every layer but the last, and quantized to the next layer's input codes
(the last layer to ``output_bits``-bit signed codes). :meth:`QuantizedModel.reference` evaluates
exactly this in floating point, with no accumulator limit: the reference the integer program
(:mod:`systolix.sw.lower`) is checked against.

The weight scales are nudged (by a relative ``2^-16`` at most) so that every requantization
multiplier ``s_x s_w[c] / s_y`` is exactly the fixed-point number ``M0 2^-shift`` the hardware
multiplies by (:func:`~systolix.sw.quant.fixed_point_multiplier`): the reference and the integer
program then compute the same function, not two functions a rounding apart.
"""

from dataclasses import asdict, dataclass

import numpy as np

from systolix.config import OVERFLOW_MODES, check_choice, check_int
from systolix.layer import frozen_array

from .a2q import METHODS, accumulator_aware_quantize
from .io import exact_keys, field, layer_count, load_arrays, save_arrays
from .models import FloatModel
from .program import QUANTIZER_FIELDS, check_quantizer
from .quant import CLIPPINGS, ROUNDINGS, QuantParams, activation_params, \
    fixed_point_multiplier, round_values, symmetric_params

__all__ = ["QuantizedLayer", "QuantizedModel", "quantize", "per_layer"]

_FORMAT = "systolix.QuantizedModel"
_VERSION = 1


@dataclass(frozen=True)
class QuantizedLayer:
    """One quantized dense layer.

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
        ReLU before the output quantization (every layer but the last).
    """

    weight_codes: np.ndarray
    weight_scale: np.ndarray
    weight_bits: int
    bias_codes: np.ndarray
    input: QuantParams
    output: QuantParams
    relu: bool

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
        object.__setattr__(self, "weight_codes", codes)
        object.__setattr__(self, "weight_scale", scale)
        object.__setattr__(self, "bias_codes", bias)

    def reference(self, codes):
        """The output codes of the layer for input ``codes``, computed in float64 (no P limit)."""
        codes = np.asarray(codes, dtype=np.float64)
        centred = (codes - self.input.zero_point) @ self.weight_codes + self.bias_codes
        real = self.input.scale * self.weight_scale * centred
        return self.output.quantize(np.maximum(real, 0.0) if self.relu else real)


@dataclass(frozen=True)
class QuantizedModel:
    """A quantized MLP: its layers and the accumulator they were quantized for.

    Parameters
    ----------
    layers : tuple of QuantizedLayer
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
            if layer.weight_codes.shape[1] != following.weight_codes.shape[0]:
                raise ValueError(f"layer {index + 1} has {following.weight_codes.shape[0]} "
                                 f"inputs but layer {index} has {layer.weight_codes.shape[1]} "
                                 f"outputs")
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
            header["layers"].append({
                "weight_bits": layer.weight_bits, "relu": layer.relu,
                "input": asdict(layer.input),
                "output": asdict(layer.output)})
            arrays[f"weight_codes{index}"] = layer.weight_codes
            arrays[f"weight_scale{index}"] = layer.weight_scale
            arrays[f"bias_codes{index}"] = layer.bias_codes
        save_arrays(path, _FORMAT, _VERSION, header, arrays)

    @classmethod
    def load(cls, path):
        """Read a model written by :meth:`save` (strictly: :func:`~systolix.sw.io.load_arrays`;
        codes stored as integers, scales as finite positive floats, every header field
        checked)."""
        def members(header):
            count = layer_count(path, header)
            return {f"{name}{index}": (kind, ndim) for index in range(count)
                    for name, kind, ndim in (("weight_codes", "int", 2),
                                             ("weight_scale", "float", 1),
                                             ("bias_codes", "int", 1))}

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "method", "accumulator_bits",
                                      "overflow", "layers"))
        field(path, "", header, "method", str)
        field(path, "", header, "accumulator_bits", int)
        field(path, "", header, "overflow", str)
        layers = []
        for i, entry in enumerate(header["layers"]):
            where = f"layers[{i}]."
            exact_keys(path, where, entry, ("weight_bits", "relu", "input", "output"))
            field(path, where, entry, "weight_bits", int)
            field(path, where, entry, "relu", bool)
            quantizers = []
            for name in ("input", "output"):
                exact_keys(path, f"{where}{name}.", entry[name], QUANTIZER_FIELDS)
                for part, kind in (("bits", int), ("signed", bool), ("zero_point", int),
                                   ("low", int), ("high", int)):
                    field(path, f"{where}{name}.", entry[name], part, kind)
                field(path, f"{where}{name}.", entry[name], "scale", float, low=0)
                quantizers.append(QuantParams(**entry[name]))
            try:
                for name, params in zip(("input", "output"), quantizers):
                    check_quantizer(name, params)
                layers.append(QuantizedLayer(
                    arrays[f"weight_codes{i}"], arrays[f"weight_scale{i}"], entry["weight_bits"],
                    arrays[f"bias_codes{i}"], *quantizers, entry["relu"]))
            except ValueError as error:
                raise ValueError(f"{path}: layer {i}: {error}") from None
        try:
            return cls(tuple(layers), header["method"], header["accumulator_bits"],
                       header["overflow"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None


def per_layer(name, value, layers, low, high):
    """``value`` (an int or a sequence of ints) as a checked tuple with one entry per layer."""
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
        2..8, for all layers or one per layer (mixed precision).
    activation_bits : int or sequence of int
        1..8: the width of each layer's input codes (all layers, or one per layer).
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
        ``"nearest"`` or ``"zero"``, for weights.

    Returns
    -------
    QuantizedModel
    """
    if not isinstance(model, FloatModel):
        raise ValueError(f"model must be a FloatModel, not {type(model).__name__}")
    count = len(model.weights)
    weight_bits = per_layer("weight_bits", weight_bits, count, 2, 8)
    activation_bits = per_layer("activation_bits", activation_bits, count, 1, 8)
    check_int("accumulator_bits", accumulator_bits, 2, 32)
    check_int("output_bits", output_bits, 2, 8)
    check_choice("method", method, METHODS)
    check_choice("overflow", overflow, OVERFLOW_MODES)
    check_choice("weight_clipping", weight_clipping, CLIPPINGS)
    check_choice("rounding", rounding, ROUNDINGS)
    values = model.layer_inputs(calibration)
    activations = [activation_params(values[i], activation_bits[i], activation_scheme, pow2,
                                     activation_clipping) for i in range(count)]
    activations.append(activation_params(values[-1], output_bits, "symmetric", pow2, "max",
                                         name="output"))
    layers = []
    for index, (weight, bias) in enumerate(zip(model.weights, model.biases)):
        params = symmetric_params(weight, weight_bits[index], per_channel, pow2, weight_clipping)
        scale = np.broadcast_to(params.scale, (weight.shape[1],))
        source = activations[index]
        if method == "none":
            codes = params.quantize(weight, rounding)
        else:
            codes, scale = accumulator_aware_quantize(
                weight, scale, weight_bits[index], method, accumulator_bits, source.bits,
                source.signed, rounding, per_channel, pow2)
        target = activations[index + 1]
        multiplier, shift = fixed_point_multiplier(source.scale * scale / target.scale)
        scale = np.ldexp(multiplier.astype(np.float64), -shift) * target.scale / source.scale
        bias_codes = round_values(bias / (source.scale * scale)).astype(np.int64)
        layers.append(QuantizedLayer(codes, scale, weight_bits[index], bias_codes, source,
                                     target, index < count - 1))
    return QuantizedModel(tuple(layers), method, accumulator_bits, overflow)
