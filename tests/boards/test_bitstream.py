"""Bitstream builds, their determinism, and patching another model into a built bitstream.

A board build takes from about a minute (icebreaker) to four (orangecrab) on two cores. CI
builds the iCEBreaker's bitstream once (the UP5K is the board the accelerator only just fits;
the build the catalogue of bad inputs shares) and patches another model into it and back; the other builds are ``slow`` (run by ``make test
PYTEST_ARGS="-m slow"`` and before an issue is closed). Each board is built once per run and
shared by the tests. CI also checks what fails before any tool runs, and the patcher's own
arithmetic (slices, lanes, hex files).
"""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from systolix.boards import patch as patcher
from systolix.boards.bitstream import (TimingFailure, build_bitstream, clock_line,
                                       first_pass_clock)
from systolix.boards.synth import SynthesisError
from systolix.boards.patch import (SLICE_WORDS, PatchError, block_ram_slices, check_slices,
                                   lane_words, memory_slices, patch_bitstream, read_hex,
                                   stored_lanes, tool_words)
from systolix.boards.tops import BOARDS, board
from systolix.memory_map import baked_memories
from systolix.protocol import model_status
from systolix.sw.stimulus import random_conv_program, random_program
from systolix.sw.default import default_program

PATCH_BOARD = "icebreaker"
"""The board most patch tests use: the quickest build (about 50 s)."""

BLOCK_RAM_WEIGHTS_BOARD = "ice40-hx8k-evn"
"""An iCE40 board whose weight memory is block RAM (the iCEBreaker's is SPRAM)."""

ECP5_PATCH_BOARD = "ulx3s-85f"
"""The ECP5 board whose bitstream is patched too (``ecpbram``, about 3 minutes to build)."""


def other_program(name):
    """A model of other layer sizes than the default, for the array of board ``name``."""
    return random_program(np.random.default_rng(3), board(name).config, [64, 40, 10])


def test_unknown_board_is_refused_before_any_tool_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "systolix.cli", "bitstream", "--board",
                             "de10", "--out", str(tmp_path / "out")], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "systolix bitstream: error: BOARD must be one of 'icebreaker', 'ice40-hx8k-evn', "
        "'ulx3s-85f', 'orangecrab', not 'de10'")
    assert not (tmp_path / "out").exists()


