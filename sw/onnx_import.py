"""Import a quantized ONNX model (QONNX or QCDQ) into an integer program.

Two ways of writing a quantized network in ONNX are read:

- **QONNX** (the format of FINN and hls4ml): float operators between ``Quant`` nodes
  (``Quant(x, scale, zero_point, bit_width)``, attributes ``signed``, ``narrow``,
  ``rounding_mode``), ``BipolarQuant`` for binary weights and activations and ``Trunc`` (the
  truncation of a sum, such as the one of a quantized average pool).
- **QCDQ** (standard ONNX): ``QuantizeLinear`` -> ``Clip`` (for fewer than 8 bits) ->
  ``DequantizeLinear`` around float operators; weights are int8 initializers through
  ``DequantizeLinear`` or float initializers through ``QuantizeLinear`` / ``Clip`` /
  ``DequantizeLinear``.

Between the quantizers: ``MatMul`` / ``Gemm`` (dense), ``Conv`` (strides, pads, groups,
depthwise), ``Add`` (a bias, or the residual sum of two quantized tensors), ``Relu`` and
``Clip`` (folded into the clamp bounds), ``Mul`` by a positive scalar, ``MaxPool``,
``AveragePool``, ``GlobalAveragePool``, ``Flatten``, ``Reshape``, ``Identity`` and ``Constant``.
Every scale is folded into the integer requantization of a layer
(:mod:`systolix.sw.integerize`); ``QuantizeLinear`` and QONNX's ``ROUND`` round halves to even,
so the layers do too (``rounding="half_even"``).

The program reads and writes flat NHWC vectors; :class:`~systolix.sw.integerize.Imported`
maps them to the model's own (NCHW) tensors. Anything else is refused with a
:class:`ValueError` of one line naming the file, the node and what is allowed.
"""

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from systolix.config import code_range

from .a2q import sum_range
from .integerize import (Activation, Linear, OutputQuantizer, ProgramBuilder, codes_bits,
                         map_order)

__all__ = ["SUPPORTED_OPS", "load_onnx", "import_onnx"]

