"""Output folders (systolix.files.output_folder): replaced only when they are the command's own,
atomically, and never left half-written."""

import json
import os
import stat
from pathlib import Path

import pytest

from systolix.files import MARKER, OutputError, check_output_folder, output_folder, output_owner


def _write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _output(path, command="bitstream", files=None):
    with output_folder(path, command) as staging:
        _write(staging, files or {"top.bin": "bits", "logs/build.log": "log"})
    return path


def _others(tmp_path, keep):
    return sorted(path.name for path in tmp_path.iterdir() if path.name not in keep)


def test_a_new_folder_gets_its_files_and_the_marker(tmp_path):
    out = _output(tmp_path / "a" / "b" / "out")
    marker = json.loads((out / MARKER).read_text())
    assert marker["command"] == "bitstream" and marker["files"] == ["logs/build.log", "top.bin"]
    assert output_owner(out) == "bitstream"
    assert sorted(path.name for path in out.parent.iterdir()) == ["out"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask


def test_a_previous_output_is_replaced_whole(tmp_path):
    out = _output(tmp_path / "out", files={"old.txt": "old"})
    _output(out, files={"new.txt": "new"})
    assert sorted(path.name for path in out.iterdir()) == [MARKER, "new.txt"]
    assert _others(tmp_path, {"out"}) == []


def test_an_empty_folder_is_taken(tmp_path):
    (tmp_path / "out").mkdir()
    _output(tmp_path / "out")
    assert output_owner(tmp_path / "out") == "bitstream"


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_leaves_the_previous_output_and_nothing_else(tmp_path, error):
    out = _output(tmp_path / "out", files={"old.txt": "old"})
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    with pytest.raises(type(error)):
        with output_folder(out, "bitstream") as staging:
            (staging / "half.txt").write_text("half")
            raise error
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before
    assert _others(tmp_path, {"out"}) == []


def test_a_failure_removes_the_parents_it_made(tmp_path):
    with pytest.raises(RuntimeError):
        with output_folder(tmp_path / "new" / "deeper" / "out", "report"):
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_parent_made_meanwhile_by_another_build_is_taken_and_kept(tmp_path, monkeypatch):
    """Builds on threads (the bench's) may make the same missing parent at once: the one that
    loses the race takes the folder, and a failure does not remove it."""
    mkdir = Path.mkdir

    def made_by_another_build_first(self, *args, **kwargs):
        if self == tmp_path / "shared":
            os.mkdir(self)
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", made_by_another_build_first)
    with pytest.raises(RuntimeError):
        with output_folder(tmp_path / "shared" / "mine" / "out", "report"):
            raise RuntimeError("boom")
    assert [path.name for path in tmp_path.iterdir()] == ["shared"]
    assert list((tmp_path / "shared").iterdir()) == []


@pytest.mark.parametrize("make, message", [
    (lambda path: (path.mkdir(), (path / "notes.txt").write_text("mine")),
     r"^--out .*out: is a folder that systolix did not write \(no \.systolix-output; it holds "
     r"1 entry: 'notes\.txt'\); allowed: a new folder, an empty one or a previous output of "
     r"systolix patch$"),
    (lambda path: path.write_text("mine"), r"^--out .*out: is a file, not a folder; allowed"),
    (lambda path: _output(path, "bitstream"),
     r"^--out .*out: holds the output of systolix bitstream, not of systolix patch; allowed"),
    (lambda path: (_output(path, "patch"), (path / "logs" / "mine.txt").write_text("mine")),
     r"^--out .*out: holds 1 file that systolix patch did not write: 'logs/mine\.txt'; "),
])
def test_what_is_not_the_commands_is_refused_before_the_block_runs(tmp_path, make, message):
    out = tmp_path / "out"
    make(out)
    before = sorted(str(path) for path in tmp_path.rglob("*"))
    ran = []
    with pytest.raises(OutputError, match=message):
        with output_folder(out, "patch"):
            ran.append(True)
    assert not ran and sorted(str(path) for path in tmp_path.rglob("*")) == before
    with pytest.raises(OutputError):
        check_output_folder(out, "patch")


def test_a_write_error_in_the_staging_folder_names_the_option(tmp_path):
    with pytest.raises(OutputError, match=r"^--model-out .*out: cannot be written \(No space "
                                          r"left on device\); allowed: a folder that can be "
                                          r"written$"):
        with output_folder(tmp_path / "out", "quantize", option="--model-out") as staging:
            raise OSError(28, "No space left on device", str(staging / "model.npz"))
    assert list(tmp_path.iterdir()) == []


def test_another_os_error_passes_through(tmp_path):
    with pytest.raises(FileNotFoundError):
        with output_folder(tmp_path / "out", "quantize"):
            open(tmp_path / "missing-input.npz", "rb")
    assert list(tmp_path.iterdir()) == []
