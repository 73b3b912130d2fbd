"""The integer program: what the accelerator runs, with nothing but integers in its layers.

An :class:`IntegerProgram` is a sequence of :class:`IntegerLayer` records. Each is an integer
GEMM on raw codes into a ``P``-bit accumulator followed by a per-channel fixed-point
requantization; :mod:`systolix.sim.golden.program` executes it bit-exactly and defines the
exact arithmetic. The program also carries the two float quantizers of its interface to the
host (how to turn real inputs into input codes and output codes back into real values); the
layers never use them.
"""

from dataclasses import asdict, dataclass

from systolix.layer import IntegerLayer

from .io import load_arrays, save_arrays
from .quant import QuantParams

__all__ = ["IntegerLayer", "IntegerProgram"]

_FORMAT = "systolix.IntegerProgram"
_VERSION = 1
_ARRAYS = ("weights", "bias", "multiplier", "shift")
_SCALARS = ("output_zero_point", "output_low", "output_high", "input_bits", "input_signed",
            "weight_bits", "weight_signed", "output_bits", "output_signed", "accumulator_bits",
            "overflow")


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
