"""The GELU unit in Amaranth's simulator against the golden integer GELU, over every input code."""

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from systolix.hw.gelu import GELU_LATENCY, GeluUnit
from systolix.layer import GELU_CLIP_MAX, GELU_CONSTANT_MAX, ROUNDING_MODES
from systolix.sim.golden.nonlinear import gelu_constants, integer_gelu


def simulate(codes, constants, gaps=(False,)):
    """The unit's output codes for ``codes`` and the cycles each took."""
    dut = GeluUnit(unsigned(16))
    outputs, latencies = {}, []

    async def bench(ctx):
        for name, value in constants.items():
            ctx.set(getattr(dut, name), value)
        sent, cycle, issued = 0, 0, {}
        while len(outputs) < len(codes):
            if sent < len(codes) and not gaps[cycle % len(gaps)]:
                ctx.set(dut.input.valid, 1)
                ctx.set(dut.input.payload, {"code": int(codes[sent]), "tag": sent})
                issued[sent] = cycle
                sent += 1
            else:
                ctx.set(dut.input.valid, 0)
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.output.valid):
                tag = ctx.get(dut.output.payload.tag)
                outputs[tag] = ctx.get(dut.output.payload.code)
                latencies.append(cycle - issued[tag])
            assert cycle < 4 * len(codes) + 50

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array([outputs[index] for index in range(len(codes))]), latencies


def layer_constants(scale, input_zero_point, multiplier, shift, zero_point, low, high,
                    rounding="half_up"):
    clip, constant = gelu_constants(scale)
    return dict(input_zero_point=input_zero_point, clip=clip, constant=constant,
                multiplier=multiplier, shift=shift, zero_point=zero_point, low=low, high=high,
                rounding=ROUNDING_MODES.index(rounding))


@pytest.mark.parametrize("codes, constants", [
    # 8-bit signed inputs at a scale of 1/16, to 4-bit unsigned codes with a zero point.
    (np.arange(-128, 128), layer_constants(1 / 16, 0, 40000, 21, 2, 0, 15)),
    # 8-bit unsigned inputs with a zero point, to 8-bit signed codes, halves to even.
    (np.arange(0, 256), layer_constants(0.01, 100, 65535, 30, -5, -128, 127, "half_even")),
    # The largest constants the layer allows, extreme codes; no clamp in the way.
    (np.arange(-128, 128), dict(input_zero_point=-128, clip=GELU_CLIP_MAX,
                                constant=GELU_CONSTANT_MAX, multiplier=1, shift=24,
                                zero_point=0, low=-256, high=255, rounding=0)),
    (np.arange(-128, 128), dict(input_zero_point=127, clip=GELU_CLIP_MAX,
                                constant=GELU_CONSTANT_MAX, multiplier=1, shift=22,
                                zero_point=0, low=-256, high=255, rounding=0)),
])
def test_every_code_bit_exact(codes, constants):
    expected = integer_gelu(codes, constants["input_zero_point"], constants["clip"],
                            constants["constant"], constants["multiplier"], constants["shift"],
                            constants["zero_point"], constants["low"], constants["high"],
                            ROUNDING_MODES[constants["rounding"]])
    outputs, latencies = simulate(codes, constants, gaps=(False, False, True))
    np.testing.assert_array_equal(outputs, expected)
    assert set(latencies) == {GELU_LATENCY}
    assert len(set(expected)) > 3           # the cases reach more than the clamp bounds


def test_random_layers_every_code():
    """Random layers (input codes and zero point, scale, requantization, output codes): every
    input code, back to back."""
    from systolix.config import code_range

    rng = np.random.default_rng(7)
    for _ in range(4):
        bits, signed = int(rng.integers(2, 9)), bool(rng.integers(2))
        low, high = code_range(bits, signed)
        codes = np.arange(low, high + 1)
        out_low, out_high = code_range(int(rng.integers(2, 9)), bool(rng.integers(2)))
        constants = layer_constants(float(rng.uniform(0.01, 0.5)),
                                    int(rng.integers(low, high + 1)),
                                    int(rng.integers(1, 1 << 16)), int(rng.integers(10, 30)),
                                    int(rng.integers(out_low, out_high + 1)), out_low, out_high,
                                    ("half_up", "half_even")[int(rng.integers(2))])
        expected = integer_gelu(codes, constants["input_zero_point"], constants["clip"],
                                constants["constant"], constants["multiplier"],
                                constants["shift"], constants["zero_point"], out_low, out_high,
                                ROUNDING_MODES[constants["rounding"]])
        outputs, _ = simulate(codes, constants)
        np.testing.assert_array_equal(outputs, expected)
