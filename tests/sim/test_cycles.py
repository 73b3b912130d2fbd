import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.timing import array_timing
from systolix.sim.golden.cycles import simulate_array_cycles


def test_one_vector_per_cycle_and_documented_latency():
    config = ArrayConfig(rows=8, cols=8)
    timing = array_timing(config)
    cycles = simulate_array_cycles(config, [100])
    assert np.all(np.diff(cycles.activations) == 1)
    assert np.all(np.diff(cycles.results) == 1)
    assert cycles.weights == tuple(range(config.rows))
    # The first vector may start two cycles after the tile's last row.
    assert cycles.activations[0] == config.rows - 1 + 2
    assert all(r - a == timing.latency == config.rows + config.cols + 3
               for a, r in zip(cycles.activations, cycles.results))


def test_dsp_cells_shorten_the_latency():
    """Both columns of a DSP pair work in the same cycle: the skew and the latency are those of
    half as many columns (an odd last column is a group of its own)."""
    for cols, skew in ((8, 3), (9, 4), (1, 0)):
        config = ArrayConfig(rows=8, cols=cols, pe="dsp")
        timing = array_timing(config)
        assert timing.skew == skew and timing.latency == config.rows + skew + 4
        cycles = simulate_array_cycles(config, [40])
        assert all(r - a == timing.latency for a, r in zip(cycles.activations, cycles.results))


@pytest.mark.parametrize("pe", ["lut", "dsp"])
def test_next_tile_loads_while_the_current_one_computes(pe):
    config = ArrayConfig(rows=6, cols=9, pe=pe)
    timing = array_timing(config)
    long = timing.load_hold + config.rows + 2
    cycles = simulate_array_cycles(config, [long, long, long])
    assert np.all(np.diff(cycles.activations) == 1)
    # One vector shorter and the array waits for the next tile.
    short = simulate_array_cycles(config, [long - 1, long])
    assert np.diff(short.activations).max() == 2


def test_credits_bound_the_vectors_in_flight():
    config = ArrayConfig(rows=3, cols=4)
    depth = array_timing(config).result_depth
    never = np.zeros(200, dtype=bool)
    cycles = simulate_array_cycles(config, [3 * depth], result_ready=never)
    assert len(cycles.activations) == depth
    assert cycles.results == ()


def test_stalled_sink_delays_every_later_result():
    config = ArrayConfig(rows=2, cols=2)
    ready = np.ones(100, dtype=bool)
    ready[:40] = False
    cycles = simulate_array_cycles(config, [10], result_ready=ready)
    assert cycles.results[0] == 40
    assert np.all(np.diff(cycles.results) >= 1)
    assert len(cycles.results) == 10
