"""``systolix bitstream``, ``systolix report`` and ``systolix sweep``: bitstreams of a model's
accelerator for a board, and resources, speed and power of the array.

``systolix bitstream`` builds the accelerator of a model for a board of
:data:`systolix.boards.tops.BOARDS` (:mod:`systolix.boards.bitstream`).

``systolix report`` synthesizes, places and routes one array configuration, estimates its power
under a random full-rate workload, and writes ``report.json``, ``report.md`` and ``report.png``
(:mod:`systolix.boards.report`). ``systolix sweep`` does the resources and speed of a grid of
configurations, in parallel and cached, and writes ``sweep.json``, ``sweep.md``,
``cells_per_mac.png`` and ``fmax.png`` (:mod:`systolix.boards.sweep`).
"""

import re
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from systolix.config import OVERFLOW_MODES, PE_KINDS, ArrayConfig
from systolix.files import OutputError, check_output_folder, output_folder
from systolix.sw.default import WORKLOADS
from systolix.sw.pack import pack
from systolix.sw.program import IntegerProgram
from systolix.boards.bitstream import (CLOCK_MARGIN, CLOCKS, build_bitstream,
                                        first_pass_clock)
from systolix.boards.patch import PatchError, patch_bitstream, read_build
from systolix.boards.report import array_report, engine_pe, engine_report, write_report
from systolix.boards.synth import FAMILIES, DesignDoesNotFit, SynthesisError, choose_pe
from systolix.boards.tops import BOARDS, board as board_named
from systolix.boards.sweep import GRIDS, SweepTarget, grid, run_sweep, sweep_rows, write_sweep

from .options import add_model_source, integer, number

__all__ = ["register"]


def _check_fits(args, program, board):
    """Raise a :class:`ValueError` naming ``--model`` unless ``program`` packs into the memories
    of ``board``'s accelerator."""
    try:
        pack(program, board.config, board.memories)
    except ValueError as error:
        model = f"--model {args.model}" if args.model is not None else \
            f"--workload {args.workload}" if getattr(args, "workload", None) else \
            "the default model"
        raise ValueError(f"{model}: does not fit the {board.name}'s {board.config.name} "
                         f"accelerator: {error}") from None

SEEDS = integer(0, 2 ** 31 - 1)
"""nextpnr's placer seeds."""

_DEFAULTS = {field.name: field.default for field in fields(ArrayConfig)}


def _shapes(text):
    """``"2x2,4x8"`` as ``[(2, 2), (4, 8)]``; ``None`` stays ``None``."""
    if text is None:
        return None
    if not re.fullmatch(r"\d+x\d+(,\d+x\d+)*", text):
        raise ValueError(f"--shapes must be ROWSxCOLS[,ROWSxCOLS...] such as 2x2,8x8, "
                         f"not {text!r}")
    return [tuple(int(n) for n in shape.split("x")) for shape in text.split(",")]


def _integers(option, text):
    """``"2,4,8"`` as ``[2, 4, 8]``; ``None`` stays ``None``."""
    if text is None:
        return None
    if not re.fullmatch(r"\d+(,\d+)*", text):
        raise ValueError(f"{option} must be integers separated by commas such as 2,4,8, "
                         f"not {text!r}")
    return [int(item) for item in text.split(",")]


def _add_target(parser):
    parser.add_argument("--family", choices=tuple(FAMILIES), default="ice40",
                        help="FPGA family (default: ice40)")
    parser.add_argument("--device", help="nextpnr device, e.g. up5k, hx8k, 85k (default: the "
                                         "family's: up5k, 85k)")
    parser.add_argument("--package", help="package (default: the family's: sg48, CABGA381)")
    parser.add_argument("--seed", type=SEEDS, default=1,
                        help="nextpnr placer seed, 0..2^31-1 (default: 1)")


