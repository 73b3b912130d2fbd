"""Shared resources of the command-line tests: one real bitstream build and one output of
``systolix quantize`` per test run."""

import fcntl
import os
import shutil

import pytest

from systolix.cli.errors import make_resource
from systolix.files import MARKER


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """``shared(name)``: the path of the shared resource ``name`` (``"build"`` or
    ``"quantize"``), made once per test run: the first worker that asks makes it, the others
    wait for it."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "errors-shared"
    root.mkdir(exist_ok=True)

    def get(name):
        path = root / name
        with open(root / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (path / MARKER).exists():
                shutil.rmtree(path, ignore_errors=True)
                make_resource(name, path)
        return path
    return get
