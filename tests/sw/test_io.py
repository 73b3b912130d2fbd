import os
import stat
import zipfile

import numpy as np
import pytest

from systolix.files import atomic_write
from systolix.sw import io
from systolix.sw.io import load_arrays, save_arrays

ONE = lambda header: {"a": ("int", 1)}  # noqa: E731 -- the members of a one-array file


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "thing.npz"
    save_arrays(path, "systolix.Thing", 3, {"answer": 42}, {"a": np.arange(5)})
    header, arrays = load_arrays(path, "systolix.Thing", 3, ONE)
    assert header["answer"] == 42 and header["version"] == 3
    np.testing.assert_array_equal(arrays["a"], np.arange(5))
    assert arrays["a"].dtype == np.int64


def test_wrong_format_and_version(tmp_path):
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {})
    with pytest.raises(ValueError, match=r"is not a systolix.Other file but 'systolix.Thing'"):
        load_arrays(path, "systolix.Other", 1, dict)
    with pytest.raises(ValueError, match=r"is systolix.Thing version 1; this systolix reads "
                                         r"version 2"):
        load_arrays(path, "systolix.Thing", 2, dict)
    with pytest.raises(ValueError, match=r"missing.npz: no such file$"):
        load_arrays(tmp_path / "missing.npz", "systolix.Thing", 1, dict)


@pytest.mark.parametrize("array, message", [
    (np.arange(3.0), r"array a: must be stored as integers, not float64$"),
    (np.array([2 ** 64 - 1], np.uint64), r"array a: value 18446744073709551615 is out of range"),
    (np.zeros((2, 2), np.int64), r"array a: must have 1 dimensions, not shape \(2, 2\)$"),
    (np.array(["x"]), r"array a: must be stored as integers, not <U1$"),
])
def test_members_are_strict(tmp_path, array, message):
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {"a": array})
    with pytest.raises(ValueError, match=message):
        load_arrays(path, "systolix.Thing", 1, ONE)


def test_members_must_be_exactly_those_asked_for(tmp_path):
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {"a": np.arange(2), "b": np.arange(2)})
    with pytest.raises(ValueError, match=r"array b: is not an array of this systolix.Thing"):
        load_arrays(path, "systolix.Thing", 1, ONE)
    with pytest.raises(ValueError, match=r"array c: is missing$"):
        load_arrays(path, "systolix.Thing", 1,
                    lambda header: {"a": ("int", 1), "b": ("int", 1), "c": ("int", 1)})


def test_size_is_checked_before_the_data_is_read(tmp_path, monkeypatch):
    """A member over the limit is refused from its header: its data is never read."""
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {"a": np.zeros(1000, np.int64)})
    monkeypatch.setattr(io, "MAX_MEMBER_BYTES", 4000)
    read = []
    original = io._read_member
    monkeypatch.setattr(io, "_read_member", lambda *args: read.append(args[2].filename)
                        or original(*args))
    with pytest.raises(ValueError, match=r"array a: declares shape \(1000,\) of int64 "
                                         r"\(8,000 bytes\); allowed: at most 4,000 bytes$"):
        load_arrays(path, "systolix.Thing", 1, ONE)
    assert read == ["header.npy"]


def test_a_member_declaring_more_than_it_holds_is_refused(tmp_path):
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {"a": np.arange(4)})
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["a.npy"] = members["a.npy"].replace(b"(4,)", b"(9,)")
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match=r"array a: declares 72 bytes of data but holds 32$"):
        load_arrays(path, "systolix.Thing", 1, ONE)


@pytest.mark.parametrize("content, message", [
    (b"", r"thing.npz: is empty$"),
    (b"PK\x03\x04 and then nothing", r"thing.npz: is not a .npz file .*or it is truncated"),
])
def test_unreadable_files(tmp_path, content, message):
    (tmp_path / "thing.npz").write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_arrays(tmp_path / "thing.npz", "systolix.Thing", 1, ONE)


def test_atomic_write_applies_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_write(tmp_path / "file", lambda file: file.write(b"x"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file").stat().st_mode) == 0o640


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "report.md"
    atomic_write(path, lambda file: file.write(b"old"))

    def fail(file):
        file.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(path, fail)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
