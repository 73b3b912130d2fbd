"""Bit-exact numpy execution of integer layers (:class:`systolix.layer.IntegerLayer`).

Each layer is what the hardware does for it:

1. the array: ``acc = x @ W`` on raw codes with a signed ``P``-bit accumulator, wrapping or
   saturating, ``k`` in order (:func:`systolix.sim.golden.array.accumulate`);
2. the requantization unit, per output channel ``c`` (:func:`requantize`)::

       t   = (acc + bias[c]) * M0[c]                       exact, at most 49 bits signed
       r   = (t + 2^(shift[c]-1)) >> shift[c]              arithmetic shift; r = t if shift is 0
       out = clamp(r + zero_point, low, high)

   that is ``out = clamp(floor((acc + bias) * M0 / 2^shift + 1/2) + zero_point)``: round to
   nearest with halves rounded up (toward +inf), the cheapest rounding in hardware (one
   constant added before the shift). ReLU is folded into ``low``. A layer may round halves to
   even instead (``rounding="half_even"``, ONNX's rule): ``r = (t + 2^(shift-1) - 1 +
   bit_shift(t)) >> shift``, where ``bit_shift(t)`` is the lowest bit of ``t >> shift``.

A convolution (a layer with a :class:`~systolix.layer.Window`) is the same on the patches of
its input maps (:meth:`~systolix.layer.Window.patches`): one accumulator per output position and
channel. A max pooling layer takes the largest code of each window; an add layer adds two
tensors requantized to a common scale (:class:`~systolix.layer.AddLayer`). A
:class:`~systolix.layer.MatMulLayer` multiplies two tensors of codes (raw codes on the array, the
zero points folded out after it); softmax, LayerNorm and GELU layers run the integer functions of
:mod:`systolix.sim.golden.nonlinear`.

Widths the requantization unit must provide (:mod:`systolix.numeric`): ``acc + bias`` is
computed exactly in 33 bits (the accumulator has at most 32 bits, the bias is a signed
``BIAS_BITS``-bit integer, and the sum does not wrap to ``P`` bits); ``M0`` is unsigned, at most
``MULTIPLIER_BITS`` bits; ``shift`` lies in ``0..MAX_SHIFT``. Products therefore stay below
``2^49`` and every step is exact in int64.

Nothing here imports the compiler: a program is anything with ``layers`` (the layers of
:mod:`systolix.layer`) and ``sources`` (for each layer, the layers whose outputs it reads; -1 is
the program's input).
"""

import numpy as np

from systolix.config import code_range
from systolix.layer import (AddLayer, GeluLayer, LayerNormLayer, MatMulLayer, MaxPoolLayer,
                            SoftmaxLayer)
from systolix.memory_map import packed_layers, packed_sources

from .array import accumulate

__all__ = ["round_shift", "requantize", "run_layer", "run_layers", "run_program", "run_images"]


def round_shift(values, shift, rounding="half_up"):
    """``values / 2^shift`` rounded to an integer, halves up or to even (``rounding``); exact
    for int64 ``values`` and ``shift`` in ``0..63`` (array or scalar)."""
    values = np.asarray(values, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    if rounding == "half_even":
        odd = np.right_shift(values, shift) & 1
        half = np.where(shift > 0, half - 1 + odd, 0)
    return np.right_shift(values + half, shift)


def requantize(acc, bias, multiplier, shift, zero_point, low, high, rounding="half_up"):
    """The requantization unit: ``clamp(((acc + bias) * M0 + 2^(shift-1)) >> shift) + zp)``.

    Parameters
    ----------
    acc : array_like of int, shape (n, channels)
        Accumulator values.
    bias, multiplier, shift : array_like of int, shape (channels,) or scalars
        Integer bias, unsigned multiplier ``M0`` and right shift of each channel.
    zero_point, low, high : int
        Output zero point and clamp range (codes).
    rounding : str
        ``"half_up"`` or ``"half_even"`` (:data:`~systolix.layer.ROUNDING_MODES`).

    Returns
    -------
    numpy.ndarray of int64, shape (n, channels)
        Output codes, rounded as described in the module docstring.
    """
    product = (np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)) \
        * np.asarray(multiplier, dtype=np.int64)
    return np.clip(round_shift(product, shift, rounding) + zero_point, low, high)


def _check_input(layer, codes, length=None):
    codes = np.asarray(codes, dtype=np.int64)
    low, high = code_range(layer.input_bits, layer.input_signed)
    length = layer.inputs if length is None else length
    if codes.ndim != 2 or codes.shape[1] != length:
        raise ValueError(f"input codes must have shape (n, {length}), not {codes.shape}")
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"input codes must lie in {low}..{high}, "
                         f"not {codes.min()}..{codes.max()}")
    return codes


