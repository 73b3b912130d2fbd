import random
import zlib

import numpy as np
import pytest

from systolix import protocol
from systolix.config import ArrayConfig
from systolix.protocol import (CRC_PARAMETERS, SYNC, CrcError, ErrorCode, Frame, FrameType,
                               ProtocolError, ReferenceDevice, Result, Status, crc16,
                               decode_error, decode_frame, decode_load, decode_result,
                               decode_run, encode_error, encode_frame, encode_load,
                               encode_result, encode_run, read_frame)
from systolix.sw.stimulus import random_program
from systolix.boards.memory_files import write_images
from systolix.sw.pack import pack

STATUS = Status(protocol=protocol.PROTOCOL_VERSION, busy=0, header_word=0x0001_0002,
                config_word=0x0123_4567, image_checksum=0x89AB_CDEF, vector_words=3,
                word_bits=12, output_codes=4, max_batch=5, cycles=0)


def reader(data, chunk=None):
    """``read(n)`` over ``data``, at most ``chunk`` bytes a call."""
    position = 0

    def read(count):
        nonlocal position
        size = count if chunk is None else min(count, chunk)
        piece = data[position:position + size]
        position += len(piece)
        return piece
    return read


def test_crc_is_ccitt_false_with_zero_residue():
    assert crc16(b"123456789") == 0x29B1
    assert CRC_PARAMETERS.residue() == 0
    rng = random.Random(0)
    data = bytes(rng.randrange(256) for _ in range(100))
    crc = crc16(data)
    assert crc16(data + crc.to_bytes(2, "big")) == 0


def test_status_request_bytes():
    body = bytes([FrameType.STATUS, 0, 0])
    assert encode_frame(FrameType.STATUS) == bytes([SYNC]) + body + crc16(body).to_bytes(2, "big")


@pytest.mark.parametrize("length", [0, 1, 300, protocol.MAX_PAYLOAD])
def test_frames_round_trip(length):
    rng = random.Random(length)
    payload = bytes(rng.randrange(256) for _ in range(length))
    frame = encode_frame(FrameType.RESULT, payload)
    assert len(frame) == 4 + length + 2
    assert decode_frame(frame) == Frame(FrameType.RESULT, payload)
    assert read_frame(reader(b"\x00\x17" + frame + b"tail", chunk=7)) == frame


def test_unknown_types_decode_as_ints():
    assert decode_frame(encode_frame(0x33, b"x")) == Frame(0x33, b"x")


def test_decoder_refuses_bad_frames():
    frame = encode_frame(FrameType.STATUS_REPLY, STATUS.encode())
    corrupted = frame[:10] + bytes([frame[10] ^ 1]) + frame[11:]
    with pytest.raises(CrcError, match=r"^the CRC of a frame of type 0x82 does not match: "
                                       r"0x[0-9A-F]{4} computed, 0x[0-9A-F]{4} received$"):
        decode_frame(corrupted)
    with pytest.raises(ProtocolError, match=r"^a frame starts with SYNC 0xA5"):
        decode_frame(b"\x00" + frame[1:])
    with pytest.raises(ProtocolError, match=r"^a frame with a 26-byte payload has 32 bytes, "
                                            r"not 31$"):
        decode_frame(frame[:-1])


def test_read_frame_needs_a_whole_frame():
    frame = encode_frame(FrameType.STATUS)
    with pytest.raises(ProtocolError, match=r"^no frame: no more bytes$"):
        read_frame(reader(b"\x01\x02"))
    with pytest.raises(ProtocolError, match=r"^no more bytes after 5 of a frame of 6$"):
        read_frame(reader(frame[:-1], chunk=1))