def test_model_too_large_for_the_board_is_refused(tmp_path):
    chosen = board("icebreaker")
    program = random_program(np.random.default_rng(1), chosen.config, [700, 500, 10])
    with pytest.raises(ValueError, match=r"^the model needs \d+ weight words .*, the weight "
                                         r"memory \(loaded at run time\) has 49152: \d+ words "
                                         r"short; "):
        build_bitstream("icebreaker", program, out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def builds(tmp_path_factory, shared):
    """``builds(name)``: the folder and report of the default model's bitstream for board
    ``name`` (the board's clock, seed 1), built once per module; the iCEBreaker's is the test
    run's shared build (``shared("build")``, the same build the catalogue of bad inputs
    uses), which the tests only read."""
    root = tmp_path_factory.mktemp("bitstream")
    done = {}

    def build(name):
        if name not in done:
            if name == PATCH_BOARD:
                folder = shared("build")
                done[name] = folder, json.loads((folder / "report.json").read_text())
            else:
                program = default_program(board(name).config)[0]
                done[name] = root / name, build_bitstream(name, program, out=root / name)
        return done[name]
    return build


@pytest.mark.toolchain
@pytest.mark.slow
def test_build_is_reproducible_and_reports(builds, tmp_path):
    folder, report = builds(PATCH_BOARD)
    chosen = board(PATCH_BOARD)
    build_bitstream(PATCH_BOARD, default_program(chosen.config)[0], out=tmp_path / "second")
    suffix = chosen.bitstream_suffix
    assert (folder / f"top{suffix}").read_bytes() == (tmp_path / "second" /
                                                      f"top{suffix}").read_bytes()
    assert report["board"] == PATCH_BOARD and report["config"] == chosen.config.name
    assert report["macs_per_cycle"] == chosen.config.rows * chosen.config.cols
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"]
    assert json.loads((folder / "report.json").read_text()) == report
    for name in ("top.debug.v", "build.log", "report.md", "images/weights.hex",
                 "memories/requant.hex"):
        assert (folder / name).is_file()
    # The memories holding the model are in block RAM, where the patcher can reach them; the
    # iCEBreaker's weights are in SPRAM, uploaded at run time.
    log = (folder / "top.rpt").read_text()
    for memory in ("requant", "program"):
        assert f"found attribute 'ram_style = block' on memory top.serial.accelerator.engine." \
               f"{memory}_memory, forced mapping to block RAM" in log
    assert "found attribute 'ram_style = block' on memory top.serial.accelerator.link." \
           "transmitter.status_memory, forced mapping to block RAM" in log
    assert not (folder / "memories" / "weights.hex").exists()
    assert report["resources"]["sprams"] == {"used": 4, "available": 4}
    assert report["memories"]["upload_weights"] and "uploads the model's weights" in \
        (folder / "report.md").read_text()


@pytest.mark.toolchain
@pytest.mark.parametrize("name", [PATCH_BOARD,
                                  pytest.param(ECP5_PATCH_BOARD, marks=pytest.mark.slow)])
def test_patch_puts_another_model_in_and_reads_it_back(name, builds, tmp_path):
    folder, report = builds(name)
    chosen = board(name)
    resources = report["resources"]["logic_cells"]
    assert 0 < resources["used"] <= resources["available"]
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"] == chosen.clock_mhz
    # The loaded model's power and energy: the engine's simulated toggle rate on the build's
    # cells (the UP5K's coefficients are calibrated, so the static power is known there).
    power = report["power"]
    assert report["cells"]["luts"] > 0 and 0.01 < power["toggle_rate"] < 0.6
    assert power["total_dynamic_mw"] > 0 and power["frequency_mhz"] == chosen.clock_mhz
    if chosen.family == "ice40":
        assert report["energy_per_inference_uj"] == pytest.approx(
            power["total_mw"] * report["cycles_per_inference"] / chosen.clock_mhz / 1000)
    assert (folder / "report.png").read_bytes()[:4] == b"\x89PNG"
    # The UART carries far fewer inferences a second than the engine computes.
    assert report["baud"] == chosen.baud
    assert 0 < report["uart_inferences_per_second"] < report["inferences_per_second"]
    assert "| inferences per second, UART-bound (115200 baud, " in \
        (folder / "report.md").read_text()
    # Where an iCE40 build's logic cells go: every one counted for a component.
    if chosen.family == "ice40":
        components = report["components"]
        assert sum(counts["logic_cells"] for counts in components.values()) == resources["used"]
        assert sum(counts["brams"] for counts in components.values()) == \
            report["resources"]["brams"]["used"]
        assert components["serial.accelerator.engine.array"]["logic_cells"] > \
            resources["used"] / 4
        assert "| `serial.accelerator.engine.array` |" in (folder / "report.md").read_text()
        # No read of the old data emulated at the memories that are never read where they
        # are written (boards.bitstream.COLLISION_FREE_MEMORIES: the only ones that were).
        assert "emulate_read_first" not in (folder / "top.rpt").read_text()
    other = other_program(name)
    summary = patch_bitstream(folder, other, out=tmp_path / "patched")
    assert summary["read_back"] == "ok"
    # The iCEBreaker's weights are in SPRAM: uploaded at run time, not patched. The link's
    # status memory holds the model's STATUS fields.
    assert set(summary["changed_words"]) == {*baked_memories(chosen.memories), "status"}
    assert json.loads((tmp_path / "patched" / "patch.json").read_text()) == summary
    # The block RAMs hold every bit the gateware reads (the reserved requantization bits, which
    # it does not read, may be left out by synthesis).
    bits = {memory: figures["bits"] for memory, figures in summary["block_ram_bits"].items()}
    assert bits.get("weights", 0) == (0 if chosen.memories.upload_weights else
                                      report["memory_widths"]["weights"])
    assert bits["program"] == 32 and bits["status"] == 8
    assert bits["requant"] in (54, 56)
    suffix = chosen.bitstream_suffix
    patched = (tmp_path / "patched" / f"top{suffix}").read_bytes()
    original = (folder / f"top{suffix}").read_bytes()
    assert patched != original and len(patched) == len(original)
    assert [int(line, 16) for line in
            (tmp_path / "patched" / "images" / "requant.hex").read_text().split()] == \
        list(patcher.pack(other, chosen.config, chosen.memories).requant)
    # The patched bitstream's STATUS reports the new model: its checksum, header and config
    # words are in the status memory's block RAM, not the old model's.
    other_images = patcher.pack(other, chosen.config, chosen.memories)
    status_bytes = {which: bytes(read_hex(where / "memories" / "status.hex"))
                    for which, where in (("old", folder), ("new", tmp_path / "patched"))}
    for model, which in ((model_status(other_images), "new"),
                         (model_status(patcher.pack(default_program(chosen.config)[0],
                                                    chosen.config, chosen.memories)), "old")):
        encoded = b"".join(model[name].to_bytes(4, "little") for name in
                           ("header_word", "config_word", "image_checksum"))
        assert encoded in status_bytes[which]
        assert encoded not in status_bytes["old" if which == "new" else "new"]
    patched_report = json.loads((tmp_path / "patched" / "report.json").read_text())
    assert patched_report["model"]["layers"] == ["64x40 W4A4", "40x10 W4A4"]
    assert patched_report["patched_from"] == str(folder)
    assert patched_report["resources"] == report["resources"]
    # And back: the original model patched into the patched bitstream gives the original.
    restored = patch_bitstream(tmp_path / "patched", default_program(chosen.config)[0],
                               out=tmp_path / "restored")
    assert restored["changed_words"] == summary["changed_words"]
    assert (tmp_path / "restored" / f"top{suffix}").read_bytes() == original


@pytest.mark.toolchain
def test_patch_refuses_a_model_of_other_vector_sizes(builds, tmp_path):
    """The host link checks a RUN's input words and sends a RESULT's codes by numbers in its
    logic, which a patch cannot change."""
    folder, _ = builds(PATCH_BOARD)
    program = random_program(np.random.default_rng(3), board(PATCH_BOARD).config, [32, 40, 10])
    with pytest.raises(PatchError, match=r"^the model's input words of a vector, \d+, differ "
                                         r"from the bitstream's \d+ \(its host link's logic "
                                         r"holds them\): build a new bitstream$"):
        patch_bitstream(folder, program, out=tmp_path / "patched")
    assert not (tmp_path / "patched").exists()


@pytest.mark.toolchain
@pytest.mark.slow
def test_patch_refuses_contents_its_bitstream_does_not_hold(builds, tmp_path):
    folder, _ = builds(BLOCK_RAM_WEIGHTS_BOARD)
    shutil.copytree(folder, tmp_path / "build")
    path = tmp_path / "build" / "memories" / "weights.hex"
    lines = path.read_text().split()
    lines[5] = f"{int(lines[5], 16) ^ 1:0{len(lines[5])}x}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PatchError, match=r"^bits \[0\] of the weights memory's contents in the "
                                         r"build folder are only in part in the bitstream's "
                                         r"block RAMs"):
        patch_bitstream(tmp_path / "build", other_program(BLOCK_RAM_WEIGHTS_BOARD),
                        out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.toolchain
@pytest.mark.slow
def test_read_back_finds_a_block_ram_the_patch_missed(builds, tmp_path, monkeypatch):
    """Leave out the forward patch's last tool run (the program memory's or, as the block RAMs
    are placed, the link's status memory's): its block RAMs keep the old contents, which the
    read-back must see."""
    folder, _ = builds(PATCH_BOARD)
    patch_all = patcher._patch_all

    def skipping(family, placed, step, runs, cwd):
        return patch_all(family, placed, step, runs[:-1] if step == "patch" else runs, cwd)
    monkeypatch.setattr(patcher, "_patch_all", skipping)
    with pytest.raises(PatchError, match=r"^read-back failed: (\d+) of the \1 bit slices of the "
                                         r"new (program|status) memory are in no block RAM of "
                                         r"the patched bitstream, \1 of the old ones still are$"):
        patch_bitstream(folder, other_program(PATCH_BOARD), out=tmp_path / "out")


@pytest.mark.toolchain
@pytest.mark.slow
def test_block_ram_slices_of_a_build_hold_its_memories(builds):
    """What the read-back reads: every slice of the build's memory contents is in its placed
    design's block RAMs, and a slice of other contents is not."""
    folder, report = builds(PATCH_BOARD)
    family = board(PATCH_BOARD).family
    present = block_ram_slices(family, folder / "top.asc")
    for name in baked_memories(board(PATCH_BOARD).memories):
        width = report["memory_widths"][name]
        words = tool_words(read_hex(folder / "memories" / f"{name}.hex"), family)
        lanes = stored_lanes(name, words, width, family, present)
        assert lanes == list(range(width))
        changed = [word ^ 1 for word in words]
        assert not any(pattern in present
                       for pattern in memory_slices(changed, width, family)[::width])


@pytest.mark.toolchain
@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in BOARDS if name != PATCH_BOARD])
def test_every_board_builds(name, builds):
    folder, report = builds(name)
    assert (folder / f"top{board(name).bitstream_suffix}").stat().st_size > 0
    assert report["resources"]["logic_cells"]["used"] <= \
        report["resources"]["logic_cells"]["available"]
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"]


