"""Resource, speed and power report of one design, as JSON, Markdown and a PNG.

:func:`design_report` measures any :class:`~amaranth.lib.wiring.Component`: it synthesizes, places
and routes it out of context (:func:`~systolix.boards.synth.synthesize`), estimates its power from
a simulation under a stimulus (:func:`~systolix.boards.power.power_of`), and derives MACs per
cycle, GOPS at fmax (two operations per multiply-accumulate), logic cells per MAC and, given the
cycles an inference takes, latency, throughput and energy per inference. :func:`array_report` does
it for the systolic array with a random full-rate workload (:func:`array_workload`) and adds the
analytic estimate (:func:`~systolix.boards.estimate.estimate_array`) beside the measurement.
:func:`write_report` writes ``report.json``, ``report.md`` and ``report.png`` (device utilization
and power by part).
"""

import json
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from systolix.config import ArrayConfig, check_choice, code_range
from systolix.hw.array import SystolicArray, activation_beat
from systolix.timing import array_timing, default_requant_lanes, macs_per_cycle
from systolix.hw.engine import InferenceEngine
from systolix.sim.golden.engine import engine_cycles
from systolix.files import atomic_write, png_figure
from systolix.memory_map import HEADER_WORDS, LAYER_LAYOUTS, MemoryConfig, input_channels, \
    pack_vectors
from systolix.sw.pack import layer_tiles, pack

from .estimate import estimate_array
from .power import power_of
from .synth import FAMILIES, array_synth_options, choose_pe, synthesize

__all__ = ["POWER_VECTORS", "array_workload", "engine_workload", "random_inputs",
           "engine_power", "design_report", "array_report", "fitted_memories", "REQUANT_DSPS",
           "engine_pe", "engine_report",
           "layer_names", "format_figure", "plot_usage_and_power", "write_report"]

POWER_VECTORS = 16
"""Input vectors of the simulated run whose toggle activity gives an engine's power."""

REQUANT_DSPS = {"ice40": 2, "ecp5": 3}
"""DSP multipliers one requantization lane of the engine takes where its multiplier goes into
DSPs (measured: the iCEBreaker's engine with one lane uses 2 SB_MAC16, the ULX3S's 8x8 engine
with two lanes 70 MULT18X18D, 64 of them the array's)."""

_RESOURCES = ("logic_cells", "luts", "flip_flops", "carries", "dsps", "brams", "sprams")


def array_workload(array, *, tiles=3, vectors=16, seed=0):
    """A stimulus for ``array`` (a :class:`~systolix.hw.array.SystolicArray`): ``tiles`` random
    weight tiles, each used by ``vectors`` random activation vectors sent at full rate, results
    always accepted, then the pipeline drained.

    Returns
    -------
    list of async functions
        Two testbenches (weights; activations and results), for
        :func:`~systolix.boards.power.record_activity`.
    """
    config = array.config
    rng = np.random.default_rng(seed)
    weights = rng.integers(*config.weight_range, size=(tiles, config.rows, config.cols),
                           endpoint=True)
    activations = rng.integers(*config.activation_range, size=(tiles, vectors, config.rows),
                               endpoint=True)

    async def send_weights(ctx):
        for tile in weights:
            for row in tile:
                ctx.set(array.weights.payload, [int(code) for code in row])
                ctx.set(array.weights.valid, 1)
                await ctx.tick().until(array.weights.ready)
        ctx.set(array.weights.valid, 0)

    async def send_activations(ctx):
        ctx.set(array.results.ready, 1)
        for tile in activations:
            for index, vector in enumerate(tile):
                ctx.set(array.activations.payload,
                        activation_beat(config, [int(code) for code in vector],
                                        index == vectors - 1))
                ctx.set(array.activations.valid, 1)
                await ctx.tick().until(array.activations.ready)
        ctx.set(array.activations.valid, 0)
        await ctx.tick().repeat(array_timing(config).latency + 2)

    return [send_weights, send_activations]


