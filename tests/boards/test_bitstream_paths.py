"""Bitstream builds in threads with relative paths (the largest-array benchmark): no build changes
the working folder, a failed build's report reads its own logs, and a shape that does not fit is
a row of the table, not a traceback."""

import os
import threading

import pytest
from amaranth.build.run import BuildPlan

from systolix.boards import bench
from systolix.boards.bitstream import _extract, _failure, build_bitstream
from systolix.boards.synth import SynthesisError
from systolix.boards.tops import board
from systolix.files import OutputError
from systolix.sw.default import default_program


def test_extract_writes_by_absolute_paths_and_keeps_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = BuildPlan("top")
    plan.add_file("top.sh", "true\n")
    plan.add_file("sub/top.v", b"module top; endmodule\n")
    moved = []
    monkeypatch.setattr(os, "chdir", lambda path: moved.append(path))
    threads = [threading.Thread(target=_extract, args=(plan, f"stage{index}"))
               for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert moved == []
    for index in range(4):
        assert (tmp_path / f"stage{index}" / "sub" / "top.v").read_bytes() == \
            b"module top; endmodule\n"


def test_extract_refuses_a_file_outside_its_folder(tmp_path):
    plan = BuildPlan("top")
    plan.files["../escape.v"] = "x"
    with pytest.raises(SynthesisError, match=r"outside its folder: \.\./escape\.v"):
        _extract(plan, tmp_path)


def test_a_failure_without_logs_is_reported(tmp_path):
    error = _failure(board("icebreaker"), tmp_path, 3)
    assert isinstance(error, SynthesisError)
    assert str(error) == ("the build script for the icebreaker failed with exit status 3; the "
                          "last lines of build.log:\n(no build.log)")


def test_a_folder_not_the_builds_is_refused_before_any_tool_runs(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    chosen = board("icebreaker")
    with pytest.raises(OutputError, match=r"^--out .*mine: is a folder that systolix did not "
                                          r"write"):
        build_bitstream(chosen, default_program(chosen.config)[0], out=tmp_path / "mine")
    assert [path.name for path in tmp_path.iterdir()] == ["mine"]


@pytest.mark.toolchain
@pytest.mark.slow
def test_largest_array_prints_a_shape_that_does_not_fit(tmp_path, monkeypatch, capsys):
    """Two whole-accelerator builds in threads, relative build root: 8x8 (LUT cells) does not
    fit the iCEBreaker, 2x2 (DSP cells) does; both are rows of the table."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(bench.LARGEST, "shapes", ((8, 8), (2, 2)))
    results = bench.largest_array(build_root="bench")
    output = capsys.readouterr().out
    assert "no: " in output.splitlines()[3] and output.splitlines()[4].endswith("yes")
    assert "largest that fits: 2x2" in output
    assert [config.name.split("-")[0] for config, _ in results] == ["8x8", "2x2"]
    assert [config.pe for config, _ in results] == ["lut", "dsp"]
    assert sorted(path.name for path in (tmp_path / "bench" / "largest").iterdir()) == [
        "icebreaker-2x2-W4s-A4u-P12-wrap-dsp"]
