"""Bit-exact numpy golden models and the cycle model of the hardware."""

from .array import accumulate, array_matmul, wrap

__all__ = ["accumulate", "array_matmul", "wrap"]
