"""``systolix patch`` as ``make patch BOARD=icebreaker MODEL=...`` runs it: relative paths, the
default output folder beside the build, and run again onto its own previous output (the
patcher's clean-up used to double the relative staging path after every tool had run)."""

import json
import shutil
import subprocess
import sys

import pytest

from systolix.files import MARKER

pytestmark = pytest.mark.toolchain


def _patch(cwd, *arguments):
    return subprocess.run([sys.executable, "-m", "systolix.cli", "patch", *arguments], cwd=cwd,
                          capture_output=True, text=True)


def _copy_build(shared, tmp_path):
    """A copy of the shared build where `make bitstream BOARD=icebreaker` puts it, and the
    program of the shared quantize output; returns the build's files."""
    build = tmp_path / "build" / "bitstream" / "icebreaker"
    shutil.copytree(shared("build"), build)
    shutil.copytree(shared("quantize"), tmp_path / "quantize")
    return {path.relative_to(build): path.read_bytes() for path in build.rglob("*")
            if path.is_file()}


def _check(tmp_path, before, result):
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and "read back from the new bitstream: ok" in result.stdout
    # The iCEBreaker's weights are in SPRAM: uploaded by the driver, not patched.
    assert "the icebreaker's weights are in SPRAM, not in the bitstream" in result.stdout
    assert "patched weights" not in result.stdout
    patched = tmp_path / "build" / "bitstream" / "icebreaker-patched"
    assert json.loads((patched / MARKER).read_text())["command"] == "patch"
    assert (patched / "top.bin").exists() and not (patched / "work").exists()
    assert json.loads((patched / "report.json").read_text())["patched_from"] == \
        "build/bitstream/icebreaker"
    assert sorted(path.name for path in (tmp_path / "build" / "bitstream").iterdir()) == [
        "icebreaker", "icebreaker-patched"]
    build = tmp_path / "build" / "bitstream" / "icebreaker"
    assert {path.relative_to(build): path.read_bytes() for path in build.rglob("*")
            if path.is_file()} == before


def test_patch_with_relative_paths(shared, tmp_path):
    """What `make patch BOARD=icebreaker MODEL=quantize/program.npz` runs."""
    before = _copy_build(shared, tmp_path)
    _check(tmp_path, before, _patch(tmp_path, "--build", "build/bitstream/icebreaker",
                                    "--model", "quantize/program.npz"))


@pytest.mark.slow
def test_patch_again_onto_its_output_and_from_a_patched_folder(shared, tmp_path):
    before = _copy_build(shared, tmp_path)
    for _ in range(2):
        _check(tmp_path, before, _patch(tmp_path, "--build", "build/bitstream/icebreaker",
                                        "--model", "quantize/program.npz"))
    # A patched folder is a build folder again: patch it, relative paths, into a new folder.
    result = _patch(tmp_path / "build", "--build", "bitstream/icebreaker-patched", "--model",
                    "../quantize/program.npz", "--out", "again")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "again" / "top.bin").exists()
