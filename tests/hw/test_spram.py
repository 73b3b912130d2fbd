"""The single-port memory: its behavioural model in Amaranth's simulator, and its SPRAM blocks on
the iCE40 UltraPlus."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from systolix.config import ArrayConfig
from systolix.hw.spram import SinglePortMemory, uses_spram
from systolix.memory_map import spram_blocks, spram_weight_words


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
    # 24-bit words, 20,000 deep: 2 blocks wide, 2 banks.
    memory = SinglePortMemory(24, 20000)
    assert memory.blocks == spram_blocks(24, 20000) == 4
    text = rtlil.convert(memory, platform=ICEBreakerPlatform())
    assert text.count("cell \\SB_SPRAM256KA") == 4 and "$mem" not in text
    behavioural = rtlil.convert(SinglePortMemory(24, 20000))
    assert "SB_SPRAM256KA" not in behavioural and "$mem" in behavioural


def test_the_up5k_spram_holds_65536_words_of_a_4_column_w4_array():
    assert spram_weight_words(ArrayConfig(rows=8, cols=4), 4) == 65536
    assert spram_weight_words(ArrayConfig(rows=8, cols=8), 4) == 32768
    assert spram_weight_words(ArrayConfig(rows=8, cols=5, weight_bits=8), 4) == 16384
