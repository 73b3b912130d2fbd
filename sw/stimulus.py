"""Random integer programs over the whole code ranges: stimulus for the packer's and the
engine's tests."""

import dataclasses

import numpy as np

from systolix.config import code_range
from systolix.layer import ROUNDING_MODES, LayerNormLayer, SoftmaxLayer, Window

from systolix.sim.golden.nonlinear import GELU_A, gelu_constants

from systolix.layer import MatMulLayer

from .a2q import signed_bits
from .program import AddLayer, GeluLayer, IntegerLayer, IntegerProgram, MaxPoolLayer
from .quant import QuantParams, fixed_point_multiplier

__all__ = ["program_of", "random_codes", "random_layer", "random_program", "live_constants",
           "random_window", "random_conv_program", "random_matmul", "random_attention_program",
           "vit_attention_program"]


def program_of(layers, sources=None):
    """An :class:`IntegerProgram` of ``layers`` (and ``sources``, a chain by default) with
    identity host quantizers."""
    first, last = layers[0], layers[-1]
    low, high = code_range(first.input_bits, first.input_signed)
    out_low, out_high = code_range(last.output_bits, last.output_signed)
    output = (getattr(last, "output_zero_point", 0), getattr(last, "output_low", out_low),
              getattr(last, "output_high", out_high))
    return IntegerProgram(layers, QuantParams(first.input_bits, first.input_signed, 1.0, 0,
                                              low, high),
                          QuantParams(last.output_bits, last.output_signed, 1.0, *output),
                          sources)


def random_codes(rng, shape, bits, signed):
    """Random codes over the whole range, with the lowest and the highest among them."""
    low, high = code_range(bits, signed)
    codes = rng.integers(low, high + 1, size=shape)
    codes.flat[0] = low
    codes.flat[-1] = high
    return codes


def random_layer(rng, inputs, outputs, config, output_bits, output_signed):
    """A layer with random codes and constants for an array of ``config``."""
    low, high = code_range(output_bits, output_signed)
    clamp = sorted(rng.integers(low, high + 1, size=2).tolist())
    return IntegerLayer(
        weights=random_codes(rng, (inputs, outputs), config.weight_bits, config.weight_signed),
        bias=random_codes(rng, outputs, 32, True),
        multiplier=random_codes(rng, outputs, 16, False),
        shift=rng.integers(0, 64, size=outputs),
        output_zero_point=int(rng.integers(low, high + 1)), output_low=clamp[0],
        output_high=clamp[1], input_bits=config.activation_bits,
        input_signed=config.activation_signed, weight_bits=config.weight_bits,
        weight_signed=config.weight_signed, output_bits=output_bits,
        output_signed=output_signed, accumulator_bits=config.accumulator_bits,
        overflow=config.overflow)


def random_program(rng, config, sizes):
    """Layers of ``sizes[l]`` inputs and ``sizes[l + 1]`` outputs; the hidden codes are the
    array's activation codes, the last layer's output codes of a random width."""
    layers = []
    for index, (inputs, outputs) in enumerate(zip(sizes, sizes[1:])):
        last = index == len(sizes) - 2
        output = ((int(rng.integers(1, 9)), bool(rng.integers(2))) if last else
                  (config.activation_bits, config.activation_signed))
        layers.append(random_layer(rng, inputs, outputs, config, *output))
    return program_of(layers)


