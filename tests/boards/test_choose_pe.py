"""The processing element chosen for an FPGA (:func:`systolix.boards.synth.choose_pe`,
:func:`systolix.boards.report.engine_pe`)."""

from dataclasses import replace

import pytest

from systolix.boards.report import engine_pe
from systolix.boards.synth import array_synth_options, choose_pe
from systolix.config import DEFAULT_CONFIG, ArrayConfig


@pytest.mark.parametrize("name, family, device, pe", [
    ("4x4-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp"),      # 8 pairs, 8 SB_MAC16
    ("8x4-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp4"),     # 16 pairs; 8 groups of four
    ("4x8-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp4"),
    ("4x6-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp4"),     # a four and a pair a row
    ("4x7-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp4"),     # a four and a three a row
    ("8x8-W4s-A4u-P12-wrap", "ice40", "up5k", "lut"),      # 16 groups, 32 pairs
    ("4x2-W4s-A4u-P12-wrap", "ice40", "up5k", "dsp"),
    ("2x2-W4s-A4u-P12-wrap", "ice40", "hx8k", "lut"),      # no DSPs
    ("2x2-W2s-A2u-P8-wrap", "ice40", "up5k", "lut"),       # product too narrow for a DSP
    ("2x2-W8s-A8u-P16-wrap", "ice40", "up5k", "lut"),      # packed operand 25 bits
    ("2x2-W5s-A5u-P16-wrap", "ice40", "up5k", "dsp"),      # 16 bits
    ("8x4-W5s-A5u-P16-wrap", "ice40", "up5k", "lut"),      # four: 20 bits
    ("8x4-W5s-A3u-P16-wrap", "ice40", "up5k", "lut"),      # four: 18 bits
    ("16x4-W5s-A3u-P16-wrap", "ecp5", "25k", "dsp4"),      # 28 MULT18X18D: 32 pairs do not fit
    ("2x2-W6s-A5u-P16-wrap", "ice40", "up5k", "lut"),      # 18 bits
    ("2x2-W6s-A5u-P16-wrap", "ecp5", "85k", "dsp"),
    ("16x16-W4s-A4u-P12-wrap", "ecp5", "85k", "dsp"),      # 128 of 156 MULT18X18D
    ("16x32-W4s-A4u-P12-wrap", "ecp5", "85k", "dsp4"),     # 128 of 156 as groups of four
    ("16x16-W4s-A4u-P12-wrap", "ecp5", "25k", "lut"),      # 28: no four, no pair
    ("16x4-W4s-A4u-P12-wrap", "ecp5", "25k", "dsp4"),
    ("8x1-W4s-A4u-P12-wrap", "ecp5", "85k", "lut"),        # no column to pair
])
def test_choose_pe(name, family, device, pe):
    config = ArrayConfig.from_name(name)
    assert choose_pe(replace(config, pe="dsp" if pe == "lut" else "lut"), family,
                     device).pe == pe


def test_choose_pe_takes_four_products_where_pairs_do_not_fit():
    """Of 8 DSPs on the UP5K: 4x4 as pairs with 8, as groups of four with 4 to 7."""
    config = ArrayConfig.from_name("4x4-W4s-A4u-P12-wrap")
    assert [choose_pe(config, "ice40", "up5k", dsps).pe for dsps in (3, 4, 7, 8)] \
        == ["lut", "dsp4", "dsp4", "dsp"]
    assert choose_pe(replace(config, cols=6), "ice40", "up5k", 7).pe == "lut"
    assert choose_pe(replace(config, cols=6), "ice40", "up5k", 8).pe == "dsp4"


def test_engine_pe_leaves_the_requantizers_their_dsps():
    # The iCEBreaker's 8x4 engine: 8 groups of four and 16 pairs do not fit the 6 SB_MAC16 one
    # requantization lane leaves; 6x4 (6 groups) and 3x4 (6 pairs) do.
    assert engine_pe(replace(DEFAULT_CONFIG, cols=4), requant_lanes=1).pe == "lut"
    assert engine_pe(replace(DEFAULT_CONFIG, rows=6, cols=4), requant_lanes=1).pe == "dsp4"
    assert engine_pe(replace(DEFAULT_CONFIG, rows=3, cols=4), requant_lanes=1).pe == "dsp"
    assert engine_pe(replace(DEFAULT_CONFIG, rows=16, cols=16), "ecp5").pe == "dsp"
    assert engine_pe(replace(DEFAULT_CONFIG, rows=16, cols=32), "ecp5").pe == "dsp4"


def test_synth_options():
    config = replace(DEFAULT_CONFIG, pe="dsp")
    assert array_synth_options(config, "ice40") == "-dsp"
    assert array_synth_options(config, "ecp5") == ""
    assert array_synth_options(DEFAULT_CONFIG, "ice40") == ""
    assert array_synth_options(replace(DEFAULT_CONFIG, pe="dsp4"), "ice40") == "-dsp"
