"""Random integer programs over the whole code ranges: stimulus for the packer's and the
engine's tests."""

from systolix.config import code_range

from .program import IntegerLayer, IntegerProgram
from .quant import QuantParams

__all__ = ["program_of", "random_codes", "random_layer", "random_program"]


def program_of(layers):
    """An :class:`IntegerProgram` of ``layers`` with identity host quantizers."""
    first, last = layers[0], layers[-1]
    low, high = code_range(first.input_bits, first.input_signed)
    return IntegerProgram(layers, QuantParams(first.input_bits, first.input_signed, 1.0, 0,
                                              low, high),
                          QuantParams(last.output_bits, last.output_signed, 1.0,
                                      last.output_zero_point, last.output_low, last.output_high))


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
