"""Scales folded into integers: the common back end of the importers (:mod:`.onnx_import`,
:mod:`.brevitas_import`).

A front end walks its model and hands this module quantized tensors and the integer operations
between them; :class:`ProgramBuilder` turns them into the layers of an
:class:`~systolix.sw.program.IntegerProgram` and records, per layer, what it did.

- An :class:`Activation` is a tensor the program computes: real value ``scale * (code -
  zero_point)``, codes in ``low..high``, made by a layer (or the program's input). Its logical
  shape is the source model's (``(C, H, W)`` or ``(F,)``, the batch left out) and ``order``
  gives the place of each logical element (C order) in the program's NHWC-flattened vector.
- A :class:`Linear` is an integer GEMM not yet requantized: real value ``scale[c] * (acc +
  bias[c])`` of the accumulator ``acc`` of raw input codes and integer weights, with real clamp
  bounds (ReLU, Clip). The input zero point is in the bias (``-z_x * sum_k w``), convolution
  padding reads the input zero point (real zero).
- :meth:`ProgramBuilder.requantize` ends a :class:`Linear` at an output quantizer: the
  multiplier ``M0 * 2^-shift`` of each channel from ``scale[c] / s_y``
  (:func:`~systolix.sw.quant.fixed_point_multiplier`), clamp bounds from the real ones, and
  whether the integer requantization equals the real one for every reachable accumulator value
  (:func:`requantization_error`).

The true data-free accumulator width of every layer is computed from its integer weights and
the code range of its input (:func:`accumulator_widths`); :func:`check_accumulators` holds each
layer to the requested width or widens it.
"""

import json
import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from systolix.config import code_range
from systolix.layer import AddLayer, IntegerLayer, MaxPoolLayer, Window
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS

from .a2q import signed_bits, sum_range
from .program import IntegerProgram
from .quant import QuantParams, fixed_point_multiplier

__all__ = ["Activation", "Linear", "OutputQuantizer", "LayerInfo", "Imported",
           "ProgramBuilder", "map_order", "codes_bits", "accumulator_widths",
           "requantization_error", "check_accumulators", "report_text", "report_json"]


def map_order(channels, height, width):
    """The place of each element of a ``(C, H, W)`` map (C order) in its NHWC-flattened
    vector."""
    return np.arange(height * width * channels).reshape(height, width, channels) \
        .transpose(2, 0, 1)


def codes_bits(low, high, signed):
    """The fewest bits (1..) whose codes of ``signed`` hold ``low..high``."""
    bits = 1
    while True:
        lo, hi = code_range(bits, signed)
        if lo <= low and high <= hi:
            return bits
        bits += 1


@dataclass(frozen=True)
class Activation:
    """A tensor of codes that the program computes (see the module docstring)."""

    source: int
    scale: Fraction
    zero_point: int
    bits: int
    signed: bool
    low: int
    high: int
    order: np.ndarray

    @property
    def shape(self):
        """The logical shape, batch left out."""
        return self.order.shape

    def same_codes(self, other):
        """Whether ``other`` quantizes the same way (scale, zero point, bits)."""
        return (self.scale, self.zero_point, self.bits, self.signed) == \
            (other.scale, other.zero_point, other.bits, other.signed)


@dataclass(frozen=True)
class Linear:
    """An integer GEMM before requantization (see the module docstring).

    ``weights`` has one row per input code (in the program's order: the input's storage order
    for a dense layer, ``(ky, kx, c)`` patch order for a convolution) and one column per output
    channel; ``scale`` is one exact :class:`~fractions.Fraction` per output channel.
    """

    name: str
    kind: str
    input: Activation
    weights: np.ndarray
    weight_bits: int
    weight_signed: bool
    scale: tuple
    bias: np.ndarray
    window: Window = None
    low: float = -math.inf
    high: float = math.inf
    declared: int = None
    floor: bool = False
    note: str = ""

    @property
    def order(self):
        """The logical order of the output: ``(N,)`` or an ``(N, OH, OW)`` map."""
        channels = self.weights.shape[1]
        if self.window is None:
            return np.arange(channels)
        return map_order(channels, self.window.output_height, self.window.output_width)

    def clamped(self, low=-math.inf, high=math.inf):
        """The same with real clamp bounds ``low..high`` applied after it (ReLU, Clip)."""
        return replace(self, low=max(self.low, low), high=min(self.high, high))


