"""Size and speed of the systolic array on an iCE40UP5K, against a naive reference array.

Each array is synthesized with ``synth_ice40`` and placed and routed with nextpnr out of context,
as :func:`systolix.boards.synth.synthesize` does; the harness's cells are left out of the logic
cell counts. The placement, and with it fmax, changes with the placer seed (by about 10 % on these
arrays), so each array is placed with a few fixed seeds and the median fmax is used, with the range
printed beside it. The figure of merit is MAC/s per logic cell, ``rows * cols * fmax / cells``,
compared with a naive output-stationary 4x4 W4/A4 array measured with the same tools (1,005 logic
cells at 38.9 MHz: 0.62 MMAC/s per cell). A systolic array should also keep its clock as it grows:
the 8x8 array's fmax should be at least 0.9 of the 2x2 array's.
"""

import os
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray

from .synth import synthesize

__all__ = ["REFERENCE", "SIZES", "run"]

REFERENCE = {"macs": 4 * 4, "logic_cells": 1005, "fmax_mhz": 38.9}
"""The naive output-stationary 4x4 W4/A4 array on an iCE40UP5K (DESIGN.md, section 7)."""

SIZES = ((2, 2), (8, 8))
"""``(rows, cols)`` of the arrays measured; the fmax ratio is last over first."""

_BASE = ArrayConfig(weight_bits=4, activation_bits=4, accumulator_bits=16)
_FMAX_RATIO_TARGET = 0.9


def _mmacs_per_cell(macs, fmax_mhz, logic_cells):
    return macs * fmax_mhz / logic_cells


def run(*, seeds=(1, 2, 3), build_root="build/bench"):
    """Synthesize, place and route the arrays of :data:`SIZES` and print one table.

    The builds run in parallel, one per CPU core.

    Parameters
    ----------
    seeds : tuple of int
        nextpnr placer seeds; each array is placed once per seed.
    build_root : str or pathlib.Path
        Each build is in ``<build_root>/<config name>/seed<seed>``.

    Returns
    -------
    list of (ArrayConfig, list of SynthesisResult)
        The measured arrays, in the order of :data:`SIZES`, with one result per seed.
    """
    configs = [replace(_BASE, rows=rows, cols=cols) for rows, cols in SIZES]

    def build(config, seed):
        return synthesize(SystolicArray(config), seed=seed, name="array",
                          build_dir=Path(build_root) / config.name / f"seed{seed}")

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        futures = [[pool.submit(build, config, seed) for seed in seeds] for config in configs]
        measured = [(config, [future.result() for future in row])
                    for config, row in zip(configs, futures)]

    reference = _mmacs_per_cell(**REFERENCE)
    print(f"iCE40UP5K-SG48, synth_ice40 + nextpnr-ice40, out of context (logic cells exclude "
          f"the pin harness); fmax: median over seeds {', '.join(map(str, seeds))}")
    header = (f"{'array':<22}{'LCs':>6}{'harness':>9}{'LUT4':>6}{'FF':>6}{'carry':>7}"
              f"{'BRAM':>6}{'fmax MHz':>10}{'range':>13}{'MMAC/s/LC':>11}{'vs ref':>8}")
    print(header)
    print("-" * len(header))
    medians = []
    for config, results in measured:
        first = results[0]      # the cell counts do not depend on the seed
        fmaxes = [result.fmax_mhz for result in results]
        fmax = statistics.median(fmaxes)
        medians.append(fmax)
        mmacs = _mmacs_per_cell(config.rows * config.cols, fmax, first.logic_cells)
        spread = f"{min(fmaxes):.1f}-{max(fmaxes):.1f}"
        print(f"{config.name:<22}{first.logic_cells:>6}{first.harness_cells:>9}"
              f"{first.luts:>6}{first.flip_flops:>6}{first.carries:>7}{first.brams:>6}"
              f"{fmax:>10.1f}{spread:>13}{mmacs:>11.3f}{mmacs / reference:>7.2f}x")
    print(f"{'reference naive 4x4':<22}{REFERENCE['logic_cells']:>6}{'':>34}"
          f"{REFERENCE['fmax_mhz']:>10.1f}{'':>13}{reference:>11.3f}{1:>7.2f}x")
    ratio = medians[-1] / medians[0]
    verdict = "met" if ratio >= _FMAX_RATIO_TARGET else "MISSED"
    (small_rows, small_cols), (large_rows, large_cols) = SIZES[0], SIZES[-1]
    print(f"fmax {large_rows}x{large_cols} / {small_rows}x{small_cols}: {ratio:.2f} "
          f"(target >= {_FMAX_RATIO_TARGET}: {verdict})")
    return measured
