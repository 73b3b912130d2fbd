"""The data-free bound check of an integer program: every channel's adversarial inputs, every
prefix sum in the order the array adds them."""

import numpy as np

from systolix.config import code_range
from systolix.sim.golden.array import accumulate
from systolix.sw.a2q import adversarial_inputs
from systolix.sw.program import IntegerLayer


def assert_within_bound(program):
    """For every GEMM layer and channel, the inputs that push its partial sums highest and
    lowest (:func:`~systolix.sw.a2q.adversarial_inputs`): every prefix sum ``k = 0..K-1`` (the
    array's order: K tile after K tile, top to bottom in a tile) lies in the layer's signed
    ``P``-bit range, and the golden accumulator (wrapping) returns the exact sums."""
    for index, layer in enumerate(program.layers):
        if not isinstance(layer, IntegerLayer):
            continue
        codes = layer.weights
        x = adversarial_inputs(codes, layer.input_bits, layer.input_signed)
        sums = np.cumsum(x[:, :, None] * codes[None], axis=1)
        low, high = code_range(layer.accumulator_bits, True)
        assert low <= sums.min() and sums.max() <= high, (
            f"layer {index}: partial sums {sums.min()}..{sums.max()} leave "
            f"{layer.accumulator_bits} bits")
        np.testing.assert_array_equal(accumulate(x, codes, layer.accumulator_bits, "wrap"),
                                      x @ codes)