@dataclass(frozen=True)
class OutputQuantizer:
    """An output quantizer: codes ``clamp(round(v / scale) + zero_point, low, high)``.

    ``zero_point_first``: the source rounds ``v / scale + zero_point`` instead (QONNX's
    ``Quant``): with halves rounded to even and an odd zero point, its ties go the other way.
    """

    scale: Fraction
    zero_point: int
    bits: int
    signed: bool
    low: int
    high: int
    rounding: str = "half_even"
    zero_point_first: bool = False

    def odd_ties(self, real):
        """Whether ties of the real multipliers ``real`` (even denominators) round otherwise
        than the program (see ``zero_point_first``)."""
        return (self.zero_point_first and self.rounding == "half_even"
                and self.zero_point % 2 == 1
                and any(value.denominator % 2 == 0 for value in real))


@dataclass
class LayerInfo:
    """What the import did for one layer of the program (the report's row)."""

    index: int
    name: str
    kind: str
    shape: str
    widths: str
    declared: int = None
    true_bits: int = None
    worst_channel: int = None
    accumulator_bits: int = None
    widened: bool = False
    exact: bool = True
    error_codes: float = 0.0
    note: str = ""

    def as_dict(self):
        """The row as JSON-ready values."""
        return {"index": self.index, "name": self.name, "kind": self.kind,
                "shape": self.shape, "widths": self.widths, "declared_bits": self.declared,
                "true_bits": self.true_bits, "worst_channel": self.worst_channel,
                "accumulator_bits": self.accumulator_bits, "widened": self.widened,
                "exact": self.exact, "error_codes": self.error_codes, "note": self.note}


@dataclass
class Imported:
    """An imported program, with what the import did and the orders of its interface.

    ``input_order`` / ``output_order``: the place of each element of the source model's input
    / output (its logical shape, C order, batch left out) in the program's flat vectors; see
    :meth:`to_program` and :meth:`from_program`.
    """

    program: IntegerProgram
    layers: list
    input_order: np.ndarray
    output_order: np.ndarray
    source: str = ""

    def to_program(self, codes):
        """Program input codes (n, inputs) from source-shaped codes (n, *input shape)."""
        codes = np.asarray(codes, dtype=np.int64).reshape(len(codes), -1)
        flat = np.empty_like(codes)
        flat[:, self.input_order.ravel()] = codes
        return flat

    def from_program(self, codes):
        """Source-shaped codes (n, *output shape) from program output codes (n, outputs)."""
        codes = np.asarray(codes, dtype=np.int64)
        return codes[:, self.output_order.ravel()].reshape(len(codes),
                                                           *self.output_order.shape)


def accumulator_widths(weights, low, high):
    """The data-free minimal accumulator width of each channel (column) of integer
    ``weights`` for input codes in ``low..high``: the smallest ``P`` such that no partial sum,
    for any input and in any order, leaves the signed ``P``-bit range."""
    lows, highs = sum_range(weights, low, high)
    return np.array([signed_bits(lo, hi) for lo, hi in zip(lows, highs)], dtype=np.int64)


