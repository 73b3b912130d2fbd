"""The host driver: runs batches of input vectors on an accelerator (docs/protocol.md).

A :class:`Device` speaks the framed protocol of :mod:`systolix.protocol` through a
:class:`Transport`, anything with ``exchange(request: bytes) -> bytes`` that sends one request
frame and returns the bytes of the one reply frame:

- :class:`SerialTransport`: a serial port (pyserial), for a board's UART bridge;
- :class:`GoldenTransport`: the golden models, replying as the accelerator would, bit-exact
  outputs and exact cycles, without hardware.

::

    device = Device(SerialTransport("/dev/ttyUSB1"), program, config, memories)
    # (with memories.upload_weights, Device has just sent the weights in LOAD frames)
    outputs, cycles = device.run(codes)   # output codes (n, N); cycles of each run
    scores = device.infer(x)              # real inputs in, real outputs out
"""

import time
from dataclasses import replace
from typing import NamedTuple, Protocol

import numpy as np
import serial

from systolix import protocol
from systolix.config import ArrayConfig, code_range
from systolix.protocol import FrameType, ProtocolError, ReferenceDevice
from systolix.memory_map import (MemoryConfig, input_channels, output_codes, pack_vectors,
                                 unpack_outputs, unpack_vectors, vector_words)
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_images, run_program

from .pack import pack
from .program import IntegerProgram

__all__ = ["Transport", "SerialTransport", "GoldenTransport", "DeviceError", "DeviceMismatch",
           "RunResult", "Device"]


class Transport(Protocol):
    """Carries one request frame to a device and its one reply frame back."""

    def exchange(self, request: bytes) -> bytes:
        """Send the frame ``request``; return the bytes of the reply frame."""


class SerialTransport:
    """A :class:`Transport` over a serial port.

    Parameters
    ----------
    port : str
        A device (``/dev/ttyUSB1``, ``COM3``) or a pyserial URL (``socket://host:port``).
    baudrate : int
    timeout : float
        Seconds to wait for each part of a reply before :class:`TimeoutError`.
    frame_timeout : float, optional
        Seconds a whole reply may take, from the end of the request to its last byte, before
        :class:`TimeoutError`, however its bytes trickle in (default: ``timeout`` plus the
        time the longest frame, :data:`~systolix.protocol.MAX_FRAME_BYTES`, and the garbage
        skipped before it, :data:`~systolix.protocol.MAX_SKIPPED_BYTES`, take at
        ``baudrate``, ten bits a byte).
    """

    def __init__(self, port, baudrate=115200, timeout=1.0, frame_timeout=None):
        for name, value in (("timeout", timeout), ("frame_timeout", frame_timeout)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise ValueError(f"{name} must be a number of seconds above 0, not {value!r}")
        self.port = port
        self.timeout = timeout
        self.frame_timeout = frame_timeout if frame_timeout is not None else timeout + 10 * (
            protocol.MAX_FRAME_BYTES + protocol.MAX_SKIPPED_BYTES) / baudrate
        self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)
        self._deadline = None

    def _read(self, count):
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no whole reply from {self.port} within {self.frame_timeout:g} s "
                               f"(frame_timeout)")
        self.serial.timeout = min(self.timeout, remaining)
        data = self.serial.read(count)
        if not data:
            if time.monotonic() >= self._deadline:
                raise TimeoutError(f"no whole reply from {self.port} within "
                                   f"{self.frame_timeout:g} s (frame_timeout)")
            raise TimeoutError(f"no reply from {self.port} within {self.timeout} s")
        return data

    def exchange(self, request):
        """Send ``request`` (stale input is dropped first); return the reply frame's bytes.

        Raises :class:`TimeoutError` when a part of the reply takes longer than ``timeout``
        or the whole reply longer than ``frame_timeout``, and
        :class:`~systolix.protocol.ProtocolError` when more than
        :data:`~systolix.protocol.MAX_SKIPPED_BYTES` come before a frame."""
        self.serial.reset_input_buffer()
        self.serial.write(request)
        self.serial.flush()
        self._deadline = time.monotonic() + self.frame_timeout
        try:
            return protocol.read_frame(self._read)
        finally:
            self._deadline = None
            self.serial.timeout = self.timeout

    def close(self):
        self.serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _engine_numbers(images):
    """``(vector_words, output_codes, max_batch)`` of the engine built from ``images``."""
    return vector_words(images), output_codes(images), images.max_batch


def _expected_status(images, config):
    vector_words, output_codes, max_batch = _engine_numbers(images)
    return protocol.device_status(images, vector_words=vector_words,
                                  word_bits=config.rows * config.activation_bits,
                                  output_codes=output_codes, max_batch=max_batch)


def _check_types(program, config, memories):
    for name, value, kind in (("program", program, IntegerProgram),
                              ("config", config, ArrayConfig),
                              ("memories", memories, MemoryConfig)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} must be {kind.__name__}, not {type(value).__name__}")