def live_constants(rng, layer, accumulator_bits):
    """``layer`` with requantization constants that spread its codes over their range (random
    ones clamp nearly every code to one value)."""
    inputs, outputs = layer.weights.shape
    largest = (max(abs(v) for v in code_range(layer.input_bits, layer.input_signed))
               * max(abs(v) for v in code_range(layer.weight_bits, layer.weight_signed)))
    span = max(2, min(1 << (accumulator_bits - 1), int(largest * inputs ** 0.5)))
    low, high = code_range(layer.output_bits, layer.output_signed)
    return dataclasses.replace(
        layer, bias=rng.integers(-span // 2, span // 2 + 1, outputs),
        multiplier=rng.integers(1 << 15, 1 << 16, outputs),
        shift=np.full(outputs, min(16 + span.bit_length() - layer.output_bits, 63)),
        output_zero_point=(low + high) // 2, output_low=low, output_high=high)


def random_window(rng, shape, outputs, pad_code, *, largest_kernel=3, largest_stride=2):
    """A random convolution window on a map of ``shape`` (height, width, channels) with
    ``outputs`` channels: kernel sides up to ``largest_kernel`` (and the padded map), strides
    up to ``largest_stride``, any padding, groups dividing both channel counts."""
    height, width, channels = shape
    pads = {}
    for side, size, ends in (("height", height, ("top", "bottom")),
                             ("width", width, ("left", "right"))):
        kernel = int(rng.integers(1, largest_kernel + 1))
        pads.update({f"pad_{end}": int(rng.integers(0, kernel)) for end in ends})
        kernel = min(kernel, size + sum(pads[f"pad_{end}"] for end in ends))
        pads[f"kernel_{side}"] = kernel
        pads[f"stride_{side}"] = int(rng.integers(1, largest_stride + 1))
    groups = [g for g in range(1, channels + 1) if channels % g == 0 and outputs % g == 0]
    return Window(height, width, channels, groups=int(rng.choice(groups)), pad_code=pad_code,
                  **pads)


def _random_row_layer(rng, kind, shape, activations, output, rounding):
    """A :class:`SoftmaxLayer` or :class:`LayerNormLayer` on maps of ``shape`` from codes
    ``activations`` to codes ``output`` (bits, signed), its constants random but spreading the
    output codes."""
    low, high = code_range(*output)
    codes = {"output_low": low, "output_high": high, "input_bits": activations[0],
             "input_signed": activations[1], "output_bits": output[0],
             "output_signed": output[1], "rounding": rounding}
    if kind == "softmax":
        # A probability p (p * 2^30 into the requantizer) to low + p * (high - low), a little
        # amplified so that the small ones do not all vanish.
        multiplier, shift = fixed_point_multiplier(
            (high - low) * float(rng.uniform(1, 4)) / 2.0 ** 30)
        return SoftmaxLayer(tuple(shape), int(rng.integers(0, 4)), int(multiplier), int(shift),
                            output_zero_point=low, **codes)
    # Normalised values of about -2..2 over the output codes, random gamma and beta.
    zero_point = (low + high) // 2
    step = 4 / max(1, high - low)
    shift = 30 + 15 - int(np.ceil(np.log2(1.5 / step))) - int(rng.integers(0, 3))
    gamma = rng.uniform(0.5, 1.5, shape[2]) * rng.choice([-1, 1], shape[2])
    beta = rng.uniform(-0.5, 0.5, shape[2])
    multiplier = np.floor(gamma / step * 2.0 ** (shift - 30) + 0.5).astype(np.int64)
    bias = np.floor(beta / step * 2.0 ** shift + 0.5).astype(np.int64)
    return LayerNormLayer(tuple(shape), multiplier, bias, shift, output_zero_point=zero_point,
                          **codes)


def random_conv_program(rng, config, shape, layers, *, rounding=None):
    """A graph of random convolution, dense, max pooling, add, GELU, softmax and LayerNorm
    layers for an array of
    ``config`` on input maps of ``shape``, with live requantization constants
    (:func:`live_constants`).

    ``layers`` lists, per layer, ``("conv", outputs)``, ``("conv", outputs, window options)``
    (a dict for :func:`random_window`), ``("window", outputs, Window)``, ``("dense",
    outputs)``, ``("max_pool", window options)`` (a max pooling layer on the map before it,
    its pad code the smallest code) or ``("add", source)`` (the sum of the layer before it and
    layer ``source``, -1 for the program's input, whose maps must have the same shape) or
    ``("gelu",)`` (the integer GELU of the map before it, at a random input scale) or
    ``("softmax",)`` or ``("layernorm",)`` (over the channels of each position of the map
    before it, with random constants that spread the output codes). Every
    other layer reads the one before it. Hidden codes are the array's activation codes; the
    last layer's output codes have a random width. ``rounding`` is each layer's, or random.
    """
    result, sources, shapes = [], [], {-1: tuple(shape)}
    activations = (config.activation_bits, config.activation_signed)
    for index, (kind, *options) in enumerate(layers):
        last = index == len(layers) - 1
        output = ((int(rng.integers(1, 9)), bool(rng.integers(2))) if last else activations)
        sources.append((index - 1,))
        if kind == "max_pool":
            low, _ = code_range(*activations)
            window = random_window(rng, shape, shape[2], low, **(options[0] if options else {}))
            window = dataclasses.replace(window, groups=shape[2])
            layer = MaxPoolLayer(window, *activations)
        elif kind == "add":
            sources[-1] = (index - 1, options[0])
            if shapes[options[0]] != tuple(shape):
                raise ValueError(f"layer {index} adds maps of {shape} and "
                                 f"{shapes[options[0]]}")
            low, high = code_range(*output)
            layer = AddLayer(
                shape=tuple(shape),
                zero_points=tuple(int(z) for z in (sum(code_range(*activations)) // 2
                                                   + rng.integers(-1, 2, size=2))),
                multipliers=tuple(int(m) for m in rng.integers(1 << 13, 1 << 16, size=2)),
                shift=int(rng.integers(14, 17)) + config.activation_bits - output[0],
                output_zero_point=(low + high) // 2, output_low=low, output_high=high,
                input_bits=activations[0], input_signed=activations[1], output_bits=output[0],
                output_signed=output[1], rounding=rounding or str(rng.choice(ROUNDING_MODES)))
        elif kind == "gelu":
            low, high = code_range(*activations)
            zero_point = (low + high) // 2 + int(rng.integers(-2, 3))
            scale = float(rng.uniform(0.15, 0.5))
            clip, constant = gelu_constants(scale)
            out_low, out_high = code_range(*output)
            output_zero_point = out_low + (out_high - out_low) // 4
            # Output codes of step s * (largest |x|) / (codes above the zero point).
            largest = max(high - zero_point, zero_point - low)
            step = scale * largest / (out_high - output_zero_point)
            multiplier, shift = fixed_point_multiplier(GELU_A * scale ** 3 / 4 / step)
            layer = GeluLayer(
                shape=tuple(shape), input_zero_point=zero_point, clip=clip, constant=constant,
                multiplier=int(multiplier), shift=int(shift),
                output_zero_point=output_zero_point, output_low=out_low, output_high=out_high,
                input_bits=activations[0], input_signed=activations[1], output_bits=output[0],
                output_signed=output[1], rounding=rounding or str(rng.choice(ROUNDING_MODES)))
        elif kind in ("softmax", "layernorm"):
            layer = _random_row_layer(rng, kind, shape, activations, output,
                                      rounding or str(rng.choice(ROUNDING_MODES)))
        else:
            outputs = options[0]
            layer = random_layer(rng, int(np.prod(shape)), outputs, config, *output)
            pad_code = int(rng.integers(*code_range(*activations), endpoint=True))
            window = None
            if kind == "conv":
                window = random_window(rng, shape, outputs, pad_code,
                                       **(options[1] if len(options) > 1 else {}))
            elif kind == "window":
                window = options[1]
            if window is not None:
                weights = random_codes(rng, (window.patch, outputs), config.weight_bits,
                                       config.weight_signed) * window.group_mask(outputs)
                layer = dataclasses.replace(layer, weights=weights, window=window)
            layer = dataclasses.replace(layer,
                                        rounding=rounding or str(rng.choice(ROUNDING_MODES)))
            layer = live_constants(rng, layer, config.accumulator_bits)
        result.append(layer)
        shape = shapes[index] = tuple(layer.output_shape)
    return program_of(result, sources)


def random_matmul(rng, config, rows, groups, inner, cols, transpose, output=None):
    """A :class:`~systolix.layer.MatMulLayer` on the array's activation codes with random zero
    points (``zb`` such that ``b - zb`` fits the array's weight codes), a random bias and a
    multiplier and shift that spread its output codes (``output``: bits and signedness, by
    default the activation codes'); its accumulator the fewest bits of the raw code product."""
    activations = (config.activation_bits, config.activation_signed)
    low, high = code_range(*activations)
    weight_low, weight_high = code_range(config.weight_bits, config.weight_signed)
    za = int(rng.integers(low, high + 1))
    zb = int(rng.integers(max(low, high - weight_high), min(high, low - weight_low) + 1))
    largest = max(-low, high)
    raw = inner * largest * largest
    span = max(2, int(max(za - low, high - za) * max(zb - low, high - zb) * inner ** 0.5))
    out_bits, out_signed = output or activations
    out_low, out_high = code_range(out_bits, out_signed)
    return MatMulLayer(
        rows, groups, inner, cols, transpose, (za, zb), int(rng.integers(-span // 2, span // 2)),
        int(rng.integers(1 << 15, 1 << 16)), min(16 + span.bit_length() - out_bits, 63),
        (out_low + out_high) // 2, out_low, out_high, activations[0], activations[1], out_bits,
        out_signed, signed_bits(-raw, raw), "wrap", str(rng.choice(ROUNDING_MODES)))


def random_attention_program(rng, config, tokens, heads, channels, head_width):
    """Attention's two products on random codes, for an array of ``config``: on an input map of
    ``tokens x heads x channels``, 1x1 convolutions make ``Q``, ``K`` and ``V`` (``tokens x
    heads x head_width`` each), then ``S = Q K^T`` (a transposed :class:`MatMulLayer`,
    ``tokens x heads x tokens``), ``S V`` and a dense layer of a few outputs on it (the last
    layer's output codes of a random width)."""
    shape = (tokens, heads, channels)
    activations = (config.activation_bits, config.activation_signed)
    layers, sources = [], []

    def conv(source, source_shape, outputs, output):
        window = Window(*source_shape, 1, 1)
        layer = random_layer(rng, window.patch, outputs, config, *output)
        layer = dataclasses.replace(layer, window=window,
                                    rounding=str(rng.choice(ROUNDING_MODES)))
        layers.append(live_constants(rng, layer, config.accumulator_bits))
        sources.append((source,))
        return len(layers) - 1

    q, k = (conv(-1, shape, head_width, activations) for _ in range(2))
    layers.append(random_matmul(rng, config, tokens, heads, head_width, tokens, True))
    sources.append((q, k))
    scores = len(layers) - 1
    v = conv(-1, shape, head_width, activations)
    layers.append(random_matmul(rng, config, tokens, heads, tokens, head_width, False))
    sources.append((scores, v))
    context = len(layers) - 1
    layer = random_layer(rng, tokens * heads * head_width, 5, config,
                         int(rng.integers(1, 9)), bool(rng.integers(2)))
    layers.append(live_constants(rng, layer, config.accumulator_bits))
    sources.append((context,))
    return program_of(tuple(layers), tuple(sources))


def vit_attention_program(vit, block, config):
    """The attention of encoder block ``block`` of a lowered vision transformer ``vit``
    (:func:`systolix.sw.vit.lower_vit`) for an array of ``config``, as a program of its own:
    its input the block's first LayerNorm's output codes; the real ``Q``, ``K`` and ``V``
    projections, ``Q K^T``, a stand-in for the softmax (a 1x1 convolution mapping each 8-bit
    score ``s`` to the probability code ``s / 16 + 8``, as the engine runs no softmax yet),
    ``S V`` and the output projection. The projections accumulate in the array's ``P`` bits
    (their own bounds are at most that)."""
    products = [index for index, layer in enumerate(vit.layers)
                if isinstance(layer, MatMulLayer)][2 * block:2 * block + 2]
    scores, context = products
    q, k = vit.sources[scores]
    probabilities, v = vit.sources[context]
    (out,) = [index for index, entry in enumerate(vit.sources) if entry == (context,)]

    def on_array(layer):
        return dataclasses.replace(layer, accumulator_bits=config.accumulator_bits,
                                   overflow=config.overflow)

    shape = vit.layers[scores].output_shape
    stand_in = IntegerLayer(
        weights=np.eye(shape[2], dtype=np.int64), bias=np.zeros(shape[2], np.int64),
        multiplier=np.ones(shape[2], np.int64), shift=np.full(shape[2], 4),
        output_zero_point=8, output_low=0, output_high=15,
        input_bits=vit.layers[scores].output_bits,
        input_signed=vit.layers[scores].output_signed, weight_bits=config.weight_bits,
        weight_signed=config.weight_signed, output_bits=vit.layers[probabilities].output_bits,
        output_signed=False, accumulator_bits=config.accumulator_bits, overflow=config.overflow,
        window=Window(*shape, 1, 1))
    layers = (on_array(vit.layers[q]), on_array(vit.layers[k]), on_array(vit.layers[v]),
              vit.layers[scores], stand_in, vit.layers[context], on_array(vit.layers[out]))
    sources = ((-1,), (-1,), (-1,), (0, 1), (3,), (4, 2), (5,))
    return program_of(layers, sources)