def run_layer(layer, *codes):
    """Output codes of one layer for its input ``codes`` (one array of shape ``(n, inputs)``,
    two for an :class:`~systolix.layer.AddLayer` and a :class:`~systolix.layer.MatMulLayer`),
    shape ``(n, outputs)``."""
    if isinstance(layer, MatMulLayer):
        return _matmul(layer, *(_check_input(layer, part, length)
                                for part, length in zip(codes, layer.operand_inputs)))
    codes = [_check_input(layer, part) for part in codes]
    if isinstance(layer, AddLayer):
        (a, b), (za, zb), (ma, mb) = codes, layer.zero_points, layer.multipliers
        if a.shape != b.shape:
            raise ValueError(f"the inputs of an add layer must have the same shape, not "
                             f"{a.shape} and {b.shape}")
        total = (a - za) * ma + (b - zb) * mb
        return np.clip(round_shift(total, layer.shift, layer.rounding)
                       + layer.output_zero_point, layer.output_low, layer.output_high)
    (x,) = codes
    if isinstance(layer, (SoftmaxLayer, LayerNormLayer, GeluLayer)):
        return _nonlinear(layer, x)
    if isinstance(layer, MaxPoolLayer):
        window = layer.window
        patches = window.patches(x).reshape(-1, window.kernel_height * window.kernel_width,
                                            window.channels)
        return patches.max(axis=1).reshape(len(x), layer.outputs)
    if layer.window is not None:
        x = layer.window.patches(x)
    acc = accumulate(x, layer.weights, layer.accumulator_bits, layer.overflow)
    out = requantize(acc, layer.bias, layer.multiplier, layer.shift, layer.output_zero_point,
                     layer.output_low, layer.output_high, layer.rounding)
    return out.reshape(len(codes[0]), layer.outputs)


def _matmul(layer, a, b):
    """The output codes of a :class:`~systolix.layer.MatMulLayer` for operands ``a``, ``b``."""
    n, groups, inner = len(a), layer.groups, layer.inner
    a = a.reshape(n, layer.rows, groups, inner).transpose(0, 2, 1, 3)           # (n, g, i, k)
    b = (b.reshape(n, layer.cols, groups, inner).transpose(0, 2, 3, 1) if layer.transpose
         else b.reshape(n, inner, groups, layer.cols).transpose(0, 2, 1, 3))     # (n, g, k, j)
    acc = np.stack([accumulate(a[index, group], b[index, group], layer.accumulator_bits,
                               layer.overflow)
                    for index in range(n) for group in range(groups)])
    za, zb = layer.zero_points
    total = (acc.reshape(n, groups, layer.rows, layer.cols)
             - zb * a.sum(axis=3, keepdims=True) - za * b.sum(axis=2, keepdims=True)
             + inner * za * zb + layer.bias)
    out = requantize(total, 0, layer.multiplier, layer.shift, layer.output_zero_point,
                     layer.output_low, layer.output_high, layer.rounding)
    return out.transpose(0, 2, 1, 3).reshape(n, layer.outputs)


def _nonlinear(layer, x):
    """The output codes of a softmax, LayerNorm or GELU layer for input codes ``x``."""
    from . import nonlinear

    rows = x.reshape(-1, layer.shape[2])
    out = (layer.output_zero_point, layer.output_low, layer.output_high, layer.rounding)
    if isinstance(layer, SoftmaxLayer):
        y = nonlinear.integer_softmax(rows, layer.fraction_bits, layer.multiplier, layer.shift,
                                      *out)
    elif isinstance(layer, LayerNormLayer):
        y = nonlinear.integer_layernorm(rows, layer.multiplier, layer.bias, layer.shift, *out)
    else:
        y = nonlinear.integer_gelu(rows, layer.input_zero_point, layer.clip, layer.constant,
                                   layer.multiplier, layer.shift, *out)
    return y.reshape(len(x), layer.outputs)


def run_layers(layers, codes, sources=None):
    """Output codes of the last of ``layers`` for input ``codes`` of the program.

    ``sources[l]`` lists the layers whose outputs layer ``l`` reads (-1: the program's input);
    ``None`` chains the layers, each reading the one before."""
    if sources is None:
        sources = [(index - 1,) for index in range(len(layers))]
    outputs = {-1: np.asarray(codes, dtype=np.int64)}
    for index, (layer, inputs) in enumerate(zip(layers, sources)):
        outputs[index] = run_layer(layer, *(outputs[source] for source in inputs))
    return outputs[len(layers) - 1]


def run_program(program, codes):
    """Output codes of the last layer of ``program`` for input ``codes`` of its input."""
    return run_layers(program.layers, codes, program.sources)


def run_images(images, config, codes):
    """Output codes of the model packed into ``images`` (:class:`~systolix.memory_map.MemoryImages`
    for an array of ``config``) for input ``codes`` of its first layer: what the accelerator
    built from those images computes."""
    return run_layers(packed_layers(images, config), codes, packed_sources(images))
