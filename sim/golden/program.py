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
   constant added before the shift). ReLU is folded into ``low``.

Widths the requantization unit must provide (:mod:`systolix.numeric`): ``acc + bias`` is
computed exactly in 33 bits (the accumulator has at most 32 bits, the bias is a signed
``BIAS_BITS``-bit integer, and the sum does not wrap to ``P`` bits); ``M0`` is unsigned, at most
``MULTIPLIER_BITS`` bits; ``shift`` lies in ``0..MAX_SHIFT``. Products therefore stay below
``2^49`` and every step is exact in int64.

Nothing here imports the compiler: a program is anything with ``layers`` whose entries have the
fields of :class:`systolix.layer.IntegerLayer`.
"""

import numpy as np

from systolix.config import code_range
from systolix.memory_map import packed_layers

from .array import accumulate

__all__ = ["requantize", "run_layer", "run_layers", "run_program", "run_images"]


def requantize(acc, bias, multiplier, shift, zero_point, low, high):
    """The requantization unit: ``clamp(((acc + bias) * M0 + 2^(shift-1)) >> shift) + zp)``.

    Parameters
    ----------
    acc : array_like of int, shape (n, channels)
        Accumulator values.
    bias, multiplier, shift : array_like of int, shape (channels,) or scalars
        Integer bias, unsigned multiplier ``M0`` and right shift of each channel.
    zero_point, low, high : int
        Output zero point and clamp range (codes).

    Returns
    -------
    numpy.ndarray of int64, shape (n, channels)
        Output codes, rounded half up as described in the module docstring.
    """
    shift = np.asarray(shift, dtype=np.int64)
    product = (np.asarray(acc, dtype=np.int64) + np.asarray(bias, dtype=np.int64)) \
        * np.asarray(multiplier, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(np.int64(1), np.maximum(shift - 1, 0)), 0)
    rounded = np.right_shift(product + half, shift)
    return np.clip(rounded + zero_point, low, high)


def run_layer(layer, codes):
    """Output codes of one integer layer for input ``codes`` of shape ``(n, K)``."""
    codes = np.asarray(codes, dtype=np.int64)
    low, high = code_range(layer.input_bits, layer.input_signed)
    if codes.ndim != 2 or codes.shape[1] != layer.weights.shape[0]:
        raise ValueError(f"input codes must have shape (n, {layer.weights.shape[0]}), "
                         f"not {codes.shape}")
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"input codes must lie in {low}..{high}, "
                         f"not {codes.min()}..{codes.max()}")
    acc = accumulate(codes, layer.weights, layer.accumulator_bits, layer.overflow)
    return requantize(acc, layer.bias, layer.multiplier, layer.shift,
                      layer.output_zero_point, layer.output_low, layer.output_high)


def run_layers(layers, codes):
    """Output codes of the last of ``layers`` for input ``codes`` of the first."""
    for layer in layers:
        codes = run_layer(layer, codes)
    return codes


def run_program(program, codes):
    """Output codes of the last layer of ``program`` for input ``codes`` of the first layer."""
    return run_layers(program.layers, codes)


def run_images(images, config, codes):
    """Output codes of the model packed into ``images`` (:class:`~systolix.memory_map.MemoryImages`
    for an array of ``config``) for input ``codes`` of its first layer: what the accelerator
    built from those images computes."""
    return run_layers(packed_layers(images, config), codes)
