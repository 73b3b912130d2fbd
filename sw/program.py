"""The integer program: what the accelerator runs, with nothing but integers in its layers.

An :class:`IntegerProgram` is a sequence of :class:`IntegerLayer` records. Each is an integer
GEMM on raw codes into a ``P``-bit accumulator followed by a per-channel fixed-point
requantization; :mod:`systolix.sim.golden.program` executes it bit-exactly and defines the
exact arithmetic. The program also carries the two float quantizers of its interface to the
host (how to turn real inputs into input codes and output codes back into real values); the
layers never use them.
"""

from dataclasses import asdict, dataclass

import numpy as np

from systolix.config import OVERFLOW_MODES, check_choice, check_int, code_range
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS

from .io import frozen_array, load_arrays, save_arrays
from .quant import QuantParams

__all__ = ["IntegerLayer", "IntegerProgram"]

_FORMAT = "systolix.IntegerProgram"
_VERSION = 1
_ARRAYS = ("weights", "bias", "multiplier", "shift")
_SCALARS = ("output_zero_point", "output_low", "output_high", "input_bits", "input_signed",
            "weight_bits", "weight_signed", "output_bits", "output_signed", "accumulator_bits",
            "overflow")


def _check_range(name, values, low, high):
    if values.size and (values.min() < low or values.max() > high):
        raise ValueError(f"{name} must lie in {low}..{high}, not {values.min()}..{values.max()}")


@dataclass(frozen=True)
class IntegerLayer:
    """One layer: ``out = requantize(accumulate(x, weights), bias, multiplier, shift, ...)``.

    Parameters
    ----------
    weights : numpy.ndarray of int64, shape (K, N)
        Weight codes, ``y = x @ weights``: one row per input, one column per output channel.
    bias : numpy.ndarray of int64, shape (N,)
        Added to the accumulator before the multiplier; signed, :data:`BIAS_BITS` bits. Holds the
        quantized bias and the input zero point term ``-z_x * sum_k weights[k, c]``.
    multiplier : numpy.ndarray of int64, shape (N,)
        ``M0``, unsigned, :data:`MULTIPLIER_BITS` bits.
    shift : numpy.ndarray of int64, shape (N,)
        Right shift, ``0..MAX_SHIFT``; the real multiplier is ``M0 * 2^-shift``.
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
            check_int(name, getattr(self, name), 1, 8)
        for name in ("input_signed", "weight_signed", "output_signed"):
            check_choice(name, getattr(self, name), (True, False))
        check_int("accumulator_bits", self.accumulator_bits, 2, 32)
        check_choice("overflow", self.overflow, OVERFLOW_MODES)
        weights = frozen_array(self.weights, np.int64)
        if weights.ndim != 2:
            raise ValueError(f"weights must be a matrix (K, N), not of shape {weights.shape}")
        channels = weights.shape[1]
        for name in ("bias", "multiplier", "shift"):
            array = frozen_array(np.broadcast_to(getattr(self, name), (channels,)), np.int64)
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


@dataclass(frozen=True)
class IntegerProgram:
    """A chain of integer layers and the quantizers of its interface to the host.

    Parameters
    ----------
    layers : tuple of IntegerLayer
        Layer ``l + 1`` reads the output codes of layer ``l``.
    input : QuantParams
        How real inputs become the first layer's input codes (:meth:`encode_input`).
    output : QuantParams
        How the last layer's output codes become real values (:meth:`decode_output`).
    """

    layers: tuple
    input: QuantParams
    output: QuantParams

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ValueError("an integer program needs at least one layer")
        for index, (layer, following) in enumerate(zip(self.layers, self.layers[1:])):
            if layer.weights.shape[1] != following.weights.shape[0]:
                raise ValueError(f"layer {index + 1} has {following.weights.shape[0]} inputs "
                                 f"but layer {index} has {layer.weights.shape[1]} outputs")
            if (layer.output_bits, layer.output_signed) != (following.input_bits,
                                                            following.input_signed):
                raise ValueError(f"the output codes of layer {index} must be the input codes "
                                 f"of layer {index + 1}")
        first, last = self.layers[0], self.layers[-1]
        if (self.input.bits, self.input.signed) != (first.input_bits, first.input_signed):
            raise ValueError("the input quantizer must produce the first layer's input codes")
        if (self.output.bits, self.output.signed, self.output.zero_point) != (
                last.output_bits, last.output_signed, last.output_zero_point):
            raise ValueError("the output quantizer must read the last layer's output codes")

    def encode_input(self, x):
        """Input codes for real inputs ``x`` of shape ``(n, K)``."""
        return self.input.quantize(x)

    def decode_output(self, codes):
        """Real values of output codes."""
        return self.output.dequantize(codes)

    def save(self, path):
        """Write the program to one ``.npz`` file (atomically, with a format version)."""
        header = {"input": asdict(self.input),
                  "output": asdict(self.output),
                  "layers": [{name: getattr(layer, name) for name in _SCALARS}
                             for layer in self.layers]}
        arrays = {f"{name}{index}": getattr(layer, name)
                  for index, layer in enumerate(self.layers) for name in _ARRAYS}
        save_arrays(path, _FORMAT, _VERSION, header, arrays)

    @classmethod
    def load(cls, path):
        """Read a program written by :meth:`save`."""
        header, arrays = load_arrays(path, _FORMAT, _VERSION)
        layers = tuple(IntegerLayer(**{name: arrays[f"{name}{index}"] for name in _ARRAYS},
                                    **scalars)
                       for index, scalars in enumerate(header["layers"]))
        return cls(layers, QuantParams(**header["input"]), QuantParams(**header["output"]))
