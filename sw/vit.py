"""Integer-only vision transformers by operand reordering.

:func:`calibrate` chooses the quantizer of every operand of every matrix product of a
:class:`~systolix.sw.models.VisionTransformer` (the activations at the ``matmul_input`` points
of :meth:`~systolix.sw.models.VisionTransformer.forward`: unsigned codes with a zero point, the
clipping range of least squared error on calibration images), :func:`weight_quantizer` the
weights' (symmetric, per output channel, least squared error). :func:`fake_quantized_forward`
is the usual reference at those bits: every operand quantized and dequantized before its
product, everything else in float ("dequantize before every matmul").

:func:`lower_vit` makes the integer-only program of the same quantized model, an
:class:`~systolix.sw.program.IntegerProgram` of integer layers only:

- every matrix product runs on the raw codes of its operands, the zero points folded out by
  operand reordering: into the integer bias for a weight operand (:class:`IntegerLayer`: the
  patch embedding, with the position embedding in its bias; the query, key, value, output
  projection and MLP layers, 1x1 convolutions over the token map; the head, mean pooling folded
  into its weights), into the row and column sums of the raw code product for two activation
  operands (:class:`MatMulLayer`: ``Q K^T`` and ``softmax(.) V``); the scales are applied once,
  after the product, by the requantizer;
- the tensors that no product reads are codes of ``residual_bits`` (8 by default, signed,
  symmetric, :func:`calibrate_wide`: the clipping of least squared error on the values of the
  dequantize-first model): the residual stream, the scores (in ``2^-F`` steps of ``log2``, the
  softmax's input, with a zero point: :func:`score_quantizer`; the requantizer of ``Q K^T``
  folds ``log2 e / sqrt(d_head)`` into its multiplier), the MLP's hidden layer before the
  GELU, the logits;
- softmax, LayerNorm and GELU are the integer layers of :mod:`systolix.sim.golden.nonlinear`;
  residual adds are :class:`AddLayer` records.
"""

import dataclasses
import math

import numpy as np

from systolix.layer import (AddLayer, GeluLayer, IntegerLayer, LayerNormLayer, MatMulLayer,
                            SoftmaxLayer, Window)
from systolix.config import OVERFLOW_MODES, check_choice, check_int, code_range
from systolix.numeric import CODE_BITS, MULTIPLIER_BITS
from systolix.sim.golden import run_program
from systolix.sim.golden.nonlinear import (GELU_A, NORM_BITS, RECIPROCAL_BITS, float_softmax,
                                           gelu_constants)

from .a2q import signed_bits
from .integerize import accumulator_widths
from .models import accuracy
from .program import IntegerProgram
from .quant import QuantParams, activation_params, fixed_point_multiplier, symmetric_params

__all__ = ["calibrate", "calibrate_wide", "score_quantizer", "weight_quantizer",
           "fake_quantized_forward", "lower_vit", "dequantize_first_accuracy", "vit_accuracies"]


def weight_quantizer(weight, bits):
    """The quantizer of a weight matrix ``(inputs, outputs)``: symmetric, one scale per output
    channel, the clipping of least squared error."""
    return symmetric_params(weight, bits, per_channel=True, clipping="mse")


def calibrate(model, images, bits):
    """The quantizer (a per-tensor :class:`~systolix.sw.quant.QuantParams`, unsigned ``bits``-bit
    codes with a zero point) of every activation operand of ``model``'s matrix products, by
    name, from the float activations of ``images``."""
    seen = {}

    def record(name, value):
        seen[name] = value
        return value

    model.forward(images, record)
    return {name: activation_params(value, bits, "affine", clipping="mse")
            for name, value in seen.items()}


def fake_quantized_forward(model, images, weight_bits, quantizers, observe=None):
    """The logits of ``images`` with every weight quantized to ``weight_bits`` and every
    activation operand of a matrix product to its quantizer of ``quantizers``
    (:func:`calibrate`), dequantized before the product; the rest in float. ``observe`` as for
    :meth:`~systolix.sw.models.VisionTransformer.forward`."""
    params = dict(model.params)
    for name, value in model.params.items():
        if name.endswith("_weight") and value.ndim == 2:
            params[name] = weight_quantizer(value, weight_bits).fake_quantize(value)
    fake = type(model)(params, model.heads, model.patch, model.side)
    return fake.forward(images, lambda name, value: quantizers[name].fake_quantize(value),
                        observe)