def _report(tmp_path, **fields):
    (tmp_path / "report.json").write_text(json.dumps(
        {"board": "ulx3s-85f", "config": board("ulx3s-85f").config.name,
         "memory_widths": {"weights": 16, "requant": 56, "program": 32}, **fields}))


def test_patch_refuses_other_memory_shapes(tmp_path):
    _report(tmp_path)
    program = default_program(board("ulx3s-85f").config)[0]
    with pytest.raises(PatchError, match=r"^the model's memory word widths \{'weights': 32, "
                                         r"'requant': 56, 'program': 32\} differ from the "
                                         r"bitstream's \{'weights': 16, "):
        patch_bitstream(tmp_path, program)


def test_patch_refuses_a_bitstream_of_another_array(tmp_path):
    _report(tmp_path, config="4x4-W4s-A4u-P12-wrap")
    program = default_program(board("ulx3s-85f").config)[0]
    with pytest.raises(PatchError, match=r"^the bitstream's array 4x4-W4s-A4u-P12-wrap is not "
                                         r"the ulx3s-85f's 8x8-W4s-A4u-P12-wrap any more: build "
                                         r"a new bitstream$"):
        patch_bitstream(tmp_path, program)


def test_tool_words_fill_whole_slices_with_zeros():
    assert tool_words([1, 2, 3], "ice40") == [1, 2, 3] + [0] * 253
    assert tool_words([5] * 512, "ecp5") == [5] * 512
    assert len(tool_words([5] * 513, "ecp5")) == 1024