SUPPORTED_OPS = ("Quant", "BipolarQuant", "Trunc", "QuantizeLinear", "DequantizeLinear", "Clip",
                 "MatMul", "Gemm", "Conv", "Add", "Mul", "Relu", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Flatten", "Reshape", "Identity", "Constant")
"""The operators the importer reads."""

_QUANT_DOMAINS = ("", "qonnx.custom_op.general", "finn.custom_op.general", "onnx.brevitas")


@dataclass(frozen=True)
class _Const:
    """A float constant (an initializer or a Constant node)."""
    value: np.ndarray


@dataclass(frozen=True)
class _QConst:
    """A quantized constant: real ``scale * (codes - zero_point)`` (arrays of the codes' shape),
    codes of ``bits`` in ``low..high``."""
    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    bits: int
    signed: bool
    low: int
    high: int
    integer: bool = False      # not yet dequantized (a QuantizeLinear's output)


@dataclass(frozen=True)
class _Input:
    """The graph's float input, before its quantizer."""
    name: str
    shape: tuple


@dataclass(frozen=True)
class _Codes:
    """The integer output of a QuantizeLinear of a computed tensor, before its
    DequantizeLinear."""
    value: object
    quantizer: OutputQuantizer


@dataclass(frozen=True)
class _Sum:
    """The float sum of two quantized tensors (a residual add) before its quantizer."""
    first: Activation
    second: Activation
    low: float = -math.inf
    high: float = math.inf


def load_onnx(path):
    """Read the ONNX model ``path``; a :class:`ValueError` naming the file for a missing,
    unreadable or malformed one."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: {'is a folder' if path.is_dir() else 'does not exist'}; "
                         f"allowed: an ONNX model file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).strip() or type(error).__name__
        raise ValueError(f"{path}: is not an ONNX model ({reason}); allowed: an ONNX model "
                         f"file (QONNX or QCDQ)") from None
    if not model.graph.node:
        raise ValueError(f"{path}: is not an ONNX model with a graph (no nodes); allowed: an "
                         f"ONNX model file (QONNX or QCDQ)")
    return model


def _fraction(value):
    """A scalar scale as an exact fraction."""
    return Fraction(float(np.asarray(value, dtype=np.float64).reshape(-1)[0]))


class _Importer:
    def __init__(self, path, model):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.path = path
        self.where = f"{path}: "
        self.builder = ProgramBuilder(self.where)
        self.values = {}
        graph = model.graph
        declared = {entry.key: entry.value for entry in model.metadata_props}
        self.declared = self._declared_bits(declared.get("accumulator_bits"), "the model")
        for tensor in graph.initializer:
            self.values[tensor.name] = _Const(numpy_helper.to_array(tensor))
        inputs = [value for value in graph.input if value.name not in self.values]
        if len(inputs) != 1:
            raise ValueError(f"{self.where}the graph has {len(inputs)} inputs "
                             f"({', '.join(value.name for value in inputs)}); allowed: one")
        self.values[inputs[0].name] = _Input(inputs[0].name, self._input_shape(inputs[0]))
        if len(graph.output) != 1:
            raise ValueError(f"{self.where}the graph has {len(graph.output)} outputs; "
                             f"allowed: one")
        self.graph = graph
        self.uses = {}
        for node in graph.node:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1

    def _declared_bits(self, text, what):
        if text is None:
            return None
        try:
            bits = int(text)
        except ValueError:
            bits = 0
        if not 2 <= bits <= 64:
            raise ValueError(f"{self.where}{what}'s metadata accumulator_bits is {text!r}; "
                             f"allowed: an integer 2..64")
        return bits

    def _input_shape(self, value):
        kind = value.type.WhichOneof("value")
        dims = list(value.type.tensor_type.shape.dim) if kind == "tensor_type" and \
            value.type.tensor_type.HasField("shape") else None
        if not dims:
            raise ValueError(f"{self.where}graph input {value.name!r} has no shape; allowed: "
                             f"a shape (N, C, H, W) or (N, F) of fixed sizes (the batch N may "
                             f"be named)")
        sizes = []
        for index, dim in enumerate(dims[1:], start=1):
            if not dim.HasField("dim_value") or dim.dim_value < 1:
                shown = dim.dim_param if dim.HasField("dim_param") else "unknown"
                raise ValueError(f"{self.where}graph input {value.name!r} has no size for "
                                 f"dimension {index} ({shown!r}); allowed: fixed sizes except "
                                 f"the batch dimension")
            sizes.append(dim.dim_value)
        if len(sizes) not in (1, 3):
            raise ValueError(f"{self.where}graph input {value.name!r} has shape "
                             f"{[d.dim_value or d.dim_param for d in dims]}; allowed: (N, C, "
                             f"H, W) or (N, F)")
        return tuple(sizes)

    # -- values ---------------------------------------------------------------------------

    def _value(self, node, index):
        if index >= len(node.input) or not node.input[index]:
            return None
        name = node.input[index]
        if name not in self.values:
            self._fail(node, f"reads {name!r}, which no earlier node makes (the graph must be "
                             f"sorted)")
        return self.values[name]

    def _fail(self, node, message):
        raise ValueError(f"{self.where}node {node.name or node.output[0]!r} ({node.op_type}): "
                         f"{message}")

    def _const(self, node, index, what):
        value = self._value(node, index)
        if not isinstance(value, _Const):
            self._fail(node, f"its {what} must be a constant")
        return value.value

    def _attributes(self, node):
        return {attribute.name: self.onnx.helper.get_attribute_value(attribute)
                for attribute in node.attribute}

    # -- quantizers -----------------------------------------------------------------------

    def _scalar_quantizer(self, node, scale, zero_point, bits, signed, low, high, rounding):
        scale = np.asarray(scale, dtype=np.float64)
        zero_point = np.asarray(zero_point, dtype=np.float64)
        if scale.size != 1 or zero_point.size != 1:
            self._fail(node, f"quantizes a computed tensor with {scale.size} scales; allowed: "
                             f"one scale and zero point per tensor")
        if not (np.isfinite(scale).all() and scale.item() > 0):
            self._fail(node, f"its scale is {scale.item()}; allowed: finite and above 0")
        if zero_point.item() != round(zero_point.item()):
            self._fail(node, f"its zero point is {zero_point.item()}; allowed: an integer")
        if not 1 <= bits <= 8:
            self._fail(node, f"quantizes a computed tensor to {bits} bits; allowed: 1..8")
        return OutputQuantizer(_fraction(scale), int(zero_point.item()), bits, signed, low,
                               high, rounding)

    def _quantize(self, node, value, quantizer):
        """The :class:`Activation` of ``value`` quantized by ``quantizer``."""
        name = node.name or node.output[0]
        if isinstance(value, _Input):
            order = (map_order(*value.shape) if len(value.shape) == 3
                     else np.arange(value.shape[0]))
            return self.builder.input(quantizer, order)
        if isinstance(value, Linear):
            return self.builder.requantize(name, value, quantizer)
        if isinstance(value, _Sum):
            return self.builder.add(name, value.first, value.second, quantizer, value.low,
                                    value.high)
        if isinstance(value, Activation):
            if (value.scale, value.zero_point, value.signed) == \
                    (quantizer.scale, quantizer.zero_point, quantizer.signed) and \
                    quantizer.low <= value.low and value.high <= quantizer.high:
                return value        # the same codes: nothing to compute
            return self.builder.requantize(name, self.builder.identity(name, value), quantizer)
        self._fail(node, f"quantizes a {type(value).__name__.strip('_').lower()} tensor; "
                         f"allowed: the model input or a computed tensor")

    def _quant(self, node):
        """QONNX Quant(x, scale, zero_point, bit_width)."""
        attributes = self._attributes(node)
        signed, narrow = bool(attributes.get("signed", 1)), bool(attributes.get("narrow", 0))
        mode = attributes.get("rounding_mode", b"ROUND")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        x = self._value(node, 0)
        scale = self._const(node, 1, "scale")
        zero_point = self._const(node, 2, "zero point")
        bits = self._const(node, 3, "bit width")
        if bits.size != 1 or bits.item() != round(float(bits.item())) or bits.item() < 1:
            self._fail(node, f"its bit width is {bits.ravel().tolist()}; allowed: one integer "
                             f">= 1")
        bits = int(bits.item())
        if bits == 1 and signed:
            return self._bipolar(node, x, scale)
        low = -(1 << (bits - 1)) + int(narrow) if signed else 0
        high = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1 - int(narrow)
        if isinstance(x, _Const):
            value = x.value.astype(np.float32)
            y = value / np.asarray(scale, dtype=np.float32) + np.asarray(zero_point,
                                                                          dtype=np.float32)
            y = np.clip(y, low, high)
            rounders = {"ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil,
                        "FLOOR": np.floor, "DOWN": np.fix,
                        "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)),
                        "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
                        "HALF_DOWN": lambda v: np.sign(v) * np.ceil(np.abs(v) - 0.5)}
            if mode not in rounders:
                self._fail(node, f"rounding_mode {mode!r}; allowed: {', '.join(rounders)}")
            codes = rounders[mode](y).astype(np.int64)
            shape = codes.shape
            return _QConst(codes, np.broadcast_to(np.asarray(scale, dtype=np.float64), shape),
                           np.broadcast_to(np.asarray(zero_point, dtype=np.float64), shape),
                           bits, signed, low, high)
        if mode not in ("ROUND", "HALF_EVEN"):
            self._fail(node, f"quantizes a computed tensor with rounding_mode {mode!r}; "
                             f"allowed: ROUND (halves to even)")
        quantizer = self._scalar_quantizer(node, scale, zero_point, bits, signed, low, high,
                                           "half_even")
        return self._quantize(node, x, replace(quantizer, zero_point_first=True))

    def _bipolar(self, node, x, scale):
        """Binary codes: ``+1`` where ``x / scale >= 0``, else ``-1`` (2-bit signed codes), of
        weights or of a computed tensor (a sign layer)."""
        name = node.name or node.output[0]
        if isinstance(x, Activation):
            x = self.builder.identity(name, x)
        if isinstance(x, Linear):
            scale = np.asarray(scale, dtype=np.float64)
            if scale.size != 1 or not scale.item() > 0:
                self._fail(node, "binarizes with a scale that is not one number above 0")
            return self.builder.sign(name, x, _fraction(scale))
        if not isinstance(x, _Const):
            self._fail(node, f"binarizes a {type(x).__name__.strip('_').lower()} tensor; "
                             f"allowed: weights or a computed tensor")
        codes = np.where(x.value.astype(np.float32) / np.asarray(scale, dtype=np.float32) >= 0,
                         1, -1).astype(np.int64)
        return _QConst(codes, np.broadcast_to(np.asarray(scale, dtype=np.float64), codes.shape),
                       np.zeros(codes.shape), 2, True, -1, 1)

    def _bipolar_quant(self, node):
        return self._bipolar(node, self._value(node, 0), self._const(node, 1, "scale"))

    def _quantize_linear(self, node):
        attributes = self._attributes(node)
        x = self._value(node, 0)
        scale = self._const(node, 1, "scale")
        zero = self._value(node, 2)
        zero_point = zero.value if isinstance(zero, _Const) else np.zeros((), np.uint8)
        if zero is not None and not isinstance(zero, _Const):
            self._fail(node, "its zero point must be a constant")
        if zero_point.dtype not in (np.int8, np.uint8):
            self._fail(node, f"quantizes to {zero_point.dtype}; allowed: int8 or uint8")
        signed = zero_point.dtype == np.int8
        low, high = code_range(8, signed)
        if isinstance(x, _Const):
            axis = attributes.get("axis", 1)
            scale_full, zero_full = self._per_axis(node, x.value, scale, zero_point, axis)
            y = np.rint(x.value.astype(np.float32) / scale_full.astype(np.float32))
            codes = np.clip(y + zero_full, low, high).astype(np.int64)
            return _QConst(codes, scale_full.astype(np.float64), zero_full.astype(np.float64),
                           8, signed, low, high, integer=True)
        quantizer = self._scalar_quantizer(node, scale, zero_point, 8, signed, low, high,
                                           "half_even")
        return _Codes(x, quantizer)

    def _per_axis(self, node, value, scale, zero_point, axis):
        """``scale`` and ``zero_point`` broadcast to ``value``'s shape along ``axis``."""
        scale, zero_point = np.asarray(scale), np.asarray(zero_point)
        if scale.size == 1:
            return (np.broadcast_to(scale.reshape(()), value.shape),
                    np.broadcast_to(zero_point.reshape(()), value.shape))
        axis = axis % value.ndim
        shape = [1] * value.ndim
        shape[axis] = -1
        if scale.size != value.shape[axis]:
            self._fail(node, f"has {scale.size} scales for axis {axis} of size "
                             f"{value.shape[axis]}")
        zero_point = np.broadcast_to(zero_point.reshape(-1), scale.shape)
        return (np.broadcast_to(scale.reshape(shape), value.shape),
                np.broadcast_to(zero_point.reshape(shape), value.shape))

    def _dequantize_linear(self, node):
        attributes = self._attributes(node)
        x = self._value(node, 0)
        scale = self._const(node, 1, "scale")
        zero = self._value(node, 2)
        zero_point = zero.value if isinstance(zero, _Const) else np.zeros((), np.int64)
        if isinstance(x, _Const):
            if x.value.dtype.kind not in "iu":
                self._fail(node, f"dequantizes {x.value.dtype} values; allowed: integers")
            signed = x.value.dtype.kind == "i"
            bits = 8 * x.value.dtype.itemsize
            low, high = code_range(bits, signed) if bits <= 32 else (None, None)
            x = _QConst(x.value.astype(np.int64), None, None, bits, signed, low, high, True)
        if isinstance(x, _QConst) and x.integer:
            scale_full, zero_full = self._per_axis(node, x.codes, scale, zero_point,
                                                   attributes.get("axis", 1))
            return replace(x, scale=scale_full.astype(np.float64),
                           zero_point=zero_full.astype(np.float64), integer=False)
        if isinstance(x, _Codes):
            quantizer = x.quantizer
            if np.asarray(scale).size != 1 or _fraction(scale) != quantizer.scale or \
                    int(np.asarray(zero_point).reshape(-1)[0]) != quantizer.zero_point:
                self._fail(node, "dequantizes with another scale or zero point than its "
                                 "QuantizeLinear; allowed: the same")
            return self._quantize(node, x.value, quantizer)
        self._fail(node, "dequantizes a float tensor; allowed: the output of QuantizeLinear "
                         "or an integer constant")

    def _clip(self, node):
        attributes = self._attributes(node)
        x = self._value(node, 0)
        low = self._value(node, 1)
        high = self._value(node, 2)
        bounds = []
        for value, attribute, default in ((low, "min", -math.inf), (high, "max", math.inf)):
            if value is None:
                bounds.append(attributes.get(attribute, default))
            elif isinstance(value, _Const) and value.value.size == 1:
                bounds.append(value.value.item())
            else:
                self._fail(node, "its bounds must be scalar constants")
        low, high = bounds
        if isinstance(x, _Codes):
            q = x.quantizer
            new_low = max(q.low, math.ceil(low)) if low != -math.inf else q.low
            new_high = min(q.high, math.floor(high)) if high != math.inf else q.high
            if new_low > new_high:
                self._fail(node, f"clips to an empty range {low}..{high}")
            bits = codes_bits(min(new_low, q.zero_point), max(new_high, q.zero_point), q.signed)
            return _Codes(x.value, replace(q, low=new_low, high=new_high, bits=bits))
        if isinstance(x, _QConst) and x.integer:
            new_low = max(x.low, math.ceil(low)) if low != -math.inf else x.low
            new_high = min(x.high, math.floor(high)) if high != math.inf else x.high
            bits = codes_bits(min(new_low, 0), max(new_high, 0), x.signed)
            return replace(x, codes=np.clip(x.codes, new_low, new_high), low=new_low,
                           high=new_high, bits=bits)
        return self._clamp(node, x, low, high)

    def _clamp(self, node, x, low, high):
        if isinstance(x, Linear):
            return x.clamped(low, high)
        if isinstance(x, _Sum):
            return replace(x, low=max(x.low, low), high=min(x.high, high))
        if isinstance(x, Activation):
            return self.builder.identity(node.name or node.output[0], x).clamped(low, high)
        self._fail(node, f"applies to a {type(x).__name__.strip('_').lower()} tensor; allowed: "
                         f"a computed tensor")

    def _relu(self, node):
        return self._clamp(node, self._value(node, 0), 0.0, math.inf)

    # -- layers ---------------------------------------------------------------------------

    def _activation(self, node, index=0):
        value = self._value(node, index)
        if isinstance(value, _Codes):
            self._fail(node, "reads integer codes; allowed: their DequantizeLinear")
        if not isinstance(value, Activation):
            what = ("the unquantized model input" if isinstance(value, _Input) else
                    f"a {type(value).__name__.strip('_').lower()} tensor")
            self._fail(node, f"reads {what}; allowed: a quantized tensor (Quant or "
                             f"QuantizeLinear / DequantizeLinear)")
        return value

    def _weights(self, node, index, axis):
        """Integer weights (codes less zero points), the per-output-channel scales (along
        ``axis``), the weight bits and signedness."""
        value = self._value(node, index)
        name = node.input[index]
        if isinstance(value, _Const):
            self._fail(node, f"its weight {name!r} is a float tensor of shape "
                             f"{list(value.value.shape)} with no quantizer; allowed: weights "
                             f"through Quant, BipolarQuant or DequantizeLinear")
        if not isinstance(value, _QConst) or value.integer:
            self._fail(node, f"its weight {name!r} must be a quantized constant")
        moved = [np.moveaxis(np.asarray(array), axis, 0).reshape(value.codes.shape[axis], -1)
                 for array in (value.scale, value.zero_point)]
        for array, what in zip(moved, ("scale", "zero point")):
            if not np.all(array == array[:, :1]):
                self._fail(node, f"its weight {name!r} has a {what} that varies along other "
                                 f"axes than the output channels; allowed: per tensor or per "
                                 f"output channel")
        scales, zero_points = moved[0][:, 0], moved[1][:, 0]
        if np.any(zero_points != np.round(zero_points)) or not np.all(scales > 0):
            self._fail(node, f"its weight {name!r} has non-integer zero points or scales not "
                             f"above 0")
        shape = [1] * value.codes.ndim
        shape[axis] = -1
        integers = value.codes - zero_points.astype(np.int64).reshape(shape)
        # The width of the integers received (int8 storage may hold 4-bit codes).
        low, high = int(integers.min()), int(integers.max())
        signed = value.signed or low < 0
        bits = max(codes_bits(low, high, signed), 2 if signed else 1)
        if bits > 8:
            self._fail(node, f"its weight {name!r} needs {bits}-bit codes; allowed: 1..8")
        return integers, scales, bits, signed

    def _bias(self, node, linear, value):
        channels = linear.weights.shape[1]
        if isinstance(value, _QConst) and not value.integer:
            real = value.scale * (value.codes - value.zero_point)
            exact = [Fraction(float(s)) * int(c - z) for s, c, z in zip(
                np.ravel(value.scale), np.ravel(value.codes), np.ravel(value.zero_point))]
        elif isinstance(value, _Const):
            real = value.value
            exact = [Fraction(float(v)) for v in np.ravel(np.asarray(value.value,
                                                                     dtype=np.float32))]
        else:
            self._fail(node, "adds a tensor that is neither a bias nor a quantized tensor")
        real = np.asarray(real)
        if real.size != channels or (real.ndim > 1 and max(real.shape) != channels):
            self._fail(node, f"adds a constant of shape {list(real.shape)} to {channels} "
                             f"channels; allowed: one value per channel")
        return self.builder.add_bias(node.name or node.output[0], linear, exact)

    def _matmul(self, node):
        x = self._activation(node)
        integers, scales, bits, signed = self._weights(node, 1, 1)
        return self._dense(node, x, integers, scales, bits, signed)

    def _dense(self, node, x, integers, scales, bits, signed):
        if integers.ndim != 2:
            self._fail(node, f"its weight has shape {list(integers.shape)}; allowed: (K, N)")
        linear = self.builder.dense(node.name or node.output[0], x, integers, bits, signed,
                                    scales)
        return self._declare(node, linear)

    def _declare(self, node, linear):
        declared = self.declared
        for entry in getattr(node, "metadata_props", ()):
            if entry.key == "accumulator_bits":
                declared = self._declared_bits(entry.value, f"node {node.name!r}")
        return replace(linear, declared=declared)

    def _gemm(self, node):
        attributes = self._attributes(node)
        if attributes.get("transA", 0) or attributes.get("alpha", 1.0) != 1.0 or \
                attributes.get("beta", 1.0) != 1.0:
            self._fail(node, "has transA, alpha or beta; allowed: transA=0, alpha=beta=1")
        x = self._activation(node)
        transposed = bool(attributes.get("transB", 0))
        integers, scales, bits, signed = self._weights(node, 1, 0 if transposed else 1)
        linear = self._dense(node, x, integers.T if transposed else integers, scales, bits,
                             signed)
        bias = self._value(node, 2)
        return linear if bias is None else self._bias(node, linear, bias)

    def _window_attributes(self, node, kernel):
        attributes = self._attributes(node)
        if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID",
                                                          "VALID"):
            self._fail(node, "auto_pad SAME; allowed: explicit pads")
        if any(d != 1 for d in attributes.get("dilations", [1, 1])):
            self._fail(node, "has dilations; allowed: 1")
        if attributes.get("ceil_mode", 0):
            self._fail(node, "has ceil_mode=1; allowed: 0")
        strides = tuple(attributes.get("strides", [1, 1]))
        pads = list(attributes.get("pads", [0, 0, 0, 0]))
        if len(strides) != 2 or len(pads) != 4:
            self._fail(node, "is not 2-D; allowed: 2-D windows")
        return tuple(kernel or attributes.get("kernel_shape")), strides, \
            (pads[0], pads[1], pads[2], pads[3]), attributes

    def _conv(self, node):
        x = self._activation(node)
        integers, scales, bits, signed = self._weights(node, 1, 0)
        if integers.ndim != 4:
            self._fail(node, f"its weight has shape {list(integers.shape)}; allowed: "
                             f"(M, C/group, kh, kw)")
        _, strides, pads, attributes = self._window_attributes(node, integers.shape[2:])
        linear = self.builder.conv(node.name or node.output[0], x, integers, bits, signed,
                                   scales, strides, pads, attributes.get("group", 1))
        linear = self._declare(node, linear)
        bias = self._value(node, 2)
        return linear if bias is None else self._bias(node, linear, bias)

    def _add(self, node):
        a, b = self._value(node, 0), self._value(node, 1)
        if isinstance(b, Linear):
            a, b = b, a
        if isinstance(a, Linear):
            return self._bias(node, a, b)
        if isinstance(a, Activation) and isinstance(b, Activation):
            return _Sum(a, b)
        self._fail(node, f"adds a {type(a).__name__.strip('_').lower()} and a "
                         f"{type(b).__name__.strip('_').lower()} tensor; allowed: a bias to a "
                         f"MatMul, Gemm or Conv, or two quantized tensors")

    def _max_pool(self, node):
        x = self._activation(node)
        kernel, strides, pads, _ = self._window_attributes(node, None)
        if len(node.output) > 1 and node.output[1]:
            self._fail(node, "has an indices output; allowed: the values only")
        return self.builder.max_pool(node.name or node.output[0], x, kernel, strides, pads)

    def _average_pool(self, node):
        x = self._activation(node)
        kernel, strides, pads, attributes = self._window_attributes(node, None)
        if any(pads) and not attributes.get("count_include_pad", 0):
            self._fail(node, "pads without count_include_pad=1 (a divisor that changes at the "
                             "edges); allowed: count_include_pad=1 or no pads")
        return self._declare(node, self.builder.average(node.name or node.output[0], x,
                                                        kernel, strides, pads))

    def _global_average_pool(self, node):
        x = self._activation(node)
        if x.order.ndim != 3:
            self._fail(node, f"reads a tensor of shape {list(x.order.shape)}; allowed: a map")
        return self._declare(node, self.builder.average(node.name or node.output[0], x,
                                                        x.order.shape[1:], (1, 1),
                                                        (0, 0, 0, 0)))

    def _reshaped(self, node, x, shape):
        if isinstance(x, _Const):
            return _Const(x.value.reshape(shape))
        if isinstance(x, Activation):
            return replace(x, order=x.order.reshape(shape[1:]))
        self._fail(node, f"reshapes a {type(x).__name__.strip('_').lower()} tensor; allowed: "
                         f"a quantized tensor or a constant")

    def _flatten(self, node):
        x = self._value(node, 0)
        axis = self._attributes(node).get("axis", 1)
        if isinstance(x, _Const):
            return _Const(x.value.reshape(int(np.prod(x.value.shape[:axis])), -1))
        if axis != 1:
            self._fail(node, f"has axis {axis}; allowed: 1 (keep the batch)")
        return self._reshaped(node, x, (1, -1))

    def _reshape(self, node):
        x = self._value(node, 0)
        shape = [int(v) for v in self._const(node, 1, "shape").ravel()]
        if isinstance(x, _Const):
            return _Const(x.value.reshape([d if d else x.value.shape[i]
                                           for i, d in enumerate(shape)]))
        if isinstance(x, Activation):
            current = (1, *x.order.shape)
            shape = [current[i] if d == 0 else d for i, d in enumerate(shape)]
            if not shape or (shape[0] not in (1, -1)):
                self._fail(node, f"reshapes to {shape}; allowed: the batch dimension kept "
                                 f"first (1 or -1)")
            rest = shape[1:]
            try:
                order = x.order.reshape(rest if -1 in rest else rest or [-1])
            except ValueError:
                self._fail(node, f"reshapes {list(x.order.shape)} to {shape}")
            return replace(x, order=order)
        return self._reshaped(node, x, shape)

    def _trunc(self, node):
        """QONNX Trunc of a sum at its own scale ``s``, rounding FLOOR, zero point 0: version 1
        (``x, s, z, in_bits, out_bits``): codes ``floor(x / s / 2^(in - out))`` at scale ``s``,
        unclamped; version 2 (``x, s, z, in_bits, out_scale, out_bits``, attributes ``signed``,
        ``narrow``): codes ``clamp(floor(x / s / 2^t))`` at ``out_scale``, ``2^t`` the power of
        two nearest ``out_scale / s``."""
        x = self._value(node, 0)
        version = 2 if len(node.input) == 6 else 1
        scale = self._const(node, 1, "scale")
        zero_point = self._const(node, 2, "zero point")
        in_bits = int(self._const(node, 3, "input bit width").item())
        out_bits = int(self._const(node, 4 + (version == 2), "output bit width").item())
        attributes = self._attributes(node)
        mode = attributes.get("rounding_mode", b"FLOOR")
        mode = (mode.decode() if isinstance(mode, bytes) else mode).upper()
        if len(node.input) not in (5, 6) or mode != "FLOOR" or np.any(zero_point != 0):
            self._fail(node, "allowed: Trunc (version 1 or 2) with rounding_mode FLOOR and zero "
                             "point 0")
        if not isinstance(x, Linear):
            self._fail(node, "truncates a tensor that is not a sum (a MatMul, Conv or pool)")
        scale = _fraction(scale)
        if any(s != scale for s in x.scale):
            self._fail(node, "its scale is not the scale of the sum it truncates; allowed: the "
                             "same")
        if version == 1:
            dropped, out_scale = in_bits - out_bits, scale
        else:
            out_scale = _fraction(self._const(node, 4, "output scale"))
            dropped = round(math.log2(out_scale / scale))
        if not 0 <= dropped <= 62 or not 1 <= out_bits <= 8:
            self._fail(node, f"truncates {in_bits} to {out_bits} bits (by 2^{dropped}); "
                             f"allowed: to 1..8 bits, by 2^0..2^62")
        lows, highs = sum_range(x.weights, x.input.low, x.input.high)
        low = min(int((lows + x.bias).min()) >> dropped, 0)
        high = int((highs + x.bias).max()) >> dropped
        if version == 1:
            signed = low < 0
            if not code_range(out_bits, signed)[0] <= low or high > code_range(out_bits,
                                                                                signed)[1]:
                self._fail(node, f"its output codes reach {low}..{high}, more than "
                                 f"{out_bits} bits")
            codes = code_range(out_bits, signed)
        else:
            signed, narrow = bool(attributes.get("signed", 1)), bool(attributes.get("narrow", 0))
            codes = code_range(out_bits, signed)
            if narrow:
                codes = (codes[0] + 1, codes[1]) if signed else (codes[0], codes[1] - 1)
        quantizer = OutputQuantizer(scale * (1 << dropped), 0, out_bits, signed, *codes,
                                    "half_up")
        linear = replace(x, declared=in_bits, floor=True)
        output = self.builder.requantize(node.name or node.output[0], linear, quantizer)
        return replace(output, scale=out_scale)

    def _mul(self, node):
        """A sum or a quantized tensor times a positive scalar constant (such as the kernel
        size that turns an average back into a sum before a Trunc)."""
        a, b = self._value(node, 0), self._value(node, 1)
        if isinstance(a, _Const):
            a, b = b, a
        if not isinstance(b, _Const) or b.value.size != 1 or not b.value.item() > 0:
            self._fail(node, "multiplies by something else than a positive scalar constant")
        factor = _fraction(b.value)
        if isinstance(a, Linear):
            return replace(a, scale=tuple(s * factor for s in a.scale),
                           low=a.low * float(factor), high=a.high * float(factor))
        if isinstance(a, Activation):
            return replace(a, scale=a.scale * factor)
        self._fail(node, f"multiplies a {type(a).__name__.strip('_').lower()} tensor; allowed: "
                         f"a computed tensor")

    def run(self):
        handlers = {"Quant": self._quant, "BipolarQuant": self._bipolar_quant,
                    "Trunc": self._trunc, "QuantizeLinear": self._quantize_linear,
                    "DequantizeLinear": self._dequantize_linear, "Clip": self._clip,
                    "MatMul": self._matmul, "Gemm": self._gemm, "Conv": self._conv,
                    "Add": self._add, "Relu": self._relu, "MaxPool": self._max_pool,
                    "AveragePool": self._average_pool,
                    "GlobalAveragePool": self._global_average_pool,
                    "Flatten": self._flatten, "Reshape": self._reshape, "Mul": self._mul}
        for node in self.graph.node:
            if node.op_type not in SUPPORTED_OPS or node.domain not in _QUANT_DOMAINS:
                raise ValueError(f"{self.where}node {node.name or node.output[0]!r}: op type "
                                 f"{node.op_type}{' (' + node.domain + ')' if node.domain else ''}"
                                 f" is not supported; supported: {', '.join(SUPPORTED_OPS)}")
            if node.op_type == "Constant":
                attribute = node.attribute[0] if node.attribute else None
                if attribute is None or attribute.name != "value":
                    self._fail(node, "allowed: a Constant with a tensor value")
                result = _Const(self.numpy_helper.to_array(attribute.t))
            elif node.op_type == "Identity":
                result = self._value(node, 0)
            else:
                result = handlers[node.op_type](node)
            if isinstance(result, Linear) and self.uses.get(node.output[0], 0) > 1:
                self._fail(node, "its unquantized output is read by more than one node; "
                                 "allowed: one quantizer after it")
            self.values[node.output[0]] = result
        name = self.graph.output[0].name
        output = self.values.get(name)
        if isinstance(output, _Codes):
            output = self._quantize(self._producer(name), output.value, output.quantizer)
        if not isinstance(output, Activation):
            raise ValueError(f"{self.where}the graph output {name!r} is not quantized; "
                             f"allowed: an output made by Quant or QuantizeLinear")
        return self.builder.finish(output, self.where)

    def _producer(self, name):
        return next(node for node in self.graph.node if name in node.output)


def import_onnx(path):
    """Import the QONNX or QCDQ model ``path``.

    Returns
    -------
    systolix.sw.integerize.Imported
        The program (every :class:`~systolix.layer.IntegerLayer` at a 32-bit accumulator,
        until :func:`~systolix.sw.integerize.check_accumulators`) and what the import did per
        layer.

    Raises
    ------
    ValueError
        One line naming the file and the node: an unsupported op (its type, its name and
        :data:`SUPPORTED_OPS`), a malformed file, a float weight tensor without a quantizer, a
        graph input without a shape, and every pattern the importer cannot fold exactly.
    """
    model = load_onnx(path)
    return _Importer(Path(path), model).run()
