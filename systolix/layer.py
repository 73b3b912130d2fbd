"""The integer layer: the unit of work of the accelerator, the same to the compiler, the memory
map, the golden model and the gateware.

An :class:`IntegerLayer` is an integer GEMM on raw codes into a ``P``-bit accumulator followed
by a per-channel fixed-point requantization; :func:`systolix.sim.golden.run_layer` executes it
bit-exactly, :func:`systolix.sw.pack.pack` packs it into the memory map and
:func:`systolix.memory_map.packed_layers` reads it back.
"""

from dataclasses import dataclass

import numpy as np

from .config import OVERFLOW_MODES, check_bool, check_choice, check_int, code_range
from .numeric import BIAS_BITS, CODE_BITS, MAX_SHIFT, MULTIPLIER_BITS

__all__ = ["frozen_array", "integer_array", "IntegerLayer"]


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