def register(subparsers):
    """Add the ``bitstream``, ``report`` and ``sweep`` subcommands to an :mod:`argparse`
    subparsers object."""
    bitstream = subparsers.add_parser(
        "bitstream", help="build the accelerator of a model for a board",
        description="Pack a model for a board's accelerator, synthesize, place and route it with "
                    "the YoWASP tools and write the bitstream, the Verilog, the logs, the memory "
                    "images and report.json / report.md into the output folder.")
    bitstream.add_argument("--board", required=True,
                           help=f"one of {', '.join(BOARDS)}")
    add_model_source(bitstream, "the board's array", tuple(WORKLOADS))
    bitstream.add_argument("--seed", type=SEEDS, default=1,
                           help="nextpnr placer seed, 0..2^31-1 (default: 1)")
    bitstream.add_argument("--allow-timing-failure", action="store_true",
                           help="keep a design slower than the board's clock")
    bitstream.add_argument("--clock", choices=CLOCKS, default="timing",
                           help="timing (the default): the fastest clock the board's PLL makes "
                                "that a first place and route meets with --clock-margin; "
                                "fixed: the board's clock (also the fallback when no PLL "
                                "clock is found or its build fails)")
    bitstream.add_argument("--clock-margin", type=number(0, 1, low_open=False),
                           default=CLOCK_MARGIN, metavar="FRACTION",
                           help=f"fmax over the clock from timing, less 1 (default: "
                                f"{CLOCK_MARGIN:g}, that is 10 %%)")
    bitstream.add_argument("--out", type=Path,
                           help="output folder: new, empty or an earlier bitstream build's "
                                "(default: build/bitstream/BOARD)")
    bitstream.set_defaults(run=run_bitstream)

    patch = subparsers.add_parser(
        "patch", help="put another model into a built bitstream without place and route",
        description="Rewrite the block RAMs that hold the model in a bitstream built by "
                    "`systolix bitstream` (icebram / ecpbram), pack the new bitstream and read "
                    "the memories back out of it.")
    patch.add_argument("--build", type=Path, required=True,
                       help="the bitstream's build folder, e.g. build/bitstream/ulx3s-85f")
    patch.add_argument("--model", type=Path, required=True, help="an IntegerProgram file")
    patch.add_argument("--out", type=Path, help="output folder: new, empty or an earlier "
                       "patch's (default: BUILD-patched)")
    patch.set_defaults(run=run_patch)

    report = subparsers.add_parser(
        "report", help="resources, fmax and power of one array or of a model's engine",
        description="Synthesize, place and route one array configuration (or, with --engine "
                    "or --model, the inference engine of a model on that array) out of context, "
                    "estimate its power under a random full-rate workload (or a simulated run "
                    "of the model), and write report.json, report.md and report.png.")
    report.add_argument("--engine", action="store_true",
                        help="the whole inference engine of the model, not the array alone")
    report.add_argument("--model", type=Path, help="the engine's IntegerProgram file (implies "
                        "--engine; default: the digits MLP quantized for the array)")
    report.add_argument("--requant-lanes", type=integer(1), metavar="N",
                        help="the engine's requantization lanes (default: 2 where they divide "
                             "rows and cols, else 1)")
    for name in ("rows", "cols", "weight_bits", "activation_bits", "accumulator_bits"):
        report.add_argument(f"--{name.replace('_', '-')}", type=int, default=_DEFAULTS[name],
                            help=f"(default: {_DEFAULTS[name]})")
    for name in ("weight", "activation"):
        default = _DEFAULTS[f"{name}_signed"]
        report.add_argument(f"--{name}-signed", action="store_true", default=default,
                            help=f"two's complement {name} codes"
                                 f"{' (the default)' if default else ''}")
        report.add_argument(f"--{name}-unsigned", dest=f"{name}_signed", action="store_false",
                            help=f"unsigned {name} codes{'' if default else ' (the default)'}")
    report.add_argument("--overflow", choices=OVERFLOW_MODES, default=_DEFAULTS["overflow"],
                        help=f"(default: {_DEFAULTS['overflow']})")
    report.add_argument("--pe", choices=("auto", *PE_KINDS), default="auto",
                        help="processing element: lut, dsp (two columns share a DSP "
                             "multiplier), dsp4 (four columns share one), serial or auto, what "
                             "fits the device (default: auto)")
    _add_target(report)
    report.add_argument("--frequency", type=number(0), metavar="MHZ",
                        help="clock of the power and energy figures, above 0 (default: fmax)")
    report.add_argument("--cycles-per-inference", type=integer(1), metavar="N",
                        help="cycles one inference takes, for latency and energy per inference")
    report.add_argument("--out", type=Path, default=Path("build/report"),
                        help="output folder: new, empty or an earlier report's (default: "
                             "build/report)")
    report.set_defaults(run=run_report)

    sweep = subparsers.add_parser(
        "sweep", help="resources and fmax of the array over widths and shapes",
        description="Synthesize, place and route a grid of array configurations (in parallel, "
                    "cached in BUILD/cache) and write sweep.json, sweep.md, cells_per_mac.png "
                    "and fmax.png.")
    sweep.add_argument("--grid", choices=tuple(GRIDS), default="default",
                       help="named grid (default: default, 31 designs; full: 960)")
    sweep.add_argument("--shapes", metavar="RxC,...",
                       help="product grid: array shapes, e.g. 2x2,4x4")
    sweep.add_argument("--widths", metavar="B,...",
                       help="product grid: weight and activation bits, e.g. 2,4,8")
    sweep.add_argument("--accumulator-bits", metavar="P,...",
                       help="product grid: accumulator bits, e.g. 8,16,32")
    _add_target(sweep)
    sweep.add_argument("--jobs", type=int, help="local builds at a time (default: 2)")
    sweep.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the builds on this Dask scheduler, e.g. tcp://host:8786")
    sweep.add_argument("--build", type=Path, default=Path("build/sweep-builds"),
                       help="builds and cache, outside --out (default: build/sweep-builds)")
    sweep.add_argument("--out", type=Path, default=Path("build/sweep"),
                       help="output folder: new, empty or an earlier sweep's (default: "
                            "build/sweep)")
    sweep.add_argument("--no-progress", dest="progress", action="store_false",
                       help="no progress bar")
    sweep.set_defaults(run=run_sweep_command)