def test_memory_slices_are_bit_columns_of_slice_words():
    words = [index % 4 for index in range(512)]          # bit 0: 0101..., bit 1: 0011...
    slices = memory_slices(words, 2, "ice40")
    assert len(slices) == 4 and len(slices[0]) == SLICE_WORDS["ice40"] // 8
    assert slices[0] == bytes([0b01010101] * 32) and slices[1] == bytes([0b00110011] * 32)
    assert slices[2:] == slices[:2]                      # words 256..511 repeat words 0..255


def test_check_slices_refuses_what_the_tools_cannot_tell_apart():
    rng = np.random.default_rng(0)
    words = [int(word) for word in rng.integers(0, 1 << 8, 512)]
    check_slices("weights", words, list(range(8)), "ice40")
    same = [(word & ~0b100) | ((word & 1) << 2) for word in words]     # bit 2 = bit 0
    with pytest.raises(PatchError, match=r"^the weights memory's bit 2 of words 0..255 equal "
                                         r"its bit 0 of words 0..255: "):
        check_slices("weights", same, list(range(8)), "ice40")
    with pytest.raises(PatchError, match=r"^the requant memory's bit 7 of words 256..511 are "
                                         r"all zero: "):
        check_slices("requant", words[:256] + [word & 0x7F for word in words[256:]],
                     list(range(8)), "ice40")
    check_slices("requant", words[:256] + [word & 0x7F for word in words[256:]],
                 list(range(7)), "ice40")                # bit 7 not in a block RAM: not checked


