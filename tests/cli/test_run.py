"""``systolix run`` through a real serial device: a pseudo-terminal whose other end is the UART
pins of the iCEBreaker's accelerator simulated by Verilator (sim/testbench/serial.py), so the
bytes the driver writes reach the ``rx`` pin bit by bit and the replies come back from ``tx``.
"""

import numpy as np
import pytest

from systolix import protocol
from systolix.boards.tops import board
from systolix.cli import main
from systolix.memory_map import output_codes, vector_words
from systolix.sim.transport import SerialSimulation
from systolix.sw.default import default_program
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_program

pytestmark = pytest.mark.cocotb

IMAGES = 60


def _frame_bytes(payload):
    return protocol.FRAME_HEADER_LAYOUT.size // 8 + payload + protocol.CRC_BYTES


def test_run_through_a_pseudo_terminal(tmp_path, capsys, monkeypatch):
    icebreaker = board("icebreaker")
    program = default_program(icebreaker.config)[0]
    images = pack(program, icebreaker.config, icebreaker.memories)
    other = tmp_path / "other.npz"
    random_program(np.random.default_rng(1), icebreaker.config, [64, 16, 10]).save(other)
    monkeypatch.chdir(tmp_path)     # no build/bitstream here: the board's fixed clock
    with SerialSimulation(icebreaker.config, images, build_root=tmp_path / "sim") as simulation:
        code = main(["run", "--port", simulation.port, "--images", str(IMAGES),
                     "--timeout", "30"])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert "OK: 0 mismatches, 0 cycle mismatches" in out
        assert f"{IMAGES} images" in out
        assert "accuracy  board" in out and "UART-bound" in out and "compute-bound" in out
        # Another model than the board's: refused at its STATUS, in one line.
        assert main(["run", "--port", simulation.port, "--model", str(other),
                     "--timeout", "30"]) == 1
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and "the board does not hold --model" in err \
            and "image_checksum" in err
    report = simulation.report
    # Every byte crossed the pins: three STATUS requests, the LOAD frame of the weights (in
    # the iCEBreaker's SPRAM, uploaded by the driver after the first STATUS) and the RUN
    # frames of the images in batches of max_batch, and their replies.
    weights = len(images.weights)
    assert icebreaker.memories.upload_weights
    assert weights <= protocol.load_max_words(images.weight_width)
    word_bits = icebreaker.config.rows * icebreaker.config.activation_bits
    status = protocol.device_status(images, vector_words=vector_words(images),
                                    word_bits=word_bits, output_codes=output_codes(images),
                                    max_batch=images.max_batch)
    batches = [min(status.max_batch, IMAGES - start)
               for start in range(0, IMAGES, status.max_batch)]
    requests = 3 * _frame_bytes(0) + _frame_bytes(protocol.load_length(
        weights, images.weight_width)) + sum(_frame_bytes(protocol.run_length(
            batch, status.vector_words, word_bits)) for batch in batches)
    replies = 3 * _frame_bytes(protocol.STATUS_LAYOUT.size // 8) + _frame_bytes(0) + sum(
        _frame_bytes(protocol.result_length(batch, status.output_codes)) for batch in batches)
    assert report["bytes_to_device"] == requests
    assert report["bytes_to_host"] == replies
    assert report["uart_errors"] == 0 and report["framing_errors_on_tx"] == 0