def requantization_error(real, multiplier, shift, largest):
    """How far the integer requantization ``t * M0 / 2^shift`` may be from ``t * real``.

    Parameters
    ----------
    real : sequence of Fraction
        The exact real multiplier of each channel.
    multiplier, shift : sequence of int
    largest : sequence of int
        The largest ``|t|`` each channel can reach.

    Returns
    -------
    exact : bool
        The integer requantization rounds like the real one for every ``|t| <= largest``:
        the multipliers are equal, or ``real = n / d`` with ``d`` odd (no value is a tie) and
        ``largest * |M0 / 2^shift - real| < 1 / (2 d)`` (no value crosses a rounding boundary).
    error : float
        The largest ``|t| * |M0 / 2^shift - real|``, in output codes before rounding.
    """
    exact, error = True, 0.0
    for value, m0, s, top in zip(real, multiplier, shift, largest):
        difference = abs(Fraction(int(m0), 1 << int(s)) - value)
        if difference == 0:
            continue
        error = max(error, float(difference * int(top)))
        if value.denominator % 2 == 0 or difference * int(top) * 2 * value.denominator >= 1:
            exact = False
    return exact, error


_ODD_TIES = ("the source rounds halves to even after adding its odd zero point: its ties "
             "are one code above or below the program's")


def _real_code(value, scale, rounding):
    """The code offset of a real bound ``value``: ``round(value / scale)``."""
    ratio = Fraction(value) / scale
    floor = math.floor(ratio)
    remainder = ratio - floor
    if remainder > Fraction(1, 2) or (remainder == Fraction(1, 2) and (
            rounding == "half_up" or floor % 2)):
        return floor + 1
    return floor


