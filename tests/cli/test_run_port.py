"""``systolix run`` against serial devices that are not the board's accelerator: one line each,
no traceback (the run through the simulated UART is tests/cli/test_run.py)."""

import os
import pty
import threading
from dataclasses import replace

import pytest

from systolix import protocol
from systolix.boards.tops import board
from systolix.cli import main
from systolix.sw.default import default_program
from systolix.sw.driver import GoldenTransport


@pytest.fixture
def terminal():
    """A pseudo-terminal: ``(device path, controller fd)``."""
    controller, device = pty.openpty()
    yield os.ttyname(device), controller
    os.close(device)
    os.close(controller)


def _one_line(capsys):
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("systolix run: error: "), err
    return err


def test_a_port_that_does_not_answer(terminal, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    port, _ = terminal
    assert main(["run", "--port", port, "--timeout", "0.2"]) == 2
    assert f"--port {port}: no reply to a STATUS (or LOAD) request within 0.2 s at 115200 baud" in \
        _one_line(capsys)


def test_a_port_that_babbles(terminal, capsys, tmp_path, monkeypatch):
    """A device that answers with bytes that are not a frame (a serial console, say)."""
    monkeypatch.chdir(tmp_path)
    port, controller = terminal

    def answer():
        request = b""
        while len(request) < 6:     # the STATUS request
            request += os.read(controller, 64)
        os.write(controller, b"login: " + bytes([protocol.SYNC]) + b"\x82\x05\x00hello\x00\x00")

    threading.Thread(target=answer, daemon=True).start()
    assert main(["run", "--port", port, "--timeout", "1"]) == 2
    assert "the reply to a STATUS request is not a frame of the accelerator" in \
        _one_line(capsys)


def test_a_board_with_another_model(terminal, capsys, tmp_path, monkeypatch):
    """The device answers STATUS as the iCEBreaker's accelerator of the default model would, but
    with another image checksum: it holds another model."""
    monkeypatch.chdir(tmp_path)
    port, controller = terminal
    icebreaker = board("icebreaker")
    program = default_program(icebreaker.config)[0]
    transport = GoldenTransport(program, icebreaker.config, icebreaker.memories)

    def serve():
        buffered = bytearray()

        def read(count):
            while len(buffered) < count:
                buffered.extend(os.read(controller, 4096))
            data = bytes(buffered[:count])
            del buffered[:count]
            return data
        status = protocol.Status.decode(protocol.decode_frame(
            transport.exchange(protocol.read_frame(read))).payload)
        os.write(controller, protocol.encode_frame(
            protocol.FrameType.STATUS_REPLY,
            replace(status, image_checksum=status.image_checksum ^ 1).encode()))

    threading.Thread(target=serve, daemon=True).start()
    assert main(["run", "--port", port, "--timeout", "5"]) == 1
    err = _one_line(capsys).replace("systolix run: error: ", "")
    assert err.startswith(f"--port {port}: the board does not hold --workload digits-mlp for "
                          f"the icebreaker: image_checksum 0x")
    assert "make bitstream BOARD=icebreaker and make prog BOARD=icebreaker" in err
