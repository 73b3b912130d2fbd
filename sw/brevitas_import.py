"""Import a Brevitas model directly, without an export (``pip install systolix[torch]``).

:func:`import_brevitas` reads a model of ``brevitas.nn`` layers (a
:class:`torch.nn.Sequential`, or any module whose forward :mod:`torch.fx` traces with the
layers as leaves, residual adds included): the exact integer weights
(``quant_weight().int()``), their scales, zero points and bit widths, and the scale, zero point,
width and signedness of every activation quantizer, from one forward pass of a sample input in
evaluation mode. It goes around the ONNX export on purpose: Brevitas
0.13.4's QONNX export of zero-centred A2Q+ weight quantizers writes another function than the
module computes. The layers are built by :class:`~systolix.sw.integerize.ProgramBuilder`, like
the ONNX importer's, and the accumulator width an A2Q / A2Q+ quantizer was trained for is
reported as the layer's declared width, next to the true one.

Read: ``QuantIdentity`` and ``QuantReLU`` (activation quantizers; the first one quantizes the
input), ``QuantLinear`` and ``QuantConv2d`` (with a quantized bias, or a float bias that is a
whole number of accumulator units, or none), ``TruncAvgPool2d`` (rounding ``RoundSte``),
``torch.nn.ReLU``, ``torch.nn.MaxPool2d``, ``torch.nn.AvgPool2d``, ``torch.nn.Flatten`` and
``torch.nn.Identity``; the residual add of two quantized tensors (``+``, ``torch.add``),
``torch.flatten(x, 1)`` and ``torch.relu``. Activation quantizers must round halves to even
(Brevitas's default ``torch.round``).
"""

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from systolix.config import code_range

from .integerize import Activation, Linear, OutputQuantizer, ProgramBuilder, map_order

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
    """Import the Brevitas ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`torch.nn.Sequential`, or any module whose forward :mod:`torch.fx` can trace
        with the ``brevitas.nn`` and ``torch.nn`` layers as leaves (residual adds of quantized
        tensors, ``torch.flatten``, ``torch.relu``). Its input goes through an activation
        quantizer (``QuantIdentity``) first.
    sample : torch.Tensor
        One input of the model's shape, ``(1, C, H, W)`` or ``(1, F)``: its forward pass gives
        the activation quantizers' scales (their values do not matter in evaluation mode).

    Returns
    -------
    systolix.sw.integerize.Imported
    """
    import torch

    model.eval()
    graph = _tracer()().trace(model)
    walk = _Walk(model, ProgramBuilder("brevitas model: "), tuple(sample.shape[1:]))
    values = {}
    with torch.no_grad():
        for node in graph.nodes:
            if node.op == "placeholder":
                values[node] = (sample, _INPUT)
            elif node.op == "output":
                (result,) = node.all_input_nodes
                output = values[result][1]
            else:
                inputs = [values[argument] for argument in node.all_input_nodes]
                values[node] = walk.step(node, inputs)
    if not isinstance(output, Activation):
        raise ValueError("brevitas model: its output is not quantized; allowed: an activation "
                         "quantizer last")
    return walk.builder.finish(output, "brevitas model: ")


_INPUT = "the model input"


def _tracer():
    """A :class:`torch.fx.Tracer` that keeps every ``brevitas`` and ``torch.nn`` layer whole."""
    import torch

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, module, name):
            return type(module).__module__.startswith("brevitas") or \
                super().is_leaf_module(module, name)
    return Tracer


def _value(runtime):
    """The float tensor of a forward-pass value (a Brevitas quant tensor or a tensor)."""
    return getattr(runtime, "value", runtime)


