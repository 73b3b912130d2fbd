"""Size and speed of the systolic array on an iCE40UP5K, against a naive reference array.

Each array is synthesized with ``synth_ice40`` and placed and routed with nextpnr out of context,
as :func:`systolix.boards.synth.synthesize` does; the harness's cells are left out of the logic
cell counts. The placement, and with it fmax, changes with the placer seed (by about 10 % on these
arrays), so each array is placed with a few fixed seeds and the median fmax is used, with the range
printed beside it. The figure of merit is MAC/s per logic cell, ``rows * cols * fmax / cells``,
compared with a naive output-stationary 4x4 W4/A4 array measured with the same tools (1,005 logic
cells at 38.9 MHz: 0.62 MMAC/s per cell). A systolic array should also keep its clock as it grows:
the 8x8 array's fmax should be at least 0.9 of the 2x2 array's.

DSP cells (issue 16): the same table for arrays of DSP cell pairs (``pe="dsp"``, two products
per SB_MAC16) of :data:`DSP_SIZES`, the largest that the UP5K's 8 DSPs hold, against the same
reference (target: 2x its MMAC/s per logic cell), and for arrays of four-product DSP cells
(``pe="dsp4"``, four products per SB_MAC16 with correction terms in logic) of
:data:`DSP4_SIZES` (8x4: the most the UP5K's 8 DSPs hold).

Bit-serial cells (issue 16): the same table for arrays of bit-serial cells (``pe="serial"``) of
:data:`SERIAL_SIZES`, whose vectors take as many cycles as their activation bits: MMAC/s per logic
cell ``rows * cols * fmax / (planes * cells)`` at 4-bit and at 2-bit activations (a layer that the
mixed-precision search narrows to 2 bits runs twice as fast), against the reference and against
the LUT cells' array of the same size (which takes a cycle a vector at any width).

Largest array (issues 5 and 16): :func:`largest_array` builds the whole accelerator of the
default model (W4/A4, 12-bit accumulator) for a board with arrays of several shapes, each with
memories sized for the model and the processing element that fits the board's DSPs
(:func:`~systolix.boards.report.engine_pe`), each clocked from timing as ``make bitstream``
does, and prints which fit, their MACs per cycle, fmax, clock, GOPS at that clock and the
inferences a second of the model: compute-bound (at the build's clock) and
UART-bound (the RUN and RESULT frames of a full batch at the board's baud,
:func:`systolix.protocol.uart_inferences_per_second`), against an aim: :data:`LARGEST` for the
iCEBreaker (64 MACs per cycle at 40 MHz or more), :data:`LARGEST_ECP5` for the ULX3S (256 MACs
per cycle).

Accumulator savings (issue 5): the inference engine of the 8x8 W4/A4 array with ``P = 14``
against the same engine with ``P = 32``, in both overflow modes: :func:`accumulator_savings`
synthesizes both for an iCE40HX8K (the UP5K's logic cell, no DSPs, so every multiplier is
logic) and counts their logic cells per component. The array hardly changes: each cell keeps
its partial sum in the bits that its row's sums reach (at most ``W + A + ceil(log2(rows))``, 11
here; :func:`~systolix.hw.mac.partial_sum_shape`), exact whatever ``P``, so only its result
memory grows. What follows the array carries ``P``-bit sums: the K-tile accumulator, the queue
of finished sums and the issuer take about 0.55 to 0.65 of their wide size at ``P = 14``; the
requantization lanes do not shrink, since they are exact for any 32-bit bias whatever ``P``.
The aim (at most 0.75 of the wide design's logic cells) was set when the array's partial sums
were ``P`` bits wide; the table judges the whole engine against it.
"""

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from systolix.config import OVERFLOW_MODES, ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.hw.engine import InferenceEngine
from systolix.sw.default import default_program
from systolix.sw.pack import pack

from .bitstream import build_bitstream
from .breakdown import cells_by_component, pack_netlist
from .report import engine_pe, fitted_memories
from .tops import board as board_named