def calibrate_wide(model, images, weight_bits, quantizers, bits=8):
    """The quantizers of the tensors of ``model`` that no matrix product reads (the
    ``observe`` points of :meth:`~systolix.sw.models.VisionTransformer.forward`), by name, from
    their values in the dequantize-first model of ``weight_bits`` and ``quantizers``
    (:func:`fake_quantized_forward`: the values the integer-only program's codes carry) on
    ``images``: signed symmetric ``bits``-bit codes, the clipping of least squared error; the
    scores (``scores``) by :func:`score_quantizer`."""
    seen = {}

    def record(name, value):
        seen[name] = value
        return value

    fake_quantized_forward(model, images, weight_bits, quantizers, record)
    return {name: score_quantizer(value, bits) if name.endswith("scores") else
            activation_params(value, bits, "symmetric", clipping="mse")
            for name, value in seen.items()}


def score_quantizer(scores, bits=8):
    """The quantizer of attention scores ``scores`` (``(..., keys)``, the softmax's input) in
    ``log2`` units: signed ``bits``-bit codes in steps of ``2^-F`` (``F`` 0..8), its real value
    ``score log2 e``.

    The softmax only sees differences within a row, so the zero point is free: the largest
    calibration score goes to the highest code, and the low end clips where ``2^(bits - F)``
    binary orders below it the probabilities are negligible. ``F`` is the one whose quantized
    scores give the probabilities of least squared error against the float softmax of
    ``scores``."""
    low, high = code_range(bits, True)
    exact = float_softmax(scores)
    units = np.asarray(scores) * math.log2(math.e)
    best = None
    for fraction in range(CODE_BITS + 1):
        params = QuantParams(bits, True, 2.0 ** -fraction,
                             int(np.clip(high - math.ceil(units.max() * 2 ** fraction), low,
                                         high)), low, high)
        error = np.sum((float_softmax(params.fake_quantize(units) / math.log2(math.e))
                        - exact) ** 2)
        if best is None or error < best[0]:
            best = (error, params)
    return best[1]


def _shift_for(largest, bits=MULTIPLIER_BITS):
    """The shift ``s`` at which the largest magnitude ``largest`` of real multipliers becomes
    an integer of ``bits - 1`` bits, ``2^(bits - 2) <= largest 2^s < 2^(bits - 1)``: rounded,
    it still fits ``bits`` bits unsigned or signed."""
    return bits - 2 - math.floor(math.log2(largest))


