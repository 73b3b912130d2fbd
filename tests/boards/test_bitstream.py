"""Bitstream builds, their determinism, and patching another model into a built bitstream.

A board build takes minutes on two cores, so the builds are ``slow`` (run by ``make test
PYTEST_ARGS="-m slow"`` and before an issue is closed); CI checks what fails before any tool runs.
"""

import subprocess
import sys

import numpy as np
import pytest

from systolix.boards.bitstream import build_bitstream
from systolix.boards.patch import PatchError, patch_bitstream
from systolix.boards.tops import BOARDS, board
from systolix.sw.default import default_program
from systolix.sim.testbench.programs import random_program

PATCH_BOARD = "orangecrab"


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
    with pytest.raises(ValueError, match=r"^the model needs 89000 weight words .*, the memory "
                                         r"has 2048; "):
        build_bitstream("icebreaker", program, out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The default model's bitstream for :data:`PATCH_BOARD`, built twice."""
    root = tmp_path_factory.mktemp("bitstream")
    program = default_program(board(PATCH_BOARD).config)[0]
    first = build_bitstream(PATCH_BOARD, program, out=root / "first")
    build_bitstream(PATCH_BOARD, program, out=root / "second")
    return root, first


@pytest.mark.slow
def test_build_is_reproducible_and_reports(built):
    root, report = built
    suffix = board(PATCH_BOARD).bitstream_suffix
    assert (root / "first" / f"top{suffix}").read_bytes() == \
        (root / "second" / f"top{suffix}").read_bytes()
    assert report["board"] == PATCH_BOARD and report["macs_per_cycle"] == 64
    assert min(report["fmax_mhz"].values()) >= report["clock_mhz"]
    for name in ("top.debug.v", "build.log", "report.md", "images/weights.hex",
                 "memories/weights.hex"):
        assert (root / "first" / name).is_file()


@pytest.mark.slow
def test_patch_puts_another_model_in_and_reads_it_back(built, tmp_path):
    root, _ = built
    chosen = board(PATCH_BOARD)
    other = random_program(np.random.default_rng(3), chosen.config, [64, 40, 10])
    summary = patch_bitstream(root / "first", other, out=tmp_path / "patched")
    assert summary["read_back"] == "ok" and set(summary["changed_words"]) == {
        "weights", "requant", "program"}
    suffix = chosen.bitstream_suffix
    assert (tmp_path / "patched" / f"top{suffix}").read_bytes() != \
        (root / "first" / f"top{suffix}").read_bytes()
    # And back: the original model patched into the patched bitstream gives the original.
    original = default_program(chosen.config)[0]
    patch_bitstream(tmp_path / "patched", original, out=tmp_path / "restored")
    assert (tmp_path / "restored" / f"top{suffix}").read_bytes() == \
        (root / "first" / f"top{suffix}").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in BOARDS if name != PATCH_BOARD])
def test_every_board_builds(name, tmp_path):
    program = default_program(board(name).config)[0]
    report = build_bitstream(name, program, out=tmp_path / name)
    assert (tmp_path / name / f"top{board(name).bitstream_suffix}").stat().st_size > 0
    assert report["resources"]["logic_cells"]["used"] <= \
        report["resources"]["logic_cells"]["available"]


def test_patch_refuses_other_memory_shapes(tmp_path):
    (tmp_path / "report.json").write_text(
        '{"board": "ulx3s-85f", "config": "8x8-W4s-A4u-P12-wrap", "memory_widths": {"weights": 16, "requant": 56, "program": 32}}')
    program = default_program(board("ulx3s-85f").config)[0]
    with pytest.raises(PatchError, match="differ from the bitstream's"):
        patch_bitstream(tmp_path, program)