class ProgramBuilder:
    """Builds an :class:`~systolix.sw.program.IntegerProgram` layer by layer (see the module
    docstring). ``where`` prefixes error messages (the model file)."""

    def __init__(self, where=""):
        self.where = where
        self.layers, self.sources, self.infos = [], [], []
        self.input_params = None
        self.input_order = None

    def _fail(self, name, message):
        raise ValueError(f"{self.where}node {name!r}: {message}")

    def input(self, quantizer, order):
        """The program's input, quantized by ``quantizer`` (an :class:`OutputQuantizer`)
        with the logical ``order``; returns its :class:`Activation`."""
        if self.input_params is not None:
            raise ValueError(f"{self.where}the model has more than one quantized input; "
                             f"allowed: one")
        self.input_params = QuantParams(quantizer.bits, quantizer.signed,
                                        float(quantizer.scale), quantizer.zero_point,
                                        quantizer.low, quantizer.high)
        self.input_order = np.asarray(order)
        return Activation(-1, quantizer.scale, quantizer.zero_point, quantizer.bits,
                          quantizer.signed, quantizer.low, quantizer.high,
                          np.asarray(order))

    def _layer(self, name, kind, fields):
        """``kind(**fields)``, its checks' :class:`ValueError` naming the node."""
        try:
            return kind(**fields)
        except ValueError as error:
            self._fail(name, f"its {kind.__name__}: {error}")

    def _add(self, layer, sources, info):
        info.index = len(self.layers)
        self.layers.append(layer)
        self.sources.append(tuple(sources))
        self.infos.append(info)
        return info.index

    def dense(self, name, source, weights, weight_bits, weight_signed, scales, kind="dense"):
        """A :class:`Linear` of a dense layer: ``weights`` (F, N) integers over the logical
        input features of ``source`` (flattened in C order), ``scales`` the real weight scale
        of each output channel."""
        weights = np.asarray(weights, dtype=np.int64)
        features = source.order.size
        if weights.shape[0] != features:
            self._fail(name, f"its weights have {weights.shape[0]} rows, but its input has "
                             f"{features} features")
        stored = np.zeros_like(weights)
        stored[source.order.ravel()] = weights
        bias = -source.zero_point * stored.sum(axis=0)
        return Linear(name, kind, source, stored, weight_bits, weight_signed,
                      tuple(source.scale * Fraction(float(s)) for s in scales), bias)

    def conv(self, name, source, weights, weight_bits, weight_signed, scales, strides, pads,
             groups, kind="conv", scale_factor=Fraction(1)):
        """A :class:`Linear` of a 2-D convolution: ``weights`` (M, C/groups, kh, kw) integers
        as in ONNX, ``pads`` (top, left, bottom, right)."""
        weights = np.asarray(weights, dtype=np.int64)
        if source.order.ndim != 3 or not np.array_equal(
                source.order, map_order(*source.order.shape)):
            self._fail(name, f"its input must be a map (C, H, W), not of shape "
                             f"{source.order.shape}")
        channels, height, width = source.order.shape
        outputs, per_group, kh, kw = weights.shape
        if per_group * groups != channels or outputs % groups:
            self._fail(name, f"{groups} groups of {per_group} input channels do not fit an "
                             f"input of {channels} channels and {outputs} outputs")
        try:
            window = Window(height, width, channels, kh, kw, strides[0], strides[1], *pads,
                            groups=groups, pad_code=source.zero_point)
        except ValueError as error:
            self._fail(name, f"window: {error}")
        expanded = np.zeros((kh, kw, channels, outputs), dtype=np.int64)
        out_per_group = outputs // groups
        for group in range(groups):
            inputs = slice(group * per_group, (group + 1) * per_group)
            columns = slice(group * out_per_group, (group + 1) * out_per_group)
            expanded[:, :, inputs, columns] = weights[columns].transpose(2, 3, 1, 0)
        matrix = expanded.reshape(kh * kw * channels, outputs)
        bias = -source.zero_point * matrix.sum(axis=0)
        return Linear(name, kind, source, matrix, weight_bits, weight_signed,
                      tuple(source.scale * Fraction(float(s)) * scale_factor for s in scales), bias,
                      window)

    def average(self, name, source, kernel, strides, pads):
        """A :class:`Linear` of average pooling (padding counted): a depthwise convolution of
        ones with ``1 / (kh * kw)`` in its scale."""
        channels = source.order.shape[0]
        ones = np.ones((channels, 1, *kernel), dtype=np.int64)
        return self.conv(name, source, ones, 2, True, [1] * channels, strides, pads, channels,
                         kind="avgpool", scale_factor=Fraction(1, kernel[0] * kernel[1]))

    def identity(self, name, source):
        """A :class:`Linear` that passes ``source`` through (to requantize or clamp it)."""
        if source.order.ndim == 3 and np.array_equal(source.order,
                                                     map_order(*source.order.shape)):
            channels = source.order.shape[0]
            return self.conv(name, source, np.ones((channels, 1, 1, 1), dtype=np.int64), 2,
                             True, [1] * channels, (1, 1), (0, 0, 0, 0), channels,
                             kind="identity")
        features = source.order.size
        return self.dense(name, source, np.eye(features, dtype=np.int64), 2, True,
                          [1] * features, kind="identity")

    def add_bias(self, name, linear, bias):
        """``linear`` plus a real per-channel ``bias`` (sequence of Fraction): a whole number
        of accumulator units, or off it by no more than float32 rounding of its scale (a
        relative ``2^-20``: a bias quantized at ``float32(s_x * s_w)``), which is rounded to
        whole units and reported."""
        if linear.low != -math.inf or linear.high != math.inf:
            self._fail(name, "a bias added after ReLU or Clip is not supported; allowed: the "
                             "bias before the activation")
        units = [value / scale for value, scale in zip(bias, linear.scale)]
        whole = [round(unit) for unit in units]
        off = max(abs(unit - near) for unit, near in zip(units, whole))
        if any(abs(unit - near) > Fraction(max(1, abs(near)), 1 << 20)
               for unit, near in zip(units, whole)):
            self._fail(name, f"the bias is not a whole number of accumulator units (input "
                             f"scale x weight scale): off by up to {float(off):.3g} units; "
                             f"allowed: a bias quantized at that scale")
        note = linear.note
        if off:
            note = (f"bias rounded to whole accumulator units (off by up to {float(off):.2g}: "
                    f"its scale is not exactly input scale x weight scale)")
        return replace(linear, bias=linear.bias + np.array(whole, dtype=np.int64), note=note)

    def _input_range(self, linear):
        low, high = linear.input.low, linear.input.high
        if linear.window is not None and any((linear.window.pad_top, linear.window.pad_left,
                                              linear.window.pad_bottom,
                                              linear.window.pad_right)):
            low, high = min(low, linear.window.pad_code), max(high, linear.window.pad_code)
        return low, high

    def requantize(self, name, linear, quantizer):
        """End ``linear`` at ``quantizer``: add its :class:`~systolix.layer.IntegerLayer` and
        return the :class:`Activation` of its output."""
        source = linear.input
        if quantizer.bits > 8:
            self._fail(name, f"its output has {quantizer.bits}-bit codes; allowed: 1..8 bits")
        real = [scale / quantizer.scale for scale in linear.scale]
        if linear.floor:
            multiplier = np.ones(len(real), dtype=np.int64)
            shift = np.array([int(math.log2(1 / value)) for value in real], dtype=np.int64)
        else:
            try:
                multiplier, shift = fixed_point_multiplier([float(value) for value in real])
            except ValueError:
                self._fail(name, f"its requantization multipliers (input scale x weight scale "
                                 f"/ output scale) are {float(min(real)):.3g}.."
                                 f"{float(max(real)):.3g}; allowed: above 0 and below "
                                 f"{(1 << MULTIPLIER_BITS) - 0.5}")
        low, high = quantizer.low, quantizer.high
        if linear.low != -math.inf:
            low = max(low, min(high, _real_code(linear.low, quantizer.scale,
                                                 quantizer.rounding) + quantizer.zero_point))
        if linear.high != math.inf:
            high = min(high, max(low, _real_code(linear.high, quantizer.scale,
                                                  quantizer.rounding) + quantizer.zero_point))
        bias, rounding = linear.bias, quantizer.rounding
        if linear.floor:
            # floor(t / 2^s) = round-half-up((t - 2^(s-1)) / 2^s)
            bias = bias - np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
            rounding = "half_up"
        input_low, input_high = self._input_range(linear)
        sums = sum_range(linear.weights, input_low, input_high)
        largest = np.maximum(np.abs(sums[0] + bias), np.abs(sums[1] + bias))
        exact, error = requantization_error(real, multiplier, shift, largest)
        note = ""
        if quantizer.odd_ties(real):
            exact, note = False, _ODD_TIES
        if linear.note:
            exact, note = False, "; ".join(filter(None, (note, linear.note)))
        bias_low, bias_high = code_range(BIAS_BITS, True)
        if bias.min() < bias_low or bias.max() > bias_high:
            self._fail(name, f"its integer bias (with the input zero point term) reaches "
                             f"{int(bias.min())}..{int(bias.max())}; allowed: {BIAS_BITS}-bit "
                             f"signed")
        channel_bits = accumulator_widths(linear.weights, input_low, input_high)
        worst = int(np.argmax(channel_bits))
        layer = self._layer(name, IntegerLayer, dict(
            weights=linear.weights, bias=bias, multiplier=multiplier,
            shift=np.minimum(shift, MAX_SHIFT), output_zero_point=quantizer.zero_point,
            output_low=low, output_high=high, input_bits=source.bits,
            input_signed=source.signed, weight_bits=linear.weight_bits,
            weight_signed=linear.weight_signed, output_bits=quantizer.bits,
            output_signed=quantizer.signed, accumulator_bits=32, overflow="wrap",
            window=linear.window, rounding=rounding))
        shape = (f"{linear.weights.shape[0]}x{linear.weights.shape[1]}"
                 if linear.window is None else
                 f"{linear.window.height}x{linear.window.width}x{linear.window.channels} -> "
                 f"{'x'.join(map(str, layer.output_shape))}")
        widths = (f"W{linear.weight_bits}{'s' if linear.weight_signed else 'u'} "
                  f"A{source.bits}{'s' if source.signed else 'u'} "
                  f"O{quantizer.bits}{'s' if quantizer.signed else 'u'}")
        info = LayerInfo(0, linear.name, linear.kind, shape, widths, linear.declared,
                         int(channel_bits.max()), worst, 32, exact=exact, error_codes=error,
                         note=note)
        index = self._add(layer, (source.source,), info)
        return Activation(index, quantizer.scale, quantizer.zero_point, quantizer.bits,
                          quantizer.signed, low, high, linear.order)

    def sign(self, name, linear, scale):
        """End ``linear`` at a binary (bipolar) quantizer: codes ``+1`` where the real value is
        at least 0, else ``-1``, real ``scale * code``. The layer computes
        ``clamp(2 (acc + bias) + 1, -1, 1)``: multiplier 2, no shift, and 1 added as its output
        zero point (its codes' real zero point stays 0). Returns the output
        :class:`Activation`."""
        if linear.low != -math.inf or linear.high != math.inf:
            self._fail(name, "binarizes after ReLU or Clip; allowed: a sum")
        channels = linear.weights.shape[1]
        quantizer = OutputQuantizer(scale, 1, 2, True, -1, 1)
        output = self.requantize(name, replace(linear, scale=(Fraction(2),) * channels),
                                 replace(quantizer, scale=Fraction(1)))
        return replace(output, scale=scale, zero_point=0)

    def max_pool(self, name, source, kernel, strides, pads):
        """A :class:`~systolix.layer.MaxPoolLayer` on ``source``; returns its output."""
        channels, height, width = source.order.shape
        if not np.array_equal(source.order, map_order(channels, height, width)):
            self._fail(name, f"its input must be a map (C, H, W), not of shape "
                             f"{source.order.shape}")
        try:
            window = Window(height, width, channels, *kernel, *strides, *pads, groups=channels,
                            pad_code=code_range(source.bits, source.signed)[0])
        except ValueError as error:
            self._fail(name, f"window: {error}")
        layer = self._layer(name, MaxPoolLayer, dict(window=window, bits=source.bits,
                                                      signed=source.signed))
        info = LayerInfo(0, name, "maxpool", f"{height}x{width}x{channels} -> "
                         f"{'x'.join(map(str, layer.output_shape))}",
                         f"A{source.bits}{'s' if source.signed else 'u'}")
        index = self._add(layer, (source.source,), info)
        return replace(source, source=index,
                       order=map_order(channels, window.output_height, window.output_width))

    def add(self, name, first, second, quantizer, low=-math.inf, high=math.inf):
        """An :class:`~systolix.layer.AddLayer` of two activations requantized by
        ``quantizer`` (real clamp bounds ``low..high``); returns its output. Inputs of
        different code widths are brought to the wider codes first (an exact identity layer:
        same scale and zero point, more bits)."""
        if first.shape != second.shape:
            self._fail(name, f"adds tensors of shapes {first.shape} and {second.shape}; "
                             f"allowed: the same shape")
        if (first.bits, first.signed) != (second.bits, second.signed):
            signed = first.signed or second.signed
            bits = max(codes_bits(min(act.low, act.zero_point), max(act.high, act.zero_point),
                                  signed) for act in (first, second))
            first, second = (act if (act.bits, act.signed) == (bits, signed) else
                             self.requantize(name, self.identity(name, act), OutputQuantizer(
                                 act.scale, act.zero_point, bits, signed, act.low, act.high))
                             for act in (first, second))
        if not np.array_equal(first.order, second.order):
            self._fail(name, "adds tensors stored in different orders")
        real = [first.scale / quantizer.scale, second.scale / quantizer.scale]
        top = float(max(real))
        if not top < (1 << MULTIPLIER_BITS) - 0.5:
            self._fail(name, f"its input scales are {top:.3g} times its output scale; allowed: "
                             f"below {1 << MULTIPLIER_BITS}")
        shift = int(min(MAX_SHIFT, math.floor(math.log2(((1 << MULTIPLIER_BITS) - 0.5)
                                                        / top))))
        multipliers = [int(math.floor(value * (1 << shift) + Fraction(1, 2))) for value in real]
        out_low, out_high = quantizer.low, quantizer.high
        if low != -math.inf:
            out_low = max(out_low, min(out_high, _real_code(low, quantizer.scale,
                                                             quantizer.rounding)
                                       + quantizer.zero_point))
        if high != math.inf:
            out_high = min(out_high, max(out_low, _real_code(high, quantizer.scale,
                                                              quantizer.rounding)
                                         + quantizer.zero_point))
        shape = first.order.shape
        dims = (shape[1], shape[2], shape[0]) if len(shape) == 3 else (1, 1, first.order.size)
        layer = self._layer(name, AddLayer, dict(
            shape=dims, zero_points=(first.zero_point, second.zero_point),
            multipliers=tuple(multipliers), shift=shift, output_zero_point=quantizer.zero_point,
            output_low=out_low, output_high=out_high, input_bits=first.bits,
            input_signed=first.signed, output_bits=quantizer.bits,
            output_signed=quantizer.signed, rounding=quantizer.rounding))
        spans = [max(abs(act.low - act.zero_point), abs(act.high - act.zero_point))
                 for act in (first, second)]
        differences = [abs(Fraction(m, 1 << shift) - value) for m, value in zip(multipliers,
                                                                                 real)]
        error = float(sum(d * s for d, s in zip(differences, spans)))
        denominator = math.lcm(*(value.denominator for value in real))
        exact = error == 0 or (denominator % 2 == 1 and error * 2 * denominator < 1)
        note = ""
        if quantizer.odd_ties(real):
            exact, note = False, _ODD_TIES
        info = LayerInfo(0, name, "add", "x".join(map(str, dims)),
                         f"A{first.bits}{'s' if first.signed else 'u'} "
                         f"O{quantizer.bits}{'s' if quantizer.signed else 'u'}",
                         exact=exact, error_codes=error, note=note)
        index = self._add(layer, (first.source, second.source), info)
        return Activation(index, quantizer.scale, quantizer.zero_point, quantizer.bits,
                          quantizer.signed, out_low, out_high, first.order)

    def finish(self, output, source=""):
        """The :class:`Imported` program whose output is ``output`` (an :class:`Activation`
        made by the last layer)."""
        if self.input_params is None:
            raise ValueError(f"{self.where}the model has no quantized input; allowed: an "
                             f"input quantized by Quant or QuantizeLinear")
        if not self.layers:
            raise ValueError(f"{self.where}the model has no layer (nothing between its "
                             f"input and output quantizers)")
        if output.source != len(self.layers) - 1:
            raise ValueError(f"{self.where}the model's output is not made by its last layer "
                             f"(an unused branch?)")
        out = QuantParams(output.bits, output.signed, float(output.scale), output.zero_point,
                          output.low, output.high)
        try:
            program = IntegerProgram(tuple(self.layers), self.input_params, out,
                                     tuple(self.sources))
        except ValueError as error:
            raise ValueError(f"{self.where}{error}") from None
        return Imported(program, self.infos, self.input_order, output.order, source)


