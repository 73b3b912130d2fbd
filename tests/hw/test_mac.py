# amaranth: UnusedElaboratable=no
"""The processing elements in Amaranth's simulator: every product and accumulate step against the
golden model (:func:`systolix.sim.golden.array.accumulate`: wrap and saturate), over every pair of
codes for 1- to 4-bit operands of either signedness and random codes for 8-bit ones, one step a
cycle with a new weight every cycle, at the latency the class documents; and the double-buffered
weight. The DSP pair (two columns, one packed multiplier) likewise over every triple of two
weights and an activation; the four-product cells' packing arithmetic (numpy) over every
combination of four weights and an activation up to W4/A4, and the cells themselves over every
combination for small widths and random and extreme codes for 4-bit ones.

The components of the test of a bad argument are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.config import ArrayConfig, code_range
from systolix.hw.mac import (DSPProcessingPair, DSPProcessingQuad, ProcessingElement,
                             partial_sum_shape, product_shape)
from systolix.sim.golden.array import accumulate
from systolix.timing import DSP4_EXTRA_LATENCY


def golden_step(config, partial_sum, weight, activation):
    """``partial_sum + activation * weight`` as the golden model adds it: the partial sum is
    the model's first product (``1 * partial_sum``), this one its second."""
    return int(accumulate([[1, activation]], [[partial_sum], [weight]],
                          config.accumulator_bits, config.overflow)[0, 0])


def run_steps(config, steps, row=None):
    """Send ``steps`` (``(weight, activation, partial_sum)``) through a processing element (of
    ``row``), one a cycle, each with its own weight (written two cycles before its activation,
    swapped in the cycle before it) and its partial sum on ``psum_in`` 1 cycle after its
    activation; return ``psum_out`` 2 cycles after each activation."""
    pe = ProcessingElement(config, row)
    outputs = []

    async def bench(ctx):
        ctx.set(pe.weight, steps[0][0])             # the first weight, into the shadow
        ctx.set(pe.weight_write, 1)
        await ctx.tick()
        for cycle in range(len(steps) + 3):
            following = steps[cycle + 1] if cycle + 1 < len(steps) else None
            ctx.set(pe.weight_write, following is not None)
            if following is not None:
                ctx.set(pe.weight, following[0])
            ctx.set(pe.swap_in, cycle < len(steps))
            ctx.set(pe.act_in, steps[cycle - 1][1] if 1 <= cycle <= len(steps) else 0)
            ctx.set(pe.psum_in, steps[cycle - 2][2] if 2 <= cycle < len(steps) + 2 else 0)
            _, _, psum_out = await ctx.tick().sample(pe.psum_out)
            if cycle >= 3:
                outputs.append(psum_out)

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outputs


def partial_sums(config, rng):
    """Partial sums to add a product to: 0, the ends of the accumulator's range and a random
    one."""
    low, high = config.accumulator_range
    return [0, low, high, rng.randint(low, high)]


@pytest.mark.parametrize("weight_bits, activation_bits",
                         list(itertools.product(range(1, 5), repeat=2)))
def test_every_code_pair_of_small_widths(weight_bits, activation_bits):
    rng = random.Random(weight_bits * 10 + activation_bits)
    for weight_signed, activation_signed, overflow in itertools.product(
            (False, True), (False, True), ("wrap", "saturate")):
        # P one bit narrower than the products: products alone and sums overflow.
        config = ArrayConfig(rows=1, cols=1, weight_bits=weight_bits,
                             weight_signed=weight_signed, activation_bits=activation_bits,
                             activation_signed=activation_signed,
                             accumulator_bits=max(2, weight_bits + activation_bits - 1),
                             overflow=overflow)
        steps = [(w, x, rng.choice(partial_sums(config, rng)))
                 for w in range(config.weight_range[0], config.weight_range[1] + 1)
                 for x in range(config.activation_range[0], config.activation_range[1] + 1)]
        steps += [(w, x, 0) for w, x, _ in steps]
        rng.shuffle(steps)
        want = [golden_step(config, s, w, x) for w, x, s in steps]
        assert run_steps(config, steps) == want, config.name