def engine_workload(engine, codes):
    """A stimulus for ``engine`` (an :class:`~systolix.hw.engine.InferenceEngine` whose memories
    hold the model: not one whose weights the host loads, ``upload_weights``): one run of the
    loaded model on ``codes`` (input codes of shape ``(batch, inputs)``, ``batch`` at most
    ``engine.max_batch``), written at full rate, outputs always accepted, to the last output.

    Returns
    -------
    async function
        A testbench for :func:`~systolix.boards.power.record_activity`.
    """
    if engine.upload_weights:
        raise ValueError("the engine's weights are loaded at run time: simulate it with the "
                         "weights held (images whose memories have upload_weights=False)")
    codes = np.asarray(codes)
    if codes.ndim != 2 or not 1 <= len(codes) <= engine.max_batch:
        raise ValueError(f"codes must have shape (batch, inputs) with batch in "
                         f"1..{engine.max_batch}, not {codes.shape}")
    words = pack_vectors(codes, engine.config, engine.vector_words, input_channels(engine.images))

    async def run(ctx):
        ctx.set(engine.inputs.valid, 1)
        for word in words:
            ctx.set(engine.inputs.payload, word)
            await ctx.tick()
        ctx.set(engine.inputs.valid, 0)
        ctx.set(engine.start.payload, len(codes))
        ctx.set(engine.start.valid, 1)
        await ctx.tick()
        ctx.set(engine.start.valid, 0)
        ctx.set(engine.outputs.ready, 1)
        await ctx.tick().until(engine.outputs.valid & engine.outputs.payload.last)

    return run


def _power_figures(estimate):
    """A :class:`~systolix.boards.power.PowerEstimate` as JSON-ready figures."""
    return {**asdict(estimate), "total_dynamic_mw": estimate.total_dynamic_mw,
            "total_mw": estimate.total_mw}


def random_inputs(program, count, seed=0):
    """``count`` random input vectors of ``program`` (codes in its first layer's range, seeded;
    a convolution's whole input map), for the simulated runs of the power estimates."""
    first = program.layers[0]
    low, high = code_range(first.input_bits, first.input_signed)
    return np.random.default_rng(seed).integers(low, high, (count, program.inputs),
                                                endpoint=True)


def engine_power(engine, codes, resources, *, family, frequency_mhz):
    """Power of ``engine`` running its loaded model on ``codes`` (see :func:`engine_workload`):
    the toggle rate of that simulation applied to ``resources`` (``luts``, ``flip_flops``,
    ``brams``, ``sprams``, ``dsps``, for example the cells of a whole board build), at
    ``frequency_mhz``.

    Returns
    -------
    dict
        The :class:`~systolix.boards.power.PowerEstimate` as JSON-ready figures, with
        ``total_dynamic_mw`` and ``total_mw`` (``None`` where the family's static power is
        unknown).
    """
    return _power_figures(power_of(engine, engine_workload(engine, codes), family=family,
                                   frequency_mhz=frequency_mhz,
                                   resources=SimpleNamespace(**resources)))


def _capacity(result):
    """Device capacity of each resource, from nextpnr's report."""
    utilization = json.loads((result.build_dir / "report.json").read_text())["utilization"]
    return {resource: utilization[bel]["available"]
            for resource, bel in FAMILIES[result.family].placed.items()
            if resource in _RESOURCES and bel in utilization}


