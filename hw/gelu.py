"""Integer GELU unit: one code a cycle, I-BERT's clipped quadratic, then the requantizer."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from systolix.layer import GELU_CLIP_MAX, GELU_CONSTANT_MAX
from systolix.timing import REQUANT_LATENCY

from .requant import (CODE_SHAPE, Requantizer, feed_requantizer, requant_output_layout,
                      scale_ports)

__all__ = ["GELU_LATENCY", "GELU_PRODUCT", "gelu_input_layout", "gelu_clipped", "gelu_factor",
           "GeluUnit"]

GELU_LATENCY = 4 + REQUANT_LATENCY
"""Cycles from a code on :attr:`GeluUnit.input` to its result on :attr:`GeluUnit.output`."""

GELU_PRODUCT = signed(32)
"""Shape of the product ``P``: ``|x| < 2^9``, ``|factor| <= 2 * constant <= 2^23``, and
``GeluLayer`` keeps ``|P| < 2^31``."""


def gelu_clipped(x, clip):
    """``t = min(|x|, clip) - clip`` of a centred code ``x`` (a value), ``-clip .. 0``."""
    magnitude = Mux(x < 0, -x, x)
    return Mux(magnitude < clip, magnitude, clip) - clip


def gelu_factor(x, square, constant):
    """``constant + sign(x) * (constant - square)``, ``square = t^2``: ``P = x * factor``."""
    return Mux(x > 0, (constant << 1) - square, Mux(x < 0, square, constant))


def gelu_input_layout(tag_shape):
    """Payload of :attr:`GeluUnit.input`: a code and a tag."""
    return data.StructLayout({"code": CODE_SHAPE, "tag": tag_shape})


class GeluUnit(wiring.Component):
    """The integer GELU of one code a cycle, bit-exact with
    :func:`systolix.sim.golden.nonlinear.integer_gelu`::

        x = code - input_zero_point
        t = min(|x|, clip) - clip
        P = x * (constant + sign(x) * (constant - t^2))
        out = requantize(P, 0, multiplier, shift, zero_point, low, high, rounding)

    Pipeline (one register after each step): 1. ``x``; 2. ``t``; 3. ``t^2``; 4. ``P`` (``f =
    2 constant - t^2`` for ``x > 0``, ``t^2`` for ``x < 0``, times ``x``); then the
    :class:`~systolix.hw.requant.Requantizer` (32-bit accumulator ``P``, bias 0).

    Latency: :data:`GELU_LATENCY` cycles. Throughput: one code a cycle. The streams are always
    ready and carry a ``tag`` through unchanged. The constants are those of one
    :class:`~systolix.layer.GeluLayer` and must hold while a code is in flight; the input codes
    and ``input_zero_point`` must be codes of the layer's input (``|x| < 2^8``).

    Resources: two multipliers of at most 13 x 13 and 10 x 25 bits besides the requantizer's;
    out of context (docs/vit.md) 938 logic cells and 5 SB_MAC16 at 35 MHz on an iCE40UP5K
    (``synth_ice40 -dsp``), 641 and 5 MULT18X18D at 72 MHz on an ECP5-85F.

    Parameters
    ----------
    tag_shape : shape-castable

    Attributes
    ----------
    input : In(stream.Signature(gelu_input_layout(tag_shape), always_ready=True))
    output : Out(stream.Signature(requant_output_layout(tag_shape), always_ready=True))
    input_zero_point, zero_point, low, high : In(CODE_SHAPE)
    clip : In(unsigned(12))
    constant : In(unsigned(23))
    multiplier : In(unsigned(MULTIPLIER_BITS))
    shift : In(unsigned(SHIFT_BITS))
    rounding : In(1)
        0 halves up, 1 halves to even.
    """

    def __init__(self, tag_shape):
        self.tag_shape = tag_shape
        self._requant = Requantizer(GELU_PRODUCT.width, tag_shape)
        super().__init__({
            "input": In(stream.Signature(gelu_input_layout(tag_shape), always_ready=True)),
            "output": Out(stream.Signature(requant_output_layout(tag_shape),
                                           always_ready=True)),
            "input_zero_point": In(CODE_SHAPE),
            "clip": In(unsigned(GELU_CLIP_MAX.bit_length())),
            "constant": In(unsigned(GELU_CONSTANT_MAX.bit_length())),
            **scale_ports(),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.requant = requant = self._requant

        def stage(name, fields, values):
            registers = Signal(data.StructLayout({"valid": 1, "tag": self.tag_shape, **fields}),
                               name=name)
            m.d.sync += [registers[key].eq(value) for key, value in values.items()]
            return registers

        given = self.input.payload
        clip_shape = signed(GELU_CLIP_MAX.bit_length() + 1)
        centred = stage("gelu_x", {"x": signed(10)},
                        {"valid": self.input.valid, "tag": given.tag,
                         "x": given.code - self.input_zero_point})
        clipped = stage("gelu_t", {"x": signed(10), "t": clip_shape},
                        {"valid": centred.valid, "tag": centred.tag, "x": centred.x,
                         "t": gelu_clipped(centred.x, self.clip)})
        squared = stage("gelu_square", {"x": signed(10),
                                        "square": unsigned(2 * GELU_CLIP_MAX.bit_length())},
                        {"valid": clipped.valid, "tag": clipped.tag, "x": clipped.x,
                         "square": clipped.t * clipped.t})
        product = stage("gelu_product", {"value": GELU_PRODUCT},
                        {"valid": squared.valid, "tag": squared.tag,
                         "value": squared.x * gelu_factor(squared.x, squared.square,
                                                          self.constant)})
        feed_requantizer(m, requant, self, valid=product.valid, acc=product.value, tag=product.tag)
        wiring.connect(m, requant.output, wiring.flipped(self.output))
        return m