from .synth import DesignDoesNotFit, SynthesisError, array_synth_options, synthesize

__all__ = ["REFERENCE", "SIZES", "DSP_SIZES", "DSP4_SIZES", "SERIAL_SIZES", "SAVINGS", "LARGEST",
           "LARGEST_ECP5", "run",
           "accumulator_savings", "largest_array"]

REFERENCE = {"macs": 4 * 4, "logic_cells": 1005, "fmax_mhz": 38.9}
"""The reference design: a naive output-stationary 4x4 array of 4-bit MACs on an iCE40UP5K,
1,005 logic cells at 38.9 MHz (synthesized and placed with the same YoWASP tools)."""

SIZES = ((2, 2), (8, 8))
"""``(rows, cols)`` of the arrays measured; the fmax ratio is last over first."""

DSP_SIZES = ((2, 2), (4, 4))
"""``(rows, cols)`` of the arrays of DSP cells measured (4x4: the UP5K's 8 SB_MAC16)."""

DSP4_SIZES = ((4, 4), (8, 4))
"""``(rows, cols)`` of the arrays of four-product DSP cells measured (8x4: the UP5K's 8
SB_MAC16)."""

SERIAL_SIZES = ((2, 2), (4, 4), (8, 8))
"""``(rows, cols)`` of the arrays of bit-serial cells measured."""

SERIAL_PLANES = (4, 2)
"""Activation bits at which the bit-serial arrays' MMAC/s per logic cell are printed."""

_BASE = ArrayConfig(weight_bits=4, activation_bits=4, accumulator_bits=16)
_FMAX_RATIO_TARGET = 0.9
_DENSITY_TARGET = 2.0

LARGEST = {"board": "icebreaker", "shapes": ((8, 8), (8, 6), (6, 8), (8, 5), (8, 4), (4, 8), (4, 4)),
           "macs_per_cycle": 64, "clock_mhz": 40.0}
"""The largest-array benchmark: the board, the array shapes tried (most MACs first) and the aim
for the largest that fits."""

LARGEST_ECP5 = {"board": "ulx3s-85f", "shapes": ((16, 16), (16, 8)), "macs_per_cycle": 256,
                "clock_mhz": None}
"""The largest-array benchmark on the ULX3S (ECP5-85F): 16x16 takes 128 of its 156 MULT18X18D
as DSP cell pairs. ``clock_mhz=None``: no speed aim."""

SAVINGS = {"narrow": 14, "wide": 32, "target": 0.75, "device": "hx8k", "package": "ct256"}
"""The accumulator-savings benchmark: ``P`` of the two inference engines of the 8x8 W4/A4 array,
the most the narrow one may cost relative to the wide one (issue 5's aim, set for the array
alone), and the device their logic cells are counted for (no DSPs: every multiplier is logic,
as on the HX8K board)."""


def _mmacs_per_cell(macs, fmax_mhz, logic_cells):
    return macs * fmax_mhz / logic_cells


def _row(columns, cells):
    """One line of a table: ``cells`` (formatted values, one a column) in ``columns``, pairs of
    a title and a width: the first column left-aligned, the others right-aligned, one of width
    ``None`` (the last) free text after two spaces."""
    text = ""
    for index, ((_, width), cell) in enumerate(zip(columns, cells, strict=True)):
        if width is None:
            text += f"  {cell}"
        else:
            text += f"{cell:<{width}}" if index == 0 else f"{cell:>{width}}"
    return text


def _print_table(columns, rows):
    """Print the titles of ``columns`` (see :func:`_row`), a rule under them and ``rows``."""
    header = _row(columns, [title for title, _ in columns])
    print(header)
    print("-" * len(header))
    for cells in rows:
        print(_row(columns, cells))