def test_stored_lanes_are_the_bits_found_in_block_ram():
    rng = np.random.default_rng(1)
    words = [int(word) for word in rng.integers(0, 1 << 6, 512)]
    slices = memory_slices(words, 6, "ice40")
    # Block RAMs hold bits 0..4 (bit 5 left out by synthesis), both runs of 256 words.
    present = {pattern for index, pattern in enumerate(slices) if index % 6 != 5}
    assert stored_lanes("requant", words, 6, "ice40", present) == [0, 1, 2, 3, 4]
    with pytest.raises(PatchError, match=r"^bits \[2\] of the requant memory's contents in the "
                                         r"build folder are only in part"):
        stored_lanes("requant", words, 6, "ice40", present - {slices[6 + 2]})
    with pytest.raises(PatchError, match=r"hold 3 bits of the requant memory's words; the tools "
                                         r"need at least 4"):
        stored_lanes("requant", words, 6, "ice40", set(slices[:3]) | set(slices[6:9]))


def test_tool_files_cut_the_bits_into_whole_hex_digits(tmp_path):
    """Six bits: bits 0..3 in one run, then bits 2..5, of which 2 and 3 already changed."""
    rng = np.random.default_rng(2)
    source = [int(word) for word in rng.integers(0, 1 << 6, 256)]
    target = [int(word) for word in rng.integers(0, 1 << 6, 256)]
    lanes = [0, 1, 2, 3, 4, 5]
    runs = patcher._tool_files("requant", lanes, source, target, "forward", "ice40", tmp_path)
    assert len(runs) == 2
    first, second = ([read_hex(tmp_path / file) for file in pair] for pair in runs)
    assert first == [lane_words(source, [0, 1, 2, 3]), lane_words(target, [0, 1, 2, 3])]
    assert second[1] == lane_words(target, [2, 3, 4, 5])
    assert second[0] == [(t >> 2 & 3) | (s >> 4 & 3) << 2 for s, t in zip(source, target)]
    assert all(len(line) == 1 for line in (tmp_path / runs[0][0]).read_text().split())
    assert len(patcher._tool_files("weights", [1, 2, 3, 4], source, target, "back", "ice40",
                                   tmp_path)) == 1


def test_patch_refuses_convolutions_for_an_engine_without_windows(tmp_path):
    """An engine built for dense layers only has no window address generation: a convolution
    patched into its bitstream would run wrong, so the patch is refused before any tool runs."""
    _report(tmp_path, memory_widths={"weights": 32, "requant": 56, "program": 32})
    program = default_program(board("ulx3s-85f").config, "digits-cnn")[0]
    with pytest.raises(PatchError, match=r"^the model has convolutions and the bitstream's "
                                         r"engine was built without windows"):
        patch_bitstream(tmp_path, program)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.json"]


