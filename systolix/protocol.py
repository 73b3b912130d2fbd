"""The host link protocol: framed bytes between a host and the accelerator (docs/protocol.md).

Every constant and byte layout of the protocol is defined here, once, and read by the gateware
(:class:`systolix.hw.link.FrameLink`), the driver (:mod:`systolix.sw.driver`) and the tests.

A frame is::

    SYNC | type | length (u16 LE) | payload (length bytes) | CRC (u16, high byte first)

The CRC is :data:`CRC_ALGORITHM` (CRC-16/CCITT-FALSE, also called CRC-16/IBM-3740: polynomial
``0x1021``, initial value ``0xFFFF``, no reflection, no final XOR; check value ``0x29B1``) over
type, length and payload, the ``SYNC`` byte excluded. It is sent high byte first, so the CRC of
everything after ``SYNC``, the CRC included, is 0: the residue that
:class:`amaranth.lib.crc.Processor` reports as ``match_detected``. The software CRC
(:func:`crc16`) is the catalog entry's own :meth:`~amaranth.lib.crc.Parameters.compute`, so
gateware and software cannot disagree.

Payload layouts are :class:`amaranth.lib.data.StructLayout`\\ s of whole bytes, sent least
significant byte first (little-endian); the gateware views its registers with them and the
software packs and unpacks bytes with them.
"""

import enum
import zlib
from dataclasses import dataclass, fields, replace
from typing import NamedTuple

from amaranth.lib import data
from amaranth.lib.crc import catalog

from .codec import from_bytes, to_bytes
from .config import check_int

__all__ = [
    "PROTOCOL_VERSION", "SYNC", "MAX_PAYLOAD", "MAX_FRAME_BYTES", "MAX_SKIPPED_BYTES",
    "CRC_ALGORITHM", "CRC_PARAMETERS", "CRC_BYTES",
    "FrameType", "ErrorCode", "FRAME_HEADER_LAYOUT", "RUN_HEADER_LAYOUT", "LOAD_HEADER_LAYOUT",
    "RESULT_TAIL_LAYOUT",
    "STATUS_LAYOUT", "ERROR_LAYOUT", "ProtocolError", "CrcError", "crc16", "word_bytes",
    "words_to_bytes", "bytes_to_words", "run_length", "result_length", "frame_max_batch",
    "UART_BITS_PER_BYTE", "line_bytes", "uart_inferences_per_second", "image_checksum",
    "model_status",
    "Frame", "encode_frame", "decode_frame", "read_frame", "encode_run", "decode_run",
    "load_length", "load_max_words", "encode_load", "decode_load", "Result", "encode_result",
    "decode_result", "Status", "device_status",
    "encode_error", "decode_error", "ReferenceDevice",
]

PROTOCOL_VERSION = 2
"""Version of this protocol, sent in every STATUS reply; any change to a frame changes it
(version 2: LOAD and LOADED frames, the ``BAD_ADDRESS`` error)."""

SYNC = 0xA5
"""First byte of every frame."""

MAX_PAYLOAD = 0xFFFF
"""The most payload bytes a frame can have (the length field is 16 bits)."""

CRC_ALGORITHM = catalog.CRC16_CCITT_FALSE
"""The frame check: CRC-16/CCITT-FALSE (reveng: CRC-16/IBM-3740), an
:class:`amaranth.lib.crc.Algorithm`."""

CRC_PARAMETERS = CRC_ALGORITHM(data_width=8)
"""The frame check over bytes: ``CRC_PARAMETERS.create()`` is the gateware's CRC unit."""

CRC_BYTES = 2
"""Bytes of the CRC at the end of a frame, high byte first."""

MAX_FRAME_BYTES = 4 + MAX_PAYLOAD + CRC_BYTES
"""The most bytes of one frame: the header (SYNC, type, length), the payload, the CRC."""

MAX_SKIPPED_BYTES = MAX_FRAME_BYTES
"""The most bytes :func:`read_frame` skips looking for :data:`SYNC` (the rest of a stale
frame at most) before it gives up: a babbling line cannot keep the host waiting for ever."""


class FrameType(enum.IntEnum):
    """The type byte of a frame. Replies have bit 7 set."""
    RUN = 0x01             #: host to device: a batch of input vectors to run
    STATUS = 0x02          #: host to device: ask for a STATUS_REPLY
    LOAD = 0x03            #: host to device: weight memory words to write (run-time weights)
    RESULT = 0x81          #: device to host: the output codes and cycles of a RUN
    STATUS_REPLY = 0x82    #: device to host: :class:`Status`
    LOADED = 0x83          #: device to host: a LOAD's words are written (empty payload)
    ERROR = 0xFF           #: device to host: a frame was refused (:data:`ERROR_LAYOUT`)


