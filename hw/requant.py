"""Requantization unit: one accumulator value a cycle becomes the next layer's code."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from systolix.sim.golden.program import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS

__all__ = ["CODE_SHAPE", "REQUANT_LATENCY", "requant_input_layout", "requant_output_layout",
           "Requantizer"]

CODE_SHAPE = signed(9)
"""Shape of a code, a zero point and a clamp bound: holds every 8-bit signed or unsigned code."""

REQUANT_LATENCY = 5
"""Cycles from a value on ``input`` to its code on ``output``."""

_SUM = signed(BIAS_BITS + 1)                       # acc + bias, exact (P <= 32)
_PRODUCT = signed(BIAS_BITS + 1 + MULTIPLIER_BITS)  # (acc + bias) * M0, exact
_ROUNDED = signed(MAX_SHIFT + 2)                    # plus the rounding constant, up to 2^62


def requant_input_layout(accumulator_bits, tag_shape):
    """Payload of :attr:`Requantizer.input`: one channel's value and constants, and a tag."""
    return data.StructLayout({
        "acc": signed(accumulator_bits),
        "bias": signed(BIAS_BITS),
        "multiplier": unsigned(MULTIPLIER_BITS),
        "shift": unsigned(MAX_SHIFT.bit_length()),
        "zero_point": CODE_SHAPE,
        "low": CODE_SHAPE,
        "high": CODE_SHAPE,
        "tag": tag_shape,
    })


def requant_output_layout(tag_shape):
    """Payload of :attr:`Requantizer.output`: the code and the tag it came with."""
    return data.StructLayout({"code": CODE_SHAPE, "tag": tag_shape})


class Requantizer(wiring.Component):
    """Fixed-point requantization of one channel a cycle, bit-exact with
    :func:`systolix.sim.golden.program.requantize`::

        code = clamp(((acc + bias) * M0 + 2^(shift-1)) >> shift) + zero_point, low, high)

    Pipeline (one register after each step): ``acc + bias`` (33 bits); times ``M0`` (49 bits);
    plus the rounding constant ``(1 << shift) >> 1``; arithmetic right shift; plus the zero point
    and clamp. Every step is exact: nothing is truncated before the clamp.

    Latency: :data:`REQUANT_LATENCY` cycles. Throughput: one channel a cycle. The streams are
    always ready and carry a ``tag`` (for example the destination address) through unchanged.

    Parameters
    ----------
    accumulator_bits : int
        ``P``, the width of ``acc``.
    tag_shape : shape-castable
        Shape of the tag.

    Attributes
    ----------
    input : In(stream.Signature(requant_input_layout(...), always_ready=True))
    output : Out(stream.Signature(requant_output_layout(...), always_ready=True))
    """

    def __init__(self, accumulator_bits, tag_shape):
        self.tag_shape = tag_shape
        super().__init__({
            "input": In(stream.Signature(requant_input_layout(accumulator_bits, tag_shape),
                                         always_ready=True)),
            "output": Out(stream.Signature(requant_output_layout(tag_shape),
                                           always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        given = self.input.payload

        def stage(name, layout_fields, values):
            """One pipeline register holding ``values`` (a dict) and the valid bit."""
            registers = Signal(data.StructLayout({"valid": 1, **layout_fields}), name=name)
            m.d.sync += [registers[key].eq(value) for key, value in values.items()]
            return registers

        carried = {"zero_point": CODE_SHAPE, "low": CODE_SHAPE, "high": CODE_SHAPE,
                   "tag": self.tag_shape}
        shift = unsigned(MAX_SHIFT.bit_length())

        summed = stage("requant_sum", {"value": _SUM, "multiplier": unsigned(MULTIPLIER_BITS),
                                       "shift": shift, **carried},
                       {"valid": self.input.valid, "value": given.acc + given.bias,
                        "multiplier": given.multiplier, "shift": given.shift,
                        **{key: given[key] for key in carried}})
        scaled = stage("requant_product", {"value": _PRODUCT, "shift": shift, **carried},
                       {"valid": summed.valid, "value": summed.value * summed.multiplier,
                        "shift": summed.shift, **{key: summed[key] for key in carried}})
        rounded = stage("requant_rounded", {"value": _ROUNDED, "shift": shift,
                                            **carried},
                        {"valid": scaled.valid,
                         "value": scaled.value + ((Const(1, 1) << scaled.shift) >> 1),
                         "shift": scaled.shift, **{key: scaled[key] for key in carried}})
        shifted = stage("requant_shifted", {"value": _PRODUCT, **carried},
                        {"valid": rounded.valid, "value": rounded.value >> rounded.shift,
                         **{key: rounded[key] for key in carried}})
        total = Signal(signed(_PRODUCT.width + 1))
        m.d.comb += total.eq(shifted.value + shifted.zero_point)
        m.d.sync += [
            self.output.valid.eq(shifted.valid),
            self.output.payload.code.eq(Mux(total < shifted.low, shifted.low,
                                            Mux(total > shifted.high, shifted.high, total))),
            self.output.payload.tag.eq(shifted.tag),
        ]
        return m
