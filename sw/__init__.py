"""The compiler: float model -> quantized model -> integer program (see docs/quantization.md).

``quantize`` (post-training, with A2Q / A2Q+ for an accumulator width), ``lower`` (operand
reordering into an :class:`IntegerProgram`), which :func:`systolix.sim.golden.run_program`
executes bit-exactly.
"""

from .lower import lower
from .models import DigitsSplit, FloatModel, digits_mlp, digits_split
from .program import IntegerLayer, IntegerProgram
from .qmodel import QuantizedLayer, QuantizedModel, quantize

__all__ = ["FloatModel", "DigitsSplit", "digits_split", "digits_mlp", "QuantizedLayer",
           "QuantizedModel", "quantize", "IntegerLayer", "IntegerProgram", "lower"]
