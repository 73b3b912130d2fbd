"""The Python code blocks of README.md and docs/*.md run, in order, one namespace a document.

A block may use the names of the reader's context below (what the surrounding text says the
reader has at hand: a model, its array, its images); everything else it must define or import
itself. A serial device is a pseudo-terminal served by the golden model of the default
accelerator, so the driver's serial examples talk to a real serial port.

The context:

``config``, ``memories``
    The default array (:data:`systolix.config.DEFAULT_CONFIG`) and memory depths
    (``MemoryConfig()``).
``program``, ``images``
    The default model (:func:`systolix.sw.default.default_program`) and its memory images.
``codes``, ``x``
    Input codes and real inputs of 16 digits test images.
``port``
    The path of a serial device that answers as the default accelerator would.
``m``, ``clock_hz``
    An Amaranth ``Module`` being elaborated and its clock frequency in Hz.
"""

import os
import pty
import re
import threading
from pathlib import Path

import pytest
from amaranth.hdl import Elaboratable, Fragment, Module

from systolix import protocol
from systolix.config import DEFAULT_CONFIG
from systolix.memory_map import MemoryConfig
from systolix.sw.default import default_program
from systolix.sw.driver import GoldenTransport
from systolix.sw.pack import pack

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SIMULATING = {"README.md"}     # documents whose blocks run a Verilator simulation


def python_blocks(text):
    """The code of every fenced ``python`` block of a Markdown ``text``."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def serve_serial(transport):
    """A pseudo-terminal that answers each request frame with ``transport``'s reply; returns the
    path of its device and a function that stops it."""
    controller, device = pty.openpty()
    os.set_blocking(controller, True)
    buffered = bytearray()
    stop = threading.Event()

    def read(count):
        while len(buffered) < count:
            chunk = os.read(controller, 4096)
            if not chunk:
                raise EOFError
            buffered.extend(chunk)
        data = bytes(buffered[:count])
        del buffered[:count]
        return data

    def serve():
        try:
            while not stop.is_set():
                frame = protocol.read_frame(read)
                os.write(controller, transport.exchange(frame))
        except (EOFError, OSError):
            pass

    threading.Thread(target=serve, daemon=True).start()

    def close():
        stop.set()
        os.close(device)
        os.close(controller)
    return os.ttyname(device), close


@pytest.fixture(scope="module")
def default_model():
    program, data, _ = default_program(DEFAULT_CONFIG)
    return program, data


@pytest.mark.parametrize("path", [
    pytest.param(path, marks=pytest.mark.cocotb) if path.name in SIMULATING else path
    for path in DOCUMENTS if python_blocks(path.read_text())], ids=lambda path: path.name)
def test_code_blocks_run(path, default_model, tmp_path, monkeypatch):
    blocks = python_blocks(path.read_text())
    program, data = default_model
    config, memories = DEFAULT_CONFIG, MemoryConfig()
    port, close = serve_serial(GoldenTransport(program, config, memories))
    namespace = {"config": config, "memories": memories, "program": program,
                 "images": pack(program, config, memories),
                 "codes": program.encode_input(data.x_test[:16]), "x": data.x_test[:16],
                 "port": port, "clock_hz": 24_000_000}
    if any("m." in block for block in blocks):
        namespace["m"] = Module()          # for blocks that add to a module
    monkeypatch.chdir(tmp_path)
    try:
        for index, block in enumerate(blocks):
            exec(compile(block, f"{path.name}, Python block {index + 1}", "exec"), namespace)
        for value in namespace.values():     # the hardware a document builds elaborates
            if isinstance(value, Elaboratable):
                Fragment.get(value, None)
    finally:
        close()


def test_documents_are_about_this_repository():
    """No document, docstring or comment sends the reader to a document outside the
    repository."""
    outside = re.compile(r"DESIGN\.md|\.\./shared")
    offenders = [str(path.relative_to(ROOT)) for path in
                 [*DOCUMENTS, *ROOT.glob("*/**/*.py")]
                 if ".venv" not in path.parts and "build" not in path.parts
                 and outside.search(path.read_text(errors="replace"))]
    assert offenders == []