def test_patch_refuses_a_model_that_needs_units_the_engine_lacks(tmp_path):
    """The engine builds GELU lanes and softmax and LayerNorm units only for a model that has
    such layers (and as long as its rows): a model that needs more than the bitstream's
    engine has is refused before any tool runs."""
    config = board("ulx3s-85f").config
    rng = np.random.default_rng(3)
    program = random_conv_program(rng, config, (2, 2, 3), [
        ("conv", 8, {"largest_kernel": 1, "largest_stride": 1}), ("layernorm",), ("gelu",),
        ("dense", 4)])
    widths = {"weights": 32, "requant": 56, "program": 32}
    for units, message in (
            ({}, r"^the model has GELU layers and the bitstream's engine was built without "
                 r"GELU lanes: build a new bitstream$"),
            ({"gelu": True, "layernorm_channels": 4},
             r"^the model has LayerNorm rows of 8 codes and the bitstream's engine has "
             r"LayerNorm rows of up to 4: build a new bitstream$")):
        _report(tmp_path, memory_widths=widths, windows=True, units=units)
        with pytest.raises(PatchError, match=message):
            patch_bitstream(tmp_path, program)
        assert sorted(path.name for path in tmp_path.iterdir()) == ["report.json"]


def test_the_report_says_how_the_clock_was_chosen():
    timing = {"mode": "timing", "fallback": None, "first_clock_mhz": 24.0,
              "first_fmax_mhz": 37.6, "margin": 0.1, "target_mhz": 37.6 / 1.1,
              "clock_mhz": 33.75, "pll": {"DIVR": 0, "DIVF": 44, "DIVQ": 4, "FILTER_RANGE": 1},
              "margin_at_clock": 36.9 / 33.75 - 1}
    assert clock_line({"clock_mhz": 33.75, "fmax_mhz": {"pll_clock": 36.9}, "clock": timing}) \
        == ("Clock from timing: the first place and route at 24 MHz reached 37.6 MHz; less a "
            "10 % margin, 34.2 MHz; the PLL's fastest clock below, 33.75 MHz (DIVR 0, DIVF 44, "
            "DIVQ 4, FILTER_RANGE 1); fmax 36.9 MHz at 33.75 MHz, margin 9.3 %.")
    missed = {**timing, "first_clock_mhz": 48.0, "first_fmax_mhz": 39.0,
              "missed": [{"clock_mhz": 35.25, "fmax_mhz": 34.47}], "target_mhz": 34.47 / 1.1,
              "clock_mhz": 31.125, "pll": {"DIVR": 0, "DIVF": 82, "DIVQ": 5, "FILTER_RANGE": 1},
              "margin_at_clock": 36.0 / 31.125 - 1}
    assert clock_line({"clock_mhz": 31.125, "fmax_mhz": {"pll_clock": 36.0}, "clock": missed}) \
        == ("Clock from timing: the first place and route at 48 MHz reached 39.0 MHz, the one "
            "at 35.25 MHz 34.5 MHz (missed); less a 10 % margin, 31.3 MHz; the PLL's fastest "
            "clock below, 31.125 MHz (DIVR 0, DIVF 82, DIVQ 5, FILTER_RANGE 1); fmax 36.0 MHz at "
            "31.125 MHz, margin 15.7 %.")
    fallback = {"mode": "fixed", "fallback": "the icebreaker's PLL makes no clock of at most "
                "14.0 MHz", "margin_at_clock": 0.5}
    assert clock_line({"clock_mhz": 24.0, "fmax_mhz": {"clk": 36.0}, "clock": fallback}) == (
        "Clock fixed (fallback: the icebreaker's PLL makes no clock of at most 14.0 MHz): "
        "fmax 36.0 MHz at 24 MHz, margin 50.0 %.")