def run(*, seeds=(1, 2, 3), build_root="build/bench", largest=(LARGEST, LARGEST_ECP5)):
    """Synthesize, place and route the arrays of :data:`SIZES` (LUT cells),
    :data:`DSP_SIZES` (DSP cell pairs), :data:`DSP4_SIZES` (four-product DSP cells) and
    :data:`SERIAL_SIZES` (bit-serial cells) and print one table each.

    The builds run in parallel, one per CPU core. The tables of :func:`accumulator_savings`
    and of :func:`largest_array` for each of ``largest`` follow.

    Parameters
    ----------
    seeds : tuple of int
        nextpnr placer seeds; each array is placed once per seed.
    build_root : str or pathlib.Path
        Each build is in ``<build_root>/<config name>/seed<seed>``.
    largest : tuple of dict
        The largest-array benchmarks to run (:data:`LARGEST`, :data:`LARGEST_ECP5`).

    Returns
    -------
    list of (ArrayConfig, list of SynthesisResult)
        The measured arrays, those of :data:`SIZES`, of :data:`DSP_SIZES`, of
        :data:`DSP4_SIZES` then of :data:`SERIAL_SIZES`, with one result per seed.
    """
    tables = ([replace(_BASE, rows=rows, cols=cols) for rows, cols in SIZES],
              [replace(_BASE, rows=rows, cols=cols, pe="dsp") for rows, cols in DSP_SIZES],
              [replace(_BASE, rows=rows, cols=cols, pe="dsp4") for rows, cols in DSP4_SIZES],
              [replace(_BASE, rows=rows, cols=cols, pe="serial") for rows, cols in SERIAL_SIZES])

    def build(config, seed):
        return synthesize(SystolicArray(config), seed=seed, name="array",
                          build_dir=Path(build_root) / config.name / f"seed{seed}",
                          synth_options=array_synth_options(config, "ice40"))

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        futures = [[[pool.submit(build, config, seed) for seed in seeds] for config in configs]
                   for configs in tables]
        measured = [[(config, [future.result() for future in row])
                     for config, row in zip(configs, rows)]
                    for configs, rows in zip(tables, futures)]

    reference = _mmacs_per_cell(**REFERENCE)
    print(f"iCE40UP5K-SG48, synth_ice40 (-dsp for DSP cells) + nextpnr-ice40, out of context "
          f"(logic cells exclude the pin harness); fmax: median over seeds "
          f"{', '.join(map(str, seeds))}")
    columns = [("array", 26), ("LCs", 6), ("harness", 9), ("LUT4", 6), ("FF", 6), ("carry", 7),
               ("BRAM", 6), ("DSP", 5), ("fmax MHz", 10), ("range", 13), ("MMAC/s/LC", 11),
               ("vs ref", 8)]
    for kind, table in zip(("LUT cells", "DSP cells", "Four-product DSP cells"), measured):
        medians, density, rows = [], [], []
        for config, results in table:
            first = results[0]      # the cell counts do not depend on the seed
            fmaxes = [result.fmax_mhz for result in results]
            fmax = statistics.median(fmaxes)
            medians.append(fmax)
            mmacs = _mmacs_per_cell(config.rows * config.cols, fmax, first.logic_cells)
            density.append(mmacs / reference)
            rows.append([config.name, first.logic_cells, first.harness_cells, first.luts,
                         first.flip_flops, first.carries, first.brams, first.dsps, f"{fmax:.1f}",
                         f"{min(fmaxes):.1f}-{max(fmaxes):.1f}", f"{mmacs:.3f}",
                         f"{mmacs / reference:.2f}x"])
        rows.append(["reference naive 4x4", REFERENCE["logic_cells"], "", "", "", "", "", "",
                     f"{REFERENCE['fmax_mhz']:.1f}", "", f"{reference:.3f}", f"{1:.2f}x"])
        _print_table(columns, rows)
        ratio = medians[-1] / medians[0]
        (small, _), (large, _) = table[0], table[-1]
        verdict = "met" if ratio >= _FMAX_RATIO_TARGET else "MISSED"
        print(f"{kind}: fmax {large.rows}x{large.cols} / {small.rows}x{small.cols}: "
              f"{ratio:.2f} (target >= {_FMAX_RATIO_TARGET}: {verdict}); MMAC/s per logic cell "
              f"of the {large.rows}x{large.cols}: {density[-1]:.2f}x the reference (target >= "
              f"{_DENSITY_TARGET}: {'met' if density[-1] >= _DENSITY_TARGET else 'MISSED'})")
        print()
    lut_density = {(config.rows, config.cols): _mmacs_per_cell(
        config.rows * config.cols, statistics.median(result.fmax_mhz for result in results),
        results[0].logic_cells) for config, results in measured[0]}
    serial_table(measured[3], seeds, reference, lut_density)
    print()
    accumulator_savings(build_root=build_root)
    for spec in largest:
        print()
        largest_array(spec, seed=seeds[0], build_root=build_root)
    return measured[0] + measured[1] + measured[2] + measured[3]


