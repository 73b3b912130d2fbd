"""The integer program: what the accelerator runs, with nothing but integers in its layers.

An :class:`IntegerProgram` is a sequence of :class:`IntegerLayer` records. Each is an integer
GEMM on raw codes into a ``P``-bit accumulator followed by a per-channel fixed-point
requantization; :mod:`systolix.sim.golden.program` executes it bit-exactly and defines the
exact arithmetic. The program also carries the two float quantizers of its interface to the
host (how to turn real inputs into input codes and output codes back into real values); the
layers never use them.
"""

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from systolix.config import code_range
from systolix.layer import IntegerLayer

from .io import exact_keys, field, layer_count, load_arrays, save_arrays
from .quant import QuantParams

__all__ = ["IntegerLayer", "IntegerProgram", "QUANTIZER_FIELDS", "check_quantizer"]

_FORMAT = "systolix.IntegerProgram"
_VERSION = 1
_ARRAYS = ("weights", "bias", "multiplier", "shift")
_SCALARS = ("output_zero_point", "output_low", "output_high", "input_bits", "input_signed",
            "weight_bits", "weight_signed", "output_bits", "output_signed", "accumulator_bits",
            "overflow")
_SCALAR_KINDS = {"output_zero_point": int, "output_low": int, "output_high": int,
                 "input_bits": int, "input_signed": bool, "weight_bits": int,
                 "weight_signed": bool, "output_bits": int, "output_signed": bool,
                 "accumulator_bits": int, "overflow": str}
QUANTIZER_FIELDS = tuple(item.name for item in fields(QuantParams))


def check_quantizer(name, params):
    """Raise :class:`ValueError` unless ``params`` is a per-tensor :class:`QuantParams` with a
    finite positive scale, ``bits`` 1..8 and its zero point and bounds among its codes."""
    if not isinstance(params, QuantParams):
        raise ValueError(f"{name} must be a QuantParams, not {type(params).__name__}")
    bits, signed = params.bits, params.signed
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"{name}.bits must be an integer in 1..8, not {bits!r}")
    if not isinstance(signed, (bool, np.bool_)):
        raise ValueError(f"{name}.signed must be True or False, not {signed!r}")
    scale = params.scale
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer,
                                                                     np.floating)) \
            or not math.isfinite(scale) or not scale > 0:
        raise ValueError(f"{name}.scale must be a finite number above 0, not {scale!r}")
    low, high = code_range(int(bits), bool(signed))
    for part in ("zero_point", "low", "high"):
        value = getattr(params, part)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
                or not low <= value <= high:
            raise ValueError(f"{name}.{part} must be an integer in {low}..{high} (the "
                             f"{bits}-bit {'signed' if signed else 'unsigned'} codes), not "
                             f"{value!r}")
    if params.low > params.high:
        raise ValueError(f"{name}.high must be an integer in {params.low}..{high}, not "
                         f"{params.high!r}")


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
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, IntegerLayer):
                raise ValueError(f"layer {index} must be an IntegerLayer, not "
                                 f"{type(layer).__name__}")
        check_quantizer("input", self.input)
        check_quantizer("output", self.output)
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
            raise ValueError(f"the input quantizer's codes ({self.input.bits} bits, "
                             f"{'signed' if self.input.signed else 'unsigned'}) must be the "
                             f"first layer's input codes ({first.input_bits} bits, "
                             f"{'signed' if first.input_signed else 'unsigned'})")
        if (self.output.bits, self.output.signed, self.output.zero_point) != (
                last.output_bits, last.output_signed, last.output_zero_point):
            raise ValueError(f"the output quantizer (bits {self.output.bits}, signed "
                             f"{self.output.signed}, zero point {self.output.zero_point}) must "
                             f"read the last layer's output codes (bits {last.output_bits}, "
                             f"signed {last.output_signed}, zero point "
                             f"{last.output_zero_point})")

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
        """Read a program written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming the file, the header field or array, the value and what is allowed: for a
            missing, empty, truncated or unreadable file, another format or version, a header
            field missing, unknown or of the wrong type, an array missing, unknown, not of
            integers or of another shape, a quantizer whose scale is not finite and positive,
            codes out of range, layers that do not chain.
        """
        def members(header):
            count = layer_count(path, header)
            return {f"{name}{index}": ("int", 2 if name == "weights" else 1)
                    for index in range(count) for name in _ARRAYS}

        header, arrays = load_arrays(path, _FORMAT, _VERSION, members)
        exact_keys(path, "", header, ("format", "version", "input", "output", "layers"))
        layers = []
        for index, scalars in enumerate(header["layers"]):
            where = f"layers[{index}]."
            exact_keys(path, where, scalars, _SCALARS)
            for name, kind in _SCALAR_KINDS.items():
                field(path, where, scalars, name, kind)
            try:
                layers.append(IntegerLayer(**{name: arrays[f"{name}{index}"]
                                              for name in _ARRAYS}, **scalars))
            except ValueError as error:
                raise ValueError(f"{path}: layer {index}: {error}") from None
        quantizers = {}
        for name in ("input", "output"):
            entry = header[name]
            exact_keys(path, f"{name}.", entry, QUANTIZER_FIELDS)
            for part, kind in (("bits", int), ("signed", bool), ("zero_point", int),
                               ("low", int), ("high", int)):
                field(path, f"{name}.", entry, part, kind)
            field(path, f"{name}.", entry, "scale", float, low=0)
            quantizers[name] = QuantParams(**entry)
        try:
            return cls(tuple(layers), quantizers["input"], quantizers["output"])
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