@pytest.mark.toolchain
@pytest.mark.slow
def test_clock_from_timing(tmp_path):
    """The iCEBreaker at the fastest PLL clock 10 % below the fmax of a first place and route
    at twice its fixed 24 MHz: two builds (three if the second misses its clock), about three
    minutes."""
    chosen = board(PATCH_BOARD)
    report = build_bitstream(PATCH_BOARD, default_program(chosen.config)[0],
                             out=tmp_path / "timing", clock="timing")
    clock = report["clock"]
    assert clock["mode"] == "timing" and clock["fallback"] is None
    assert clock["first_clock_mhz"] == first_pass_clock(chosen) == 48.0
    fmax = clock["missed"][-1]["fmax_mhz"] if clock["missed"] else clock["first_fmax_mhz"]
    assert report["clock_mhz"] == clock["clock_mhz"] <= fmax / 1.1
    assert report["clock_mhz"] > chosen.clock_mhz
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"]      # met at that clock
    assert report["inferences_per_second"] == pytest.approx(
        report["clock_mhz"] * 1e6 / report["cycles_per_inference"])
    assert sorted(path.name for path in (tmp_path / "timing" / "first-pass").iterdir()) == \
        ["nextpnr.json", "top.tim"]
    assert "Clock from timing: the first place and route at 48 MHz" in \
        (tmp_path / "timing" / "report.md").read_text()


def test_the_clock_chosen_from_fmax():
    """The iCEBreaker's first place and route reached 32.2 MHz: 29.25 MHz from its PLL; one at
    17 MHz leaves no iCE40 PLL clock (16 MHz at least) at most 17 / 1.1 MHz: the fixed clock."""
    from systolix.boards.bitstream import choose_clock
    chosen = choose_clock(board("icebreaker"), 32.2)
    assert chosen["mode"] == "timing" and chosen["clock_mhz"] == 29.25
    assert chosen["pll"] == {"DIVR": 0, "DIVF": 77, "DIVQ": 5, "FILTER_RANGE": 1}
    assert chosen["target_mhz"] == pytest.approx(32.2 / 1.1)
    assert choose_clock(board("ulx3s-85f"), 80.9)["clock_mhz"] == 71.875
    fallback = choose_clock(board("icebreaker"), 17.0)
    assert fallback["mode"] == "fixed" and "clock_mhz" not in fallback
    assert fallback["fallback"] == ("the icebreaker's PLL makes no clock of at most 15.5 MHz "
                                    "(fmax 17.0 MHz less the 10 % margin) with its UART's "
                                    "115200 baud")


def test_a_build_that_misses_its_clock_is_placed_again_once():
    """A build that misses its clock from timing gets one more at the clock chosen from its own
    fmax (CLOCK_TRIES 2); a second miss, or a failure that is not timing, the fixed clock."""
    from systolix.boards.bitstream import _after_missing, choose_clock
    icebreaker = board("icebreaker")
    chosen = {**choose_clock(icebreaker, 39.0), "first_clock_mhz": 48.0}
    assert chosen["clock_mhz"] == 35.25
    again = _after_missing(icebreaker, chosen, TimingFailure("missed", 34.47), 0.1)
    assert again["mode"] == "timing" and again["clock_mhz"] == 31.125
    assert (again["first_clock_mhz"], again["first_fmax_mhz"]) == (48.0, 39.0)
    assert again["missed"] == [{"clock_mhz": 35.25, "fmax_mhz": 34.47}]
    fixed = _after_missing(icebreaker, again, TimingFailure("missed again", 30.0), 0.1)
    assert fixed["mode"] == "fixed" and len(fixed["missed"]) == 2
    assert fixed["fallback"] == "the build at 31.125 MHz failed (missed again)"
    other = _after_missing(icebreaker, chosen, SynthesisError("no nextpnr\nmore"), 0.1)
    assert other["mode"] == "fixed"
    assert other["fallback"] == "the build at 35.25 MHz failed (no nextpnr)"