def lower_vit(model, calibration, weight_bits=4, activation_bits=4, residual_bits=8,
              accumulator_bits=None, overflow="wrap"):
    """The integer-only program of ``model`` (a :class:`~systolix.sw.models.VisionTransformer`)
    quantized at ``weight_bits`` / ``activation_bits`` with the quantizers calibrated on the
    images ``calibration`` (see the module docstring).

    ``accumulator_bits`` ``None``: each matrix product (:class:`IntegerLayer` and
    :class:`MatMulLayer`) accumulates in the fewest bits in which no partial sum can overflow
    (for any input codes, in any order). An integer: every one accumulates in that many bits
    and ``overflow`` (an array's ``accumulator_bits`` and ``overflow``, so that the program
    packs for it); :class:`ValueError` if a product could overflow them.

    Returns
    -------
    IntegerProgram
        Its input codes are :meth:`~IntegerProgram.encode_input` of the images, its output
        codes the logits (:meth:`~IntegerProgram.decode_output`).
    """
    quantizers = calibrate(model, calibration, activation_bits)
    wide = calibrate_wide(model, calibration, weight_bits, quantizers, residual_bits)
    grid = model.side // model.patch
    tokens, width, heads = model.tokens, model.width, model.heads
    head_width = width // heads
    p = model.params
    layers, sources = [], []

    def add(layer, *inputs):
        layers.append(layer)
        sources.append(tuple(inputs))
        return len(layers) - 1

    def codes(params):
        return dict(bits=params.bits, signed=params.signed)

    def linear(source, source_params, weight, bias, target, window=None, tile=1):
        """An IntegerLayer: ``weight`` (K, N) real, quantized per output channel, rows
        repeated ``tile`` times (the head: mean pooling), read by ``source``."""
        wq = weight_quantizer(weight, weight_bits)
        weight_codes = wq.quantize(weight)
        scale = source_params.scale * np.asarray(wq.scale) / tile
        if window is None and tile > 1:
            weight_codes = np.tile(weight_codes, (tile, 1))
        return _integer_layer(add, source, source_params, weight_codes, weight_bits, scale,
                              bias, target, window)

    # Patch embedding: a dense layer over the whole image, one block of columns per token,
    # the position embedding in its bias.
    input_params = quantizers["input"]
    pixel = np.arange(model.inputs).reshape(1, -1)
    index = model.patches(pixel)[0].astype(np.int64)        # (tokens, patch pixels)
    wq = weight_quantizer(p["embed_weight"], weight_bits)
    embed = np.zeros((model.inputs, tokens * width), dtype=np.int64)
    for token in range(tokens):
        embed[index[token], token * width:(token + 1) * width] = wq.quantize(p["embed_weight"])
    h_params = wide["embed"]
    h = _integer_layer(add, -1, input_params, embed, weight_bits,
                       np.tile(input_params.scale * np.asarray(wq.scale), tokens),
                       (p["embed_bias"] + p["position"]).ravel(), h_params)
    window = Window(grid, grid, width, 1, 1)
    hidden_window = Window(grid, grid, p["block0_fc1_weight"].shape[1], 1, 1)
    shape = (grid, grid, width)
    for block in range(model.depth):
        b = f"block{block}_"
        n1 = _layernorm(add, h, h_params, shape, p[f"{b}norm1_weight"], p[f"{b}norm1_bias"],
                        quantizers[b + "norm1"])
        n1_params = quantizers[b + "norm1"]
        qkv = {name: linear(n1, n1_params, p[f"{b}{name}_weight"], p[f"{b}{name}_bias"],
                            quantizers[b + name], window)
               for name in ("query", "key", "value")}
        scores_params = wide[b + "scores"]
        fraction = round(-math.log2(scores_params.scale))
        q_params, k_params, v_params = (quantizers[b + name] for name in
                                        ("query", "key", "value"))
        scores = _matmul(add, qkv["query"], qkv["key"], q_params, k_params, tokens, heads,
                         head_width, tokens, True,
                         q_params.scale * k_params.scale / math.sqrt(head_width)
                         * math.log2(math.e), scores_params, activation_bits)
        attention_params = quantizers[b + "attention"]
        multiplier, shift = fixed_point_multiplier(
            1 / (attention_params.scale * 2.0 ** RECIPROCAL_BITS))
        attention = add(SoftmaxLayer(
            (tokens, heads, tokens), fraction, int(multiplier), int(shift),
            attention_params.zero_point, attention_params.low, attention_params.high, 8, True,
            attention_params.bits, False), scores)
        context_params = quantizers[b + "context"]
        context = _matmul(add, attention, qkv["value"], attention_params, v_params, tokens,
                          heads, tokens, head_width, False,
                          attention_params.scale * v_params.scale, context_params,
                          activation_bits)
        out = linear(context, context_params, p[f"{b}out_weight"], p[f"{b}out_bias"],
                     wide[b + "out"], window)
        h, h_params = _add(add, h, h_params, out, wide[b + "out"], shape,
                           wide[b + "residual1"]), wide[b + "residual1"]
        n2_params = quantizers[b + "norm2"]
        n2 = _layernorm(add, h, h_params, shape, p[f"{b}norm2_weight"], p[f"{b}norm2_bias"],
                        n2_params)
        fc1_params = wide[b + "fc1"]
        fc1 = linear(n2, n2_params, p[f"{b}fc1_weight"], p[f"{b}fc1_bias"], fc1_params,
                     window)
        gelu_params = quantizers[b + "gelu"]
        clip, constant = gelu_constants(fc1_params.scale)
        multiplier, shift = fixed_point_multiplier(
            GELU_A * fc1_params.scale ** 3 / 4 / gelu_params.scale)
        gelu = add(GeluLayer((grid, grid, hidden_window.channels), fc1_params.zero_point, clip,
                             constant, int(multiplier), int(shift), gelu_params.zero_point,
                             gelu_params.low, gelu_params.high, fc1_params.bits,
                             fc1_params.signed, gelu_params.bits, gelu_params.signed), fc1)
        fc2 = linear(gelu, gelu_params, p[f"{b}fc2_weight"], p[f"{b}fc2_bias"],
                     wide[b + "fc2"], hidden_window)
        h, h_params = _add(add, h, h_params, fc2, wide[b + "fc2"], shape,
                           wide[b + "residual2"]), wide[b + "residual2"]
    norm_params = quantizers["norm"]
    norm = _layernorm(add, h, h_params, shape, p["norm_weight"], p["norm_bias"], norm_params)
    linear(norm, norm_params, p["head_weight"], p["head_bias"], wide["logits"], tile=tokens)
    if accumulator_bits is not None:
        layers = _accumulating(layers, accumulator_bits, overflow)
    return IntegerProgram(tuple(layers), input_params, wide["logits"], tuple(sources))


def _accumulating(layers, bits, overflow):
    """``layers`` with every matrix product accumulating in ``bits`` bits with ``overflow``
    (each one's ``accumulator_bits`` the fewest it needs)."""
    check_int("accumulator_bits", bits, 2, 32)
    check_choice("overflow", overflow, OVERFLOW_MODES)
    products = [index for index, layer in enumerate(layers)
                if isinstance(layer, (IntegerLayer, MatMulLayer))]
    widest = max(products, key=lambda index: layers[index].accumulator_bits)
    if layers[widest].accumulator_bits > bits:
        raise ValueError(f"accumulator_bits must be at least {layers[widest].accumulator_bits}, "
                         f"not {bits}: layer {widest} ({type(layers[widest]).__name__}) could "
                         f"overflow {bits} bits")
    return [dataclasses.replace(layer, accumulator_bits=bits, overflow=overflow)
            if index in products else layer for index, layer in enumerate(layers)]


