"""Board tops: the board table, PLL settings and elaboration on every board's platform."""

import pytest

from systolix.boards.tops import BOARDS, BoardTop, board, ecp5_pll, ice40_pll
from systolix.sw.stimulus import random_program
from systolix.sw.pack import pack

import numpy as np


def test_unknown_board_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"^BOARD must be one of 'icebreaker', 'ice40-hx8k-evn', "
                                         r"'ulx3s-85f', 'orangecrab', not 'de10'$"):
        board("de10")


@pytest.mark.parametrize("input_mhz, output_mhz, settings", [
    (12, 48, (0, 63, 4, 1)),      # the settings icepll prints for 12 -> 48 MHz
    (12, 24, (0, 63, 5, 1)),
    (12, 30, (0, 79, 5, 1)),
])
def test_ice40_pll(input_mhz, output_mhz, settings):
    divr, divf, divq, _ = settings
    assert ice40_pll(input_mhz, output_mhz)[:3] == (divr, divf, divq)
    pfd = input_mhz / (divr + 1)
    assert pfd * (divf + 1) / 2 ** divq == output_mhz


@pytest.mark.parametrize("input_mhz, output_mhz", [(25, 50), (48, 36), (25, 40)])
def test_ecp5_pll(input_mhz, output_mhz):
    clki_div, clkfb_div, clkop_div = ecp5_pll(input_mhz, output_mhz)
    assert input_mhz / clki_div * clkfb_div == pytest.approx(output_mhz)
    assert 400 <= output_mhz * clkop_div <= 800


def test_pll_refuses_an_unreachable_clock():
    with pytest.raises(ValueError, match=r"^clock_mhz must be a frequency an iCE40 PLL makes "
                                         r"exactly from 12 MHz, not 33.3333$"):
        ice40_pll(12, 100 / 3)


@pytest.mark.parametrize("name", list(BOARDS))
def test_top_elaborates_on_the_board(name, tmp_path):
    """The top's pins, clock and memories resolve on the board's platform: Amaranth writes
    the build files (RTLIL, constraints, script) without running the tools."""
    chosen = board(name)
    rng = np.random.default_rng(0)
    program = random_program(rng, chosen.config, [12, 9, 5])
    images = pack(program, chosen.config, chosen.memories)
    plan = chosen.platform().prepare(BoardTop(chosen, images), name="top")
    files = plan.extract(tmp_path)
    constraints = (files / ("top.pcf" if chosen.family == "ice40" else "top.lpf")).read_text()
    assert "uart_0__rx" in constraints and "uart_0__tx" in constraints
    assert (files / "top.il").stat().st_size > 0


@pytest.mark.parametrize("family, input_mhz", [("ice40", 12), ("ecp5", 25), ("ecp5", 48)])
def test_pll_settings_make_their_output(family, input_mhz):
    """Every setting the search offers is within the PLL's ranges and makes its frequency."""
    from systolix.boards.tops import PLL_SETTINGS
    settings = list(PLL_SETTINGS[family](input_mhz))
    assert len(settings) > 50
    for output, values in settings:
        if family == "ice40":
            divr, divf, divq, _ = values
            vco = input_mhz / (divr + 1) * (divf + 1)
            assert 533 <= vco <= 1066 and output == pytest.approx(vco / 2 ** divq)
        else:
            clki_div, clkfb_div, clkop_div = values
            assert output == pytest.approx(input_mhz / clki_div * clkfb_div)
            assert 400 <= output * clkop_div <= 800


@pytest.mark.parametrize("name, at_most, expected", [
    ("icebreaker", 37.6 / 1.1, 33.75),        # 12 MHz * 45 / 16
    ("icebreaker", 24.0, 24.0),
    ("ulx3s-85f", 71.8 / 1.1, 65.0),          # 25 MHz * 13 / 5
    ("orangecrab", 50.0, 48.0),               # 48 * 25 / 24 needs a 2 MHz PFD (< 3.125)
])
def test_fastest_pll_clock_is_the_highest_at_most_the_target(name, at_most, expected):
    from systolix.boards.tops import PLL_SETTINGS, fastest_pll_clock
    chosen = board(name)
    clock, settings = fastest_pll_clock(chosen, at_most)
    assert clock == pytest.approx(expected) and clock <= at_most
    assert (clock, settings) in list(PLL_SETTINGS[chosen.family](chosen.oscillator_mhz))
    assert not any(clock < output <= at_most
                   for output, _ in PLL_SETTINGS[chosen.family](chosen.oscillator_mhz))


def test_no_pll_clock_below_the_pll_range():
    from systolix.boards.tops import fastest_pll_clock
    assert fastest_pll_clock(board("icebreaker"), 15.9) is None     # iCE40 PLLs make >= 16 MHz


@pytest.mark.parametrize("name, clock_mhz, parameters", [
    ("icebreaker", 33.75, {"DIVR": 0, "DIVF": 44, "DIVQ": 4}),
    ("ulx3s-85f", 65.0, {"CLKI_DIV": 5, "CLKFB_DIV": 13, "CLKOP_DIV": 7}),
])
def test_a_clock_from_timing_sets_the_pll_and_the_uart(name, clock_mhz, parameters, tmp_path):
    """The top of a board at another clock (what a build with its clock from timing makes):
    the PLL's parameters are those of the search, the UART's divisor follows the clock."""
    from dataclasses import replace
    chosen = replace(board(name), clock_mhz=clock_mhz)
    images = pack(random_program(np.random.default_rng(0), chosen.config, [12, 9, 5]),
                  chosen.config, chosen.memories)
    top = BoardTop(chosen, images)
    assert top.divisor == round(clock_mhz * 1e6 / 115200)
    files = chosen.platform().prepare(top, name="top").extract(tmp_path)
    rtlil = (files / "top.il").read_text()
    for parameter, value in parameters.items():
        assert f"parameter \\{parameter} {value}\n" in rtlil
    # The UART transmitter's bit timer reloads with divisor - 1.
    transmitter = rtlil[rtlil.index("module \\top.serial.transmitter\n"):]
    transmitter = transmitter[:transmitter.index("\nend\n")]
    reload = top.divisor - 1
    assert f"{reload.bit_length()}'{reload:b}" in transmitter