def serial_table(measured, seeds, reference, lut_density):
    """Print the table of the arrays of bit-serial cells: MMAC/s per logic cell at each of
    :data:`SERIAL_PLANES` activation bits, against the reference and the LUT cells' array of
    the same size where ``lut_density`` (``(rows, cols)`` to MMAC/s per logic cell) has it."""
    planes = SERIAL_PLANES
    print(f"Bit-serial cells (a vector takes as many cycles as its activation bits); fmax: median "
          f"over seeds {', '.join(map(str, seeds))}; MMAC/s per logic cell at A = "
          f"{' and '.join(map(str, planes))}, vs the reference and vs LUT cells")
    columns = [("array", 28), ("LCs", 6), ("LUT4", 6), ("FF", 6), ("carry", 7), ("BRAM", 6),
               ("fmax MHz", 10), ("range", 13)]
    for p in planes:
        columns += [(f"A{p} MMAC/s/LC", 16), ("vs ref", 8), ("vs LUT", 8)]
    medians, density, rows = [], [], []
    for config, results in measured:
        first = results[0]
        fmaxes = [result.fmax_mhz for result in results]
        fmax = statistics.median(fmaxes)
        medians.append(fmax)
        density.append([_mmacs_per_cell(config.rows * config.cols, fmax / p, first.logic_cells)
                        / reference for p in planes])
        row = [config.name, first.logic_cells, first.luts, first.flip_flops, first.carries,
               first.brams, f"{fmax:.1f}", f"{min(fmaxes):.1f}-{max(fmaxes):.1f}"]
        lut = lut_density.get((config.rows, config.cols))
        for p in planes:
            mmacs = _mmacs_per_cell(config.rows * config.cols, fmax / p, first.logic_cells)
            row += [f"{mmacs:.3f}", f"{mmacs / reference:.2f}x",
                    "-" if lut is None else f"{mmacs / lut:.2f}x"]
        rows.append(row)
    _print_table(columns, rows)
    ratio = medians[-1] / medians[0]
    (small, _), (large, _) = measured[0], measured[-1]
    print(f"Bit-serial cells: fmax {large.rows}x{large.cols} / {small.rows}x{small.cols}: "
          f"{ratio:.2f} (target >= {_FMAX_RATIO_TARGET}: "
          f"{'met' if ratio >= _FMAX_RATIO_TARGET else 'MISSED'}); MMAC/s per logic cell of "
          f"the {large.rows}x{large.cols}: "
          + ", ".join(f"{versus:.2f}x the reference at A{p}"
                      for p, versus in zip(planes, density[-1]))
          + f" (target >= {_DENSITY_TARGET} at A{planes[0]}: "
          f"{'met' if density[-1][0] >= _DENSITY_TARGET else 'MISSED'})")