def run_bitstream(args):
    """Carry out ``systolix bitstream``; returns the exit status."""
    board = board_named(args.board)
    out = args.out or Path("build/bitstream") / board.name
    check_output_folder(out, "bitstream")
    if args.model is None:
        from systolix.sw.default import default_program
        program = default_program(board.config, args.workload or "digits-mlp")[0]
    else:
        program = IntegerProgram.load(args.model)
    _check_fits(args, program, board)
    clock = (f"a clock from timing (a first place and route at {first_pass_clock(board):g} MHz "
             f"finds fmax, then the PLL's fastest clock at most fmax / {1 + args.clock_margin:g})"
             if args.clock == "timing" else f"{board.clock_mhz:g} MHz")
    print(f"systolix bitstream: {board.config.name} accelerator for the {board.name} "
          f"({board.platform.device}) at {clock} into {out}", flush=True)
    try:
        report = build_bitstream(board.name, program, out=out, seed=args.seed,
                                 allow_timing_failure=args.allow_timing_failure,
                                 clock=args.clock, margin=args.clock_margin)
    except SynthesisError as error:
        print(f"systolix bitstream: error: {error}", file=sys.stderr)
        return 1
    if report["clock"]["fallback"]:
        print(f"systolix bitstream: the fixed {report['clock_mhz']:g} MHz clock: "
              f"{report['clock']['fallback']}")
    print((out / "report.md").read_text(), end="")
    print(f"wrote {out / ('top' + board.bitstream_suffix)} in {report['build_seconds']:.0f} s")
    return 0


def run_patch(args):
    """Carry out ``systolix patch``; returns the exit status."""
    built = read_build(args.build)  # the build folder first: bad input before any work
    out = args.out or args.build.with_name(args.build.name + "-patched")
    check_output_folder(out, "patch")
    program = IntegerProgram.load(args.model)
    _check_fits(args, program, board_named(built["board"]))
    started = time.perf_counter()
    try:
        summary = patch_bitstream(args.build, program, out=out)
    except PatchError as error:
        # The build folder or the model: bad input.
        raise ValueError(str(error)) from None
    except SynthesisError as error:
        print(f"systolix patch: error: {error}", file=sys.stderr)
        return 1
    changed = ", ".join(f"{name} ({words} words)" for name, words in
                        summary["changed_words"].items()) or "nothing"
    print(f"patched {changed} of the {summary['board']} bitstream in "
          f"{time.perf_counter() - started:.1f} s; read back from the new bitstream: "
          f"{summary['read_back']}")
    if board_named(summary["board"]).memories.upload_weights:
        print(f"the {summary['board']}'s weights are in SPRAM, not in the bitstream: the "
              f"driver uploads the model's weights when it opens the board (systolix run)")
    return 0


