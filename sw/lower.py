"""Lowering a :class:`~systolix.sw.qmodel.QuantizedModel` to an :class:`~systolix.sw.program.IntegerProgram`.

Operand reordering: with ``x = s_x (q_x - z_x)``, ``w = s_w q_w`` and the bias ``s_x s_w q_b``,

    ``y[c] = s_x s_w[c] * (sum_k q_x[k] q_w[k, c]  +  (q_b[c] - z_x sum_k q_w[k, c]))``.

The array computes only ``sum_k q_x[k] q_w[k, c]`` on raw codes; the bracket on the right is one
integer bias per channel; the real factor moves after the matmul and merges with the output
quantizer into ``M[c] = s_x s_w[c] / s_y = M0[c] * 2^-shift[c]`` with an unsigned ``M0`` of
:data:`~systolix.numeric.MULTIPLIER_BITS` bits (exactly so:
:func:`~systolix.sw.qmodel.quantize` chooses weight scales that make it so). ReLU becomes the
lower clamp ``max(low, z_y)``. Floating point is left in the program only in its interface
quantizers (how the host encodes inputs and decodes outputs).

A convolution keeps its window (:class:`~systolix.layer.Window`): weights ``(kh * kw * c_in,
c_out)`` in ``(ky, kx, c)`` row order, zero outside each output channel's group, and ``pad_code``
the input zero point, so that padding adds ``z_x`` codes whose centred value is 0, which the bias
term above already accounts for. A pooling layer (average or global average) becomes a
convolution of ones whose window is the pooling window (``groups`` = channels) and whose
multiplier holds ``1 / area`` (global average pooling: ``1 / (H * W)``). Max pooling becomes a
:class:`~systolix.layer.MaxPoolLayer` (the golden model runs it; the engine does not). A dense
layer after a map reads it flattened in NHWC order, as the float model does.
"""

from systolix.config import code_range
from systolix.numeric import BIAS_BITS

from .program import IntegerLayer, IntegerProgram, MaxPoolLayer
from .qmodel import QuantizedMaxPool, QuantizedModel
from .quant import fixed_point_multiplier

__all__ = ["lower"]


def lower(model):
    """The integer program of a quantized model.

    Parameters
    ----------
    model : QuantizedModel

    Returns
    -------
    IntegerProgram
        Layer ``l`` has the accumulator width and overflow mode of ``model``. As long as no
        partial sum leaves the accumulator, its outputs are those of
        :meth:`QuantizedModel.reference` (except where float64 rounding decides a tie).
    """
    if not isinstance(model, QuantizedModel):
        raise ValueError(f"model must be a QuantizedModel, not {type(model).__name__}")
    layers = []
    for index, layer in enumerate(model.layers):
        source, target = layer.input, layer.output
        if isinstance(layer, QuantizedMaxPool):
            layers.append(MaxPoolLayer(layer.window, source.bits, source.signed))
            continue
        bias = layer.bias_codes - source.zero_point * layer.weight_codes.sum(axis=0)
        low, high = code_range(BIAS_BITS, True)
        if bias.min() < low or bias.max() > high:
            raise ValueError(f"the integer bias of layer {index} needs more than {BIAS_BITS} "
                             f"bits: {bias.min()}..{bias.max()}")
        multiplier, shift = fixed_point_multiplier(
            source.scale * layer.weight_scale / target.scale)
        layers.append(IntegerLayer(
            weights=layer.weight_codes, bias=bias, multiplier=multiplier, shift=shift,
            output_zero_point=int(target.zero_point),
            output_low=int(max(target.low, target.zero_point) if layer.relu else target.low),
            output_high=int(target.high), input_bits=source.bits, input_signed=source.signed,
            weight_bits=layer.weight_bits, weight_signed=True, output_bits=target.bits,
            output_signed=target.signed, accumulator_bits=model.accumulator_bits,
            overflow=model.overflow, window=layer.window))
    return IntegerProgram(tuple(layers), model.layers[0].input, model.layers[-1].output)