class ErrorCode(enum.IntEnum):
    """Why the device refused a frame (first byte of an ERROR payload)."""
    BAD_CRC = 1            #: the CRC did not match; nothing else of the frame was trusted
    UNKNOWN_TYPE = 2       #: the type byte is not RUN or STATUS
    BAD_LENGTH = 3         #: the length does not fit the type (and batch)
    BAD_BATCH = 4          #: a RUN's batch is not in 1..max_batch
    TIMEOUT = 5            #: the frame stopped arriving in the middle
    BAD_WORD = 6           #: a RUN's or LOAD's word has bits set above its width
    BAD_ADDRESS = 7        #: a LOAD's words do not lie in the weight memory (or are none)


FRAME_HEADER_LAYOUT = data.StructLayout({"sync": 8, "type": 8, "length": 16})
"""The first four bytes of every frame."""

RUN_HEADER_LAYOUT = data.StructLayout({"batch": 16})
"""The first bytes of a RUN payload; the input words follow."""

LOAD_HEADER_LAYOUT = data.StructLayout({"address": 16, "words": 16})
"""The first bytes of a LOAD payload: the weight memory address of the first word and the
number of words; the words follow."""

RESULT_TAIL_LAYOUT = data.StructLayout({"cycles": 32})
"""The last bytes of a RESULT payload, after the output codes."""

STATUS_LAYOUT = data.StructLayout({
    "protocol": 8,          # PROTOCOL_VERSION
    "busy": 8,              # 1 while the engine runs
    "header_word": 32,      # program word 0: memory map version, layers
    "config_word": 32,      # program word 1: the array the images were packed for
    "image_checksum": 32,   # image_checksum() of the memory images
    "vector_words": 16,     # input words per vector
    "word_bits": 16,        # bits of an input word
    "output_codes": 16,     # output codes per vector
    "max_batch": 16,        # the most vectors a RUN may carry
    "cycles": 32,           # compute cycles of the last run (its RESULT tail)
})
"""The payload of a STATUS_REPLY."""

ERROR_LAYOUT = data.StructLayout({"code": 8, "frame_type": 8})
"""The payload of an ERROR: an :class:`ErrorCode` and the type byte of the refused frame."""


class ProtocolError(ValueError):
    """Bytes that are not a frame or payload of this protocol."""


class CrcError(ProtocolError):
    """A frame whose CRC does not match its contents."""


def _unpack(layout, payload):
    """The field values of ``payload``, which must be exactly ``layout``'s bytes."""
    try:
        return from_bytes(layout, payload)
    except ValueError as error:
        raise ProtocolError(str(error)) from None


def crc16(data):
    """The :data:`CRC_ALGORITHM` CRC of ``data`` (bytes): ``crc16(b"123456789") == 0x29B1``."""
    return CRC_PARAMETERS.compute(data)


def word_bytes(word_bits):
    """Bytes of a ``word_bits``-bit word on the link: ``ceil(word_bits / 8)``."""
    return -(-check_int("word_bits", word_bits, 1, MAX_PAYLOAD) // 8)


def words_to_bytes(words, bits):
    """``words`` (ints of ``bits`` bits), each little-endian in :func:`word_bytes` bytes."""
    size = word_bytes(bits)
    for word in words:
        check_int("a word", word, 0, (1 << bits) - 1)
    return b"".join(word.to_bytes(size, "little") for word in words)


def bytes_to_words(data, bits):
    """The words of :func:`words_to_bytes` ``data``; a word with bits above ``bits`` set, or a
    partial word, raises :class:`ProtocolError`."""
    size = word_bytes(bits)
    if len(data) % size:
        raise ProtocolError(f"{len(data)} bytes are not whole words of {size} bytes")
    words = [int.from_bytes(data[start:start + size], "little")
             for start in range(0, len(data), size)]
    if any(word >> bits for word in words):
        raise ProtocolError(f"a word has bits set above its {bits} bits")
    return words


def run_length(batch, vector_words, word_bits):
    """Payload bytes of a RUN of ``batch`` vectors of ``vector_words`` words of ``word_bits``."""
    return RUN_HEADER_LAYOUT.size // 8 + batch * vector_words * word_bytes(word_bits)


def result_length(batch, output_codes):
    """Payload bytes of the RESULT of ``batch`` vectors of ``output_codes`` codes."""
    return batch * output_codes + RESULT_TAIL_LAYOUT.size // 8


def frame_max_batch(vector_words, word_bits, output_codes):
    """The largest batch whose RUN and RESULT payloads fit in :data:`MAX_PAYLOAD` bytes."""
    check_int("vector_words", vector_words, 1, MAX_PAYLOAD)
    check_int("output_codes", output_codes, 1, MAX_PAYLOAD)
    run = (MAX_PAYLOAD - run_length(0, vector_words, word_bits)) // (
        vector_words * word_bytes(word_bits))
    result = (MAX_PAYLOAD - result_length(0, output_codes)) // output_codes
    return min(run, result)