@pytest.mark.parametrize("name", ["1x1-W8s-A8s-P16-saturate", "1x1-W8u-A8s-P12-wrap",
                                  "1x1-W8s-A8u-P32-wrap", "1x1-W8u-A8u-P17-saturate"])
def test_random_8_bit_codes(name):
    config = ArrayConfig.from_name(name)
    rng = random.Random(name)
    codes = [config.weight_range, config.activation_range]
    steps = [(rng.randint(*codes[0]), rng.randint(*codes[1]),
              rng.choice(partial_sums(config, rng))) for _ in range(400)]
    steps += [(code_w, code_x, 0) for code_w in codes[0] for code_x in codes[1]]   # ends
    want = [golden_step(config, s, w, x) for w, x, s in steps]
    assert run_steps(config, steps) == want


@pytest.mark.parametrize("name", ["8x1-W4s-A4u-P16-wrap", "8x1-W4s-A4s-P12-saturate",
                                  "5x1-W3u-A2s-P7-saturate", "4x1-W2s-A3u-P6-wrap"])
def test_cells_of_each_row_keep_their_sums_in_fewer_bits(name):
    """A cell told its row keeps its partial sum in the bits that sums of ``row + 1`` products
    need (fewer than P where they fit, P with the overflow mode where not) and adds exactly as
    the golden model does, for partial sums that ``row`` products reach: their ends and random
    ones."""
    config = ArrayConfig.from_name(name)
    rng = random.Random(name)
    products = [w * x for w in config.weight_range for x in config.activation_range]
    widths = []
    for row in range(config.rows):
        reach = (row * min(min(products), 0), row * max(max(products), 0))
        sums = [*reach, 0, *(rng.randint(*reach) for _ in range(3))]
        steps = [(w, x, rng.choice(sums)) for w in config.weight_range
                 for x in config.activation_range]
        steps += [(w, x, s) for s in reach
                  for w in config.weight_range for x in config.activation_range]
        want = [golden_step(config, s, w, x) for w, x, s in steps]
        assert run_steps(config, steps, row) == want, (name, row)
        widths.append(partial_sum_shape(config, row + 1).width)
    assert widths == sorted(widths) and widths[-1] <= config.accumulator_bits
    if name == "8x1-W4s-A4u-P16-wrap":
        assert widths == [8, 9, 10, 10, 11, 11, 11, 11]


def test_products_fit_the_product_shape():
    for weight_signed, activation_signed in itertools.product((False, True), repeat=2):
        config = ArrayConfig(rows=1, cols=1, weight_bits=8, weight_signed=weight_signed,
                             activation_bits=8, activation_signed=activation_signed)
        shape = product_shape(config)
        low = -(1 << (shape.width - 1)) if shape.signed else 0
        high = (1 << (shape.width - (1 if shape.signed else 0))) - 1
        products = [w * x for w in config.weight_range for x in config.activation_range]
        assert low <= min(products) and max(products) <= high


def test_weight_changes_only_with_swap():
    """A weight written into the shadow register takes effect with the activation after the
    cycle of ``swap_in``; activations before it keep the active weight."""
    config = ArrayConfig.from_name("1x1-W4s-A4u-P16-wrap")
    pe = ProcessingElement(config)
    products = []

    async def bench(ctx):
        schedule = [  # (weight written, act_in, swap_in)
            (3, 0, 0), (None, 0, 1), (-7, 5, 0), (None, 2, 0), (None, 4, 1), (None, 6, 0),
            (None, 1, 0), (None, 0, 0), (None, 0, 0)]
        for weight, act, swap in schedule:
            ctx.set(pe.weight_write, weight is not None)
            ctx.set(pe.weight, weight or 0)
            ctx.set(pe.act_in, act)
            ctx.set(pe.swap_in, swap)
            _, _, psum_out = await ctx.tick().sample(pe.psum_out)
            products.append(psum_out)

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    # Activations enter in cycles 2..6; each result is 2 cycles later.
    assert products[4:9] == [5 * 3, 2 * 3, 4 * 3, 6 * -7, 1 * -7]