def check_accumulators(imported, accumulator_bits=None, widen=False):
    """Hold every layer of ``imported`` to its accumulator width; return the new
    :class:`Imported`.

    Each :class:`~systolix.layer.IntegerLayer` runs at ``accumulator_bits`` (the requested
    ``P``), else at its width declared by the source model, else at 32 bits. A layer whose
    true data-free width (:func:`accumulator_widths`, recorded by the import) is larger is
    refused with a :class:`ValueError` naming the layer, the channel and the width it needs,
    unless ``widen``: then its ``accumulator_bits`` is raised to the true width and the report
    says so. A true width above 32 bits is always refused.
    """
    layers, infos = list(imported.program.layers), []
    for layer, info in zip(layers, imported.layers):
        info = replace(info)
        infos.append(info)
        if not isinstance(layer, IntegerLayer):
            continue
        wanted = accumulator_bits if accumulator_bits is not None else (
            info.declared if info.declared is not None else 32)
        bits = max(wanted, 2)
        if info.true_bits > bits:
            origin = ("--accumulator-bits" if accumulator_bits is not None else
                      "its declared width" if info.declared is not None else "the hardware")
            if not widen or info.true_bits > 32:
                allowed = ("a model whose integers fit 32 bits" if info.true_bits > 32 else
                           "a larger --accumulator-bits, or --widen to raise this layer's width")
                raise ValueError(
                    f"{imported.source}layer {info.index} ({info.name!r}, {info.kind}): "
                    f"channel {info.worst_channel} needs an accumulator of {info.true_bits} bits "
                    f"for its integers and input codes, but {origin} is {wanted}; allowed: "
                    f"{allowed}")
            bits, info.widened = info.true_bits, True
        info.accumulator_bits = bits
        layers[info.index] = replace(layer, accumulator_bits=bits)
    program = replace(imported.program, layers=tuple(layers))
    return replace(imported, program=program, layers=infos)