UART_BITS_PER_BYTE = 10
"""Bits of a byte on an 8N1 line: a start bit, eight data bits, a stop bit."""


def line_bytes(status, batch):
    """Bytes on the line, both ways, of a RUN of ``batch`` vectors and its RESULT, whole
    frames, for a device that reports ``status`` (:class:`Status`)."""
    frame = FRAME_HEADER_LAYOUT.size // 8 + CRC_BYTES
    return (2 * frame + run_length(batch, status.vector_words, status.word_bits)
            + result_length(batch, status.output_codes))


def uart_inferences_per_second(status, baud):
    """The most inferences a second that an 8N1 line at ``baud`` carries to and from a device
    that reports ``status``, in RUN frames of ``status.max_batch`` vectors: the request and
    then its reply (the device reads no request while it answers), however fast the engine."""
    check_int("baud", baud, 1, 1 << 32)
    return status.max_batch * baud / (UART_BITS_PER_BYTE * line_bytes(status, status.max_batch))


def image_checksum(images):
    """CRC-32 (``zlib.crc32``) of the weight, requant and program images, in this order, each
    word little-endian in ``ceil(width / 8)`` bytes (the ``.bin`` files of
    :func:`systolix.boards.memory_files.write_images`, concatenated): which model a device holds."""
    checksum = 0
    for words, width in ((images.weights, images.weight_width),
                         (images.requant, images.requant_width),
                         (images.program, images.program_width)):
        checksum = zlib.crc32(words_to_bytes(words, width), checksum)
    return checksum


class Frame(NamedTuple):
    """A decoded frame: its type byte (a :class:`FrameType` when known) and payload."""
    type: int
    payload: bytes


