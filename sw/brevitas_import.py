"""Import a Brevitas model directly, without an export (``pip install systolix[torch]``).

:func:`import_brevitas` reads a :class:`torch.nn.Sequential` of ``brevitas.nn`` layers: the
exact integer weights (``quant_weight().int()``), their scales, zero points and bit widths, and
the scale, zero point, width and signedness of every activation quantizer, from one forward pass
of a sample input in evaluation mode. It goes around the ONNX export on purpose: Brevitas
0.13.4's QONNX export of zero-centred A2Q+ weight quantizers writes another function than the
module computes. The layers are built by :class:`~systolix.sw.integerize.ProgramBuilder`, like
the ONNX importer's, and the accumulator width an A2Q / A2Q+ quantizer was trained for is
reported as the layer's declared width, next to the true one.

Read: ``QuantIdentity`` and ``QuantReLU`` (activation quantizers; the first one quantizes the
input), ``QuantLinear`` and ``QuantConv2d`` (with a quantized bias, or a float bias that is a
whole number of accumulator units, or none), ``TruncAvgPool2d`` (rounding ``RoundSte``),
``torch.nn.ReLU``, ``torch.nn.MaxPool2d``, ``torch.nn.AvgPool2d``, ``torch.nn.Flatten`` and
``torch.nn.Identity``. Activation quantizers must round halves to even (Brevitas's default
``torch.round``).
"""

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np

from systolix.config import code_range

from .integerize import OutputQuantizer, ProgramBuilder, map_order

__all__ = ["import_brevitas"]


def _scalar(value):
    return float(value.detach().reshape(-1)[0])


def _quantizer(name, quant_tensor, narrow):
    """The :class:`OutputQuantizer` of a Brevitas activation quant tensor."""
    scale, zero_point = quant_tensor.scale.detach(), quant_tensor.zero_point.detach()
    if scale.numel() != 1 or zero_point.numel() != 1:
        raise ValueError(f"module {name!r}: a per-channel activation quantizer; allowed: one "
                         f"scale and zero point per tensor")
    bits = int(_scalar(quant_tensor.bit_width))
    signed = bool(quant_tensor.signed)
    if not 1 <= bits <= 8:
        raise ValueError(f"module {name!r}: {bits}-bit activations; allowed: 1..8")
    low, high = code_range(bits, signed)
    if narrow:
        low, high = (low + 1, high) if signed else (low, high - 1)
    return OutputQuantizer(Fraction(_scalar(scale)), int(round(_scalar(zero_point))), bits,
                           signed, low, high, "half_even", zero_point_first=True)


def _declared(module):
    """The accumulator width an accumulator-aware (A2Q, A2Q+) weight quantizer was trained
    for, or ``None`` for another quantizer (whose injector has no such dependency)."""
    from _dependencies.exceptions import DependencyError     # Brevitas's injector library
    try:
        bits = module.weight_quant.quant_injector.accumulator_bit_width
    except DependencyError:
        return None
    return int(bits)


