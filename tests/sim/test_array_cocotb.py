"""The array's cocotb testbenches on Verilator (default) or Icarus (``SIM=icarus``)."""

import dataclasses
import os

import pytest

from systolix.sim.testbench.suite import (ARRAY_CONFIGS, DSP4_ARRAY_CONFIGS,
                                          DSP_ARRAY_CONFIGS, SERIAL_ARRAY_CONFIGS,
                                          run_array_suite)

SIMULATOR = os.environ.get("SIM", "verilator")

pytestmark = pytest.mark.cocotb


def can_overflow(config):
    """Whether some tile of codes drives a partial sum outside the P-bit range."""
    products = [w * x for w in config.weight_range for x in config.activation_range]
    low, high = config.accumulator_range
    return config.rows * max(products) > high or config.rows * min(products) < low


@pytest.mark.parametrize("config", [
    *ARRAY_CONFIGS, *DSP_ARRAY_CONFIGS[:2],
    *(pytest.param(config, marks=pytest.mark.slow) for config in DSP_ARRAY_CONFIGS[2:]),
    *DSP4_ARRAY_CONFIGS[:1],
    *(pytest.param(config, marks=pytest.mark.slow) for config in DSP4_ARRAY_CONFIGS[1:]),
    # Bit-serial cells run on Verilator in the default tier through the engine's test
    # (test_engine_cocotb.py), and their array scenarios in Amaranth's (tests/hw/test_array.py).
    *(pytest.param(config, marks=pytest.mark.slow) for config in SERIAL_ARRAY_CONFIGS)],
    ids=lambda config: config.name)
def test_array_bit_exact_and_cycle_exact(config, tmp_path):
    report = run_array_suite(config, simulator=SIMULATOR, build_root=tmp_path)
    for entry in report["scenarios"]:
        assert entry["mismatches"] == 0, entry
        assert entry["cycle_mismatches"] == 0, entry
        assert entry["vectors"] > 0
    adversarial = [entry for entry in report["scenarios"] if entry["name"] == "adversarial"][0]
    # The corner cases reach the accumulator's limits wherever the widths allow it.
    assert (adversarial["overflows"] > 0) == can_overflow(config), adversarial


def test_checks_catch_a_wrong_design(tmp_path):
    """Hardware built to wrap, checked against a saturating reference, must fail."""
    config = [config for config in ARRAY_CONFIGS if config.overflow == "saturate"
              and can_overflow(config) and config.rows > 1][0]
    wrong = dataclasses.replace(config, overflow="wrap")
    report = run_array_suite(config, simulator=SIMULATOR, build_root=tmp_path,
                             hardware_config=wrong)
    assert sum(entry["mismatches"] for entry in report["scenarios"]) > 0
