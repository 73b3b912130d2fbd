"""The softmax unit in Amaranth's simulator against the golden integer softmax."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.hw.softmax import SoftmaxUnit, softmax_row_cycles, softmax_row_latency
from systolix.layer import ROUNDING_MODES
from systolix.sim.golden.nonlinear import integer_softmax


def simulate(rows, constants, max_length, gaps=(False,)):
    """The unit's output rows for ``rows`` (one length), the cycles of the rows' first input
    transfers and of their last codes out."""
    dut = SoftmaxUnit(max_length)
    length = len(rows[0])
    outputs, starts, ends = [], [], []

    async def bench(ctx):
        ctx.set(dut.length, length)
        for name, value in constants.items():
            ctx.set(getattr(dut, name), value)
        flat = [int(code) for row in rows for code in row]
        sent, cycle, row = 0, 0, []
        while len(outputs) < len(rows):
            offer = sent < len(flat) and not gaps[cycle % len(gaps)]
            ctx.set(dut.input.valid, offer)
            if offer:
                ctx.set(dut.input.payload, flat[sent])
            _, _, ready = await ctx.tick().sample(dut.input.ready)
            if offer and ready:
                if sent % length == 0:
                    starts.append(cycle)
                sent += 1
            cycle += 1
            if ctx.get(dut.output.valid):
                assert ctx.get(dut.output.payload.tag) == len(row)
                row.append(ctx.get(dut.output.payload.code))
                if len(row) == length:
                    outputs.append(row)
                    ends.append(cycle)
                    row = []
            assert cycle < 10 * len(flat) + 100 * len(rows) + 100

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array(outputs), starts, ends


@pytest.mark.parametrize("length, fraction_bits, low, high, multiplier, shift, rounding", [
    (17, 3, 0, 15, 15, 30, "half_up"),            # a ViT's attention row to 4-bit codes
    (5, 0, -128, 127, 255, 30, "half_even"),
    (1, 8, 0, 255, 65535, 38, "half_up"),
    (32, 6, 0, 255, 40000, 37, "half_up"),
])
def test_rows_bit_exact(length, fraction_bits, low, high, multiplier, shift, rounding):
    rng = np.random.default_rng(length)
    rows = rng.integers(-128, 128, size=(6, length))
    rows[1] = 127                                     # equal codes
    rows[2, :] = -128
    rows[2, 0] = 127                                  # one dominant code
    constants = dict(fraction_bits=fraction_bits, multiplier=multiplier, shift=shift,
                     zero_point=low, low=low, high=high,
                     rounding=ROUNDING_MODES.index(rounding))
    expected = integer_softmax(rows, fraction_bits, multiplier, shift, low, low, high,
                               rounding)
    outputs, _, _ = simulate(rows, constants, 32, gaps=(False, True, False))
    np.testing.assert_array_equal(outputs, expected)
    steady, _, _ = simulate(rows[:3], constants, 32)
    np.testing.assert_array_equal(steady, expected[:3])


def test_row_cycles():
    rows = np.random.default_rng(0).integers(-128, 128, size=(4, 17))
    constants = dict(fraction_bits=3, multiplier=15, shift=30, zero_point=0, low=0, high=15,
                     rounding=0)
    """Without stalls, the first row's last code leaves its latency after its first code in,
    every later row's a period after the row before's (it loaded meanwhile into the other
    buffer: 17 cycles after the first row, then as soon as a buffer is free)."""
    _, starts, ends = simulate(rows, constants, 17)
    assert ends[0] - starts[0] == softmax_row_latency(17) == 3 * 17 + 32
    assert set(np.diff(ends)) == {softmax_row_cycles(17)} == {2 * 17 + 26}
    assert starts[1] - starts[0] == 17


@pytest.mark.parametrize("fraction_bits, multiplier, shift", [(0, 65535, 24), (3, 65535, 24),
                                                               (8, 30000, 29)])
def test_every_code_difference(fraction_bits, multiplier, shift):
    """Rows holding every 8-bit code: every difference 0..255 through the exponential."""
    rng = np.random.default_rng(fraction_bits)
    rows = np.stack([rng.permutation(np.arange(-128, 128)) for _ in range(2)])
    constants = dict(fraction_bits=fraction_bits, multiplier=multiplier, shift=shift,
                     zero_point=-128, low=-128, high=255, rounding=0)
    expected = integer_softmax(rows, fraction_bits, multiplier, shift, -128, -128, 255)
    assert len(set(expected.ravel())) > 4
    outputs, _, _ = simulate(rows, constants, 256)
    np.testing.assert_array_equal(outputs, expected)