class GoldenTransport:
    """A :class:`Transport` to the golden models of the accelerator built from ``program``.

    Replies are :class:`~systolix.protocol.ReferenceDevice`'s; a RUN's outputs come from
    :func:`~systolix.sim.golden.program.run_program` and its cycles from
    :func:`~systolix.sim.golden.engine.engine_cycles`, so they are what the hardware sends.
    With ``memories.upload_weights`` the device's weight memory starts as zeros and LOAD frames
    write it; a RUN computes with the weights it holds
    (:func:`~systolix.sim.golden.program.run_images`), as the hardware does.

    Parameters
    ----------
    program : IntegerProgram
    config : ArrayConfig
    memories : MemoryConfig
        As given to :func:`~systolix.sw.pack.pack` for the hardware.
    """

    def __init__(self, program, config, memories=MemoryConfig()):
        _check_types(program, config, memories)
        self.program, self.config = program, config
        self.images = pack(program, config, memories)
        weights = [0] * memories.weight_words if memories.upload_weights else None
        self.device = ReferenceDevice(
            _expected_status(self.images, config), self._compute, weights=weights,
            weight_bits=self.images.weight_width if memories.upload_weights else None)

    def _compute(self, batch, words):
        config, status, images = self.config, self.device.status, self.images
        codes = unpack_vectors(words, config, status.vector_words, input_channels(images))
        if self.device.weights is None:
            outputs = run_program(self.program, codes)
        else:
            held = tuple(self.device.weights[:len(images.weights)])
            outputs = run_images(replace(images, weights=held), config, codes)
        raw = outputs & ((1 << self.program.layers[-1].output_bits) - 1)
        return raw.ravel().tolist(), engine_cycles(config, self.images, batch).compute

    def exchange(self, request):
        return self.device.respond(request)


class DeviceError(RuntimeError):
    """The device refused a request with an ERROR frame.

    Attributes
    ----------
    code : ErrorCode or int
    frame_type : FrameType or int
        The type byte of the refused frame, as the device read it.
    """

    _REASONS = {
        protocol.ErrorCode.BAD_CRC: "bad CRC",
        protocol.ErrorCode.UNKNOWN_TYPE: "unknown frame type",
        protocol.ErrorCode.BAD_LENGTH: "bad length",
        protocol.ErrorCode.BAD_BATCH: "batch out of range",
        protocol.ErrorCode.TIMEOUT: "the frame stopped arriving",
        protocol.ErrorCode.BAD_WORD: "a word has bits set above its width",
        protocol.ErrorCode.BAD_ADDRESS: "its words do not lie in the weight memory",
    }

    def __init__(self, code, frame_type):
        self.code, self.frame_type = code, frame_type
        kind = frame_type.name if isinstance(frame_type, FrameType) else f"0x{frame_type:02X}"
        reason = self._REASONS.get(code, f"error code {code}")
        super().__init__(f"the device refused a {kind} frame: {reason}")


class DeviceMismatch(RuntimeError):
    """The device does not hold the program the :class:`Device` was made for."""


class RunResult(NamedTuple):
    """What :meth:`Device.run` returns.

    Attributes
    ----------
    outputs : numpy.ndarray of int64, shape (n, N)
        The output codes of the last layer.
    cycles : tuple of int
        The engine's compute cycles of each run (one run per ``max_batch`` vectors).
    """
    outputs: np.ndarray
    cycles: tuple


