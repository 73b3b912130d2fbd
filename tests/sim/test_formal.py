"""Formal proofs (systolix.sim.formal): the default model's tiles never overflow the
accumulator, a tile that breaks the A2Q bound gives a counterexample that overflows on the array
in cocotb, and the engine's and the link's streams keep the stream rules."""

import dataclasses
import os

import numpy as np
import pytest
from amaranth.asserts import AnySeq
from amaranth.hdl import Assert, ClockDomain, Elaboratable, Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import Out

from systolix.cli import main
from systolix.cli.formal import small_model
from systolix.config import DEFAULT_CONFIG, ArrayConfig
from systolix.hw.engine import InferenceEngine
from systolix.memory_map import MemoryConfig, layer_records
from systolix.sim.formal import (Counterexample, EngineHarness, LinkHarness, OverflowHarness,
                                 distinct_columns, engine_depth, image_tiles, link_depth,
                                 link_for, prove_streams, prove_tiles, read_vcd,
                                 replay_on_array, run_sby, stream_rules)
from systolix.sim.golden import array_matmul
from systolix.sim.golden.engine import engine_cycles
from systolix.sw.a2q import a2q_l1_limit, min_accumulator_bits
from systolix.sw.default import default_program
from systolix.sw.pack import pack
from systolix import protocol

SIMULATOR = os.environ.get("SIM", "verilator")

NARROW = ArrayConfig(rows=4, cols=4, weight_bits=4, weight_signed=True, activation_bits=4,
                     activation_signed=False, accumulator_bits=8, overflow="wrap")
"""An array whose accumulator a tile can overflow (no 8x8 W4/A4 tile can overflow P = 12:
8 * 8 * 15 = 960 < 2047)."""

BREAKING_TILE = [[7, 1, -8, 0],
                 [7, 2, -8, 0],
                 [7, 3, -8, 0],
                 [7, -4, 5, 0]]
"""Column 0 breaks the A2Q bound of NARROW: L1 norm 28, times the largest activation 15, is
420 > 2**7 - 1; column 2's negative part gives -360; columns 1 and 3 keep within it."""


@pytest.fixture(scope="module")
def default_images():
    program, _, _ = default_program(DEFAULT_CONFIG)
    return program, pack(program, DEFAULT_CONFIG, MemoryConfig())


