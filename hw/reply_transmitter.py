"""The transmitting half of the host link: reply frames out (docs/protocol.md)."""

from dataclasses import asdict

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory, MemoryData
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.codec import to_bytes
from systolix.config import check_int
from systolix.memory_map import output_layout
from systolix.protocol import FrameType

from .frame_crc import crc_signature
from .memory_stream import MemoryToStream

__all__ = ["reply_layout", "MODEL_FIELDS", "status_memory_contents", "status_memory_data",
           "ReplyTransmitter"]


_HEADER_BYTES = protocol.FRAME_HEADER_LAYOUT.size // 8
_STATUS_BYTES = protocol.STATUS_LAYOUT.size // 8
_ERROR_BYTES = protocol.ERROR_LAYOUT.size // 8

# Bytes the transmitter sends from its table, Cat(frame header, status, error): offsets.
_STATUS_START = _HEADER_BYTES
_CYCLES_START = _STATUS_START + protocol.STATUS_LAYOUT["cycles"].offset // 8
_ERROR_START = _STATUS_START + _STATUS_BYTES
_TABLE_BYTES = _ERROR_START + _ERROR_BYTES
_SOURCE_BYTES = _TABLE_BYTES + 3     # and a code, the CRC's high and low bytes

MODEL_FIELDS = ("header_word", "config_word", "image_checksum")
"""The fields of a STATUS_REPLY that describe the model, one run of bytes of
:data:`~systolix.protocol.STATUS_LAYOUT`: the transmitter reads them from its status memory
(:func:`status_memory_contents`), which a bitstream patcher rewrites with the memory images."""

_MODEL_START = _STATUS_START + protocol.STATUS_LAYOUT[MODEL_FIELDS[0]].offset // 8
_MODEL_END = _STATUS_START + (protocol.STATUS_LAYOUT[MODEL_FIELDS[-1]].offset
                              + protocol.STATUS_LAYOUT[MODEL_FIELDS[-1]].width) // 8
_STATUS_MEMORY_DEPTH = 1 << (_TABLE_BYTES - 1).bit_length()
# The transmitter reaches every byte of the model by a step from the byte before; it jumps
# only to these (ReplyTransmitter.elaborate).
assert not any(_MODEL_START <= offset < _MODEL_END for offset in (0, _ERROR_START, _CYCLES_START))


def status_memory_contents(model, filler=None):
    """Every byte of the reply transmitter's status memory: at the offset of each byte of a
    reply's table (frame header, status, error) its byte of the fields :data:`MODEL_FIELDS`,
    given by ``model`` (a dict, :func:`systolix.protocol.model_status`), elsewhere 0 or, with
    ``filler`` (an integer seed), a pseudo-random byte, as
    :func:`systolix.memory_map.memory_contents` fills the unused words of the engine's memories
    so that a bitstream patcher finds the block RAM by its contents."""
    if not isinstance(model, dict) or sorted(model) != sorted(MODEL_FIELDS):
        raise TypeError(f"model must be a dict of {', '.join(MODEL_FIELDS)}, not {model!r}")
    if filler is None:
        words = [0] * _STATUS_MEMORY_DEPTH
    else:
        rng = np.random.default_rng([check_int("filler", filler, 0, 2**32 - 1), 8,
                                     _STATUS_MEMORY_DEPTH])
        words = list(rng.bytes(_STATUS_MEMORY_DEPTH))
    encoded = to_bytes(protocol.STATUS_LAYOUT, {name: model.get(name, 0)
                                                for name, _ in protocol.STATUS_LAYOUT})
    start = _MODEL_START - _STATUS_START
    words[_MODEL_START:_MODEL_END] = encoded[start:start + _MODEL_END - _MODEL_START]
    return tuple(words)


def status_memory_data(status, filler=None):
    """The status memory of a :class:`ReplyTransmitter` for ``status`` (a
    :class:`~systolix.protocol.Status`), with its contents (:func:`status_memory_contents`)."""
    return MemoryData(shape=8, depth=_STATUS_MEMORY_DEPTH, init=status_memory_contents(
        {name: getattr(status, name) for name in MODEL_FIELDS}, filler))