def accumulator_savings(*, build_root="build/bench"):
    """Synthesize the inference engine of the 8x8 W4/A4 array running the default model with the
    narrow and the wide ``P`` of :data:`SAVINGS`, in both overflow modes, count its logic cells
    per component (the netlist packed into logic cells, :mod:`~systolix.boards.breakdown`) and
    print where the narrow accumulator saves them, with the whole engine's ratio against the
    target.

    Parameters
    ----------
    build_root : str or pathlib.Path
        Each build is in ``<build_root>/savings/<config name>``.

    Returns
    -------
    dict
        Overflow mode to ``(narrow, wide, components)``: the engines' logic cells and
        ``{component: (narrow, wide)}`` (``array``, ``accumulator``, ``requantizer_0``, ...).
    """
    base = replace(_BASE, rows=8, cols=8)
    configs = [replace(base, accumulator_bits=p, overflow=overflow)
               for overflow in OVERFLOW_MODES for p in (SAVINGS["narrow"], SAVINGS["wide"])]

    def build(config):
        program = default_program(config)[0]
        images = pack(program, config, fitted_memories(program, config))
        folder = Path(build_root) / "savings" / config.name
        synthesize(InferenceEngine(config, images), device=SAVINGS["device"],
                   package=SAVINGS["package"], place=False, name="engine", build_dir=folder)
        packed = pack_netlist(folder, device=SAVINGS["device"], package=SAVINGS["package"],
                              netlist="engine.json", constraints=None)
        # The out-of-context harness's instance of the engine is "core": its parts are
        # "core.<part>", the engine's own logic (the streams between them) "core".
        return {"(engine's own)" if component == "core" else component.removeprefix("core."):
                counts["logic_cells"]
                for component, counts in cells_by_component(packed, depth=2).items()
                if component == "core" or component.startswith("core.")}

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        tables = list(pool.map(build, configs))
    print(f"Accumulator savings: the inference engine of the 8x8 W4/A4 array and the default "
          f"model, P={SAVINGS['narrow']} against P={SAVINGS['wide']}, logic cells by component "
          f"(synth_ice40, packed for the iCE40{SAVINGS['device'].upper()}, no DSPs)")
    savings = {}
    for overflow, narrow, wide in zip(OVERFLOW_MODES, tables[::2], tables[1::2]):
        columns = [(overflow, 28), ("narrow", 8), ("wide", 8), ("ratio", 7)]
        components = {name: (narrow.get(name, 0), wide.get(name, 0))
                      for name in sorted({*narrow, *wide},
                                         key=lambda name: -wide.get(name, 0))}
        _print_table(columns, [[name, small, large, f"{small / large if large else 1:.2f}"]
                               for name, (small, large) in components.items()])
        small, large = sum(narrow.values()), sum(wide.values())
        verdict = "met" if small / large <= SAVINGS["target"] else "MISSED"
        print(_row(columns, ["engine", small, large, f"{small / large:.2f}"])
              + f"  (target <= {SAVINGS['target']}: {verdict})")
        print()
        savings[overflow] = (small, large, components)
    return savings


def _nextpnr_device(board):
    """The nextpnr device option of a board's FPGA (``iCE40UP5K``: ``up5k``; ``LFE5U-85F``:
    ``85k``, ``LFE5UM-45F``: ``um-45k``)."""
    device = board.platform.device
    if board.family == "ice40":
        return device.lower().removeprefix("ice40")
    kind, size = device.split("-")
    return {"LFE5U": "", "LFE5UM": "um-", "LFE5UM5G": "um5g-"}[kind] + size.lower()[:-1] + "k"


