"""The whole accelerator in cocotb, driven by the host driver through the simulation transport:
the same frames a board's UART carries."""

import numpy as np
import pytest

from systolix import protocol
from systolix.config import ArrayConfig
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sw.stimulus import random_program
from systolix.sim.transport import SimulationTransport
from systolix.sw.driver import Device, DeviceError
from systolix.memory_map import MemoryConfig
from systolix.sw.pack import pack

pytestmark = pytest.mark.cocotb


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    rng = np.random.default_rng(4)
    config = ArrayConfig(rows=4, cols=3, weight_bits=3, activation_bits=5, accumulator_bits=20)
    program = random_program(rng, config, [10, 7, 5])
    memories = MemoryConfig(batch=6)
    images = pack(program, config, memories)
    with SimulationTransport(config, images, stall=0.3,
                             build_root=tmp_path_factory.mktemp("accelerator")) as transport:
        yield transport, Device(transport, program, config, memories), program, config, images


def test_runs_through_the_driver(served):
    transport, device, program, config, images = served
    codes = np.random.default_rng(5).integers(0, 32, (15, 10))
    result = device.run(codes)          # 6 + 6 + 3 vectors: three RUN frames
    np.testing.assert_array_equal(result.outputs, run_program(program, codes))
    assert result.cycles == tuple(engine_cycles(config, images, batch).compute
                                  for batch in (6, 6, 3))
    assert device.status().cycles == result.cycles[-1]


def test_bad_frames_are_answered_with_errors(served):
    transport, device, program, config, images = served
    request = bytearray(protocol.encode_frame(protocol.FrameType.RUN,
                                              protocol.encode_run(1, [0, 0, 0], 20)))
    request[-1] ^= 0xFF
    reply = protocol.decode_frame(transport.exchange(bytes(request)))
    assert reply.type == protocol.FrameType.ERROR
    assert protocol.decode_error(reply.payload)[0] == protocol.ErrorCode.BAD_CRC
    with pytest.raises(DeviceError):
        device._request(protocol.FrameType.RUN, protocol.encode_run(7, [0] * 21, 20),
                        protocol.FrameType.RESULT)
    codes = np.random.default_rng(6).integers(0, 32, (2, 10))   # the link has recovered
    np.testing.assert_array_equal(device.run(codes).outputs, run_program(program, codes))
