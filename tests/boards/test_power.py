# amaranth: UnusedElaboratable=no
"""The power model: toggle counting, the iCE40UP5K calibration against published measurements,
and the arithmetic of estimates.

The calibration check rebuilds the measured designs (a 24-bit counter; the counter with an 8x8
product of two counters in logic or on a DSP; counters of 28 to 224 bits on an external clock),
synthesizes and simulates them, and compares the model's core current with the measured one
(``ICE40_MEASUREMENTS``): the fitted points within 5 %, and the points the fit does not use (the
counter at 6, 24 and 48 MHz, the 56- and 112-bit counters) within 5 % too.
"""

from dataclasses import replace
from types import SimpleNamespace

import pytest

from systolix.boards.power import (ICE40_MEASUREMENTS, POWER_MODELS, Activity, CounterDesign,
                                   CounterProductDesign, calibrate_ice40, counter_stimulus,
                                   estimate_power, record_activity)

TOLERANCE = 0.05


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    return calibrate_ice40(tmp_path_factory.mktemp("calibration"))


def core_ua(resources, activity, frequency_mhz, internal_oscillator=True):
    estimate = estimate_power(resources, activity, frequency_mhz=frequency_mhz,
                              internal_oscillator=internal_oscillator)
    return estimate.total_mw / POWER_MODELS["ice40"].core_volts * 1000


@pytest.mark.toolchain
def test_stored_coefficients_are_the_calibration(calibration):
    model = POWER_MODELS["ice40"]
    for name in ("oscillator_ua", "clock_per_mhz", "ff_per_mhz", "lut_per_mhz", "dsp_per_mhz"):
        assert getattr(model, name) == pytest.approx(calibration[name], rel=0.01), name


@pytest.mark.toolchain
def test_model_reproduces_published_ice40_measurements(calibration):
    counter, counter_activity = calibration["counter"]
    product, product_activity = calibration["product"]
    around_dsp = replace(calibration["around_dsp"], dsps=1)
    no_logic = SimpleNamespace(luts=0, flip_flops=0, brams=0, sprams=0, dsps=0)
    cases = {"blank": core_ua(no_logic, counter_activity, 12.0)}
    for mhz in (6, 12, 24, 48):
        cases[f"counter_{mhz}mhz"] = core_ua(counter, counter_activity, mhz)
    cases["product_logic_12mhz"] = core_ua(product, product_activity, 12.0)
    cases["product_dsp_12mhz"] = core_ua(around_dsp, product_activity, 12.0)
    for copies in (1, 2, 4, 8):
        width = 28 * copies
        # A w-bit counter is w LUTs (with their carries) and w flip-flops.
        resources = SimpleNamespace(luts=width, flip_flops=width, brams=0, sprams=0, dsps=0)
        activity = record_activity(CounterDesign(width), counter_stimulus(256))
        cases[f"counters_28x{copies}_external_12mhz"] = core_ua(resources, activity, 12.0,
                                                                internal_oscillator=False)
    print(f"{'design':<32}{'measured uA':>12}{'model uA':>10}{'error':>8}")
    for name, modelled in cases.items():
        measured = ICE40_MEASUREMENTS[name]
        print(f"{name:<32}{measured:>12.1f}{modelled:>10.1f}{modelled / measured - 1:>+8.1%}")
    assert cases.keys() == ICE40_MEASUREMENTS.keys()
    for name, modelled in cases.items():
        assert modelled == pytest.approx(ICE40_MEASUREMENTS[name], rel=TOLERANCE), name
    # The published comparison: the product costs more in logic than on a DSP.
    assert cases["product_logic_12mhz"] - cases["counter_12mhz"] == pytest.approx(351, rel=0.02)
    assert cases["product_dsp_12mhz"] - cases["counter_12mhz"] == pytest.approx(237, rel=0.02)


def test_toggle_counting():
    # Bit k of a counter changes every 2**k cycles: 1024 + 512 + ... + 1 = 2047 changes of bits
    # 0..10 in 1024 cycles; the top bit, and the output that copies it, never change.
    activity = record_activity(CounterDesign(16), counter_stimulus(1024))
    assert activity == Activity(cycles=1024, bits=17, toggles=2047)
    product = record_activity(CounterProductDesign(), counter_stimulus(100))
    assert product.bits == 24 + 8 + 8 + 1 + 16 and 0.2 < product.toggle_rate < 0.4


def test_estimate_arithmetic():
    resources = SimpleNamespace(luts=1000, flip_flops=500, brams=2, sprams=0, dsps=0)
    activity = Activity(cycles=100, bits=10, toggles=250)        # toggle rate 0.25
    model = POWER_MODELS["ice40"]
    estimate = estimate_power(resources, activity, frequency_mhz=20)
    assert estimate.toggle_rate == 0.25 and estimate.calibrated
    assert estimate.static_mw == pytest.approx(model.static_ua * model.core_volts / 1000)
    assert estimate.dynamic_mw["logic"] == pytest.approx(
        20 * 0.25 * model.lut_per_mhz * 1000 * model.core_volts / 1000)
    assert estimate.dynamic_mw["clock"] == pytest.approx(
        20 * (model.clock_per_mhz + 500 * model.ff_per_mhz) * model.core_volts / 1000)
    assert estimate.total_mw == pytest.approx(estimate.static_mw + estimate.total_dynamic_mw)
    # 20,000 cycles at 20 MHz is 1 ms.
    assert estimate.energy_per_inference_uj(20000) == pytest.approx(estimate.total_mw)
    ecp5 = estimate_power(resources, activity, family="ecp5", frequency_mhz=20)
    assert ecp5.static_mw is None and ecp5.total_mw is None and not ecp5.calibrated
    assert ecp5.energy_per_inference_uj(100) is None


@pytest.mark.parametrize("arguments, message", [
    ({"family": "xilinx"}, "family must be one of 'ice40', 'ecp5', not 'xilinx'"),
    ({"frequency_mhz": 0}, "frequency_mhz must be a positive number, not 0"),
    ({"activity": 0.5}, "activity must be an Activity, not 0.5"),
    ({"internal_oscillator": 1}, "internal_oscillator must be True or False, not 1"),
])
def test_bad_arguments(arguments, message):
    resources = SimpleNamespace(luts=1, flip_flops=1, brams=0, sprams=0, dsps=0)
    call = {"activity": Activity(cycles=1, bits=1, toggles=0), "frequency_mhz": 12.0,
            **arguments}
    with pytest.raises(ValueError, match=f"^{message}$"):
        estimate_power(resources, call.pop("activity"), **call)


def test_bad_stimulus():
    with pytest.raises(ValueError, match=r"^stimulus must be an async testbench function or a "
                                         r"non-empty sequence of them, not \[\]$"):
        record_activity(CounterDesign(4), [])
    with pytest.raises(ValueError, match=r"^cycles must be a positive integer, not 0$"):
        estimate_power(SimpleNamespace(luts=1, flip_flops=1, brams=0, sprams=0, dsps=0),
                       Activity(cycles=1, bits=1, toggles=0),
                       frequency_mhz=1).energy_per_inference_uj(0)