def report_text(imported, accumulator_bits=None):
    """The import report: one row per layer, declared / true / used accumulator widths and
    whether its requantization is exact."""
    lines = [f"import of {imported.source.rstrip(': ') or 'a model'}: "
             f"{len(imported.layers)} layers, {imported.program.inputs} input codes, "
             f"{imported.program.outputs} output codes",
             _interface("input", imported.program.input, imported.input_order),
             _interface("output", imported.program.output, imported.output_order),
             f"requested accumulator width: "
             f"{accumulator_bits if accumulator_bits is not None else 'none (declared or 32)'}",
             "", f"{'#':>3}  {'kind':<8} {'node':<24} {'shape':<24} {'widths':<16} "
                 f"{'declared P':>10} {'true P':>6} {'P':>3}  requantization"]
    for info in imported.layers:
        requant = "exact" if info.exact else "; ".join(filter(None, (
            f"approximate: up to {info.error_codes:.3g} codes off before rounding"
            if info.error_codes else "", info.note)))
        if info.kind == "maxpool":
            requant = "-"
        lines.append(
            f"{info.index:>3}  {info.kind:<8} {info.name[:24]:<24} {info.shape:<24} "
            f"{info.widths:<16} {'-' if info.declared is None else info.declared:>10} "
            f"{'-' if info.true_bits is None else info.true_bits:>6} "
            f"{'-' if info.accumulator_bits is None else info.accumulator_bits:>3}  {requant}"
            + ("  WIDENED (channel %d)" % info.worst_channel if info.widened else "")
            + (f"  declared width too small (channel {info.worst_channel})"
               if info.declared is not None and info.true_bits is not None
               and info.true_bits > info.declared else ""))
    widened = [info.index for info in imported.layers if info.widened]
    approximate = [info.index for info in imported.layers if not info.exact]
    lines += ["", f"widened layers: {', '.join(map(str, widened)) or 'none'}",
              f"layers with approximate requantization: "
              f"{', '.join(map(str, approximate)) or 'none'}"]
    return "\n".join(lines) + "\n"


def _interface(name, params, order):
    layout = ("a (C, H, W) map, NHWC in the program" if order.ndim == 3 else
              "features, in this order in the program" if np.array_equal(
                  order.ravel(), np.arange(order.size)) else "features, permuted in the program")
    return (f"{name}: shape {tuple(order.shape)} ({layout}), {params.bits}-bit "
            f"{'signed' if params.signed else 'unsigned'} codes {params.low}..{params.high}, "
            f"scale {params.scale:g}, zero point {params.zero_point}")


def report_json(imported, accumulator_bits=None):
    """The import report as JSON text."""
    return json.dumps({"source": imported.source.rstrip(": "),
                       "accumulator_bits": accumulator_bits,
                       "input_shape": list(imported.input_order.shape),
                       "output_shape": list(imported.output_order.shape),
                       "layers": [info.as_dict() for info in imported.layers]}, indent=1) + "\n"
