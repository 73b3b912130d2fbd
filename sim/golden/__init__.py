"""Bit-exact numpy golden models and the cycle model of the hardware."""

from .array import accumulate, array_matmul, wrap
from .program import requantize, run_images, run_layer, run_layers, run_program

__all__ = ["accumulate", "array_matmul", "wrap", "requantize", "run_layer", "run_layers",
           "run_program", "run_images"]
