"""The test tiers of pyproject.toml's markers.

A test that builds a cocotb testbench on a simulator is marked ``cocotb``, one that runs the
YoWASP tools ``toolchain``, the wheel-install test ``wheel`` (a file of such tests says so with a
module-level ``pytestmark``, a file of mixed tests on each test). Every other test is ``unit``:
the hook below marks it so, and a ``unit`` test that starts a simulator or a YoWASP tool fails
with the marker it lacks, so the tiers stay true as tests are added. ``slow`` (not in CI) comes
on top of any tier.

    pytest -m unit                 # seconds: no simulator, no toolchain
    pytest -m "unit or cocotb"     # no Yosys or nextpnr
    pytest -m "not slow"           # what `make test` runs (pyproject's addopts)
"""

import fcntl
import os
import shutil
import subprocess

import pytest

TIERS = ("cocotb", "toolchain", "wheel")
"""The tiers a test is marked with by hand; a test with none of them is ``unit``."""

_SIMULATORS = ("verilator", "verilator_bin", "iverilog", "vvp")
_TOOL_PREFIXES = ("yowasp-", "yosys", "nextpnr", "icepack", "iceunpack", "icebram", "ecppack",
                  "ecpunpack", "ecpbram")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark ``unit`` every test without a tier, before ``-m`` selects (tryfirst); put the
    ``wheel`` tests first, so that on two workers their minutes overlap the rest instead of
    trailing it."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.unit)
    items.sort(key=lambda item: item.get_closest_marker("wheel") is None)


def _tier_of(program):
    """The tier that running ``program`` (a path or a name) needs, or None."""
    name = os.path.basename(str(program))
    if name in _SIMULATORS:
        return "cocotb"
    if name.startswith(_TOOL_PREFIXES):
        return "toolchain"
    return None


@pytest.fixture(autouse=True)
def _unit_tests_run_no_tools(request, monkeypatch):
    """A ``unit`` test that starts a simulator or a YoWASP tool fails, naming the marker it lacks
    (at the call, and again at teardown for a call made in a thread or caught by the code)."""
    if request.node.get_closest_marker("unit") is None:
        yield
        return
    popen_init = subprocess.Popen.__init__
    refused = []

    def checked_init(self, args, *rest, **kwargs):
        program = kwargs.get("executable") or (
            args if isinstance(args, (str, bytes, os.PathLike)) else args[0])
        program = os.path.basename(os.fsdecode(program))
        if kwargs.get("shell"):
            program = program.split()[0]
        tier = _tier_of(program)
        if tier is not None:
            refused.append(f"{request.node.nodeid} runs {program}: mark it {tier} "
                           f"(@pytest.mark.{tier}, or pytestmark = pytest.mark.{tier} for a "
                           f"whole file); unit tests run no external tool")
            pytest.fail(refused[-1], pytrace=False)
        popen_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", checked_init)
    yield
    if refused:
        pytest.fail(refused[0], pytrace=False)


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """``shared(name)``: the path of the shared resource ``name`` of
    :func:`systolix.cli.errors.make_resource` (``"build"``, the default model's iCEBreaker
    bitstream build, or ``"quantize"``), made once per test run: the first pytest-xdist worker
    that asks makes it, the others wait for it. The catalogue of bad inputs
    (tests/cli/test_errors.py), the patch tests of tests/boards/test_bitstream.py and
    tests/cli/test_patch_paths.py use the one build."""
    from systolix.cli.errors import make_resource
    from systolix.files import MARKER
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
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


# Hypothesis profiles of the fuzz tests (tests/sim/test_fuzz.py), one per tier; the tests take
# them with @settings(settings.get_profile(...)), so no other test changes. Both: no deadline
# (an engine example builds a simulator), a @reproduce_failure line with every failure, health
# checks that a build per example trips (and the autouse fixture above) suppressed. CI draws the
# same examples every run (derandomize, hence no example database); the slow tier draws new
# ones each run and keeps failing examples in build/hypothesis, so that the next run replays
# them first and resumes shrinking.
from pathlib import Path  # noqa: E402

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis.database import DirectoryBasedExampleDatabase  # noqa: E402

_FUZZ = dict(deadline=None, print_blob=True,
             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                    HealthCheck.data_too_large])
settings.register_profile("systolix-ci", derandomize=True, max_examples=30, **_FUZZ)
settings.register_profile("systolix-slow", max_examples=500, **_FUZZ,
                          database=DirectoryBasedExampleDatabase(
                              Path(__file__).resolve().parents[1] / "build" / "hypothesis"))
