"""Amaranth gateware: multiply-accumulate cells and the systolic array."""