class _Walk:
    """One step per traced node: the forward pass of the node and what it is to the
    :class:`~systolix.sw.integerize.ProgramBuilder` (the model input, an
    :class:`~systolix.sw.integerize.Activation`, a :class:`~systolix.sw.integerize.Linear` or
    a residual sum)."""

    def __init__(self, model, builder, shape):
        self.model, self.builder, self.shape = model, builder, shape

    def step(self, node, inputs):
        import operator

        import torch

        name = str(node.target) if node.op == "call_module" else node.name
        states = [state for _, state in inputs]
        runtimes = [runtime for runtime, _ in inputs]
        if node.op == "call_module":
            module = self.model.get_submodule(node.target)
            if len(inputs) != 1:
                self._fail(name, f"reads {len(inputs)} tensors; allowed: one")
            return self.module(name, module, runtimes[0], states[0])
        target = node.target
        if target in (operator.add, torch.add) and len(states) == 2:
            if not all(isinstance(state, Activation) for state in states):
                self._fail(name, "adds tensors that are not both quantized; allowed: a residual "
                                 "add of two quantized tensors")
            return _value(runtimes[0]) + _value(runtimes[1]), _Sum(*states)
        if target in (torch.flatten, "flatten") and node.args[1:] in ((1,), ()) and \
                not node.kwargs:
            return torch.flatten(_value(runtimes[0]), 1), self.flatten(name, states[0])
        if target in (torch.relu, torch.nn.functional.relu, "relu"):
            return torch.relu(_value(runtimes[0])), self.clamp(name, states[0])
        self._fail(name, f"calls {getattr(target, '__name__', target)}; allowed: layers, a "
                         f"residual add, torch.flatten(x, 1) and relu")

    def _fail(self, name, message):
        raise ValueError(f"brevitas model: module {name!r}: {message}")

    def activation(self, name, state):
        if not isinstance(state, Activation):
            self._fail(name, "reads an unquantized tensor; allowed: an activation quantizer "
                             "before it")
        return state

    def flatten(self, name, state):
        return replace(self.activation(name, state), order=state.order.reshape(-1))

    def clamp(self, name, state):
        if isinstance(state, _Sum):
            return replace(state, low=max(state.low, 0.0))
        if isinstance(state, Activation):
            state = self.builder.identity(name, state)
        if not isinstance(state, Linear):
            self._fail(name, "applies ReLU to the model input")
        return state.clamped(0.0, math.inf)

    def quantize(self, name, state, quantizer):
        """The :class:`Activation` of ``state`` quantized by ``quantizer``."""
        builder = self.builder
        if state is _INPUT:
            order = map_order(*self.shape) if len(self.shape) == 3 else \
                np.arange(self.shape[0])
            return builder.input(quantizer, order)
        if isinstance(state, _Sum):
            return builder.add(name, state.first, state.second, quantizer, state.low)
        if isinstance(state, Activation):
            if (state.scale, state.zero_point, state.signed) == \
                    (quantizer.scale, quantizer.zero_point, quantizer.signed) and \
                    quantizer.low <= state.low and state.high <= quantizer.high:
                return state
            state = builder.identity(name, state)
        return builder.requantize(name, state, quantizer)

    def module(self, name, module, x, state):
        import torch
        import brevitas.nn as qnn

        builder = self.builder
        if isinstance(module, (qnn.QuantIdentity, qnn.QuantReLU)):
            quant = module.act_quant(_value(x) if state is _INPUT else x)
            if isinstance(module, qnn.QuantReLU) and state is not _INPUT:
                state = self.clamp(name, state)
            quantizer = _quantizer(name, quant, module.act_quant.is_narrow_range)
            return quant, self.quantize(name, state, quantizer)
        if state is _INPUT:
            self._fail(name, "reads the model input; allowed: an activation quantizer "
                             "(QuantIdentity) first")
        if isinstance(module, (qnn.QuantLinear, qnn.QuantConv2d)):
            current = self.activation(name, state)
            weights = module.quant_weight(quant_input=x if _needs_input(module) else None)
            integers = weights.int().detach().numpy().astype(np.int64)
            if np.any(weights.zero_point.detach().numpy() != 0):
                self._fail(name, "has weight zero points; allowed: symmetric weights")
            channels = integers.shape[0]
            if weights.scale.numel() not in (1, channels):
                self._fail(name, "has a weight scale per group; allowed: per tensor or per "
                                 "output channel")
            scales = np.broadcast_to(weights.scale.detach().numpy().reshape(-1), (channels,))
            bits, signed = int(_scalar(weights.bit_width)), bool(weights.signed)
            if isinstance(module, qnn.QuantLinear):
                linear = builder.dense(name, current, integers.T, bits, signed, scales)
            else:
                padding = module.padding
                if isinstance(padding, str) or any(d != 1 for d in module.dilation):
                    self._fail(name, f"has padding {padding!r} or dilation "
                                     f"{module.dilation}; allowed: explicit padding, "
                                     f"dilation 1")
                linear = builder.conv(name, current, integers, bits, signed, scales,
                                      module.stride, (padding[0], padding[1]) * 2,
                                      module.groups)
            linear = replace(linear, declared=_declared(module))
            if module.bias is not None:
                linear = _bias(builder, name, module, linear)
            return module(x), linear
        if isinstance(module, torch.nn.ReLU):
            return module(_value(x)), self.clamp(name, state)
        if isinstance(module, torch.nn.MaxPool2d):
            return module(x), builder.max_pool(
                name, self.activation(name, state), _pair(module.kernel_size),
                _pair(module.stride or module.kernel_size), _pair(module.padding) * 2)
        if isinstance(module, qnn.TruncAvgPool2d):
            # The sum of each window rounded (to even) at the output quant tensor's scale.
            rounding = type(module.trunc_quant.tensor_quant.float_to_int_impl).__name__
            if rounding != "RoundSte":
                self._fail(name, f"truncates with {rounding}; allowed: RoundSte (the default)")
            linear = builder.average(name, self.activation(name, state),
                                     _pair(module.kernel_size),
                                     _pair(module.stride or module.kernel_size), (0, 0, 0, 0))
            out = module(x)
            return out, builder.requantize(name, linear, _quantizer(name, out, False))
        if isinstance(module, torch.nn.AvgPool2d):
            return module(x), builder.average(
                name, self.activation(name, state), _pair(module.kernel_size),
                _pair(module.stride or module.kernel_size), _pair(module.padding) * 2)
        if isinstance(module, torch.nn.Flatten):
            if module.start_dim != 1:
                self._fail(name, "flattens from another dimension than 1")
            return module(x), self.flatten(name, state)
        if isinstance(module, torch.nn.Identity):
            return x, state
        self._fail(name, f"is a {type(module).__name__}; allowed: QuantIdentity, QuantReLU, "
                         f"QuantLinear, QuantConv2d, TruncAvgPool2d, ReLU, MaxPool2d, "
                         f"AvgPool2d, Flatten, Identity")


@dataclass(frozen=True)
class _Sum:
    """The float sum of two quantized tensors (a residual add) before its quantizer."""
    first: Activation
    second: Activation
    low: float = -math.inf


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


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
