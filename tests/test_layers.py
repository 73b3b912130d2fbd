"""The layers of the project point down: the import-linter contract in ``.importlinter`` holds
for the package as it installs, and breaks when one upward import is added."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def installed_layout(folder):
    """Copy the Python files of every package in pyproject.toml's ``package-dir`` (the folders of
    the repository) to where the package puts them: ``folder/systolix/hw/...``."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package, source in setuptools["package-dir"].items():
        target = folder.joinpath(*package.split("."))
        target.mkdir(parents=True, exist_ok=True)
        for module in (ROOT / source).glob("*.py"):
            shutil.copy(module, target / module.name)
    return folder


def lint_imports(folder):
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(ROOT / ".importlinter")],
                          cwd=folder, env={"PYTHONPATH": str(folder), "PATH": ""},
                          capture_output=True, text=True)


def test_every_package_is_in_the_contract(tmp_path):
    """Each subpackage of the installed layout is a layer of the contract (nothing is left out
    of the check)."""
    contract = (ROOT / ".importlinter").read_text()
    layout = installed_layout(tmp_path)
    packages = {".".join(path.relative_to(layout).parts) for path in layout.rglob("*")
                if path.is_dir() and path.name != "__pycache__"}
    unlisted = {package for package in packages - {"systolix", "systolix.sim"}
                if package not in contract}
    assert not unlisted
    ground = {f"systolix.{module.stem}" for module in (layout / "systolix").glob("*.py")
              if module.stem not in ("__init__",)}
    assert {module for module in ground if module not in contract} == set()


def test_layers_are_kept(tmp_path):
    result = lint_imports(installed_layout(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Layers point down KEPT" in result.stdout


@pytest.mark.parametrize("module, upward", [
    ("numeric.py", "systolix.hw.mac"),                 # the ground layer imports the gateware
    ("hw/mac.py", "systolix.sim.golden.array"),        # the gateware imports the golden model
    ("sim/golden/program.py", "systolix.sw.program"),  # the golden model imports the compiler
    ("sw/pack.py", "systolix.boards.synth"),           # the compiler imports the boards
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, upward):
    """A function-level import is enough."""
    layout = installed_layout(tmp_path)
    path = layout / "systolix" / module
    path.write_text(path.read_text() + f"\n\ndef _upward():\n    import {upward}\n")
    result = lint_imports(layout)
    assert result.returncode != 0
    assert "Layers point down BROKEN" in result.stdout
    assert upward in result.stdout
