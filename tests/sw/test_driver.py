import os
import select
import threading

import numpy as np
import pytest

from systolix import protocol
from systolix.config import ArrayConfig, code_range
from systolix.protocol import CrcError, ErrorCode, FrameType, ProtocolError
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sw.stimulus import random_conv_program, random_program
from systolix.sw.driver import (Device, DeviceError, DeviceMismatch, GoldenTransport,
                                SerialTransport)
from systolix.memory_map import MemoryConfig
from systolix.sw.pack import pack

CONFIG = ArrayConfig(rows=4, cols=3, weight_bits=3, activation_bits=3, activation_signed=True)
MEMORIES = MemoryConfig(batch=3)
PROGRAM = random_program(np.random.default_rng(5), CONFIG, [10, 7, 6])


def random_inputs(rng, count, program=PROGRAM):
    first = program.layers[0]
    low, high = code_range(first.input_bits, first.input_signed)
    return rng.integers(low, high + 1, size=(count, first.weights.shape[0]))


class Recording:
    """A transport that records the batch of every RUN and may corrupt a byte of each RUN
    request or of its reply."""

    def __init__(self, transport, corrupt_request=None, corrupt_reply=None):
        self.transport, self.batches = transport, []
        self.corrupt_request, self.corrupt_reply = corrupt_request, corrupt_reply

    def exchange(self, request):
        frame = protocol.decode_frame(request)
        if frame.type != FrameType.RUN:
            return self.transport.exchange(request)
        self.batches.append(int.from_bytes(frame.payload[:2], "little"))
        reply = self.transport.exchange(_flip(request, self.corrupt_request))
        return _flip(reply, self.corrupt_reply)


def _flip(frame, index):
    if index is None:
        return frame
    return frame[:index] + bytes([frame[index] ^ 0x01]) + frame[index + 1:]


def test_device_splits_batches_and_matches_the_golden_models():
    transport = Recording(GoldenTransport(PROGRAM, CONFIG, MEMORIES))
    device = Device(transport, PROGRAM, CONFIG, MEMORIES)
    assert device.max_batch == 3
    codes = random_inputs(np.random.default_rng(0), 7)
    outputs, cycles = device.run(codes)
    assert transport.batches == [3, 3, 1]
    np.testing.assert_array_equal(outputs, run_program(PROGRAM, codes))
    images = pack(PROGRAM, CONFIG, MEMORIES)
    assert cycles == tuple(engine_cycles(CONFIG, images, batch).compute for batch in (3, 3, 1))
    assert device.status().cycles == cycles[-1]


def test_infer_goes_through_the_host_quantizers():
    device = Device(GoldenTransport(PROGRAM, CONFIG, MEMORIES), PROGRAM, CONFIG, MEMORIES)
    x = np.random.default_rng(1).normal(0, 2, size=(4, 10))
    expected = PROGRAM.decode_output(run_program(PROGRAM, PROGRAM.encode_input(x)))
    np.testing.assert_array_equal(device.infer(x), expected)


def test_signed_and_unsigned_output_codes():
    for seed in range(6):
        program = random_program(np.random.default_rng(seed), CONFIG, [5, 9])
        device = Device(GoldenTransport(program, CONFIG), program, CONFIG)
        codes = random_inputs(np.random.default_rng(seed), 5, program)
        np.testing.assert_array_equal(device.run(codes).outputs, run_program(program, codes))


def test_device_refuses_another_program():
    other = random_program(np.random.default_rng(6), CONFIG, [10, 7, 6])
    with pytest.raises(DeviceMismatch, match=r"^the device does not hold this program: "
                                             r"image_checksum 0x[0-9A-F]{8} \(expected "
                                             r"0x[0-9A-F]{8}\)$"):
        Device(GoldenTransport(PROGRAM, CONFIG, MEMORIES), other, CONFIG, MEMORIES)
    with pytest.raises(DeviceMismatch, match=r"max_batch 3 \(expected 128\)"):
        Device(GoldenTransport(PROGRAM, CONFIG, MEMORIES), PROGRAM, CONFIG)


def test_refused_request_raises_device_error():
    transport = Recording(GoldenTransport(PROGRAM, CONFIG, MEMORIES), corrupt_request=6)
    device = Device(transport, PROGRAM, CONFIG, MEMORIES)
    with pytest.raises(DeviceError, match=r"^the device refused a RUN frame: bad CRC$") as error:
        device.run(random_inputs(np.random.default_rng(2), 2))
    assert (error.value.code, error.value.frame_type) == (ErrorCode.BAD_CRC, FrameType.RUN)


