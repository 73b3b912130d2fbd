"""The default workload: the array of ``make sim`` and the embedded digits model quantized for an
array's accumulator.

Not a command-line module: the simulator's CLI (``systolix sim``), the board builds
(``systolix bitstream``, :mod:`systolix.boards`) and the tests take the default model from here.
"""

from systolix.config import DEFAULT_CONFIG

from .lower import lower
from .models import accuracy, digits_mlp
from .qmodel import quantize

__all__ = ["default_program"]


def default_program(config=DEFAULT_CONFIG):
    """The embedded default model: the digits MLP, W4/A4, A2Q+ for the accumulator of
    ``config``; returns ``(program, data, float accuracy)``."""
    model, data = digits_mlp()
    quantized = quantize(model, data.x_train, config.weight_bits, config.activation_bits,
                         accumulator_bits=config.accumulator_bits, method="a2q+",
                         overflow=config.overflow)
    return lower(quantized), data, accuracy(model.predict(data.x_test), data.y_test)