def test_bad_config_is_refused():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        ProcessingElement(3)
    config = ArrayConfig.from_name("4x4-W4s-A4u-P16-wrap")
    with pytest.raises(ValueError, match=r"^row must be an integer in 0\.\.3, not 4$"):
        ProcessingElement(config, 4)


def test_golden_step_is_the_golden_accumulate():
    """The one-step form of the golden model used here: wrap and saturate of one addition."""
    config = ArrayConfig.from_name("1x1-W4s-A4s-P6-saturate")
    assert golden_step(config, 30, 7, 7) == 31 and golden_step(config, -30, -8, 7) == -32
    wrap = ArrayConfig.from_name("1x1-W4s-A4s-P6-wrap")
    assert golden_step(wrap, 30, 7, 7) == int(np.int64(30 + 49 + 32) % 64 - 32)


def run_group_steps(cell, steps, delay=0):
    """Send ``steps`` (``(weights, activation, partial_sums)``, a weight and a partial sum per
    lane) through a :class:`DSPProcessingPair` or :class:`DSPProcessingQuad`, one a cycle, each
    with its own weights (swapped in the cycle before its activation) and its partial sums on
    ``psum_in`` ``1 + delay`` cycles after the activation; return each step's ``psum_out`` (a
    tuple) ``2 + delay`` cycles after."""
    lanes = len(steps[0][0])
    outputs = []

    async def bench(ctx):
        ctx.set(cell.weight, list(steps[0][0]))
        ctx.set(cell.weight_write, 1)
        await ctx.tick()
        for cycle in range(len(steps) + 3 + delay):
            following = steps[cycle + 1] if cycle + 1 < len(steps) else None
            ctx.set(cell.weight_write, following is not None)
            if following is not None:
                ctx.set(cell.weight, list(following[0]))
            ctx.set(cell.swap_in, cycle < len(steps))
            ctx.set(cell.act_in, steps[cycle - 1][1] if 1 <= cycle <= len(steps) else 0)
            summed = cycle - 2 - delay
            ctx.set(cell.psum_in, list(steps[summed][2]) if 0 <= summed < len(steps)
                    else [0] * lanes)
            _, _, psum_out = await ctx.tick().sample(cell.psum_out)
            if cycle >= 3 + delay:
                outputs.append(tuple(psum_out))

    sim = Simulator(cell)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outputs


def run_pair_steps(config, steps):
    """:func:`run_group_steps` of a :class:`DSPProcessingPair`, steps given as ``(w0, w1,
    activation, psum0, psum1)``."""
    return run_group_steps(DSPProcessingPair(config),
                           [((w0, w1), x, (s0, s1)) for w0, w1, x, s0, s1 in steps])


def packing_configs(weight_bits, activation_bits, pe, cols):
    """One-row arrays of ``cols`` DSP cells of kind ``pe``, one for each signedness of weights
    and activations, with ``P`` just wide enough to hold a product (the packing, not the
    accumulator, is under test)."""
    for weight_signed, activation_signed in itertools.product((False, True), repeat=2):
        yield ArrayConfig(rows=1, cols=cols, weight_bits=weight_bits, weight_signed=weight_signed,
                          activation_bits=activation_bits, activation_signed=activation_signed,
                          accumulator_bits=weight_bits + activation_bits + 2, pe=pe)