def test_corrupted_reply_raises_crc_error():
    transport = Recording(GoldenTransport(PROGRAM, CONFIG, MEMORIES), corrupt_reply=5)
    device = Device(transport, PROGRAM, CONFIG, MEMORIES)
    with pytest.raises(CrcError, match=r"^the CRC of a frame of type 0x81 does not match"):
        device.run(random_inputs(np.random.default_rng(3), 1))


def test_reply_of_the_wrong_type_or_length():
    golden = GoldenTransport(PROGRAM, CONFIG, MEMORIES)
    device = Device(golden, PROGRAM, CONFIG, MEMORIES)
    status = golden.exchange(protocol.encode_frame(FrameType.STATUS))
    device.transport = type("Fixed", (), {"exchange": lambda self, request: status})()
    with pytest.raises(ProtocolError, match=r"^a RESULT frame was expected, not type 0x82$"):
        device.run(random_inputs(np.random.default_rng(4), 1))
    short = protocol.encode_frame(FrameType.RESULT, protocol.encode_result([1, 2], 10))
    device.transport = type("Fixed", (), {"exchange": lambda self, request: short})()
    with pytest.raises(ProtocolError, match=r"^a RESULT of a batch of 1 has 6 codes, not 2$"):
        device.run(random_inputs(np.random.default_rng(4), 1))


def test_bad_inputs_are_refused():
    device = Device(GoldenTransport(PROGRAM, CONFIG, MEMORIES), PROGRAM, CONFIG, MEMORIES)
    with pytest.raises(ValueError, match=r"^codes must have shape \(n, 10\), not \(2, 9\)$"):
        device.run(np.zeros((2, 9)))
    with pytest.raises(ValueError, match=r"^codes must lie in -4\.\.3, not -1\.\.4$"):
        device.run(np.array([[-1] * 9 + [4]]))
    assert device.run(np.zeros((0, 10))).outputs.shape == (0, 6)
    with pytest.raises(TypeError, match=r"^program must be IntegerProgram, not int$"):
        Device(GoldenTransport(PROGRAM, CONFIG), 3, CONFIG)


@pytest.fixture
def serial_device():
    """A SerialTransport on one end of a pseudo-terminal, the golden device on the other."""
    master, slave = os.openpty()
    stop = threading.Event()
    golden = GoldenTransport(PROGRAM, CONFIG, MEMORIES)

    def read(count):
        while not stop.is_set():
            if select.select([master], [], [], 0.02)[0]:
                return os.read(master, count)
        return b""

    def serve():
        while True:
            try:
                request = protocol.read_frame(read)
            except ProtocolError:
                return
            os.write(master, golden.exchange(request))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = SerialTransport(os.ttyname(slave), baudrate=1_000_000, timeout=2.0)
    yield transport
    transport.close()
    stop.set()
    thread.join()
    os.close(slave)
    os.close(master)


def test_serial_transport_through_a_pseudo_terminal(serial_device):
    device = Device(serial_device, PROGRAM, CONFIG, MEMORIES)
    codes = random_inputs(np.random.default_rng(7), 5)
    np.testing.assert_array_equal(device.run(codes).outputs, run_program(PROGRAM, codes))


def test_serial_transport_times_out():
    master, slave = os.openpty()
    try:
        with SerialTransport(os.ttyname(slave), timeout=0.05) as transport:
            with pytest.raises(TimeoutError, match=r"^no reply from /dev/pts/\d+ within "
                                                   r"0\.05 s$"):
                transport.exchange(protocol.encode_frame(FrameType.STATUS))
    finally:
        os.close(slave)
        os.close(master)


def test_convolutions_through_the_golden_transport():
    """Input maps go pixel by pixel (``c_tiles`` words a pixel), outputs come back NHWC: a
    convolution chain's codes and cycles, in batches of at most max_batch."""
    config = ArrayConfig(rows=3, cols=2, weight_bits=4, activation_bits=4, accumulator_bits=20)
    rng = np.random.default_rng(0)
    program = random_conv_program(rng, config, (5, 4, 3), [("conv", 4), ("conv", 2)])
    device = Device(GoldenTransport(program, config), program, config)
    assert device.input_channels == 3
    codes = rng.integers(0, 16, (device.max_batch + 3, program.inputs))
    result = device.run(codes)
    np.testing.assert_array_equal(result.outputs, run_program(program, codes))
    images = pack(program, config)
    assert result.cycles == (engine_cycles(config, images, device.max_batch).compute,
                             engine_cycles(config, images, 3).compute)