def test_run_payload_round_trip():
    words = [0x000, 0xFFF, 0x123, 0xABC, 0x001, 0x800]
    payload = encode_run(2, words, 12)
    assert payload[:4] == bytes([2, 0, 0x00, 0x00]) and payload[4:6] == bytes([0xFF, 0x0F])
    assert len(payload) == protocol.run_length(2, 3, 12) == 2 + 6 * 2
    assert decode_run(payload, 3, 12) == (2, words)
    with pytest.raises(ProtocolError, match=r"^a RUN payload of batch 2 has 14 bytes, not 12$"):
        decode_run(payload[:-2], 3, 12)
    with pytest.raises(ValueError, match=r"^a word must be an integer in 0\.\.4095, not 4096$"):
        encode_run(1, [4096], 12)
    with pytest.raises(ValueError, match=r"^batch must be an integer in 1\.\.65535, not 0$"):
        encode_run(0, [], 12)
    with pytest.raises(ProtocolError, match=r"^a word has bits set above its 12 bits$"):
        decode_run(bytes([1, 0, 0, 0x10, 0, 0, 0, 0]), 3, 12)


def test_result_status_and_error_payloads_round_trip():
    payload = encode_result([1, 2, 255], 0x0102_0304)
    assert payload == bytes([1, 2, 255, 4, 3, 2, 1])
    assert decode_result(payload) == Result(bytes([1, 2, 255]), 0x0102_0304)
    assert len(STATUS.encode()) == protocol.STATUS_LAYOUT.size // 8 == 26
    assert Status.decode(STATUS.encode()) == STATUS
    assert encode_error(ErrorCode.BAD_BATCH, FrameType.RUN) == bytes([4, 1])
    assert decode_error(bytes([4, 1])) == (ErrorCode.BAD_BATCH, FrameType.RUN)
    assert decode_error(bytes([99, 0x33])) == (99, 0x33)
    with pytest.raises(ProtocolError, match=r"^a payload of 26 bytes was expected, not 25$"):
        Status.decode(STATUS.encode()[:-1])
    with pytest.raises(ValueError, match=r"^cycles must be an integer in 0\.\.4294967295, "
                                         r"not -1$"):
        encode_result([], -1)


def test_frame_limits():
    assert protocol.word_bytes(1) == 1 and protocol.word_bytes(9) == 2
    assert protocol.word_bytes(256) == 32
    assert protocol.result_length(3, 10) == 34
    assert protocol.frame_max_batch(8, 32, 10) == (65535 - 2) // 32
    assert protocol.frame_max_batch(1, 8, 20000) == 3
    with pytest.raises(ValueError, match=r"^the payload length must be an integer in "
                                         r"0\.\.65535, not 65536$"):
        encode_frame(FrameType.RUN, bytes(65536))
    with pytest.raises(ValueError, match=r"^frame_type must be an integer in 0\.\.255, "
                                         r"not 256$"):
        encode_frame(256)


def test_image_checksum_is_crc32_of_the_bin_files(tmp_path):
    config = ArrayConfig(rows=3, cols=2, weight_bits=3, activation_bits=2)
    images = pack(random_program(np.random.default_rng(1), config, [7, 5, 3]), config)
    write_images(images, tmp_path)
    files = b"".join((tmp_path / f"{name}.bin").read_bytes()
                     for name in ("weights", "requant", "program"))
    assert protocol.image_checksum(images) == zlib.crc32(files)


