"""The host never waits for ever and never truncates: the bound on the bytes read_frame skips, the
serial transport's deadline per frame, float codes refused by Device.run (issue 12)."""

import os
import pty
import threading
import time

import numpy as np
import pytest

from systolix import protocol
from systolix.boards.tops import board
from systolix.protocol import MAX_SKIPPED_BYTES, ProtocolError, encode_frame, read_frame
from systolix.sw.driver import Device, GoldenTransport, SerialTransport
from systolix.sw.stimulus import random_program


def _reader(data):
    position = [0]

    def read(count):
        chunk = data[position[0]:position[0] + count]
        position[0] += len(chunk)
        return chunk
    return read, position


def test_read_frame_skips_a_bounded_amount_of_garbage():
    frame = encode_frame(protocol.FrameType.STATUS)
    read, _ = _reader(b"\x00" * MAX_SKIPPED_BYTES + frame)
    assert read_frame(read) == frame
    read, position = _reader(b"\x00" * (MAX_SKIPPED_BYTES + 10) + frame)
    with pytest.raises(ProtocolError, match=rf"^no frame: {MAX_SKIPPED_BYTES + 1} bytes without "
                                            rf"SYNC 0xA5; at most {MAX_SKIPPED_BYTES} are "
                                            rf"skipped \(MAX_SKIPPED_BYTES\)$"):
        read_frame(read)
    assert position[0] == MAX_SKIPPED_BYTES + 1


def test_read_frame_takes_a_smaller_bound():
    read, _ = _reader(b"\x17" * 10 + encode_frame(protocol.FrameType.STATUS))
    with pytest.raises(ProtocolError, match=r"^no frame: 4 bytes without SYNC"):
        read_frame(read, max_skipped=3)


class _Line:
    """A pseudo-terminal whose other end a thread writes ``chunk`` to every ``period`` s."""

    def __init__(self, chunk, period):
        self.controller, self.device = pty.openpty()
        os.set_blocking(self.controller, False)     # a full line must not block the writer
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, args=(chunk, period), daemon=True)
        self.thread.start()
        self.path = os.ttyname(self.device)

    def _send(self, chunk, period):
        while not self.stop.wait(period):
            try:
                os.write(self.controller, chunk)
            except BlockingIOError:
                continue
            except OSError:
                return

    def close(self):
        self.stop.set()
        self.thread.join()
        os.close(self.controller)
        os.close(self.device)


@pytest.mark.parametrize("chunk, period, error, message", [
    # One SYNC byte every 50 ms: every read is within its timeout, the frame never ends.
    (b"\xa5", 0.05, TimeoutError, r"no whole reply from .* within 1 s \(frame_timeout\)"),
    # Garbage as fast as the line goes: the bound on skipped bytes ends the wait.
    (b"\x00" * 4096, 0.001, ProtocolError, r"bytes without SYNC 0xA5"),
])
def test_the_serial_transport_has_a_deadline_per_frame(chunk, period, error, message):
    line = _Line(chunk, period)
    try:
        with SerialTransport(line.path, timeout=1.0, frame_timeout=1.0 if error is TimeoutError
                             else 30.0) as transport:
            started = time.monotonic()
            with pytest.raises(error, match=message):
                transport.exchange(encode_frame(protocol.FrameType.STATUS))
            assert time.monotonic() - started < 10
            assert transport.serial.timeout == 1.0
    finally:
        line.close()


def test_the_default_frame_deadline_covers_the_longest_frame():
    transport = SerialTransport("loop://", baudrate=115200, timeout=0.5)
    assert transport.frame_timeout == pytest.approx(
        0.5 + 10 * (protocol.MAX_FRAME_BYTES + MAX_SKIPPED_BYTES) / 115200)
    with pytest.raises(ValueError, match=r"^frame_timeout must be a number of seconds above 0, "
                                         r"not 0$"):
        SerialTransport("loop://", frame_timeout=0)


@pytest.fixture(scope="module")
def device():
    config = board("icebreaker").config
    program = random_program(np.random.default_rng(0), config, [16, 8, 4])
    return Device(GoldenTransport(program, config), program, config), program


@pytest.mark.parametrize("codes, message", [
    (np.full((2, 16), 1.7), r"^codes must be integers \(input codes\), not float64 values"),
    (np.full((2, 16), 3.0), r"^codes must be integers \(input codes\), not float64 values"),
    (np.full((2, 16), True), r"^codes must be integers \(input codes\), not bool values"),
    (np.full((2, 16), 2 ** 64 - 1, np.uint64), r"^codes must lie in 0..15, not "
                                               r"18446744073709551615..18446744073709551615$"),
])
def test_run_refuses_what_it_would_truncate(device, codes, message):
    with pytest.raises(ValueError, match=message):
        device[0].run(codes)


def test_run_takes_any_integer_dtype(device):
    run, program = device
    codes = np.arange(32).reshape(2, 16) % 16
    expected = run.run(codes).outputs
    np.testing.assert_array_equal(run.run(codes.astype(np.uint8)).outputs, expected)
    np.testing.assert_array_equal(run.run(codes.tolist()).outputs, expected)