def _integer_layer(add, source, source_params, weight_codes, weight_bits, scale, bias, target,
                   window=None):
    """Add the :class:`IntegerLayer` of integer weights ``weight_codes`` whose products have
    the real ``scale`` per output channel, with real ``bias``, output quantizer ``target``."""
    bias_codes = np.floor(np.asarray(bias) / scale + 0.5).astype(np.int64) \
        - source_params.zero_point * weight_codes.sum(axis=0)
    multiplier, shift = fixed_point_multiplier(scale / target.scale)
    low, high = source_params.low, source_params.high
    return add(IntegerLayer(
        weights=weight_codes, bias=bias_codes, multiplier=multiplier, shift=shift,
        output_zero_point=target.zero_point, output_low=target.low, output_high=target.high,
        input_bits=source_params.bits, input_signed=source_params.signed,
        weight_bits=weight_bits, weight_signed=True, output_bits=target.bits,
        output_signed=target.signed,
        accumulator_bits=int(max(2, accumulator_widths(weight_codes, low, high).max())),
        overflow="wrap", window=window), source)


def _matmul(add, a, b, a_params, b_params, rows, groups, inner, cols, transpose, real, target,
            bits):
    """Add the :class:`MatMulLayer` of operands ``a``, ``b`` whose centred product has the real
    scale ``real`` (output quantizer ``target``)."""
    multiplier, shift = fixed_point_multiplier(real / target.scale)
    largest = inner * max(abs(a_params.low), abs(a_params.high)) \
        * max(abs(b_params.low), abs(b_params.high))
    return add(MatMulLayer(
        rows, groups, inner, cols, transpose, (a_params.zero_point, b_params.zero_point), 0,
        int(multiplier), int(shift), target.zero_point, target.low, target.high, bits,
        a_params.signed, target.bits, target.signed, signed_bits(-largest, largest), "wrap"),
        a, b)


def _layernorm(add, source, source_params, shape, gamma, beta, target):
    """Add the :class:`LayerNormLayer` of ``gamma``, ``beta`` to output quantizer ``target``."""
    real = gamma / (target.scale * 2.0 ** NORM_BITS)
    shift = _shift_for(float(np.abs(real).max()), MULTIPLIER_BITS + 1)
    return add(LayerNormLayer(
        shape, np.floor(real * 2.0 ** shift + 0.5).astype(np.int64),
        np.floor(beta / target.scale * 2.0 ** shift + 0.5).astype(np.int64), shift,
        target.zero_point, target.low, target.high, source_params.bits, source_params.signed,
        target.bits, target.signed), source)


def _add(add, a, a_params, b, b_params, shape, target):
    """Add the :class:`AddLayer` of ``a`` and ``b`` to output quantizer ``target``."""
    real = np.array([a_params.scale, b_params.scale]) / target.scale
    shift = _shift_for(float(real.max()))
    multipliers = tuple(int(m) for m in np.floor(real * 2.0 ** shift + 0.5))
    return add(AddLayer(shape, (a_params.zero_point, b_params.zero_point), multipliers, shift,
                        target.zero_point, target.low, target.high, a_params.bits,
                        a_params.signed, target.bits, target.signed), a, b)


def dequantize_first_accuracy(model, data, weight_bits=4, activation_bits=4):
    """The test accuracy of ``model`` on ``data`` (a :class:`~systolix.sw.models.DigitsSplit`)
    dequantized before every matmul (:func:`fake_quantized_forward`), calibrated on the
    training images."""
    quantizers = calibrate(model, data.x_train, activation_bits)
    return accuracy(np.argmax(fake_quantized_forward(model, data.x_test, weight_bits,
                                                     quantizers), axis=1), data.y_test)


def vit_accuracies(model, data, weight_bits=4, activation_bits=4):
    """Test accuracies of ``model`` on ``data`` (a :class:`~systolix.sw.models.DigitsSplit`):
    ``float``, ``fake_quantized`` (dequantize before every matmul,
    :func:`dequantize_first_accuracy`) and ``integer`` (the golden model of :func:`lower_vit`'s
    program), calibrated on the training images."""
    program = lower_vit(model, data.x_train, weight_bits, activation_bits)
    codes = run_program(program, program.encode_input(data.x_test))
    return {"float": accuracy(model.predict(data.x_test), data.y_test),
            "fake_quantized": dequantize_first_accuracy(model, data, weight_bits,
                                                        activation_bits),
            "integer": accuracy(np.argmax(codes, axis=1), data.y_test)}
