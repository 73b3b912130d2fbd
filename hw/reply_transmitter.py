"""The transmitting half of the host link: reply frames out (docs/protocol.md)."""

from dataclasses import asdict

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.memory_map import output_layout
from systolix.protocol import FrameType

from .frame_crc import crc_signature
from .memory_stream import MemoryToStream

__all__ = ["reply_layout", "ReplyTransmitter"]


_HEADER_BYTES = protocol.FRAME_HEADER_LAYOUT.size // 8
_STATUS_BYTES = protocol.STATUS_LAYOUT.size // 8
_ERROR_BYTES = protocol.ERROR_LAYOUT.size // 8

# Bytes the transmitter sends from its table, Cat(frame header, status, error): offsets.
_STATUS_START = _HEADER_BYTES
_CYCLES_START = _STATUS_START + protocol.STATUS_LAYOUT["cycles"].offset // 8
_ERROR_START = _STATUS_START + _STATUS_BYTES
_TABLE_BYTES = _ERROR_START + _ERROR_BYTES
_SOURCE_BYTES = _TABLE_BYTES + 3     # and a code, the CRC's high and low bytes


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
    every byte leaves through an output register (a
    :class:`~systolix.hw.memory_stream.MemoryToStream` stage).

    Latency: ``SYNC`` is offered 2 cycles after a request is first offered; a code 1 cycle after
    it is offered on ``codes``. Throughput: one byte a cycle; ``host_out`` may be stalled at any
    time.

    Parameters
    ----------
    status : protocol.Status
        The constant fields of a STATUS_REPLY (``busy`` and ``cycles`` are not used).

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
    """

    def __init__(self, status):
        if not isinstance(status, protocol.Status):
            raise TypeError(f"status must be a protocol.Status, not {status!r}")
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

        tx_index = Signal(range(_TABLE_BYTES))
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
              if name not in ("busy", "cycles")),
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

        with m.FSM(name="transmitter"):
            with m.State("IDLE"):
                m.d.sync += tx_index.eq(0)
                with m.If(request.valid):
                    m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [byte.valid.eq(1), next_byte.eq(table.word_select(tx_index, 8)),
                             byte.payload.crc.eq(tx_index != 0),
                             byte.payload.sync.eq(tx_index == 0)]
                with m.If(taken):
                    m.d.sync += tx_index.eq(tx_index + 1)
                    with m.If(tx_index == _HEADER_BYTES - 1):
                        with m.If(request.payload.type == FrameType.RESULT):
                            m.next = "CODES"
                        with m.Elif(request.payload.type == FrameType.ERROR):
                            m.d.sync += tx_index.eq(_ERROR_START)
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
                m.d.sync += tx_index.eq(_CYCLES_START)
                with m.If(~self.busy):
                    m.next = "BODY"

            with m.State("BODY"):
                m.d.comb += [byte.valid.eq(1), next_byte.eq(table.word_select(tx_index, 8))]
                with m.If(taken):
                    m.d.sync += tx_index.eq(tx_index + 1)
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