def design_report(component, *, name, macs_per_cycle, stimulus=None, family="ice40",
                  device=None, package=None, seed=1, frequency_mhz=None,
                  internal_oscillator=False, cycles_per_inference=None, build_dir=None,
                  synth_options=""):
    """Measure one design and derive its performance figures.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The design, with one clock domain, ``sync``.
    name : str
        What the report calls it; also the Verilog top-level name (a Verilog identifier).
    macs_per_cycle : int
        Multiply-accumulates the design completes per cycle at full rate.
    stimulus : async function or list of them, or None
        Testbenches that drive the design for the power estimate
        (:func:`~systolix.boards.power.record_activity`); no power estimate without one.
    family, device, package, seed
        See :func:`~systolix.boards.synth.synthesize`.
    frequency_mhz : float or None
        Clock of the power, latency and energy figures; fmax by default.
    internal_oscillator : bool
        See :func:`~systolix.boards.power.estimate_power`.
    cycles_per_inference : int or float or None
        Cycles one inference takes (from the cycle model, a mean over a batch), for latency,
        throughput and energy.
    build_dir : str or pathlib.Path or None
        Synthesis folder.
    synth_options : str
        See :func:`~systolix.boards.synth.synthesize`.

    Returns
    -------
    dict
        JSON-ready: ``design``, ``target``, ``resources``, ``capacity``, ``fmax_mhz``,
        ``clock_mhz``, ``macs_per_cycle``, ``gops``, ``cells_per_mac``, ``power`` (or ``None``)
        and ``inference`` (or ``None``).
    """
    if isinstance(macs_per_cycle, bool) or not isinstance(macs_per_cycle, int) or \
            macs_per_cycle < 1:
        raise ValueError(f"macs_per_cycle must be a positive integer, not {macs_per_cycle!r}")
    if cycles_per_inference is not None and (isinstance(cycles_per_inference, bool)
                                             or not isinstance(cycles_per_inference, (int, float))
                                             or cycles_per_inference <= 0):
        raise ValueError(f"cycles_per_inference must be a positive number, not "
                         f"{cycles_per_inference!r}")
    result = synthesize(component, family=family, device=device, package=package, seed=seed,
                        build_dir=build_dir, name=name, synth_options=synth_options)
    clock = result.fmax_mhz if frequency_mhz is None else frequency_mhz
    power = None
    if stimulus is not None:
        power = _power_figures(power_of(component, stimulus, family=family, frequency_mhz=clock,
                                        internal_oscillator=internal_oscillator,
                                        resources=result))
    inference = None
    if cycles_per_inference is not None:
        latency_us = cycles_per_inference / clock
        energy = (None if power is None or power["total_mw"] is None
                  else power["total_mw"] * latency_us / 1000)
        inference = {"cycles": cycles_per_inference, "latency_us": latency_us,
                     "per_second": 1e6 / latency_us, "energy_uj": energy}
    return {
        "design": name,
        "target": {"family": result.family, "device": result.device, "package": result.package,
                   "seed": result.seed},
        "resources": {resource: getattr(result, resource) for resource in _RESOURCES},
        "harness_cells": result.harness_cells,
        "capacity": _capacity(result),
        "fmax_mhz": result.fmax_mhz,
        "clock_mhz": clock,
        "macs_per_cycle": macs_per_cycle,
        "gops": 2 * macs_per_cycle * result.fmax_mhz / 1000,
        "cells_per_mac": result.logic_cells / macs_per_cycle,
        "power": power,
        "inference": inference,
    }


def array_report(config, *, family="ice40", device=None, package=None, seed=1,
                 frequency_mhz=None, cycles_per_inference=None, build_dir=None, tiles=3,
                 vectors=16):
    """:func:`design_report` of ``SystolicArray(config)`` under :func:`array_workload`, with the
    configuration and the analytic estimate (``"estimate"``, iCE40 and ``pe="lut"`` only)
    added; DSP cells (``pe="dsp"``, ``"dsp4"``) go into the DSPs (:func:`~systolix.boards.synth.choose_pe`
    picks the kind for a device); bit-serial cells make :func:`~systolix.timing.macs_per_cycle`
    at ``activation_bits``."""
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig, not {config!r}")
    array = SystolicArray(config)
    report = design_report(
        array, name="array", macs_per_cycle=macs_per_cycle(config),
        stimulus=array_workload(array, tiles=tiles, vectors=vectors), family=family,
        device=device, package=package, seed=seed, frequency_mhz=frequency_mhz,
        cycles_per_inference=cycles_per_inference, build_dir=build_dir,
        synth_options=array_synth_options(config, family))
    report["design"] = f"SystolicArray {config.name}"
    report["config"] = asdict(config)
    report["estimate"] = (asdict(estimate_array(config))
                          if family == "ice40" and config.pe == "lut" else None)
    return report


