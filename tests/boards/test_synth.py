# amaranth: UnusedElaboratable=no
"""Synthesis smoke tests: the array maps onto iCE40 with Yosys, and the runner counts correctly.

Synthesis-only tests take seconds each; one test places and routes a small adder.

The components of the tests of bad arguments are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from systolix.boards.synth import (DesignDoesNotFit, SynthesisError, array_synth_options,
                                  choose_pe, synthesize)
from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray

pytestmark = pytest.mark.toolchain


class RegisteredAdder(wiring.Component):
    """``o <= a + b``, ``width`` bits in, ``width + 1`` bits out."""

    def __init__(self, width):
        super().__init__({"a": In(width), "b": In(width), "o": Out(width + 1)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a + self.b)
        return m


class NoOutputs(wiring.Component):
    def __init__(self):
        super().__init__({"a": In(4)})

    def elaborate(self, platform):
        return Module()


def array(accumulator_bits):
    return SystolicArray(ArrayConfig(rows=4, cols=4, weight_bits=4, activation_bits=4,
                                     accumulator_bits=accumulator_bits))


def test_array_synthesizes_for_ice40(tmp_path):
    result = synthesize(array(16), place=False, build_dir=tmp_path, name="array")
    assert result.luts > 0 and result.flip_flops > 0
    assert result.logic_cells is None and result.fmax_mhz is None
    assert (tmp_path / "array.json").stat().st_size > 0
    assert "Executing SYNTH_ICE40 pass" in (tmp_path / "yosys.log").read_text()


def test_accumulator_width_shows_up_in_netlist(tmp_path):
    narrow = synthesize(array(12), place=False, build_dir=tmp_path / "p12", name="array")
    wide = synthesize(array(32), place=False, build_dir=tmp_path / "p32", name="array")
    assert narrow.luts < wide.luts
    # The partial sums keep the bits their row reaches (11 at most here) whatever P is.
    assert narrow.flip_flops == wide.flip_flops


def test_counts_of_core_exclude_harness(tmp_path):
    result = synthesize(RegisteredAdder(8), place=False, build_dir=tmp_path)
    assert (result.luts, result.flip_flops, result.carries) == (8, 9, 8)
    assert (result.brams, result.sprams, result.dsps) == (0, 0, 0)


def test_ecp5_synthesis(tmp_path):
    result = synthesize(RegisteredAdder(8), family="ecp5", place=False, build_dir=tmp_path)
    assert (result.device, result.package) == ("85k", "CABGA381")
    assert result.flip_flops == 9
    assert result.carries == 5     # one CCU2C per two bits of the 9-bit sum


def test_place_and_route(tmp_path):
    result = synthesize(RegisteredAdder(16), seed=1, build_dir=tmp_path)
    # Harness: 32 input flip-flops; XOR tree over 17 outputs: 5 + 2 + 1 cells.
    assert result.harness_cells == 32 + 5 + 2 + 1
    # 17 cells of sum and carry, plus at most a few that nextpnr adds (constants, carry feed-in).
    assert 17 <= result.logic_cells <= 17 + 4
    assert 10 < result.fmax_mhz < 500
    assert (tmp_path / "report.json").exists()


def test_tool_failure_shows_log_tail(tmp_path):
    with pytest.raises(SynthesisError, match=r"(?s)nextpnr-ice40 failed.*Unsupported package"):
        synthesize(RegisteredAdder(2), package="qn99", build_dir=tmp_path)


def test_design_that_does_not_fit(tmp_path):
    core = SystolicArray(ArrayConfig(rows=2, cols=2, weight_bits=8, activation_bits=8))
    with pytest.raises(DesignDoesNotFit, match=r"^array does not fit the ice40 lp384 \(with its "
                                               r"harness\): ICESTORM_LC \d+ used, 384 available "
                                               r"\(\d+ over\)$") as caught:
        synthesize(core, device="lp384", package="qn32", build_dir=tmp_path, name="array")
    used, available = caught.value.overflows["ICESTORM_LC"]
    assert available == 384 and used > caught.value.result.luts > 384
    assert caught.value.result.logic_cells is None


@pytest.mark.parametrize("arguments, message", [
    ({"family": "xilinx"}, "family must be one of 'ice40', 'ecp5', not 'xilinx'"),
    ({"device": "85k"}, "device must be one of 'lp384', .*, not '85k'"),
    ({"family": "ecp5", "device": "up5k"}, "device must be one of '12k', .*, not 'up5k'"),
    ({"package": ""}, "package must be a non-empty string, not ''"),
    ({"seed": -1}, "seed must be a non-negative integer, not -1"),
    ({"place": "yes"}, "place must be one of True, False, not 'yes'"),
    ({"target_mhz": 0}, "target_mhz must be a positive number, not 0"),
    ({"name": "8x8-array"}, r"name must be a Verilog identifier \(letters, digits, _\), "
                            r"not '8x8-array'"),
])
def test_bad_arguments(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        synthesize(RegisteredAdder(2), build_dir=tmp_path, **arguments)


def test_bad_component(tmp_path):
    with pytest.raises(ValueError, match=r"^component must be an amaranth.lib.wiring.Component, "
                                         r"not 42$"):
        synthesize(42, build_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^component must have at least one output port, "
                                         r"not <.*NoOutputs.*>$"):
        synthesize(NoOutputs(), build_dir=tmp_path)


@pytest.mark.parametrize("family, options, pairs, lut_dsps", [
    ("ice40", "-dsp", 2, 0),     # LUT cells' shift-and-add products stay in logic
    ("ecp5", "", 2, 0),
])
def test_dsp_cells_use_one_dsp_per_pair(tmp_path, family, options, pairs, lut_dsps):
    """A 2x2 W4/A4 array of DSP cell pairs maps each pair's packed multiplier to one DSP
    (SB_MAC16, MULT18X18D) and needs fewer LUT4s than the array of LUT cells."""
    config = ArrayConfig(rows=2, cols=2, weight_bits=4, activation_bits=4, accumulator_bits=16)
    lut = synthesize(SystolicArray(config), family=family, place=False,
                     build_dir=tmp_path / "lut", name="array")
    dsp = synthesize(SystolicArray(choose_pe(config, family)), family=family, place=False,
                     build_dir=tmp_path / "dsp", name="array",
                     synth_options=array_synth_options(choose_pe(config, family), family))
    assert (lut.dsps, dsp.dsps) == (lut_dsps, pairs)
    if family == "ice40":
        assert dsp.luts < 0.7 * lut.luts


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_four_product_cells_use_one_dsp_per_group(tmp_path, family):
    """A 2x4 W4/A4 array of four-product DSP cells maps each group's packed multiplier to one
    DSP (SB_MAC16, MULT18X18D) and the correction terms to logic (no DSP)."""
    config = choose_pe(ArrayConfig(rows=2, cols=4, weight_bits=4, activation_bits=4,
                                   accumulator_bits=16), family, dsps=2)
    assert config.pe == "dsp4"
    result = synthesize(SystolicArray(config), family=family, place=False,
                        build_dir=tmp_path, name="array",
                        synth_options=array_synth_options(config, family))
    assert result.dsps == 2