class Device:
    """An accelerator that runs ``program``, reached through ``transport``.

    On creation the device is asked for its STATUS, which must match the images
    :func:`~systolix.sw.pack.pack` makes of ``program`` for ``config`` and ``memories``
    (protocol version, program header and config words, image checksum, vector and word sizes,
    output codes, max batch); otherwise :class:`DeviceMismatch` names the differences. Then,
    if ``memories.upload_weights`` (a weight memory that the bitstream does not initialise,
    such as the iCEBreaker's SPRAM), the weight image is sent in LOAD frames
    (:meth:`load_weights`) before any run.

    Parameters
    ----------
    transport : Transport
    program : IntegerProgram
    config : ArrayConfig
    memories : MemoryConfig
        As given to :func:`~systolix.sw.pack.pack` for the hardware.

    Attributes
    ----------
    vector_words : int
        Input words of a vector (an input map, ``input_channels`` codes a pixel).
    input_channels : int
        Codes of a pixel of the input map (:func:`~systolix.memory_map.pack_vectors`).
    max_batch : int
        The most vectors of one RUN; :meth:`run` splits larger batches.
    weight_bits : int
        Bits of a weight memory word.
    load_frames : int
        LOAD frames sent (0 for weights baked into the bitstream).
    """

    def __init__(self, transport, program, config, memories=MemoryConfig()):
        _check_types(program, config, memories)
        self.transport, self.program, self.config = transport, program, config
        images = pack(program, config, memories)
        expected = _expected_status(images, config)
        status = self.status()
        differences = [
            f"{name} {_show(name, getattr(status, name))} (expected "
            f"{_show(name, getattr(expected, name))})"
            for name in ("protocol", "header_word", "config_word", "image_checksum",
                         "vector_words", "word_bits", "output_codes", "max_batch")
            if getattr(status, name) != getattr(expected, name)]
        if differences:
            raise DeviceMismatch(f"the device does not hold this program: "
                                 f"{', '.join(differences)}")
        self.vector_words = status.vector_words
        self.input_channels = input_channels(images)
        self.max_batch = status.max_batch
        self.weight_bits = images.weight_width
        self.load_frames = 0
        if memories.upload_weights:
            self.load_weights(images.weights)

    def load_weights(self, words, address=0):
        """Write ``words`` (weight memory words) into the device's weight memory from
        ``address``, in LOAD frames of at most :func:`~systolix.protocol.load_max_words`
        words, each answered with LOADED; :attr:`load_frames` counts them.

        Raises
        ------
        DeviceError
            If the device refuses a LOAD (it may have written some of its words: load them
            again), for example one that does not take LOAD frames (``UNKNOWN_TYPE``).
        """
        words = list(words)
        step = protocol.load_max_words(self.weight_bits)
        for start in range(0, len(words), step):
            self._request(FrameType.LOAD, protocol.encode_load(
                address + start, words[start:start + step], self.weight_bits),
                FrameType.LOADED)
            self.load_frames += 1

    def _request(self, frame_type, payload, reply_type):
        reply = protocol.decode_frame(self.transport.exchange(
            protocol.encode_frame(frame_type, payload)))
        if reply.type == FrameType.ERROR:
            raise DeviceError(*protocol.decode_error(reply.payload))
        if reply.type != reply_type:
            raise ProtocolError(f"a {reply_type.name} frame was expected, not type "
                                f"0x{reply.type:02X}")
        return reply.payload

    def status(self):
        """The device's :class:`~systolix.protocol.Status`."""
        return protocol.Status.decode(self._request(FrameType.STATUS, b"",
                                                    FrameType.STATUS_REPLY))

    def run(self, codes):
        """Run input ``codes`` (``n`` vectors of the first layer's input codes, shape
        ``(n, K)``) in batches of at most :attr:`max_batch`; return a :class:`RunResult`.

        Raises
        ------
        ValueError
            If ``codes`` is not an integer array ``(n, K)`` of codes in the first layer's
            input range (float codes are refused, never truncated).
        DeviceError
            If the device refuses a request.
        ProtocolError
            If a reply is not a well-formed frame of the expected type and length.
        """
        first, last = self.program.layers[0], self.program.layers[-1]
        inputs, outputs = self.program.inputs, self.program.outputs
        codes = np.asarray(codes)
        if codes.size == 0 and codes.dtype.kind == "f":
            codes = codes.astype(np.int64)      # an empty list: no float to truncate
        if codes.ndim != 2 or codes.shape[1] != inputs:
            raise ValueError(f"codes must have shape (n, {inputs}), not {codes.shape}")
        if codes.dtype.kind not in "iu":
            raise ValueError(f"codes must be integers (input codes), not {codes.dtype} values: "
                             f"real inputs go through infer() or program.encode_input()")
        low, high = code_range(first.input_bits, first.input_signed)
        if codes.size and (int(codes.min()) < low or int(codes.max()) > high):
            raise ValueError(f"codes must lie in {low}..{high}, not "
                             f"{codes.min()}..{codes.max()}")
        codes = codes.astype(np.int64)
        word_bits = self.config.rows * self.config.activation_bits
        results, cycles = [], []
        for start in range(0, len(codes), self.max_batch):
            chunk = codes[start:start + self.max_batch]
            words = pack_vectors(chunk, self.config, self.vector_words, self.input_channels)
            result = protocol.decode_result(self._request(
                FrameType.RUN, protocol.encode_run(len(chunk), words, word_bits),
                FrameType.RESULT))
            if len(result.codes) != len(chunk) * outputs:
                raise ProtocolError(f"a RESULT of a batch of {len(chunk)} has "
                                    f"{len(chunk) * outputs} codes, not {len(result.codes)}")
            results.extend(unpack_outputs(result.codes, last.output_bits, last.output_signed))
            cycles.append(result.cycles)
        return RunResult(np.array(results, dtype=np.int64).reshape(len(codes), outputs),
                         tuple(cycles))

    def infer(self, x):
        """Real outputs for real inputs ``x`` of shape ``(n, K)``, through the program's host
        quantizers (:meth:`~systolix.sw.program.IntegerProgram.encode_input` and
        :meth:`~systolix.sw.program.IntegerProgram.decode_output`)."""
        return self.program.decode_output(self.run(self.program.encode_input(x)).outputs)


def _show(name, value):
    return f"0x{value:08X}" if name.endswith(("_word", "_checksum")) else str(value)