def encode_frame(frame_type, payload=b""):
    """The bytes of a frame of ``frame_type`` (0..255) carrying ``payload``."""
    check_int("frame_type", int(frame_type), 0, 0xFF)
    check_int("the payload length", len(payload), 0, MAX_PAYLOAD)
    body = to_bytes(FRAME_HEADER_LAYOUT, {"sync": SYNC, "type": int(frame_type),
                                       "length": len(payload)})[1:] + bytes(payload)
    return bytes([SYNC]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


def _known(enumeration, value):
    """``enumeration(value)``, or ``value`` if it is not a member."""
    try:
        return enumeration(value)
    except ValueError:
        return value


def decode_frame(frame):
    """The :class:`Frame` in ``frame``, the bytes of exactly one frame.

    Raises
    ------
    ProtocolError
        If ``frame`` does not start with :data:`SYNC` or its length is not the header's.
    CrcError
        If the CRC does not match.
    """
    frame = bytes(frame)
    header_bytes = FRAME_HEADER_LAYOUT.size // 8
    if len(frame) < header_bytes + CRC_BYTES or frame[0] != SYNC:
        raise ProtocolError(f"a frame starts with SYNC 0x{SYNC:02X} and has at least "
                            f"{header_bytes + CRC_BYTES} bytes, not {frame[:header_bytes]!r}...")
    header = _unpack(FRAME_HEADER_LAYOUT, frame[:header_bytes])
    if len(frame) != header_bytes + header["length"] + CRC_BYTES:
        raise ProtocolError(f"a frame with a {header['length']}-byte payload has "
                            f"{header_bytes + header['length'] + CRC_BYTES} bytes, not "
                            f"{len(frame)}")
    if crc16(frame[1:]) != 0:
        raise CrcError(f"the CRC of a frame of type 0x{header['type']:02X} does not match: "
                       f"0x{crc16(frame[1:-CRC_BYTES]):04X} computed, 0x"
                       f"{int.from_bytes(frame[-CRC_BYTES:], 'big'):04X} received")
    return Frame(_known(FrameType, header["type"]), frame[header_bytes:-CRC_BYTES])


def read_frame(read, max_skipped=MAX_SKIPPED_BYTES):
    """Read the bytes of one frame through ``read(n)``, skipping at most ``max_skipped`` bytes
    (:data:`MAX_SKIPPED_BYTES`) before :data:`SYNC`.

    ``read(n)`` returns at most ``n`` bytes, and no bytes only when there are none to come (at
    the end of a file or on a timeout, as :meth:`serial.Serial.read` does). The frame is framed
    by its length field only; :func:`decode_frame` checks its CRC. At most
    ``max_skipped + MAX_FRAME_BYTES`` bytes are read.

    Raises
    ------
    ProtocolError
        If ``read`` returns no bytes before the frame is complete, or more than
        ``max_skipped`` bytes come before a :data:`SYNC`.
    """
    def exactly(count, frame):
        while len(frame) < count:
            chunk = read(count - len(frame))
            if not chunk:
                raise ProtocolError(f"no more bytes after {len(frame)} of a frame of {count}")
            frame += chunk
        return frame

    skipped = 0
    while True:
        first = read(1)
        if not first:
            raise ProtocolError("no frame: no more bytes")
        if first[0] == SYNC:
            break
        skipped += 1
        if skipped > max_skipped:
            raise ProtocolError(f"no frame: {skipped} bytes without SYNC 0x{SYNC:02X}; at "
                                f"most {max_skipped} are skipped (MAX_SKIPPED_BYTES)")
    header_bytes = FRAME_HEADER_LAYOUT.size // 8
    frame = exactly(header_bytes, bytes(first))
    length = _unpack(FRAME_HEADER_LAYOUT, frame)["length"]
    return exactly(header_bytes + length + CRC_BYTES, frame)


def encode_run(batch, words, word_bits):
    """RUN payload: ``batch`` (1..65535) and its input ``words`` of ``word_bits`` bits each."""
    check_int("batch", batch, 1, MAX_PAYLOAD)
    return to_bytes(RUN_HEADER_LAYOUT, {"batch": batch}) + words_to_bytes(words, word_bits)


def decode_run(payload, vector_words, word_bits):
    """``(batch, words)`` of a RUN payload of vectors of ``vector_words`` words.

    Raises
    ------
    ProtocolError
        If the payload's length is not :func:`run_length` of its batch.
    """
    header_bytes = RUN_HEADER_LAYOUT.size // 8
    if len(payload) < header_bytes:
        raise ProtocolError(f"a RUN payload has at least {header_bytes} bytes, not "
                            f"{len(payload)}")
    batch = _unpack(RUN_HEADER_LAYOUT, payload[:header_bytes])["batch"]
    if len(payload) != run_length(batch, vector_words, word_bits):
        raise ProtocolError(f"a RUN payload of batch {batch} has "
                            f"{run_length(batch, vector_words, word_bits)} bytes, not "
                            f"{len(payload)}")
    return batch, bytes_to_words(payload[header_bytes:], word_bits)


def load_length(words, weight_bits):
    """Payload bytes of a LOAD of ``words`` weight memory words of ``weight_bits`` bits."""
    return LOAD_HEADER_LAYOUT.size // 8 + words * word_bytes(weight_bits)


def load_max_words(weight_bits):
    """The most words of ``weight_bits`` bits one LOAD carries (its payload at most
    :data:`MAX_PAYLOAD` bytes)."""
    return (MAX_PAYLOAD - load_length(0, weight_bits)) // word_bytes(weight_bits)


def encode_load(address, words, weight_bits):
    """LOAD payload: weight memory ``words`` of ``weight_bits`` bits, the first at
    ``address``."""
    check_int("address", address, 0, MAX_PAYLOAD)
    check_int("the words of a LOAD", len(words), 1, load_max_words(weight_bits))
    return (to_bytes(LOAD_HEADER_LAYOUT, {"address": address, "words": len(words)})
            + words_to_bytes(words, weight_bits))


def decode_load(payload, weight_bits):
    """``(address, words)`` of a LOAD payload of words of ``weight_bits`` bits.

    Raises
    ------
    ProtocolError
        If the payload's length is not :func:`load_length` of its header's words.
    """
    header_bytes = LOAD_HEADER_LAYOUT.size // 8
    if len(payload) < header_bytes:
        raise ProtocolError(f"a LOAD payload has at least {header_bytes} bytes, not "
                            f"{len(payload)}")
    header = _unpack(LOAD_HEADER_LAYOUT, payload[:header_bytes])
    if len(payload) != load_length(header["words"], weight_bits):
        raise ProtocolError(f"a LOAD payload of {header['words']} words has "
                            f"{load_length(header['words'], weight_bits)} bytes, not "
                            f"{len(payload)}")
    return header["address"], bytes_to_words(payload[header_bytes:], weight_bits)


class Result(NamedTuple):
    """A decoded RESULT payload: output codes (raw bytes, vector by vector) and cycles."""
    codes: bytes
    cycles: int


def encode_result(codes, cycles):
    """RESULT payload: the output ``codes`` (ints 0..255) then ``cycles``."""
    return bytes(codes) + to_bytes(RESULT_TAIL_LAYOUT, {"cycles": cycles})


def decode_result(payload):
    """The :class:`Result` in a RESULT payload."""
    tail_bytes = RESULT_TAIL_LAYOUT.size // 8
    if len(payload) < tail_bytes:
        raise ProtocolError(f"a RESULT payload has at least {tail_bytes} bytes, not "
                            f"{len(payload)}")
    return Result(bytes(payload[:-tail_bytes]),
                  _unpack(RESULT_TAIL_LAYOUT, payload[-tail_bytes:])["cycles"])


@dataclass(frozen=True)
class Status:
    """A STATUS_REPLY payload (:data:`STATUS_LAYOUT`), field by field."""
    protocol: int
    busy: int
    header_word: int
    config_word: int
    image_checksum: int
    vector_words: int
    word_bits: int
    output_codes: int
    max_batch: int
    cycles: int

    def encode(self):
        """The payload bytes."""
        return to_bytes(STATUS_LAYOUT, {field.name: getattr(self, field.name)
                                     for field in fields(self)})

    @classmethod
    def decode(cls, payload):
        """The :class:`Status` in a STATUS_REPLY payload."""
        return cls(**_unpack(STATUS_LAYOUT, payload))


def model_status(images):
    """The fields of a STATUS_REPLY that describe the model of ``images`` (the memory images of
    :mod:`systolix.memory_map`): ``header_word``, ``config_word`` and ``image_checksum``."""
    return {"header_word": images.program[0], "config_word": images.program[1],
            "image_checksum": image_checksum(images)}


def device_status(images, *, vector_words, word_bits, output_codes, max_batch):
    """The :class:`Status` of an idle device that holds ``images`` and runs vectors of
    ``vector_words`` words of ``word_bits`` bits into ``output_codes`` codes, at most
    ``max_batch`` of them a run, or fewer if their frames would be too long
    (:func:`frame_max_batch`); ``cycles`` 0.

    Raises
    ------
    ValueError
        If not even one vector fits in a frame.
    """
    if frame_max_batch(vector_words, word_bits, output_codes) < 1:
        raise ValueError(f"a vector of {vector_words} words of {word_bits} bits and "
                         f"{output_codes} output codes does not fit in a frame of "
                         f"{MAX_PAYLOAD} payload bytes")
    return Status(protocol=PROTOCOL_VERSION, busy=0, **model_status(images),
                  vector_words=vector_words, word_bits=word_bits, output_codes=output_codes,
                  max_batch=min(max_batch, frame_max_batch(vector_words, word_bits,
                                                           output_codes)),
                  cycles=0)


def encode_error(code, frame_type):
    """ERROR payload: an :class:`ErrorCode` and the type byte of the refused frame."""
    return to_bytes(ERROR_LAYOUT, {"code": int(code), "frame_type": int(frame_type)})


def decode_error(payload):
    """``(code, frame_type)`` of an ERROR payload, each an enum member when known."""
    values = _unpack(ERROR_LAYOUT, payload)
    return _known(ErrorCode, values["code"]), _known(FrameType, values["frame_type"])


class ReferenceDevice:
    """What a device answers to each request frame: the behaviour of the protocol, in Python.

    The gateware (:class:`systolix.hw.link.FrameLink`) must answer every frame exactly as this
    does; the tests compare the two byte for byte. Checks are made in this order, the first that
    fails is answered with an ERROR: the CRC; the type; a RUN's length (at least the batch
    field), its batch (``1..max_batch``), its length for that batch and its input words (no bit
    set above ``word_bits``: ``BAD_WORD``); a LOAD's length (at least its header), its words
    (``1..len(weights) - address``: ``BAD_ADDRESS``), its length for them and its words (no bit
    set above ``weight_bits``); a STATUS's length (0). A device without ``weights`` answers a
    LOAD with ``UNKNOWN_TYPE``.

    Parameters
    ----------
    status : Status
        What a STATUS request is answered with; ``cycles`` is replaced by those of each RUN.
    compute : callable
        ``compute(batch, words) -> (codes, cycles)``: the engine; ``words`` are the RUN's input
        words, ``codes`` the ``batch * status.output_codes`` output code bytes.
    weights : list of int, optional
        The weight memory of a device whose weights are loaded at run time (its length the
        memory's depth): a good LOAD writes its words into it, answered with LOADED.
    weight_bits : int, optional
        Bits of a weight memory word (with ``weights``).
    """

    def __init__(self, status, compute, *, weights=None, weight_bits=None):
        if (weights is None) != (weight_bits is None):
            raise ValueError("weights and weight_bits go together")
        self.status = status
        self._compute = compute
        self.weights, self.weight_bits = weights, weight_bits

    def respond(self, request):
        """The bytes of the reply to ``request``, the bytes of exactly one frame."""
        try:
            frame = decode_frame(request)
        except CrcError:
            return encode_frame(FrameType.ERROR, encode_error(ErrorCode.BAD_CRC, request[1]))
        error = self._check(frame)
        if error is not None:
            return encode_frame(FrameType.ERROR, encode_error(error, frame.type))
        if frame.type == FrameType.STATUS:
            return encode_frame(FrameType.STATUS_REPLY, self.status.encode())
        if frame.type == FrameType.LOAD:
            address, words = decode_load(frame.payload, self.weight_bits)
            self.weights[address:address + len(words)] = words
            return encode_frame(FrameType.LOADED)
        status = self.status
        batch, words = decode_run(frame.payload, status.vector_words, status.word_bits)
        codes, cycles = self._compute(batch, words)
        if len(codes) != batch * status.output_codes:
            raise ValueError(f"compute gave {len(codes)} codes for a batch of {batch}, not "
                             f"{batch * status.output_codes}")
        self.status = replace(status, cycles=cycles)
        return encode_frame(FrameType.RESULT, encode_result(codes, cycles))

    def _check(self, frame):
        """The :class:`ErrorCode` that refuses ``frame`` (CRC checked), or ``None``."""
        status = self.status
        batch_bytes = RUN_HEADER_LAYOUT.size // 8
        if frame.type == FrameType.RUN:
            if len(frame.payload) < batch_bytes:
                return ErrorCode.BAD_LENGTH
            batch = _unpack(RUN_HEADER_LAYOUT, frame.payload[:batch_bytes])["batch"]
            if not 1 <= batch <= status.max_batch:
                return ErrorCode.BAD_BATCH
            if len(frame.payload) != run_length(batch, status.vector_words, status.word_bits):
                return ErrorCode.BAD_LENGTH
            size = word_bytes(status.word_bits)
            if any(int.from_bytes(frame.payload[start:start + size], "little")
                   >> status.word_bits
                   for start in range(batch_bytes, len(frame.payload), size)):
                return ErrorCode.BAD_WORD
            return None
        if frame.type == FrameType.LOAD and self.weights is not None:
            header_bytes = LOAD_HEADER_LAYOUT.size // 8
            if len(frame.payload) < header_bytes:
                return ErrorCode.BAD_LENGTH
            header = _unpack(LOAD_HEADER_LAYOUT, frame.payload[:header_bytes])
            if not 1 <= header["words"] <= len(self.weights) - header["address"]:
                return ErrorCode.BAD_ADDRESS
            if len(frame.payload) != load_length(header["words"], self.weight_bits):
                return ErrorCode.BAD_LENGTH
            size = word_bytes(self.weight_bits)
            if any(int.from_bytes(frame.payload[start:start + size], "little")
                   >> self.weight_bits
                   for start in range(header_bytes, len(frame.payload), size)):
                return ErrorCode.BAD_WORD
            return None
        if frame.type == FrameType.STATUS:
            return ErrorCode.BAD_LENGTH if frame.payload else None
        return ErrorCode.UNKNOWN_TYPE
