"""The LayerNorm unit in Amaranth's simulator against the golden integer LayerNorm."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.hw.layernorm import LayerNormUnit, layernorm_row_cycles, layernorm_row_latency
from systolix.layer import LAYERNORM_BIAS_BITS, MULTIPLIER_BITS
from systolix.sim.golden.nonlinear import integer_layernorm


def simulate(rows, multiplier, bias, constants, max_channels, gaps=(False,)):
    """The unit's output rows for ``rows``, the cycles of the rows' first input transfers and
    of their last codes out."""
    dut = LayerNormUnit(max_channels)
    channels = len(rows[0])
    outputs, starts, ends = [], [], []

    async def bench(ctx):
        ctx.set(dut.channels, channels)
        for name, value in constants.items():
            ctx.set(getattr(dut, name), value)
        flat = [int(code) for row in rows for code in row]
        sent, taken, cycle, row = 0, 0, 0, []
        while len(outputs) < len(rows):
            offer = sent < len(flat) and not gaps[cycle % len(gaps)]
            ctx.set(dut.input.valid, offer)
            if offer:
                ctx.set(dut.input.payload, flat[sent])
            given = not gaps[(cycle + 1) % len(gaps)]
            ctx.set(dut.constants.valid, given)
            ctx.set(dut.constants.payload, {"multiplier": int(multiplier[taken % channels]),
                                            "bias": int(bias[taken % channels])})
            _, _, ready, constants_ready = await ctx.tick().sample(dut.input.ready,
                                                                   dut.constants.ready)
            if offer and ready:
                if sent % channels == 0:
                    starts.append(cycle)
                sent += 1
            if given and constants_ready:
                taken += 1
            cycle += 1
            if ctx.get(dut.output.valid):
                assert ctx.get(dut.output.payload.tag) == len(row)
                row.append(ctx.get(dut.output.payload.code))
                if len(row) == channels:
                    outputs.append(row)
                    ends.append(cycle)
                    row = []
            assert cycle < 10 * len(flat) + 200 * len(rows)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(outputs), starts, ends


@pytest.mark.parametrize("channels, low, high, shift, rounding", [
    (32, 0, 15, 34, 0),              # a ViT's token to 4-bit codes
    (7, -128, 127, 40, 1),
    (2, 0, 255, 30, 0),
])
def test_rows_bit_exact(channels, low, high, shift, rounding):
    rng = np.random.default_rng(channels)
    rows = rng.integers(-128, 128, size=(5, channels))
    rows[1] = 77                                          # a constant row: normalised to 0
    rows[2] = np.where(np.arange(channels) == 0, 127, -128)  # one outlier
    # Multipliers that spread the normalised values (|n| <= sqrt(C)) over the codes; the
    # extremes of the multiplier and the bias saturate.
    largest = (high - low) << (shift - 30) >> 2
    multiplier = rng.integers(-largest, largest, channels)
    multiplier[0] = -(1 << MULTIPLIER_BITS)
    bias = rng.integers(-(high - low) << (shift - 1), (high - low) << (shift - 1), channels)
    bias[-1] = (1 << (LAYERNORM_BIAS_BITS - 1)) - 1 if shift >= 40 else bias[-1]
    middle = (low + high) // 2
    constants = dict(shift=shift, zero_point=middle, low=low, high=high, rounding=rounding)
    expected = integer_layernorm(rows, multiplier, bias, shift, middle, low, high,
                                 ("half_up", "half_even")[rounding])
    assert len(set(expected.ravel())) > 4
    outputs, _, _ = simulate(rows, multiplier, bias, constants, 32, gaps=(False, True, False))
    np.testing.assert_array_equal(outputs, expected)


def test_row_cycles():
    rows = np.random.default_rng(0).integers(0, 16, size=(3, 32))
    constants = dict(shift=34, zero_point=0, low=0, high=15, rounding=0)
    """Without stalls, the first row's last code leaves its latency after its first code in,
    every later row's a period after the row before's (it loaded meanwhile: 32 cycles after
    the first row, then as soon as a buffer is free)."""
    outputs, starts, ends = simulate(rows, [256] * 32, [8 << 34] * 32, constants, 32)
    np.testing.assert_array_equal(outputs, integer_layernorm(rows, [256] * 32, [8 << 34] * 32,
                                                             34, 0, 0, 15))
    assert ends[0] - starts[0] == layernorm_row_latency(32, 32) == 125
    assert set(np.diff(ends)) == {layernorm_row_cycles(32, 32)} == {92}
    assert starts[1] - starts[0] == 32


def test_every_code_in_one_row():
    rng = np.random.default_rng(1)
    rows = np.stack([rng.permutation(np.arange(-128, 128)), rng.permutation(np.arange(256)) - 1])
    multiplier, bias = np.full(256, 1 << 10), np.zeros(256, dtype=np.int64)
    constants = dict(shift=36, zero_point=0, low=-256, high=255, rounding=0)
    expected = integer_layernorm(rows, multiplier, bias, 36, 0, -256, 255)
    assert len(set(expected.ravel())) > 40
    outputs, _, _ = simulate(rows, multiplier, bias, constants, 256)
    np.testing.assert_array_equal(outputs, expected)