def _power_of_two(words):
    return max(256, 1 << (words - 1).bit_length())


def fitted_memories(program, config, *, activation_words=256):
    """The :class:`~systolix.sw.pack.MemoryConfig` of powers of two, each at least 256 words
    (a block RAM's depth; smaller memories become flip-flops), that holds ``program`` on
    ``config``, with ``activation_words`` buffer words (which limit the batch)."""
    tiles = layer_tiles(program, config)
    return MemoryConfig(
        weight_words=_power_of_two(sum(tile.weight_words for tile in tiles)),
        requant_words=_power_of_two(sum(tile.requant_words for tile in tiles)),
        program_words=_power_of_two(HEADER_WORDS + len(LAYER_LAYOUTS) * len(tiles)),
        activation_words=activation_words, batch=256,
        output_codes=_power_of_two(program.layers[-1].weights.shape[1]))


def engine_pe(config, family="ice40", device=None, requant_lanes=None):
    """:func:`~systolix.boards.synth.choose_pe` for an inference engine: the DSPs left by its
    requantization lanes (:data:`REQUANT_DSPS` each; ``requant_lanes=None``: the engine's
    default) may take DSP cells."""
    lanes = default_requant_lanes(config) if requant_lanes is None else requant_lanes
    spec = FAMILIES[check_choice("family", family, tuple(FAMILIES))]
    device = spec.default_device if device is None else device
    spare = spec.dsp_counts.get(device, 0) - REQUANT_DSPS[family] * lanes
    return choose_pe(config, family, device, dsps=max(spare, 0))


def engine_report(config, program, *, memories=None, requant_lanes=None,
                  family="ice40", device=None, package=None, seed=1, frequency_mhz=None,
                  build_dir=None):
    """:func:`design_report` of the inference engine running ``program`` (packed for ``config``
    and ``memories``, by default :func:`fitted_memories`): the whole engine out of context, its
    power from a simulated run of the model (:func:`engine_workload` on :data:`POWER_VECTORS`
    random inputs) and its cycles per inference from the cycle model at the largest batch,
    with the model and the configuration added. On an iCE40 with DSPs (UltraPlus) the
    requantization multipliers go into them."""
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig, not {config!r}")
    images = pack(program, config, fitted_memories(program, config) if memories is None
                  else memories)
    engine = InferenceEngine(config, images, requant_lanes=requant_lanes)
    cycles = engine_cycles(config, images, images.max_batch, requant_lanes)
    codes = random_inputs(program, min(POWER_VECTORS, images.max_batch))
    report = design_report(
        engine, name="engine", macs_per_cycle=config.rows * config.cols,
        stimulus=engine_workload(engine, codes), family=family, device=device,
        package=package, seed=seed, frequency_mhz=frequency_mhz,
        cycles_per_inference=cycles.compute / images.max_batch, build_dir=build_dir,
        synth_options="-dsp" if family == "ice40" and
        (device or FAMILIES[family].default_device).startswith("up") else "")
    report["design"] = f"InferenceEngine {config.name}"
    report["config"] = asdict(config)
    report["model"] = layer_names(program)
    report["batch"] = images.max_batch
    return report


def layer_names(program):
    """Each layer of ``program`` as ``INPUTSxOUTPUTS WbAa``, such as ``64x64 W4A4``."""
    return [f"{layer.weights.shape[0]}x{layer.weights.shape[1]} "
            f"W{layer.weight_bits}A{layer.input_bits}" for layer in program.layers]


def format_figure(value, digits=0, unit=""):
    """``value`` with thousands separators, ``digits`` decimals and ``unit``; ``-`` for
    ``None`` (a figure that is unknown, such as an uncalibrated family's static power)."""
    return "-" if value is None else f"{value:,.{digits}f}{unit}"


