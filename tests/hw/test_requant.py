"""The requantization unit in Amaranth's simulator against the golden ``requantize``."""

import numpy as np
import pytest
from amaranth.hdl import unsigned
from amaranth.sim import Simulator

from systolix.config import code_range
from systolix.layer import ROUNDING_MODES
from systolix.hw.requant import Requantizer
from systolix.timing import REQUANT_LATENCY
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS
from systolix.sim.golden.program import requantize

EDGE_SHIFTS = [0, 1, 2, 7, 8, 9, 15, 16, 17, 24, 31, 32, 40, 47, 48, 49, 50, 62, MAX_SHIFT]


def cases(rng, accumulator_bits, count):
    """``count`` channels: random values with every extreme of each constant mixed in."""
    acc_low, acc_high = code_range(accumulator_bits, True)
    bias_low, bias_high = code_range(BIAS_BITS, True)
    acc = rng.integers(acc_low, acc_high + 1, count)
    bias = rng.integers(bias_low, bias_high + 1, count)
    multiplier = rng.integers(0, 1 << MULTIPLIER_BITS, count)
    shift = rng.choice(EDGE_SHIFTS + list(range(MAX_SHIFT + 1)), count)
    for column, extremes in ((acc, [acc_low, acc_high, 0, -1]),
                             (bias, [bias_low, bias_high, 0, -1]),
                             (multiplier, [0, 1, (1 << MULTIPLIER_BITS) - 1])):
        picks = rng.random(count) < 0.3
        column[picks] = rng.choice(extremes, picks.sum())
    # Small sums with a small multiplier and shift land inside the clamp range, not at its ends.
    near = rng.random(count) < 0.3
    bias[near] = np.clip(-acc[near] + rng.integers(-300, 300, near.sum()), bias_low, bias_high)
    multiplier[near] = rng.integers(1, 8, near.sum())
    shift[near] = rng.integers(0, 4, near.sum())
    return acc, bias, multiplier, shift


def simulate(accumulator_bits, acc, bias, multiplier, shift, zero_point, low, high, gaps,
             rounding="half_up"):
    """The codes the unit gives for each channel, and the cycles from input to output."""
    dut = Requantizer(accumulator_bits, unsigned(16))
    codes, latencies = {}, []

    async def bench(ctx):
        ctx.set(dut.rounding, ROUNDING_MODES.index(rounding))
        ctx.set(dut.zero_point, zero_point)
        ctx.set(dut.low, low)
        ctx.set(dut.high, high)
        sent, cycle, issued = 0, 0, {}
        while len(codes) < len(acc):
            if sent < len(acc) and not gaps[cycle % len(gaps)]:
                ctx.set(dut.input.valid, 1)
                ctx.set(dut.input.payload, {
                    "acc": int(acc[sent]), "bias": int(bias[sent]),
                    "multiplier": int(multiplier[sent]), "shift": int(shift[sent]),
                    "tag": sent})
                issued[sent] = cycle
                sent += 1
            else:
                ctx.set(dut.input.valid, 0)
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.output.valid):
                tag = ctx.get(dut.output.payload.tag)
                codes[tag] = ctx.get(dut.output.payload.code)
                latencies.append(cycle - issued[tag])
            assert cycle < 10 * len(acc) + 100

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return np.array([codes[index] for index in range(len(acc))]), latencies


@pytest.mark.parametrize("accumulator_bits, out_bits, out_signed, relu, rounding", [
    (12, 4, False, True, "half_up"), (32, 8, True, False, "half_up"),
    (2, 1, False, False, "half_up"), (20, 8, False, True, "half_up"),
    (12, 4, False, True, "half_even"), (32, 8, True, False, "half_even")])
def test_matches_golden_requantize(accumulator_bits, out_bits, out_signed, relu, rounding):
    rng = np.random.default_rng(accumulator_bits + out_bits)
    acc, bias, multiplier, shift = cases(rng, accumulator_bits, 600)
    low, high = code_range(out_bits, out_signed)
    zero_point = int(rng.integers(low, high + 1))
    if relu:
        low = zero_point
    codes, latencies = simulate(accumulator_bits, acc, bias, multiplier, shift, zero_point,
                                low, high, gaps=[0, 0, 1, 0, 1, 1, 0], rounding=rounding)
    expected = requantize(acc, bias, multiplier, shift, zero_point, low, high, rounding)
    mismatches = np.flatnonzero(codes != expected)
    assert mismatches.size == 0, (
        f"{mismatches.size} mismatches, first: acc {acc[mismatches[0]]} bias "
        f"{bias[mismatches[0]]} M0 {multiplier[mismatches[0]]} shift {shift[mismatches[0]]}: "
        f"{codes[mismatches[0]]}, expected {expected[mismatches[0]]}")
    assert set(latencies) == {REQUANT_LATENCY}
    # The cases reach both ends of the clamp and the values between.
    assert {low, high} <= set(codes.tolist())
    assert len(set(codes.tolist())) >= min(3, high - low + 1)


@pytest.mark.parametrize("rounding", ["half_up", "half_even"])
def test_every_shift_rounds_halves(rounding):
    """``t = 2^(s-1)`` and ``3 * 2^(s-1)`` (exact halves, one rounding to an odd neighbour,
    one to an even) and their neighbours for every shift the unit can get."""
    acc, bias, multiplier, shift = [], [], [], []
    for s in range(MAX_SHIFT + 1):
        for t in ({2 ** (s - 1) if s else 1, 3 * 2 ** (s - 1) if s else 3} if s < 48 else {1}):
            for delta in (-1, 0, 1):
                for sign in (1, -1):
                    value = sign * t + delta
                    if -2 ** 31 <= value < 2 ** 31:
                        acc.append(0)
                        bias.append(value)
                        multiplier.append(1)
                        shift.append(s)
    codes, _ = simulate(2, acc, bias, multiplier, shift, 0, -256, 255, gaps=[0],
                        rounding=rounding)
    expected = requantize(acc, bias, multiplier, shift, 0, -256, 255, rounding)
    assert (codes == expected).all()
    assert {-2, -1, 0, 1, 2} <= set(expected.tolist())


@pytest.mark.parametrize("zero_point", [-256, 0, 255])
def test_halves_at_the_saturation_of_u(zero_point):
    """Exact halves whose ``u = t >> (s - 1)`` lies at the unit's 12-bit saturation (the tie
    is taken from the bits before it), and their neighbours, rounding to even: every code
    clamps as the golden model's."""
    acc, bias, multiplier, shift = [], [], [], []
    for s in (1, 2, 5, 9, 17):
        for u in (*range(2043, 2053), *range(4091, 4101), 8191, 8193):
            for sign in (1, -1):
                for delta in (-1, 0, 1):
                    acc.append(0)
                    bias.append(sign * u * 2 ** (s - 1) + delta)
                    multiplier.append(1)
                    shift.append(s)
    codes, _ = simulate(2, acc, bias, multiplier, shift, zero_point, -256, 255, gaps=[0],
                        rounding="half_even")
    expected = requantize(acc, bias, multiplier, shift, zero_point, -256, 255, "half_even")
    assert (codes == expected).all()