@pytest.mark.parametrize("weight_bits, activation_bits", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_dsp_pair_every_code_triple(weight_bits, activation_bits):
    """Both products of the packed multiplier are exact for every pair of weights and every
    activation, of either signedness (P wide enough to hold a product: the packing, not the
    accumulator, is under test here; the array's cocotb tests saturate and wrap)."""
    rng = random.Random(weight_bits * 10 + activation_bits)
    for config in packing_configs(weight_bits, activation_bits, "dsp", cols=2):
        weights = range(config.weight_range[0], config.weight_range[1] + 1)
        steps = [(w0, w1, x, rng.choice(partial_sums(config, rng)) // 4,
                  rng.choice(partial_sums(config, rng)) // 4)
                 for w0 in weights for w1 in weights
                 for x in range(config.activation_range[0], config.activation_range[1] + 1)]
        rng.shuffle(steps)
        want = [(golden_step(config, s0, w0, x), golden_step(config, s1, w1, x))
                for w0, w1, x, s0, s1 in steps]
        assert run_pair_steps(config, steps) == want, config.name


@pytest.mark.parametrize("name", ["1x2-W8s-A8s-P32-wrap-dsp", "1x2-W8s-A8u-P17-saturate-dsp",
                                  "1x2-W8u-A8s-P20-wrap-dsp"])
def test_dsp_pair_random_8_bit_codes(name):
    config = ArrayConfig.from_name(name)
    rng = random.Random(name)
    codes = [config.weight_range, config.activation_range]
    steps = [(rng.randint(*codes[0]), rng.randint(*codes[0]), rng.randint(*codes[1]),
              rng.choice(partial_sums(config, rng)), rng.choice(partial_sums(config, rng)))
             for _ in range(300)]
    steps += [(w0, w1, x, 0, 0) for w0 in codes[0] for w1 in codes[0] for x in codes[1]]
    want = [(golden_step(config, s0, w0, x), golden_step(config, s1, w1, x))
            for w0, w1, x, s0, s1 in steps]
    assert run_pair_steps(config, steps) == want


def packed_products(config, lanes, weights, act):
    """The arithmetic of :class:`DSPProcessingQuad` in numpy, on arrays of codes (``weights``:
    one array per lane): the wrapped packed product, the low bits, ``T + B`` and its fields;
    returns the products it recovers, one array per lane."""
    spacing, signed = config.dsp4_spacing, config.product_signed
    bits, field = config.packed_operand_bits(lanes), config.product_bits
    width = (lanes - 1) * spacing + field
    packed = sum(w << (lane * spacing) for lane, w in enumerate(weights))
    low, high = code_range(bits, signed)
    operand = np.where(packed < low, packed + (1 << bits),
                       np.where(packed > high, packed - (1 << bits), packed))
    assert operand.min() >= low and operand.max() <= high
    mask = (1 << spacing) - 1
    lows = [((w & mask) * (act & mask)) & mask for w in weights]
    bias = sum(1 << ((lane + 2) * spacing - 1) for lane in range(lanes - 1)) if signed else 0
    total = (act * operand - sum(lows[lane] << (lane * spacing) for lane in range(1, lanes))
             + act * (packed - operand) + bias) & ((1 << width) - 1)

    def field_value(start, stop, biased):
        value = (total >> start) & ((1 << (stop - start)) - 1)
        if signed:
            half = 1 << (stop - start - 1)
            value = (value ^ half if biased else value)
            value = np.where(value >= half, value - 2 * half, value)
        return value

    products = [field_value(0, 2 * spacing, True)]
    for lane in range(1, lanes):
        start = (lane + 1) * spacing
        top = lane == lanes - 1
        high_part = field_value(start, start + (field - spacing if top else spacing), not top)
        products.append(high_part * (1 << spacing) + lows[lane])
    return products


@pytest.mark.parametrize("weight_bits, activation_bits",
                         [(4, 4), (2, 6), pytest.param(5, 3, marks=pytest.mark.slow)]
                         + list(itertools.product(range(1, 4), repeat=2)))
def test_quad_packing_every_code_combination(weight_bits, activation_bits):
    """The packing arithmetic (numpy, as :class:`DSPProcessingQuad` computes it) recovers
    every product of every combination of four weights and an activation, of either
    signedness, for 2, 3 and 4 lanes; the operand is 16 bits at W4/A4."""
    for weight_signed, activation_signed in itertools.product((False, True), repeat=2):
        config = ArrayConfig(weight_bits=weight_bits, weight_signed=weight_signed,
                             activation_bits=activation_bits,
                             activation_signed=activation_signed)
        for lanes in (2, 3, 4):
            codes = np.arange(config.weight_range[0], config.weight_range[1] + 1)
            acts = np.arange(config.activation_range[0], config.activation_range[1] + 1)
            *weights, act = (grid.ravel() for grid in np.meshgrid(
                *[codes] * lanes, acts, indexing="ij"))
            products = packed_products(config, lanes, weights, act)
            for w, product in zip(weights, products):
                assert np.array_equal(product, w * act), (config.name, lanes)
    assert ArrayConfig(weight_bits=4, activation_bits=4).dsp4_operand_bits == 16


def run_quad(config, lanes, steps):
    """:func:`run_group_steps` of a :class:`DSPProcessingQuad` and the golden model's sums."""
    want = [tuple(golden_step(config, psum, w, x) for w, psum in zip(weights, psums))
            for weights, x, psums in steps]
    return run_group_steps(DSPProcessingQuad(config, lanes), steps, DSP4_EXTRA_LATENCY), want


@pytest.mark.parametrize("weight_bits, activation_bits", [
    (1, 1), (2, 2), pytest.param(3, 2, marks=pytest.mark.slow),
    pytest.param(2, 3, marks=pytest.mark.slow)])
def test_quad_every_code_combination(weight_bits, activation_bits):
    """Four lanes of small widths over every combination of weights and activation, of either
    signedness (P wide enough to hold a product: the packing is under test here)."""
    rng = random.Random(weight_bits * 10 + activation_bits)
    for config in packing_configs(weight_bits, activation_bits, "dsp4", cols=4):
        codes = range(config.weight_range[0], config.weight_range[1] + 1)
        steps = [(weights, x, tuple(rng.choice(partial_sums(config, rng)) // 4
                                    for _ in range(4)))
                 for weights in itertools.product(codes, repeat=4)
                 for x in range(config.activation_range[0], config.activation_range[1] + 1)]
        rng.shuffle(steps)
        got, want = run_quad(config, 4, steps)
        assert got == want, config.name


@pytest.mark.parametrize("name, lanes", [("1x4-W4s-A4u-P16-wrap-dsp4", 4),
                                         ("1x4-W4s-A4s-P9-saturate-dsp4", 4),
                                         ("1x4-W4u-A4s-P12-wrap-dsp4", 4),
                                         ("1x4-W4u-A4u-P10-saturate-dsp4", 4),
                                         ("1x3-W4s-A4u-P12-wrap-dsp4", 3),
                                         ("1x4-W5s-A3u-P14-saturate-dsp4", 4),
                                         ("1x4-W3u-A5s-P11-wrap-dsp4", 4),
                                         ("1x2-W4u-A4s-P10-saturate-dsp4", 2)])
def test_quad_random_codes(name, lanes):
    """Random codes, the weights' extremes against every activation and every code of one
    lane against every activation (the others random), both overflow modes."""
    config = ArrayConfig.from_name(name)
    rng = random.Random(name)
    weights, acts = config.weight_range, config.activation_range
    codes = range(weights[0], weights[1] + 1)
    steps = [(tuple(rng.randint(*weights) for _ in range(lanes)), rng.randint(*acts),
              tuple(rng.choice(partial_sums(config, rng)) for _ in range(lanes)))
             for _ in range(600)]
    steps += [(combination, x, (0,) * lanes)
              for combination in itertools.product(weights, repeat=lanes)
              for x in range(acts[0], acts[1] + 1)]
    lane = rng.randrange(lanes)
    steps += [(tuple(w if i == lane else rng.randint(*weights) for i in range(lanes)), x,
               (0,) * lanes) for w in codes for x in range(acts[0], acts[1] + 1)]
    got, want = run_quad(config, lanes, steps)
    assert got == want