def _markdown(report):
    target = report["target"]
    resources, capacity, estimate = report["resources"], report["capacity"], report.get("estimate")
    lines = [f"# {report['design']} on {target['family']} {target['device']} "
             f"({target['package']})", "",
             f"Out of context (the pin harness's {report['harness_cells']} cells left out), "
             f"nextpnr seed {target['seed']}.", "",
             "| resource | used | of device | estimate |", "|---|---:|---:|---:|"]
    for resource in _RESOURCES:
        used = resources[resource]
        share = (f"{100 * used / capacity[resource]:.1f} % of {capacity[resource]:,}"
                 if capacity.get(resource) else "")
        guess = "" if estimate is None or resource not in estimate else f"{estimate[resource]:,}"
        lines.append(f"| {resource.replace('_', ' ')} | {used:,} | {share} | {guess} |")
    lines += ["", "| figure | value |", "|---|---:|",
              f"| fmax | {format_figure(report['fmax_mhz'], 1, ' MHz')} |",
              f"| MACs per cycle | {report['macs_per_cycle']} |",
              f"| GOPS at fmax | {format_figure(report['gops'], 2)} |",
              f"| logic cells per MAC | {format_figure(report['cells_per_mac'], 1)} |"]
    power = report["power"]
    if power is not None:
        lines += [f"| clock of the power figures | "
                  f"{format_figure(power['frequency_mhz'], 1, ' MHz')} |",
                  f"| toggle rate | {power['toggle_rate']:.3f} per bit per cycle |",
                  f"| static power | {format_figure(power['static_mw'], 2, ' mW')} |"]
        lines += [f"| dynamic power, {part} | {format_figure(value, 2, ' mW')} |"
                  for part, value in power["dynamic_mw"].items()]
        lines.append(f"| total power | {format_figure(power['total_mw'], 2, ' mW')} |")
        if not power["calibrated"]:
            lines.append("| (power coefficients not calibrated for this family) | |")
    inference = report["inference"]
    if inference is not None:
        lines += [f"| cycles per inference | {inference['cycles']:,.1f} |",
                  f"| latency per inference | "
                  f"{format_figure(inference['latency_us'], 2, ' us')} |",
                  f"| inferences per second | {format_figure(inference['per_second'], 0)} |",
                  f"| energy per inference | "
                  f"{format_figure(inference['energy_uj'], 3, ' uJ')} |"]
    return "\n".join(lines) + "\n"


def plot_usage_and_power(title, shares, power, path):
    """Write a PNG of two bar charts: ``shares`` (resource name to per cent of the device) and
    ``power`` (figures of a :class:`~systolix.boards.power.PowerEstimate`, or ``None``) by
    part."""
    with png_figure(path, 1, 2, figsize=(10, 3.5)) as (figure, (used, parts_axis)):
        used.barh(list(shares), list(shares.values()))
        used.set_xlabel("% of the device")
        used.set_xlim(0, max(100, *shares.values()))
        used.set_title("utilization")
        if power is not None:
            parts = {"static": power["static_mw"] or 0.0, **power["dynamic_mw"]}
            parts_axis.barh(list(parts), list(parts.values()))
            parts_axis.set_xlabel(f"mW at {power['frequency_mhz']:.1f} MHz")
            parts_axis.set_title("power")
        else:
            parts_axis.set_axis_off()
        figure.suptitle(title)


def write_report(report, out_dir):
    """Write ``report.json``, ``report.md`` and ``report.png`` into ``out_dir``; return the
    paths by kind (``"json"``, ``"markdown"``, ``"png"``)."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "report.json", "markdown": out_dir / "report.md",
             "png": out_dir / "report.png"}
    atomic_write(paths["json"],
                 lambda file: file.write(json.dumps(report, indent=1).encode() + b"\n"))
    atomic_write(paths["markdown"], lambda file: file.write(_markdown(report).encode()))
    shares = {resource.replace("_", " "): 100 * report["resources"][resource] / available
              for resource, available in report["capacity"].items() if available}
    plot_usage_and_power(f"{report['design']} on {report['target']['device']}", shares,
                         report["power"], paths["png"])
    return paths
