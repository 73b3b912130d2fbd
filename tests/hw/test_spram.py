"""The single-port memory: its behavioural model in Amaranth's simulator, and its SPRAM blocks on
the iCE40 UltraPlus."""

import shutil

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from systolix.boards.cell_models import cell_models
from systolix.config import ArrayConfig
from systolix.hw.spram import SinglePortMemory, uses_spram
from systolix.memory_map import (SPRAM_WORDS, SpramLayout, spram_blocks, spram_layout,
                                 spram_weight_words)
from systolix.sim.runner import run_cocotb_sources


needs_icarus = pytest.mark.skipif(
    shutil.which("iverilog") is None or shutil.which("vvp") is None,
    reason="the SPRAM's cell model runs on Icarus Verilog, which is not installed (iverilog "
           "and vvp are not on PATH; Debian: apt-get install iverilog)")


@pytest.mark.parametrize("width, depth", [(16, 40000), (9, 5)])
def test_reads_what_was_written_and_holds_its_data(width, depth):
    memory = SinglePortMemory(width, depth)
    rng = np.random.default_rng(width)
    written = {}

    async def testbench(ctx):
        for _ in range(300):
            address, word = int(rng.integers(depth)), int(rng.integers(1 << width))
            # A write takes the address: the read port's request in that cycle is not served.
            ctx.set(memory.write.addr, address)
            ctx.set(memory.write.data, word)
            ctx.set(memory.write.en, 1)
            ctx.set(memory.read.en, 1)
            ctx.set(memory.read.addr, address)
            before = ctx.get(memory.read.data)
            await ctx.tick()
            assert ctx.get(memory.read.data) == before
            written[address] = word
        ctx.set(memory.write.en, 0)
        for address, word in written.items():
            ctx.set(memory.read.addr, address)
            ctx.set(memory.read.en, 1)
            await ctx.tick()
            ctx.set(memory.read.en, 0)
            ctx.set(memory.read.addr, (address + 1) % depth)
            await ctx.tick()
            assert ctx.get(memory.read.data) == word      # held while en is low

    sim = Simulator(memory)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


def test_on_an_ice40_ultraplus_it_is_spram_blocks():
    assert uses_spram(ICEBreakerPlatform()) and not uses_spram(ULX3S_85F_Platform())
    assert not uses_spram(None)
    # 24-bit words, 20,000 deep: 2 banks, as two words a row of 3 blocks side by side (48 bits),
    # not 2 blocks (32 bits) a bank.
    memory = SinglePortMemory(24, 20000)
    assert memory.layout == SpramLayout(24, 20000, columns=3, fields=2)
    assert memory.blocks == spram_blocks(24, 20000) == 3
    text = rtlil.convert(memory, platform=ICEBreakerPlatform())
    assert text.count("cell \\SB_SPRAM256KA") == 3 and "$mem" not in text
    behavioural = rtlil.convert(SinglePortMemory(24, 20000))
    assert "SB_SPRAM256KA" not in behavioural and "$mem" in behavioural


@pytest.mark.parametrize("width, depth, layout", [
    (16, 65536, SpramLayout(16, 65536, columns=1, fields=1)),    # 4 banks of one block
    (20, 49152, SpramLayout(20, 49152, columns=4, fields=3)),    # 3 words a row of 64 bits
    (32, 32768, SpramLayout(32, 32768, columns=2, fields=1)),    # 2 banks of 2 blocks
    (24, 20000, SpramLayout(24, 20000, columns=3, fields=2)),
    (9, 5, SpramLayout(9, 5, columns=1, fields=1)),
])
def test_the_layout_takes_the_fewest_blocks(width, depth, layout):
    assert spram_layout(width, depth) == layout
    assert layout.blocks == min(
        columns * -(-layout.banks // (16 * columns // layout.field_bits))
        for columns in range(-(-width // 16), 9) if 16 * columns >= layout.field_bits)


@pytest.mark.cocotb
@needs_icarus
@pytest.mark.parametrize("width, depth", [(20, 49152), (24, 20000), (16, 40000)])
def test_spram_blocks_hold_every_field_apart(width, depth, tmp_path):
    """The memory's SB_SPRAM256KA blocks, simulated with Yosys's cell model on Icarus: words
    written into every field of the same rows (each written through the nibble write masks
    of its own) read back as written, in any order."""
    memory = SinglePortMemory(width, depth)
    build = tmp_path / "spram"
    build.mkdir()
    source = build / "spram.v"
    source.write_text(verilog.convert(memory, name="spram", platform=ICEBreakerPlatform(),
                                      emit_src=False))
    sources, includes, defines, options = cell_models("ice40", build, ["SB_SPRAM256KA"])
    rng = np.random.default_rng(width)
    # Rows 0, 1 and the last of every bank: neighbouring fields of one row, and each bank's ends.
    addresses = [address for bank in range(memory.layout.banks)
                 for row in (0, 1, SPRAM_WORDS - 1)
                 if (address := bank * SPRAM_WORDS + row) < depth]
    operations, expected, memory_words = [], [], {}
    for step in range(6 * len(addresses)):
        address = int(rng.choice(addresses))
        if address not in memory_words or rng.random() < 0.5:
            memory_words[address] = int(rng.integers(1 << width))
            operations.append([1, address, memory_words[address]])
        else:
            operations.append([0, address, 0])
            expected.append(memory_words[address])
    for address in rng.permutation(addresses):
        if int(address) in memory_words:
            operations.append([0, int(address), 0])
            expected.append(memory_words[int(address)])
    report = run_cocotb_sources([source, *sources], "spram", "systolix.sim.testbench.memory",
                                {"operations": operations}, simulator="icarus",
                                build_dir=build, build_args=options, includes=includes,
                                defines=defines)
    assert report["reads"] == expected


def test_the_up5k_spram_holds_65536_words_of_a_4_column_w4_array():
    assert spram_weight_words(ArrayConfig(rows=8, cols=4), 4) == 65536
    assert spram_weight_words(ArrayConfig(rows=8, cols=8), 4) == 32768
    # 5 columns: 3 words of 20 bits in each 64-bit row of the 4 blocks (245,760 weights).
    assert spram_weight_words(ArrayConfig(rows=8, cols=5), 4) == 49152
    assert spram_weight_words(ArrayConfig(rows=8, cols=5, weight_bits=8), 4) == 16384
