# amaranth: UnusedElaboratable=no
"""The processing elements in Amaranth's simulator: every product and accumulate step against the
golden model (:func:`systolix.sim.golden.array.accumulate`: wrap and saturate), over every pair of
codes for 1- to 4-bit operands of either signedness and random codes for 8-bit ones, one step a
cycle with a new weight every cycle, at the latency the class documents; and the double-buffered
weight. The DSP pair (two columns, one packed multiplier) likewise over every triple of two
weights and an activation.

The components of the test of a bad argument are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import itertools
import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from systolix.config import ArrayConfig
from systolix.hw.mac import DSPProcessingPair, ProcessingElement, product_shape
from systolix.sim.golden.array import accumulate


def golden_step(config, partial_sum, weight, activation):
    """``partial_sum + activation * weight`` as the golden model adds it: the partial sum is
    the model's first product (``1 * partial_sum``), this one its second."""
    return int(accumulate([[1, activation]], [[partial_sum], [weight]],
                          config.accumulator_bits, config.overflow)[0, 0])


def run_steps(config, steps):
    """Send ``steps`` (``(weight, activation, partial_sum)``) through a processing element, one
    a cycle, each with its own weight (written the cycle before, swapped in with its
    activation) and its partial sum on ``psum_in`` 2 cycles after its activation; return
    ``psum_out`` 3 cycles after each activation. Checks that ``act_out`` and ``swap_out``
    follow ``act_in`` and ``swap_in`` 1 cycle later."""
    pe = ProcessingElement(config)
    outputs = []

    async def bench(ctx):
        ctx.set(pe.weight, steps[0][0])             # the first weight, into the shadow
        ctx.set(pe.weight_write, 1)
        await ctx.tick()
        previous = (0, 0)
        for cycle in range(len(steps) + 3):
            step = steps[cycle] if cycle < len(steps) else None
            following = steps[cycle + 1] if cycle + 1 < len(steps) else None
            ctx.set(pe.weight_write, following is not None)
            if following is not None:
                ctx.set(pe.weight, following[0])
            ctx.set(pe.act_in, step[1] if step else 0)
            ctx.set(pe.swap_in, step is not None)
            ctx.set(pe.psum_in, steps[cycle - 2][2] if 2 <= cycle < len(steps) + 2 else 0)
            _, _, act_out, swap_out, psum_out = await ctx.tick().sample(
                pe.act_out, pe.swap_out, pe.psum_out)
            assert (act_out, swap_out) == previous
            previous = (step[1], 1) if step else (0, 0)
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
    """A weight written into the shadow register takes effect with the next activation that
    comes with ``swap_in``; activations before it keep the active weight."""
    config = ArrayConfig.from_name("1x1-W4s-A4u-P16-wrap")
    pe = ProcessingElement(config)
    products = []

    async def bench(ctx):
        schedule = [  # (weight written, act_in, swap_in)
            (3, 0, 0), (None, 5, 1), (-7, 2, 0), (None, 4, 0), (None, 6, 1), (None, 1, 0),
            (None, 0, 0), (None, 0, 0), (None, 0, 0)]
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
    # Activations enter in cycles 1..5; each result is 3 cycles later.
    assert products[4:9] == [5 * 3, 2 * 3, 4 * 3, 6 * -7, 1 * -7]


def test_bad_config_is_refused():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        ProcessingElement(3)


def test_golden_step_is_the_golden_accumulate():
    """The one-step form of the golden model used here: wrap and saturate of one addition."""
    config = ArrayConfig.from_name("1x1-W4s-A4s-P6-saturate")
    assert golden_step(config, 30, 7, 7) == 31 and golden_step(config, -30, -8, 7) == -32
    wrap = ArrayConfig.from_name("1x1-W4s-A4s-P6-wrap")
    assert golden_step(wrap, 30, 7, 7) == int(np.int64(30 + 49 + 32) % 64 - 32)


def run_pair_steps(config, steps):
    """Send ``steps`` (``(w0, w1, activation, psum0, psum1)``) through a
    :class:`DSPProcessingPair`, one a cycle, each with its own weights and both partial sums on
    ``psum_in`` 2 cycles after the activation; return each step's ``(psum_out[0],
    psum_out[1])`` 3 cycles after. Checks that ``act_out`` and ``swap_out`` follow ``act_in``
    and ``swap_in`` 1 cycle later."""
    pair = DSPProcessingPair(config)
    outputs = []

    async def bench(ctx):
        ctx.set(pair.weight, list(steps[0][:2]))
        ctx.set(pair.weight_write, 1)
        await ctx.tick()
        previous = (0, 0)
        for cycle in range(len(steps) + 3):
            step = steps[cycle] if cycle < len(steps) else None
            following = steps[cycle + 1] if cycle + 1 < len(steps) else None
            ctx.set(pair.weight_write, following is not None)
            if following is not None:
                ctx.set(pair.weight, list(following[:2]))
            ctx.set(pair.act_in, step[2] if step else 0)
            ctx.set(pair.swap_in, step is not None)
            ctx.set(pair.psum_in, list(steps[cycle - 2][3:]) if 2 <= cycle < len(steps) + 2
                    else [0, 0])
            _, _, act_out, swap_out, psum_out = await ctx.tick().sample(
                pair.act_out, pair.swap_out, pair.psum_out)
            assert (act_out, swap_out) == previous
            previous = (step[2], 1) if step else (0, 0)
            if cycle >= 3:
                outputs.append((psum_out[0], psum_out[1]))

    sim = Simulator(pair)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outputs


@pytest.mark.parametrize("weight_bits, activation_bits", [(1, 1), (2, 3), (3, 2), (4, 4)])
def test_dsp_pair_every_code_triple(weight_bits, activation_bits):
    """Both products of the packed multiplier are exact for every pair of weights and every
    activation, of either signedness (P wide enough to hold a product: the packing, not the
    accumulator, is under test here; the array's cocotb tests saturate and wrap)."""
    rng = random.Random(weight_bits * 10 + activation_bits)
    for weight_signed, activation_signed in itertools.product((False, True), repeat=2):
        config = ArrayConfig(rows=1, cols=2, weight_bits=weight_bits,
                             weight_signed=weight_signed, activation_bits=activation_bits,
                             activation_signed=activation_signed,
                             accumulator_bits=weight_bits + activation_bits + 2, pe="dsp")
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
