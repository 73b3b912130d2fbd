"""The whole accelerator in cocotb, driven by the host driver through the simulation transport:
the same frames a board's UART carries."""

from dataclasses import replace

import numpy as np
import pytest

from systolix import protocol
from systolix.boards.tops import BOARDS
from systolix.config import ArrayConfig, code_range
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_images, run_program
from systolix.sw.stimulus import random_conv_program, random_program
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


# -- Weights in SPRAM: the iCEBreaker's accelerator, its weights uploaded by the driver. ---------

def dense_model(seed, config, sizes):
    """A chain of dense layers of ``sizes`` with live requantization constants, for ``config``."""
    return random_conv_program(np.random.default_rng(seed), config, (1, 1, sizes[0]),
                               [("dense", outputs) for outputs in sizes[1:]])


def check_uploaded_model(program, board, images_count, tmp_path):
    """``program`` on ``board``'s accelerator (Verilator, through the driver and the link):
    the driver uploads the weights, then runs ``images_count`` random inputs; returns what
    ``systolix sim`` reports."""
    config, memories = board.config, board.memories
    images = pack(program, config, memories)
    assert memories.upload_weights and images.memories.upload_weights
    low, high = code_range(program.layers[0].input_bits, program.layers[0].input_signed)
    codes = np.random.default_rng(1).integers(low, high, (images_count, program.inputs),
                                              endpoint=True)
    golden = run_program(program, codes)
    # The weights matter: the same program with zero weights computes other codes.
    zeros = replace(images, weights=(0,) * len(images.weights))
    assert np.count_nonzero(run_images(zeros, config, codes) != golden) > 0
    with SimulationTransport(config, images, stall=0.1, build_root=tmp_path) as transport:
        device = Device(transport, program, config, memories)
        result = device.run(codes)
    batches = [min(images.max_batch, images_count - start)
               for start in range(0, images_count, images.max_batch)]
    assert device.load_frames == -(-len(images.weights)
                                   // protocol.load_max_words(images.weight_width))
    return {"mismatches": int(np.count_nonzero(result.outputs != golden)),
            "cycles": result.cycles,
            "modelled": tuple(engine_cycles(config, images, batch).compute
                              for batch in batches),
            "weights": sum(layer.weights.size for layer in program.layers),
            "weight_words": len(images.weights), "load_frames": device.load_frames,
            "link": transport.report}


@pytest.mark.slow
def test_a_model_of_200k_weights_runs_on_the_icebreaker(tmp_path):
    """A model of 203,072 4-bit weights (41,344 words of the iCEBreaker's 49,152 in SPRAM)
    uploaded in two LOAD frames, then run bit-exactly with the cycles of the cycle model."""
    board = BOARDS["icebreaker"]
    report = check_uploaded_model(dense_model(8, board.config, [1024, 192, 32, 10]), board, 4,
                                  tmp_path)
    print(report)
    assert report["weights"] >= 200_000 and report["load_frames"] == 2
    assert report["mismatches"] == 0 and report["cycles"] == report["modelled"]
