"""systolix: an FPGA accelerator generator for low-bit quantized neural networks."""

from .config import ArrayConfig

__all__ = ["ArrayConfig"]