@pytest.mark.parametrize("request_, reply", [
    (encode_frame(FrameType.STATUS), encode_frame(FrameType.STATUS_REPLY, STATUS.encode())),
    (encode_frame(FrameType.STATUS, b"\0"),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_LENGTH, FrameType.STATUS]))),
    (encode_frame(0x10), encode_frame(FrameType.ERROR, bytes([ErrorCode.UNKNOWN_TYPE, 0x10]))),
    (encode_frame(FrameType.RUN, b"\1"),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_LENGTH, FrameType.RUN]))),
    (encode_frame(FrameType.RUN, encode_run(6, [0] * 18, 12)),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_BATCH, FrameType.RUN]))),
    (encode_frame(FrameType.RUN, encode_run(1, [0] * 4, 12)),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_LENGTH, FrameType.RUN]))),
    (encode_frame(FrameType.RUN, encode_run(1, [7, 8, 9], 12)),
     encode_frame(FrameType.RESULT, encode_result([7, 8, 9, 0], 100))),
    # 12-bit words in 2 bytes: bits 12..15 of a word (the high nibble of its second byte).
    (encode_frame(FrameType.RUN, bytes([1, 0, 0, 0x10, 0, 0, 0, 0])),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_WORD, FrameType.RUN]))),
    (encode_frame(FrameType.RUN, bytes([1, 0, 0xFF, 0x0F, 0xFF, 0x0F, 0xFF, 0x8F])),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_WORD, FrameType.RUN]))),
    (encode_frame(FrameType.RUN, bytes([1, 0, 0, 0x10, 0, 0])),
     encode_frame(FrameType.ERROR, bytes([ErrorCode.BAD_LENGTH, FrameType.RUN]))),
], ids=["status", "status with payload", "unknown type", "run without batch",
        "batch too large", "run too long", "run", "bad first word", "bad last word",
        "bad word in a run too short"])
def test_reference_device_answers(request_, reply):
    device = ReferenceDevice(STATUS, lambda batch, words: (
        (words + [0])[:batch * STATUS.output_codes], 100 * batch))
    assert device.respond(request_) == reply


def test_reference_device_checks_the_crc_first_and_keeps_the_cycles():
    device = ReferenceDevice(STATUS, lambda batch, words: ([0] * 4 * batch, 100 * batch))
    bad = bytearray(encode_frame(0x10, b"abc"))
    bad[-1] ^= 1
    assert decode_frame(device.respond(bytes(bad))) == Frame(
        FrameType.ERROR, bytes([ErrorCode.BAD_CRC, 0x10]))
    device.respond(encode_frame(FrameType.RUN, encode_run(3, [0] * 9, 12)))
    reply = decode_frame(device.respond(encode_frame(FrameType.STATUS)))
    assert Status.decode(reply.payload).cycles == 300
    bad_word_and_crc = bytearray(encode_frame(FrameType.RUN, bytes([1, 0, 0, 0xF0, 0, 0, 0, 0])))
    bad_word_and_crc[-1] ^= 1
    assert decode_frame(device.respond(bytes(bad_word_and_crc))) == Frame(
        FrameType.ERROR, bytes([ErrorCode.BAD_CRC, FrameType.RUN]))


def test_error_codes_are_numbered_once():
    assert [(code.name, code.value) for code in ErrorCode] == [
        ("BAD_CRC", 1), ("UNKNOWN_TYPE", 2), ("BAD_LENGTH", 3), ("BAD_BATCH", 4),
        ("TIMEOUT", 5), ("BAD_WORD", 6), ("BAD_ADDRESS", 7)]


@pytest.mark.parametrize("frame, text", [
    (encode_frame(FrameType.STATUS), "a5 02 00 00 a2 fc"),
    (encode_frame(FrameType.RUN, encode_run(1, [0x123, 0x045], 12)),
     "a5 01 06 00 01 00 23 01 45 00 5f a1"),
    (encode_frame(FrameType.RESULT, encode_result([3, 250, 7], 1234)),
     "a5 81 07 00 03 fa 07 d2 04 00 00 ea a0"),
    (encode_frame(FrameType.ERROR, encode_error(ErrorCode.BAD_CRC, FrameType.RUN)),
     "a5 ff 02 00 01 01 85 db"),
    (encode_frame(FrameType.LOAD, encode_load(0x10, [0x1234, 0x0056], 16)),
     "a5 03 08 00 10 00 02 00 34 12 56 00 3f 48"),
    (encode_frame(FrameType.LOADED), "a5 83 00 00 ae 96"),
], ids=["status", "run", "result", "error", "load", "loaded"])
def test_examples_of_docs_protocol_md(frame, text):
    assert frame.hex(" ") == text


