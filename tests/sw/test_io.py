import numpy as np
import pytest

from systolix.files import atomic_write
from systolix.sw.io import load_arrays, save_arrays


def test_round_trip(tmp_path):
    path = tmp_path / "sub" / "thing.npz"
    save_arrays(path, "systolix.Thing", 3, {"answer": 42}, {"a": np.arange(5)})
    header, arrays = load_arrays(path, "systolix.Thing", 3)
    assert header["answer"] == 42 and header["version"] == 3
    np.testing.assert_array_equal(arrays["a"], np.arange(5))


def test_wrong_format_and_version(tmp_path):
    path = tmp_path / "thing.npz"
    save_arrays(path, "systolix.Thing", 1, {}, {})
    with pytest.raises(ValueError, match=r"is not a systolix.Other file but 'systolix.Thing'"):
        load_arrays(path, "systolix.Other", 1)
    with pytest.raises(ValueError, match=r"is systolix.Thing version 1; this systolix reads "
                                         r"version 2"):
        load_arrays(path, "systolix.Thing", 2)
    with pytest.raises(ValueError, match=r"is not a readable .npz file"):
        load_arrays(tmp_path / "missing.npz", "systolix.Thing", 1)


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
