"""Gate-level simulation: the accelerator of the iCEBreaker (synth_ice40) and of the ULX3S
(synth_ecp5), Yosys's netlist with the family's cell models on Icarus, driven end to end by
the driver through the accelerator testbench, against the golden model, the cycle model and the
RTL of the same design. The first 10 test images of the default model (one RUN frame), about a
minute of CPU a family; skipped without ``iverilog``. The netlist's block RAM contents are
checked without tools too."""

import re
import shutil

import numpy as np
import pytest

from systolix.boards.cell_models import ECP5_MODELS, cell_models
from systolix.boards.gatelevel import (FAMILY_BOARDS, _block_ram_slices, netlist_block_rams,
                                       run_gate_level)
from systolix.boards.patch import block_ram_slices, memory_slices
from systolix.boards.tops import BOARDS
from systolix.sw.default import default_program

IMAGES = 10

needs_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="gate-level simulation runs on Icarus Verilog, which is not installed (iverilog "
           "and vvp are not on PATH; Debian: apt-get install iverilog)")


@pytest.mark.toolchain
@needs_icarus
# The ECP5 netlist (the longer run: 2 minutes) in the slow tier; CI checks the iCE40 one.
@pytest.mark.parametrize("family", ["ice40", pytest.param("ecp5", marks=pytest.mark.slow)])
def test_netlist_computes_as_the_rtl(family, tmp_path):
    board = BOARDS[FAMILY_BOARDS[family]]
    program, data, _ = default_program(board.config)
    codes = program.encode_input(data.x_test)[:IMAGES]
    figures = run_gate_level(board, program, codes, build_root=tmp_path)
    assert figures["mismatches"] == figures["rtl_mismatches"] == 0
    assert figures["cycles"] == figures["rtl_cycles"] == figures["modelled_cycles"]
    assert figures["link_cycles"] == figures["rtl_link_cycles"]
    assert figures["cycle_mismatches"] == 0
    assert figures["block_rams"] == figures["cells"]["brams"] > 0
    # The iCEBreaker's weights are in its 4 SPRAMs (Yosys's SB_SPRAM256KA model), uploaded.
    assert figures["cells"]["sprams"] == (4 if board.memories.upload_weights else 0)
    assert figures["initialised"] > 0
    for name, (stored, width) in figures["memories"].items():
        # ECP5: the two reserved bits of the requantization word are left out.
        assert stored == width or (family, name, width - stored) == ("ecp5", "requant", 2)


def _ice40_netlist(words):
    """A netlist with one SB_RAM40_4K holding ``words`` (256 words of 16 bits)."""
    data = sum(word << (16 * index) for index, word in enumerate(words))
    lines = [f"    .INIT_{index:X}(256'h{(data >> (256 * index)) & (2**256 - 1):064x}),"
             for index in range(16)]
    return "  SB_RAM40_4K #(\n" + "\n".join(lines) + "\n    .READ_MODE(2'h0)\n  ) ram (\n  );\n"


def _ecp5_netlist(words):
    """A netlist with one DP16KD holding ``words`` (1024 words of 18 bits, as Yosys's
    brams_map_16kd.v places them: 16 a parameter, each in 20 bits)."""
    lines = []
    for index in range(64):
        value = sum(words[16 * index + slot] << (20 * slot) for slot in range(16))
        lines.append(f"    .INITVAL_{index:02X}(320'h{value:080x}),")
    return "  DP16KD #(\n" + "\n".join(lines) + "\n    .GSR(\"DISABLED\")\n  ) ram (\n  );\n"


@pytest.mark.parametrize("family", ["ice40", "ecp5"])
def test_block_ram_contents_are_read_as_the_patcher_reads_them(family, tmp_path):
    rng = np.random.default_rng(1)
    if family == "ice40":
        words = rng.integers(0, 2**16, 256).tolist()
        text, placed = _ice40_netlist(words), tmp_path / "top.asc"
        data = sum(word << (16 * index) for index, word in enumerate(words))
        placed.write_text(".ram_data 0 0\n" + "".join(
            f"{(data >> (256 * line)) & (2**256 - 1):064x}\n" for line in range(16)))
        width, memory = 16, words
    else:
        words = rng.integers(0, 2**18, 1024).tolist()
        text, placed = _ecp5_netlist(words), tmp_path / "top.config"
        nine = [(word >> (9 * half)) & 0x1FF for word in words for half in (0, 1)]
        placed.write_text(".bram_init 0\n" + "".join(
            " ".join(f"{value:03x}" for value in nine[row:row + 8]) + "\n"
            for row in range(0, 2048, 8)))
        width, memory = 9, nine[:512]
    blocks = netlist_block_rams(text, family)
    assert len(blocks) == 1
    # The same bits as the placed design's, so the same slices as the patcher finds.
    assert _block_ram_slices(blocks, family) == block_ram_slices(family, placed)
    assert set(memory_slices(memory, width, family)) <= _block_ram_slices(blocks, family)


def test_every_cell_needs_a_model(tmp_path):
    with pytest.raises(ValueError, match="SB_NO_SUCH_CELL"):
        cell_models("ice40", tmp_path, ["SB_LUT4", "SB_NO_SUCH_CELL"])
    sources, includes, defines, options = cell_models("ecp5", tmp_path,
                                                      ["LUT4", "DP16KD", "MULT18X18D"])
    text = sources[0].read_text()
    assert ECP5_MODELS in text and "module TRELLIS_FF" in text and "TRELLIS_COMB" not in text
    assert options == ["-g2005"] and not re.search(r"^\s*`include", text, re.MULTILINE)