def reply_layout():
    """What a reply is made of: its ``type`` (a :class:`~systolix.protocol.FrameType`), the
    ``length`` of its payload and, for an ERROR, its payload ``error``
    (:data:`~systolix.protocol.ERROR_LAYOUT`)."""
    return data.StructLayout({"type": 8, "length": 16, "error": protocol.ERROR_LAYOUT})


class ReplyTransmitter(wiring.Component):
    """Sends reply frames of :mod:`systolix.protocol` on ``host_out``.

    A reply offered on ``request`` goes out as ``SYNC``, its type and length, its payload and
    the CRC of everything after ``SYNC`` (fed to the CRC unit on ``crc`` as the bytes leave). A
    STATUS_REPLY's payload is :attr:`status` with the engine's ``busy`` and ``cycles``; an
    ERROR's is the request's ``error``; a RESULT's is the codes on ``codes``, up to the one
    with ``last``, then ``cycles`` once ``busy`` is low; a reply of length 0 (LOADED) has
    none. The request's payload must stay as it
    is until the request is taken, in the cycle the last CRC byte goes into the output register.
    Every byte but the codes and the CRC comes from one table of bytes (header, status, error),
    those of the model (:data:`MODEL_FIELDS`) from a status memory (a block RAM of
    :func:`status_memory_contents`, which a bitstream patcher rewrites); every byte leaves
    through an output register (a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage).

    Latency: ``SYNC`` is offered 2 cycles after a request is first offered; a code 1 cycle after
    it is offered on ``codes``. Throughput: one byte a cycle; ``host_out`` may be stalled at any
    time.

    Parameters
    ----------
    status : protocol.Status
        The constant fields of a STATUS_REPLY (``busy`` and ``cycles`` are not used).
    filler : int, optional
        Seed of the unused bytes of the status memory (:func:`status_memory_contents`).
    status_memory : amaranth.lib.memory.MemoryData, optional
        The status memory (by default :func:`status_memory_data` of ``status`` and ``filler``).

    Attributes
    ----------
    request : In(stream.Signature(reply_layout()))
    codes : In(stream.Signature(output_layout()))
        The engine's output codes, ``last`` on a RESULT's final code.
    busy : In(1)
    cycles : In(32)
        The engine's state, for STATUS and the RESULT's tail.
    host_out : Out(stream.Signature(8))
    crc : Out(crc_signature())
    status_memory : amaranth.lib.memory.MemoryData
        The status memory (:func:`status_memory_contents`, 8-bit words): what a bitstream
        patcher rewrites.
    """

    def __init__(self, status, *, filler=None, status_memory=None):
        if not isinstance(status, protocol.Status):
            raise TypeError(f"status must be a protocol.Status, not {status!r}")
        if status_memory is None:
            status_memory = status_memory_data(status, filler)
        self.status_memory = status_memory
        self.status = status
        super().__init__({
            "request": In(stream.Signature(reply_layout())),
            "codes": In(stream.Signature(output_layout())),
            "busy": In(1),
            "cycles": In(32),
            "host_out": Out(stream.Signature(8)),
            "crc": Out(crc_signature()),
        })

    def elaborate(self, platform):
        m = Module()
        request, codes, host_out, crc = self.request, self.codes, self.host_out, self.crc

        # tx_index is the table offset of the byte to send. It steps by one (`step`) or jumps
        # to a byte that is not the model's (0, the error's, the cycles'); the status memory's
        # read port (its data a cycle after its address) reads the byte after tx_index in the
        # cycles in which it steps, so that its data is the byte at tx_index whenever tx_index
        # got there by a step, as every byte of the model does. Its address is then a register
        # plus one, not the next offset's multiplexer (the iCEBreaker's critical path ran from
        # the output codes' handshake through that multiplexer into the address).
        tx_index = Signal(range(_TABLE_BYTES))
        tx_next = Signal.like(tx_index)
        step = Signal()
        m.d.sync += tx_index.eq(tx_next)
        m.d.comb += tx_next.eq(Mux(step, tx_index + 1, tx_index))
        # A block RAM, where a bitstream patcher finds it (Yosys makes a memory this small
        # logic unless told otherwise).
        m.submodules.status_memory = status_memory = Memory(
            self.status_memory, attrs={"ram_style": "block"})
        model = status_memory.read_port()
        m.d.comb += [model.addr.eq(tx_index + 1), model.en.eq(step)]
        # Whether tx_index is a byte of the model: a function of its 5 bits (no comparators).
        in_model = Const(sum(1 << index for index in range(_MODEL_START, _MODEL_END)),
                         _STATUS_MEMORY_DEPTH).bit_select(tx_index, 1)
        header = Signal(protocol.FRAME_HEADER_LAYOUT)
        status = Signal(protocol.STATUS_LAYOUT)
        table = Cat(header.as_value(), status.as_value(), request.payload.error.as_value())
        m.d.comb += [
            header.sync.eq(protocol.SYNC),
            header.type.eq(request.payload.type),
            header.length.eq(request.payload.length),
            status.busy.eq(self.busy),
            status.cycles.eq(self.cycles),
            *(status[name].eq(value) for name, value in asdict(self.status).items()
              if name not in ("busy", "cycles", *MODEL_FIELDS)),
        ]

        # Every byte leaves through one register stage, with its flags for the CRC unit: `crc`
        # (the byte goes into the CRC) and `sync` (the byte is SYNC: the CRC starts again). The
        # stage has no address: its source is the byte each state offers (from the table, a
        # code, the CRC).
        m.submodules.output = output = MemoryToStream(0, 8, fields={"crc": 1, "sync": 1},
                                                      registered=True)
        byte, words = output.requests, output.words
        next_byte = Signal(8)            # the byte the stage takes with a request
        sent = Signal()                  # a host_out byte is taken this cycle
        m.d.comb += [
            output.read.data.eq(next_byte),
            host_out.payload.eq(words.payload.data), host_out.valid.eq(words.valid),
            words.ready.eq(host_out.ready),
            sent.eq(host_out.valid & host_out.ready),
            crc.data.eq(words.payload.data), crc.valid.eq(sent & words.payload.crc),
            crc.start.eq(sent & words.payload.sync),
            byte.payload.crc.eq(1),
        ]
        taken = byte.valid & byte.ready
        table_byte = Mux(in_model, model.data, table.word_select(tx_index, 8))

        with m.FSM(name="transmitter"):
            with m.State("IDLE"):
                m.d.comb += tx_next.eq(0)
                with m.If(request.valid):
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [byte.valid.eq(1), next_byte.eq(table_byte),
                             byte.payload.crc.eq(tx_index != 0),
                             byte.payload.sync.eq(tx_index == 0)]
                with m.If(taken):
                    m.d.comb += step.eq(1)
                    with m.If(tx_index == _HEADER_BYTES - 1):
                        with m.If(request.payload.type == FrameType.RESULT):
                            m.next = "CODES"
                        with m.Elif(request.payload.type == FrameType.ERROR):
                            m.d.comb += tx_next.eq(_ERROR_START)
                            m.next = "BODY"
                        with m.Elif(request.payload.length == 0):
                            m.next = "CRC_HIGH"     # LOADED: no payload
                        with m.Else():
                            m.next = "BODY"

            with m.State("CODES"):
                m.d.comb += [byte.valid.eq(codes.valid), next_byte.eq(codes.payload.code),
                             codes.ready.eq(byte.ready)]
                with m.If(taken & codes.payload.last):
                    m.next = "CYCLES"

            with m.State("CYCLES"):
                # The run's cycles are final once the engine is idle.
                m.d.comb += tx_next.eq(_CYCLES_START)
                with m.If(~self.busy):
                    m.next = "BODY"

            with m.State("BODY"):
                m.d.comb += [byte.valid.eq(1), next_byte.eq(table_byte)]
                with m.If(taken):
                    m.d.comb += step.eq(1)
                    # The status (or the cycles) end at _ERROR_START - 1, the error at the end.
                    with m.If((tx_index == _ERROR_START - 1) | (tx_index == _TABLE_BYTES - 1)):
                        m.next = "CRC_HIGH"

            with m.State("CRC_HIGH"):
                # Once the last byte is sent, the CRC unit has taken it.
                m.d.comb += [byte.valid.eq(~words.valid), next_byte.eq(crc.crc[8:]),
                             byte.payload.crc.eq(0)]
                with m.If(taken):
                    m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                m.d.comb += [byte.valid.eq(1), next_byte.eq(crc.crc[:8]),
                             byte.payload.crc.eq(0), request.ready.eq(taken)]
                with m.If(taken):
                    m.next = "IDLE"

        return m