def import_brevitas(model, sample):
    """Import the Brevitas ``model`` (a :class:`torch.nn.Sequential`).

    Parameters
    ----------
    model : torch.nn.Sequential
        Starts with an activation quantizer (``QuantIdentity``) of its input.
    sample : torch.Tensor
        One input of the model's shape, ``(1, C, H, W)`` or ``(1, F)``: its forward pass gives
        the activation quantizers' scales (their values do not matter in evaluation mode).

    Returns
    -------
    systolix.sw.integerize.Imported
    """
    import torch
    import brevitas.nn as qnn

    model.eval()
    builder = ProgramBuilder("brevitas model: ")
    current, pending, x = None, None, sample   # x: the forward pass (a quant tensor after
    #                                               an activation quantizer)
    shape = tuple(sample.shape[1:])
    with torch.no_grad():
        for name, module in model.named_children():
            if isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)):
                quant = module.act_quant(x)
                quantizer = _quantizer(name, quant, module.act_quant.is_narrow_range)
                x = quant
                if current is None:
                    order = map_order(*shape) if len(shape) == 3 else np.arange(shape[0])
                    current = builder.input(quantizer, order)
                    continue
                if pending is None:
                    pending = builder.identity(name, current)
                if isinstance(module, qnn.QuantReLU):
                    pending = pending.clamped(0.0, math.inf)
                current, pending = builder.requantize(name, pending, quantizer), None
                continue
            if current is None:
                raise ValueError(f"brevitas model: module {name!r} comes before the input "
                                 f"quantizer; allowed: a QuantIdentity first")
            if isinstance(module, (qnn.QuantLinear, qnn.QuantConv2d)):
                if pending is not None:
                    raise ValueError(f"brevitas model: module {name!r} reads an unquantized "
                                     f"tensor; allowed: an activation quantizer before it")
                weights = module.quant_weight(quant_input=x if _needs_input(module) else None)
                integers = weights.int().detach().numpy().astype(np.int64)
                zero_point = weights.zero_point.detach().numpy()
                if np.any(zero_point != 0):
                    raise ValueError(f"brevitas model: module {name!r} has weight zero points; "
                                     f"allowed: symmetric weights")
                channels = integers.shape[0]
                scales = np.broadcast_to(weights.scale.detach().numpy().reshape(-1), (channels,)) \
                    if weights.scale.numel() in (1, channels) else None
                if scales is None:
                    raise ValueError(f"brevitas model: module {name!r} has a weight scale per "
                                     f"group; allowed: per tensor or per output channel")
                bits, signed = int(_scalar(weights.bit_width)), bool(weights.signed)
                if isinstance(module, qnn.QuantLinear):
                    pending = builder.dense(name, current, integers.T, bits, signed, scales)
                else:
                    padding = module.padding
                    if isinstance(padding, str) or any(d != 1 for d in module.dilation):
                        raise ValueError(f"brevitas model: module {name!r} has padding "
                                         f"{padding!r} or dilation {module.dilation}; allowed: "
                                         f"explicit padding, dilation 1")
                    pending = builder.conv(name, current, integers, bits, signed, scales,
                                           module.stride, (padding[0], padding[1]) * 2,
                                           module.groups)
                pending = _with_declared(pending, _declared(module))
                if module.bias is not None:
                    pending = _bias(builder, name, module, pending)
                x = module(x)
                continue
            if isinstance(module, torch.nn.ReLU):
                pending = (builder.identity(name, current) if pending is None
                           else pending).clamped(0.0, math.inf)
            elif isinstance(module, torch.nn.MaxPool2d):
                current = builder.max_pool(name, current, _pair(module.kernel_size),
                                           _pair(module.stride or module.kernel_size),
                                           _pair(module.padding) * 2)
            elif isinstance(module, qnn.TruncAvgPool2d):
                # The sum of each window rounded (to even) at the output quant tensor's scale.
                rounding = type(module.trunc_quant.tensor_quant.float_to_int_impl).__name__
                if rounding != "RoundSte":
                    raise ValueError(f"brevitas model: module {name!r} truncates with "
                                     f"{rounding}; allowed: RoundSte (the default)")
                pending = builder.average(name, current, _pair(module.kernel_size),
                                          _pair(module.stride or module.kernel_size),
                                          (0, 0, 0, 0))
                x = module(x)
                current = builder.requantize(name, pending, _quantizer(name, x, False))
                pending = None
                continue
            elif isinstance(module, torch.nn.AvgPool2d):
                pending = builder.average(name, current, _pair(module.kernel_size),
                                          _pair(module.stride or module.kernel_size),
                                          _pair(module.padding) * 2)
            elif isinstance(module, torch.nn.Flatten):
                current = replace(current, order=current.order.reshape(-1))
            elif not isinstance(module, torch.nn.Identity):
                raise ValueError(f"brevitas model: module {name!r} is a "
                                 f"{type(module).__name__}; allowed: QuantIdentity, QuantReLU, "
                                 f"QuantLinear, QuantConv2d, ReLU, MaxPool2d, AvgPool2d, "
                                 f"Flatten, Identity")
            x = module(x)
    if pending is not None:
        raise ValueError("brevitas model: its output is not quantized; allowed: an activation "
                         "quantizer last")
    return builder.finish(current, "brevitas model: ")


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _with_declared(linear, bits):
    return replace(linear, declared=bits)


def _needs_input(module):
    """Whether the weight quantizer needs the input's quant tensor (A2Q, A2Q+)."""
    return getattr(module.weight_quant, "requires_quant_input", False)


def _bias(builder, name, module, linear):
    """Add the module's bias: its integers when the bias is quantized (``round(b / (s_x
    s_w))``, as Brevitas's ``Int32Bias``), else the float bias, which must be a whole number of
    accumulator units."""
    bias = module.bias.detach().numpy().astype(np.float64)
    if module.bias_quant.is_quant_enabled:
        units = np.round(bias / np.array([float(s) for s in linear.scale]))
        values = [scale * int(unit) for scale, unit in zip(linear.scale, units)]
    else:
        values = [Fraction(float(np.float32(value))) for value in bias]
    return builder.add_bias(name, linear, values)