def largest_array(spec=LARGEST, *, seed=1, build_root="build/bench"):
    """Build the accelerator of the default model for ``spec``'s board with each array shape of
    ``spec`` and print which fit, with their resources and speed.

    Each array has the processing element that the board's DSPs hold
    (:func:`~systolix.boards.report.engine_pe`: DSP cells where they fit with the
    requantization lanes, LUT cells otherwise).

    Every build is a whole board build (:func:`~systolix.boards.bitstream.build_bitstream`:
    UART, link, engine, memories) with its clock from timing (``clock="timing"``: the fastest
    clock of the board's PLL that a first place and route meets with a 10 % margin, what
    ``make bitstream`` builds) and timing failures allowed, so that fmax is reported whatever
    it is. The table prints MACs per cycle, fmax, that clock and GOPS at it; the aim is judged
    on the clock.

    Parameters
    ----------
    spec : dict
        ``board``, ``shapes`` (most MACs first), ``macs_per_cycle`` and ``clock_mhz`` (or
        ``None``) of the aim: :data:`LARGEST` or :data:`LARGEST_ECP5`.
    seed : int
        nextpnr placer seed.
    build_root : str or pathlib.Path
        Each build is in ``<build_root>/largest/<board>-<config name>``.

    Returns
    -------
    list of (ArrayConfig, dict or SynthesisError)
        Per shape, the build's report (``report.json``), or the error naming what overflowed
        (:class:`~systolix.boards.synth.DesignDoesNotFit`) or why the build failed.
    """
    base = board_named(spec["board"])
    boards = []
    for rows, cols in spec["shapes"]:
        config = engine_pe(replace(base.config, rows=rows, cols=cols), base.family,
                           _nextpnr_device(base), base.requant_lanes)
        program = default_program(config)[0]
        boards.append((replace(base, config=config, memories=fitted_memories(program, config)),
                       program))

    def build(chosen, program):
        # The builds run in threads: every path absolute, and a failed build is a row of the
        # table, not the end of the benchmark.
        try:
            return build_bitstream(chosen, program, seed=seed, allow_timing_failure=True,
                                   clock="timing", out=Path(build_root).absolute() / "largest" /
                                   f"{chosen.name}-{chosen.config.name}")
        except (SynthesisError, ValueError) as error:    # ValueError: an out not the build's
            return error

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        results = list(pool.map(lambda pair: build(*pair), boards))
    device = f"{base.platform.device}-{base.platform.package}"
    speed = "" if spec["clock_mhz"] is None else f" clocked at >= {spec['clock_mhz']:g} MHz"
    print(f"Largest array of the default model's accelerator on the {base.name} ({device}), "
          f"seed {seed}; aim: >= {spec['macs_per_cycle']} MACs/cycle{speed}")
    columns = [("array", 26), ("MACs/cycle", 11), ("LCs", 7), ("BRAM", 6), ("DSP", 5),
               ("fmax MHz", 10), ("clock MHz", 11), ("GOPS", 7), ("inf/s", 10),
               ("UART inf/s", 12), ("fits", None)]
    largest, rows = None, []
    for (chosen, _), result in zip(boards, results):
        config = chosen.config
        macs = config.rows * config.cols
        if isinstance(result, DesignDoesNotFit):
            over = ", ".join(f"{name} {used}/{available}"
                             for name, (used, available) in result.overflows.items())
            rows.append([config.name, macs, *[""] * 8, f"no: {over}"])
            continue
        if isinstance(result, (SynthesisError, ValueError)):
            rows.append([config.name, macs, *[""] * 8,
                         f"failed: {str(result).splitlines()[0]}"])
            continue
        resources = result["resources"]
        fmax = min(result["fmax_mhz"].values())
        rows.append([config.name, macs, resources["logic_cells"]["used"],
                     resources["brams"]["used"], resources["dsps"]["used"], f"{fmax:.1f}",
                     f"{result['clock_mhz']:g}", f"{result['gops_at_clock']:.2f}",
                     f"{result['inferences_per_second']:,.0f}",
                     f"{result['uart_inferences_per_second']:,.0f}", "yes"])
        if largest is None or macs > largest[1]:
            largest = (config, macs, fmax, result["clock_mhz"], result["gops_at_clock"])
    _print_table(columns, rows)
    if largest is None:
        print("no shape fits")
    else:
        config, macs, fmax, clock, gops = largest
        met = macs >= spec["macs_per_cycle"] and (spec["clock_mhz"] is None
                                                  or clock >= spec["clock_mhz"])
        print(f"largest that fits: {config.name}, {macs} MACs/cycle, fmax {fmax:.1f} MHz, "
              f"clocked at {clock:g} MHz, {gops:.2f} GOPS (aim: {'met' if met else 'MISSED'})")
    return [(chosen.config, result) for (chosen, _), result in zip(boards, results)]