def test_image_tiles_are_the_program_weights(default_images):
    """The tiles read back from the weight image are the layers' weights, cut into rows x cols
    tiles (padding with zeros)."""
    program, images = default_images
    rows, cols = DEFAULT_CONFIG.rows, DEFAULT_CONFIG.cols
    for layer, tiles in zip(program.layers, image_tiles(images, DEFAULT_CONFIG)):
        inputs, outputs = layer.weights.shape
        k_tiles, n_tiles = -(-inputs // rows), -(-outputs // cols)
        assert len(tiles) == k_tiles * n_tiles
        padded = np.zeros((k_tiles * rows, n_tiles * cols), dtype=np.int64)
        for index, tile in enumerate(tiles):
            n_tile, k_tile = divmod(index, k_tiles)
            padded[k_tile * rows:(k_tile + 1) * rows, n_tile * cols:(n_tile + 1) * cols] = tile
        assert np.array_equal(padded[:inputs, :outputs], layer.weights)
        assert not padded[inputs:].any() and not padded[:, outputs:].any()
    counts = [len(distinct_columns(tiles)) for tiles in image_tiles(images, DEFAULT_CONFIG)]
    assert counts == [508, 256, 41]


def test_distinct_columns_and_checked_columns():
    assert distinct_columns([[[1, 2], [3, 2]], [[1, 0], [3, 0]]]) == [(1, 3), (2, 2), (0, 0)]
    with pytest.raises(ValueError, match="4 codes in -8..7"):
        OverflowHarness(NARROW, [(8, 0, 0, 0)])
    with pytest.raises(ValueError, match="at least one"):
        OverflowHarness(NARROW, [])


def test_read_vcd(tmp_path):
    path = tmp_path / "trace.vcd"
    path.write_text("$scope module top $end\n$var wire 4 n0 act0 $end\n"
                    "$scope module pe0 $end\n$var wire 1 n1 swap $end\n$upscope $end\n"
                    "$enddefinitions $end\n#0\nb0011 n0\n0n1\n#5\n1n1\n#10\nb1111 n0\n#20\n")
    widths, steps = read_vcd(path)
    assert widths == {"act0": 4, "pe0.swap": 1}
    assert steps == [{"act0": 3, "pe0.swap": 0}, {"act0": 15, "pe0.swap": 0},
                     {"act0": 15, "pe0.swap": 0}]


def test_command_line_refuses_a_bad_config(capsys):
    assert main(["formal", "--config", "8x8", "--out", "unused"]) == 2
    assert "config must be a name like" in capsys.readouterr().err


@pytest.mark.toolchain
@pytest.mark.slow
def test_default_model_tiles_are_proven(default_images, tmp_path):
    """Every tile of every layer of the default model: no partial sum leaves 12 bits, for any
    activations (k-induction: unbounded). Slow (about 45 s of CPU, `make formal` does the
    same); CI proves the bound exact and reads a counterexample on small tiles."""
    _, images = default_images
    for index, tiles in enumerate(image_tiles(images, DEFAULT_CONFIG)):
        proof = prove_tiles(DEFAULT_CONFIG, tiles, tmp_path / f"layer-{index}", jobs=2)
        assert proof.status == "PASS", (index, [job.log for job in proof.jobs])
        assert proof.counterexample is None
        assert proof.columns == len(distinct_columns(tiles))


@pytest.mark.toolchain
def test_the_bound_is_exact(tmp_path):
    """Columns proved for P = min_accumulator_bits (the data-free A2Q width); the same columns
    fail for one bit less."""
    columns = [(7, 7, -8, 0), (1, -2, 3, -4), (0, 0, 0, 1)]
    bits = min_accumulator_bits(np.array(columns).T, NARROW.activation_bits,
                                NARROW.activation_signed)
    fits = dataclasses.replace(NARROW, accumulator_bits=bits)
    narrower = dataclasses.replace(NARROW, accumulator_bits=bits - 1)
    assert prove_tiles(fits, [np.array(columns).T.tolist()], tmp_path / "fits").status == "PASS"
    failed = prove_tiles(narrower, [np.array(columns).T.tolist()], tmp_path / "narrower")
    assert failed.status == "FAIL"
    assert failed.counterexample.column == columns[0]


@pytest.mark.toolchain
@pytest.mark.cocotb
def test_counterexample_overflows_on_the_array(tmp_path):
    """A tile that breaks the A2Q bound: SymbiYosys finds activation codes whose partial sum
    leaves P bits; replayed on the array in cocotb, that column's result is not the dot
    product."""
    column = [row[0] for row in BREAKING_TILE]
    assert sum(map(abs, column)) * NARROW.activation_range[1] > a2q_l1_limit(
        NARROW.accumulator_bits, NARROW.activation_bits, NARROW.activation_signed)
    proof = prove_tiles(NARROW, [BREAKING_TILE], tmp_path / "proof")
    assert proof.status == "FAIL"
    found = proof.counterexample
    assert isinstance(found, Counterexample)
    low, high = NARROW.accumulator_range
    assert not low <= found.exact <= high
    assert found.psum != found.exact and low <= found.psum <= high
    channel = [tuple(col) for col in zip(*BREAKING_TILE)].index(found.column)
    results = replay_on_array(NARROW, BREAKING_TILE, [found.codes], simulator=SIMULATOR,
                              build_dir=tmp_path / "replay")
    exact = (np.array([found.codes]) @ np.array(BREAKING_TILE))[0]
    assert results[0][channel] != exact[channel]
    assert results[0][channel] == found.psum     # the codes below the failing cell are 0
    assert results == array_matmul(NARROW, np.array([found.codes]),
                                   np.array(BREAKING_TILE)).tolist()


class _Stutter(wiring.Component):
    """A source that breaks the stream rules: ``valid`` toggles whether or not ``ready``."""
    source: Out(stream.Signature(8))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.source.valid.eq(~self.source.valid)
        m.d.comb += self.source.payload.eq(0x5A)
        return m


class _StutterHarness(Elaboratable):
    def __init__(self):
        self.domain = ClockDomain("sync", reset_less=True)
        self.clk = self.domain.clk

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        dut = m.submodules.dut = _Stutter()
        m.d.comb += dut.source.ready.eq(AnySeq(1))
        stream_rules(m, dut.source, Assert, "source")
        return m


@pytest.mark.toolchain
def test_stream_rules_catch_a_dropped_valid(tmp_path):
    result = run_sby(_StutterHarness(), tmp_path / "stutter", mode="bmc", depth=4)
    assert result.status == "FAIL" and result.trace is not None


@pytest.mark.toolchain
def test_stream_contracts_of_a_small_engine_and_link(tmp_path):
    """The stream rules of the engine and the link by k-induction; the link's batch and word
    count to the depth of a whole RUN request, which the cover check reaches."""
    config, images = small_model()
    rules = prove_streams(lambda count: EngineHarness(InferenceEngine(config, images),
                                                      count=count), "engine", tmp_path / "e")
    assert rules.status == "PASS" and rules.rules.mode == "prove"
    request = 4 + protocol.run_length(images.max_batch, layer_records(images)[0]["k_tiles"],
                                      config.rows * config.activation_bits) + protocol.CRC_BYTES
    link = prove_streams(lambda count: LinkHarness(link_for(config, images, timeout_cycles=8),
                                                   count=count), "link", tmp_path / "l",
                         count_depth=link_depth(request))
    assert [link.rules.status, link.count.status, link.reach.status] == ["PASS"] * 3


@pytest.mark.toolchain
@pytest.mark.slow
def test_engine_counts_its_outputs(tmp_path):
    """The small engine's outputs to the end of a run of max_batch vectors (bounded)."""
    config, images = small_model()
    records = layer_records(images)
    depth = engine_depth(engine_cycles(config, images, images.max_batch).first_output,
                         images.max_batch, records[0]["k_tiles"], records[-1]["outputs"])
    proof = prove_streams(lambda count: EngineHarness(InferenceEngine(config, images),
                                                      count=count), "engine", tmp_path,
                          rules=False, count_depth=depth, script=["memory_map", "opt -fast"])
    assert proof.count.status == "PASS" and proof.reach.status == "PASS"