def test_device_status_limits_the_batch_to_the_frame_length():
    config = ArrayConfig(rows=2, cols=2)
    images = pack(random_program(np.random.default_rng(2), config, [3, 5]), config)
    status = protocol.device_status(images, vector_words=2, word_bits=8, output_codes=20000,
                                    max_batch=128)
    assert status.max_batch == 3 and status.header_word == images.program[0]
    assert status.image_checksum == protocol.image_checksum(images) and status.cycles == 0
    with pytest.raises(ValueError, match=r"^a vector of 40000 words of 16 bits and 5 output "
                                         r"codes does not fit in a frame of 65535 payload "
                                         r"bytes$"):
        protocol.device_status(images, vector_words=40000, word_bits=16, output_codes=5,
                               max_batch=1)


def test_line_bytes_count_both_frames_of_a_batch():
    """STATUS: 3 words of 12 bits (2 bytes each) a vector, 4 codes out, at most 5 a RUN."""
    run = encode_frame(FrameType.RUN, encode_run(5, [1] * 15, 12))
    result = encode_frame(FrameType.RESULT, encode_result([0] * 20, 99))
    assert protocol.line_bytes(STATUS, 5) == len(run) + len(result) == 38 + 30


def test_uart_bound_is_the_line_time_of_a_full_batch():
    # 68 bytes of 10 bits at 115200 baud carry 5 inferences.
    assert protocol.uart_inferences_per_second(STATUS, 115200) == pytest.approx(
        5 / (68 * 10 / 115200))
    with pytest.raises(ValueError, match="baud must be an integer"):
        protocol.uart_inferences_per_second(STATUS, 0)


def test_load_round_trips_and_is_checked_like_a_run():
    payload = encode_load(7, [0x1FF, 0, 3], 9)
    assert payload == bytes([7, 0, 3, 0, 0xFF, 1, 0, 0, 3, 0])
    assert decode_load(payload, 9) == (7, [0x1FF, 0, 3])
    assert protocol.load_max_words(16) == 32765 and protocol.load_length(2, 16) == 8
    with pytest.raises(ProtocolError, match=r"^a LOAD payload of 3 words has 10 bytes, not 9$"):
        decode_load(payload[:-1], 9)
    with pytest.raises(ValueError, match=r"^the words of a LOAD must be an integer in "
                                         r"1..32765, not 0$"):
        encode_load(0, [], 16)
    weights = [0] * 8
    device = ReferenceDevice(STATUS, lambda batch, words: ([], 0), weights=weights,
                             weight_bits=9)
    for request, code in (
            (encode_frame(FrameType.LOAD, encode_load(6, [1, 2, 3], 9)), ErrorCode.BAD_ADDRESS),
            (encode_frame(FrameType.LOAD, encode_load(0, [1], 9)[:-1]), ErrorCode.BAD_LENGTH),
            (encode_frame(FrameType.LOAD, b"\0\0\1"), ErrorCode.BAD_LENGTH),
            (encode_frame(FrameType.LOAD, encode_load(0, [1], 9)[:-1] + b"\2"),
             ErrorCode.BAD_WORD)):
        assert decode_error(decode_frame(device.respond(request)).payload) == (
            code, FrameType.LOAD)
    assert weights == [0] * 8
    reply = device.respond(encode_frame(FrameType.LOAD, encode_load(5, [1, 2, 3], 9)))
    assert decode_frame(reply) == Frame(FrameType.LOADED, b"")
    assert weights == [0, 0, 0, 0, 0, 1, 2, 3]
    without = ReferenceDevice(STATUS, lambda batch, words: ([], 0))
    assert decode_error(decode_frame(without.respond(encode_frame(
        FrameType.LOAD, encode_load(0, [1], 9)))).payload) == (ErrorCode.UNKNOWN_TYPE,
                                                               FrameType.LOAD)
