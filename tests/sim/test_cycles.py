import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.timing import DSP4_EXTRA_LATENCY, array_timing, macs_per_cycle
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
    assert all(r - a == timing.latency == config.rows + 4
               for a, r in zip(cycles.activations, cycles.results))


@pytest.mark.parametrize("pe", ["lut", "dsp", "dsp4"])
def test_latency_does_not_depend_on_the_columns(pe):
    """Each row gives its activation to all its cells in the same cycle: every column (with DSP
    cells, every group, and a last smaller one) finishes in the same cycle, rows + 4 cycles
    after the vector was accepted (rows + 5 with four-product cells, DSP4_EXTRA_LATENCY)."""
    extra = DSP4_EXTRA_LATENCY if pe == "dsp4" else 0
    for cols in (2, 3, 5, 8, 9, 11) if pe == "dsp4" else (1, 3, 8, 9, 11):
        config = ArrayConfig(rows=8, cols=cols, pe=pe)
        timing = array_timing(config)
        assert timing.latency == config.rows + 4 + extra
        assert timing.column_write == config.rows + 2 + extra
        cycles = simulate_array_cycles(config, [40])
        assert all(r - a == timing.latency for a, r in zip(cycles.activations, cycles.results))


def test_bit_serial_cells_take_a_cycle_a_plane():
    """A vector of b-bit codes takes b cycles on bit-serial cells, whatever the array's
    activation bits; its result comes rows + b + 3 cycles after it was accepted."""
    config = ArrayConfig(rows=8, cols=8, pe="serial")
    planes = [4] * 20 + [2] * 20 + [1] * 20
    cycles = simulate_array_cycles(config, [60], planes=planes)
    assert list(np.diff(cycles.activations)) == planes[:-1]
    assert [r - a for a, r in zip(cycles.activations, cycles.results)] == [
        config.rows + p + 3 for p in planes]
    assert array_timing(config, 2).latency == config.rows + 2 + 3
    assert (macs_per_cycle(config), macs_per_cycle(config, 2), macs_per_cycle(config, 3)) \
        == (16, 32, 64 / 3)
    assert macs_per_cycle(ArrayConfig(rows=8, cols=8)) == 64
    with pytest.raises(ValueError, match=r"^planes must be an integer in 1\.\.4, not 5$"):
        array_timing(config, 5)


@pytest.mark.parametrize("pe", ["lut", "dsp", "dsp4", "serial"])
def test_next_tile_loads_while_the_current_one_computes(pe):
    config = ArrayConfig(rows=6, cols=9, pe=pe)
    timing = array_timing(config)
    # A tile is loaded in rows + 2 cycles: as many vectors at 1 cycle each, or a quarter as
    # many 4-bit vectors on bit-serial cells.
    long = -(-(config.rows + 2) // timing.interval)
    cycles = simulate_array_cycles(config, [long, long, long])
    assert np.all(np.diff(cycles.activations) == timing.interval)
    # One vector shorter and the array waits for the next tile.
    short = simulate_array_cycles(config, [long - 1, long])
    assert np.diff(short.activations).max() > timing.interval


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
