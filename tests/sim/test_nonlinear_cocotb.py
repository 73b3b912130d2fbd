"""The integer nonlinear units' cocotb testbench on Verilator (default) or Icarus (``SIM=icarus``):
bit-exact against the golden model, with random gaps on every input stream."""

import os

import pytest

from systolix.sim.runner import run_cocotb
from systolix.sim.testbench.nonlinear import NonlinearUnits, unit_cases

SIMULATOR = os.environ.get("SIM", "verilator")

# About a minute (a Verilator build of the three units): in the slow tier, `pytest -m slow`.
pytestmark = [pytest.mark.cocotb, pytest.mark.slow]


def test_units_bit_exact(tmp_path):
    cases = unit_cases()
    report = run_cocotb(NonlinearUnits(32), "nonlinear_units",
                        "systolix.sim.testbench.nonlinear", {"cases": cases, "seed": 1},
                        simulator=SIMULATOR, build_dir=tmp_path)
    for unit in ("gelu", "softmax", "layernorm"):
        assert report[unit]["codes"] == len(cases[unit]["expected"]), report
        assert report[unit]["mismatches"] == 0, report
    # The checks can fail: one golden code changed is one mismatch (the build is reused).
    cases["softmax"]["expected"][5] += 1
    report = run_cocotb(NonlinearUnits(32), "nonlinear_units",
                        "systolix.sim.testbench.nonlinear", {"cases": cases, "seed": 1},
                        simulator=SIMULATOR, build_dir=tmp_path)
    assert report["softmax"]["mismatches"] == 1 and report["gelu"]["mismatches"] == 0