def run_report(args):
    """Carry out ``systolix report``; returns the exit status."""
    config = ArrayConfig(**{field.name: getattr(args, field.name) for field in fields(ArrayConfig)
                            if field.name != "pe"})
    engine = args.engine or args.model is not None
    if args.pe != "auto":
        config = replace(config, pe=args.pe)
    elif engine:
        config = engine_pe(config, args.family, args.device, args.requant_lanes)
    else:
        config = choose_pe(config, args.family, args.device)
    if engine and args.cycles_per_inference is not None:
        raise ValueError("--cycles-per-inference is for the array alone; the engine's come "
                         "from its model")
    program = None
    if args.model is not None:
        program = IntegerProgram.load(args.model)
    check_output_folder(args.out, "report")
    try:
        with output_folder(args.out, "report") as folder:
            target = dict(family=args.family, device=args.device, package=args.package,
                          seed=args.seed, frequency_mhz=args.frequency,
                          build_dir=folder / "build")
            if engine:
                if program is None:
                    from systolix.sw.default import default_program
                    program = default_program(config)[0]
                report = engine_report(config, program, requant_lanes=args.requant_lanes,
                                       **target)
            else:
                report = array_report(config, cycles_per_inference=args.cycles_per_inference,
                                      **target)
            paths = write_report(report, folder)
    except DesignDoesNotFit as error:
        print(f"systolix report: error: {error}", file=sys.stderr)
        return 1
    paths = {kind: args.out / path.relative_to(folder) for kind, path in paths.items()}
    resources, power = report["resources"], report["power"]
    total = "-" if power["total_mw"] is None else f"{power['total_mw']:.2f} mW"
    print(f"{report['design']} on {report['target']['device']}: {resources['logic_cells']:,} "
          f"logic cells, {resources['flip_flops']:,} flip-flops, {resources['brams']} block RAMs, "
          f"fmax {report['fmax_mhz']:.1f} MHz, {report['gops']:.2f} GOPS, "
          f"{report['cells_per_mac']:.1f} cells/MAC, {total} at {report['clock_mhz']:.1f} MHz")
    inference = report["inference"]
    if inference is not None:
        energy = "-" if inference["energy_uj"] is None else f"{inference['energy_uj']:.3f} uJ"
        print(f"{inference['cycles']:,.1f} cycles, {inference['latency_us']:.2f} us and {energy} "
              f"per inference")
    print(f"wrote {', '.join(str(path) for path in paths.values())}")
    return 0


def run_sweep_command(args):
    """Carry out ``systolix sweep``; returns the exit status."""
    configs = grid(args.grid, shapes=_shapes(args.shapes),
                   widths=_integers("--widths", args.widths),
                   accumulator_bits=_integers("--accumulator-bits", args.accumulator_bits))
    target = SweepTarget(family=args.family, device=args.device, package=args.package,
                         seed=args.seed)
    target.resolved()
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"jobs must be a positive integer, not {args.jobs!r}")
    build, out = args.build.absolute(), args.out.absolute()
    if build == out or build.is_relative_to(out):
        raise OutputError(f"--build {args.build}: is inside --out {args.out}, which a sweep "
                          f"replaces; allowed: a folder outside --out (default: "
                          f"build/sweep-builds)")
    check_output_folder(args.out, "sweep")
    started = time.perf_counter()
    with output_folder(args.out, "sweep") as folder:
        rows = sweep_rows(run_sweep(configs, target, jobs=args.jobs, scheduler=args.scheduler,
                                    build_root=args.build, progress=args.progress))
        paths = write_sweep(rows, folder)
    paths = {kind: args.out / path.relative_to(folder) for kind, path in paths.items()}
    placed = [row for row in rows if row["logic_cells"] is not None]
    errors = [abs(row["estimate_error"]["logic_cells"]) for row in placed]
    print(f"{len(rows)} designs ({len(rows) - len(placed)} did not fit) in "
          f"{time.perf_counter() - started:.0f} s; estimator, logic cells: largest error "
          f"{100 * max(errors, default=0):.1f} %")
    print(f"wrote {', '.join(str(path) for path in paths.values())}")
    return 0
