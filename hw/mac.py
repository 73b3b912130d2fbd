"""Low-bit multiply-accumulate processing element of the weight-stationary systolic array."""

from amaranth.hdl import Elaboratable, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig

__all__ = ["weight_shape", "activation_shape", "accumulator_shape", "product_shape",
           "accumulate", "ProcessingElement"]


def weight_shape(config):
    """Amaranth shape of a weight code."""
    return Shape(config.weight_bits, config.weight_signed)


def activation_shape(config):
    """Amaranth shape of an activation code."""
    return Shape(config.activation_bits, config.activation_signed)


def accumulator_shape(config):
    """Amaranth shape of a partial sum: ``signed(P)``."""
    return signed(config.accumulator_bits)


def product_shape(config):
    """Smallest shape that holds every product of a weight code and an activation code."""
    width = config.weight_bits + config.activation_bits
    if config.weight_signed or config.activation_signed:
        return signed(width)
    return unsigned(width)


def accumulate(config, partial_sum, addend):
    """Expression for ``partial_sum + addend`` in the configured overflow mode.

    ``"wrap"`` truncates the exact sum to ``P`` bits (the carry out is dropped);
    ``"saturate"`` clamps it to ``-2**(P-1) .. 2**(P-1) - 1``.
    """
    total = partial_sum + addend
    if config.overflow == "wrap":
        return total[:config.accumulator_bits].as_signed()
    low, high = config.accumulator_range
    return Mux(total < low, low, Mux(total > high, high, total))


class ProcessingElement(wiring.Component):
    """One multiply-accumulate cell of the weight-stationary array.

    The cell holds two weight registers: ``shadow``, written by the loader through
    ``weight``/``weight_write`` while the array computes, and ``active``, which the multiplier
    reads. The shadow is copied into the active register in the cycle an activation arrives with
    ``swap_in`` set, so a new weight tile takes effect in a wavefront that travels with the
    activations and vectors in flight keep the tile they started with.

    Activations move one cell to the right per cycle, partial sums one cell down.

    Latency: an activation present on ``act_in`` in cycle ``t`` is on ``act_out`` in ``t + 1``;
    its product is registered in ``t + 2`` and added to the partial sum of the cell above,
    which must be on ``psum_in`` in that cycle, to give ``psum_out`` in ``t + 3``. Throughput:
    one multiply-accumulate per cycle.

    Parameters
    ----------
    config : ArrayConfig

    Attributes
    ----------
    act_in, act_out : activation code, entering from the left and leaving to the right.
    swap_in, swap_out : 1 bit, travels with the activation; set on the first vector of a tile.
    psum_in : signed(P), the partial sum from the cell above (0 in the top row).
    psum_out : signed(P), registered ``psum_in + act * weight`` (wrapped or saturated).
    weight, weight_write : the loader's write port into the shadow register.
    """

    def __init__(self, config):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        self.config = config
        super().__init__({
            "act_in":       In(activation_shape(config)),
            "swap_in":      In(1),
            "act_out":      Out(activation_shape(config)),
            "swap_out":     Out(1),
            "psum_in":      In(accumulator_shape(config)),
            "psum_out":     Out(accumulator_shape(config)),
            "weight":       In(weight_shape(config)),
            "weight_write": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        config = self.config
        shadow = Signal(weight_shape(config))
        active = Signal(weight_shape(config))
        product = Signal(product_shape(config))

        with m.If(self.weight_write):
            m.d.sync += shadow.eq(self.weight)
        with m.If(self.swap_in):
            m.d.sync += active.eq(shadow)
        m.d.sync += [
            self.act_out.eq(self.act_in),
            self.swap_out.eq(self.swap_in),
            product.eq(self.act_out * active),
            self.psum_out.eq(accumulate(config, self.psum_in, product)),
        ]
        return m
