# amaranth: UnusedElaboratable=no
"""The systolic array in Amaranth's simulator: the scenarios of the cocotb testbench
(:func:`systolix.sim.testbench.suite.array_scenarios`: random weight tiles and activations, at
full rate and with random valid/ready stalls on all three streams, codes at the ends of their
ranges, tiles that overflow the accumulator) on a few configurations, every result bit-exact
against :func:`systolix.sim.golden.array_matmul` and every transfer on the cycle that
:func:`systolix.sim.golden.cycles.simulate_array_cycles` predicts.

The components of the test of a bad argument are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import pytest
from amaranth.sim import Simulator

from systolix.codec import decode, encode
from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray, column_groups, results_layout
from systolix.memory_map import weights_layout
from systolix.sim.golden.cycles import simulate_array_cycles
from systolix.sim.testbench.scenarios import activation_words, make_stimulus, scenario
from systolix.sim.testbench.suite import array_scenarios

# 1x1, non-square both ways, wrap and saturate, accumulators that overflow; bit-serial cells
# with signed and unsigned codes and random bit-planes per vector; four-product DSP cells (a
# group of four columns and one of three; one of three and one of two); DSP cells whose partial
# sums are narrower than P in rows 0 and 1 (the cells keep them in the bits their row reaches)
# and overflow below.
CONFIGS = ["1x1-W2s-A2s-P3-wrap", "1x1-W8s-A8s-P12-saturate", "3x5-W2s-A3u-P6-saturate",
           "5x3-W3u-A2s-P7-wrap", "4x4-W4s-A4s-P8-saturate", "2x6-W8s-A8u-P14-wrap",
           "1x1-W2s-A2s-P3-wrap-serial", "3x5-W2s-A3u-P6-wrap-serial",
           "4x4-W4s-A4s-P8-wrap-serial", "2x6-W8u-A8s-P9-wrap-serial",
           "3x7-W4s-A4u-P9-saturate-dsp4", "2x5-W3u-A5s-P8-wrap-dsp4",
           "6x4-W4s-A4u-P10-saturate-dsp", "6x4-W4s-A4u-P10-wrap-dsp4"]


def run_scenario(config, spec, *, array=None):
    """Drive an array with the scenario's stimulus as the cocotb testbench does (a source
    offers its next beat when its pattern says so and holds it until it is taken; the sink is
    ready when its pattern says so); return the results (``(sums, last)``) and the transfer
    cycles of each stream."""
    stimulus = make_stimulus(config, spec)
    array = SystolicArray(config) if array is None else array
    beats = {
        "weights": [encode(weights_layout(config), row)
                    for w in stimulus.weights for row in w],
        "activations": activation_words(config, stimulus),
    }
    offers = {"weights": stimulus.weight_offer, "activations": stimulus.activation_offer}
    cycles = {"weights": [], "activations": [], "results": []}
    results = []

    async def bench(ctx):
        sent = {name: 0 for name in beats}
        presenting = {name: False for name in beats}
        for cycle in range(stimulus.cycles):
            if len(results) == len(beats["activations"]):
                break
            for name in beats:
                port = getattr(array, name)
                if (not presenting[name] and sent[name] < len(beats[name])
                        and offers[name][cycle]):
                    presenting[name] = True
                    ctx.set(port.payload.as_value(), beats[name][sent[name]])
                ctx.set(port.valid, presenting[name])
            ready = bool(stimulus.result_ready[cycle])
            ctx.set(array.results.ready, ready)
            _, _, weights_ready, activations_ready, valid, payload = await ctx.tick().sample(
                array.weights.ready, array.activations.ready, array.results.valid,
                array.results.payload.as_value())
            for name, taken in (("weights", weights_ready),
                                ("activations", activations_ready)):
                if presenting[name] and taken:
                    cycles[name].append(cycle)
                    sent[name] += 1
                    presenting[name] = False
            if valid and ready:
                result = decode(results_layout(config), payload)
                results.append((tuple(result["data"]), bool(result["last"])))
                cycles["results"].append(cycle)

    sim = Simulator(array)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return stimulus, results, cycles


def check(config, spec, stimulus, results, cycles):
    want = [(tuple(int(v) for v in row), index == len(y) - 1)
            for y in stimulus.expected for index, row in enumerate(y)]
    assert results == want, f"{config.name} {spec['name']}: results differ"
    model = simulate_array_cycles(config, spec["tiles"], weight_offer=stimulus.weight_offer,
                                  activation_offer=stimulus.activation_offer,
                                  result_ready=stimulus.result_ready,
                                  planes=stimulus.planes)
    for stream in ("weights", "activations", "results"):
        assert cycles[stream] == list(getattr(model, stream)), (
            f"{config.name} {spec['name']}: {stream} transfer cycles differ")


@pytest.mark.parametrize("name", CONFIGS)
def test_scenarios_bit_and_cycle_exact(name):
    config = ArrayConfig.from_name(name)
    overflows = 0
    for spec in array_scenarios(config, seed=7):
        stimulus, results, cycles = run_scenario(config, spec)
        check(config, spec, stimulus, results, cycles)
        overflows += stimulus.overflows
    assert overflows > 0          # the accumulator wrapped or saturated somewhere


@pytest.mark.parametrize("name", ["3x5-W2s-A3u-P6-saturate", "3x5-W2s-A3u-P6-saturate-dsp"])
def test_latency_is_rows_plus_4(name):
    """Every column finishes in the same cycle, whatever the number of columns."""
    config = ArrayConfig.from_name(name)
    spec = scenario("latency", seed=3, tiles=(12,))
    stimulus, results, cycles = run_scenario(config, spec)
    check(config, spec, stimulus, results, cycles)
    assert [r - a for a, r in zip(cycles["activations"], cycles["results"])] == [7] * 12


def test_the_check_catches_a_wrong_array():
    """An array built for another accumulator width or overflow mode fails the check."""
    config = ArrayConfig.from_name("4x4-W4s-A4s-P8-saturate")
    spec = array_scenarios(config, seed=7)[-1]          # adversarial: overflows P = 8
    wrong = ArrayConfig.from_name("4x4-W4s-A4s-P8-wrap")
    stimulus, results, cycles = run_scenario(config, spec, array=SystolicArray(wrong))
    with pytest.raises(AssertionError, match="results differ"):
        check(config, spec, stimulus, results, cycles)


def test_bad_config_is_refused():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        SystolicArray(3)


def test_column_groups():
    """Four-product cells take all columns, in groups of two to four (one column left over
    makes the last two groups three and two); pairs leave an odd column to a LUT cell."""
    groups = [list(map(len, column_groups(ArrayConfig(cols=cols, pe="dsp4"))))
              for cols in (2, 3, 4, 5, 6, 7, 9)]
    assert groups == [[2], [3], [4], [3, 2], [4, 2], [4, 3], [4, 3, 2]]
    assert column_groups(ArrayConfig(cols=3, pe="dsp")) == [range(0, 2), range(2, 3)]
    assert column_groups(ArrayConfig(cols=2)) == [range(0, 1), range(1, 2)]
    with pytest.raises(ValueError, match=r"^pe 'dsp4' needs at least 2 columns \(a column "
                                         r"alone would be a LUT cell a cycle faster\), not 1$"):
        ArrayConfig(cols=1, pe="dsp4")
