"""The transmitting half of the host link: reply frames out (docs/protocol.md)."""

from dataclasses import asdict

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.memory_map import output_layout
from systolix.protocol import FrameType

from .frame_crc import crc_signature

__all__ = ["reply_layout", "ReplyTransmitter"]


_HEADER_BYTES = protocol.FRAME_HEADER_LAYOUT.size // 8
_STATUS_BYTES = protocol.STATUS_LAYOUT.size // 8
_ERROR_BYTES = protocol.ERROR_LAYOUT.size // 8

# Bytes the transmitter sends from its table, Cat(frame header, status, error): offsets.
_STATUS_START = _HEADER_BYTES
_CYCLES_START = _STATUS_START + protocol.STATUS_LAYOUT["cycles"].offset // 8
_ERROR_START = _STATUS_START + _STATUS_BYTES
_TABLE_BYTES = _ERROR_START + _ERROR_BYTES


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
    with ``last``, then ``cycles`` once ``busy`` is low. The request's payload must stay as it
    is until the request is taken, in the cycle the last CRC byte goes into the output register.
    Every byte but the codes and the CRC comes from one table of bytes (header, status, error),
    every byte leaves through an output register.

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

        # The output register, with the byte's flags for the CRC unit.
        out_byte = Signal(8)
        out_valid = Signal()
        out_crc = Signal()               # the byte goes into the CRC
        out_sync = Signal()              # the byte is SYNC: the CRC starts again
        advance = Signal()               # the output register takes a byte this cycle
        sent = Signal()                  # a host_out byte is taken this cycle
        m.d.comb += [host_out.payload.eq(out_byte), host_out.valid.eq(out_valid),
                     advance.eq(~out_valid | host_out.ready),
                     sent.eq(host_out.valid & host_out.ready),
                     crc.data.eq(out_byte), crc.valid.eq(sent & out_crc),
                     crc.start.eq(sent & out_sync)]
        with m.If(host_out.ready):
            m.d.sync += out_valid.eq(0)

        def send(byte, *, crc_byte=True, sync=False):
            """Put ``byte`` into the output register (in a cycle with ``advance``)."""
            m.d.sync += [out_byte.eq(byte), out_valid.eq(1), out_crc.eq(crc_byte),
                         out_sync.eq(sync)]

        with m.FSM(name="transmitter"):
            with m.State("IDLE"):
                m.d.sync += tx_index.eq(0)
                with m.If(request.valid):
                    m.next = "HEADER"

            with m.State("HEADER"):
                with m.If(advance):
                    send(table.word_select(tx_index, 8), crc_byte=tx_index != 0,
                         sync=tx_index == 0)
                    m.d.sync += tx_index.eq(tx_index + 1)
                    with m.If(tx_index == _HEADER_BYTES - 1):
                        with m.If(request.payload.type == FrameType.RESULT):
                            m.next = "CODES"
                        with m.Elif(request.payload.type == FrameType.ERROR):
                            m.d.sync += tx_index.eq(_ERROR_START)
                            m.next = "BODY"
                        with m.Else():
                            m.next = "BODY"

            with m.State("CODES"):
                m.d.comb += codes.ready.eq(advance)
                with m.If(advance & codes.valid):
                    send(codes.payload.code)
                    with m.If(codes.payload.last):
                        m.next = "CYCLES"

            with m.State("CYCLES"):
                # The run's cycles are final once the engine is idle.
                m.d.sync += tx_index.eq(_CYCLES_START)
                with m.If(~self.busy):
                    m.next = "BODY"

            with m.State("BODY"):
                with m.If(advance):
                    send(table.word_select(tx_index, 8))
                    m.d.sync += tx_index.eq(tx_index + 1)
                    # The status (or the cycles) end at _ERROR_START - 1, the error at the end.
                    with m.If((tx_index == _ERROR_START - 1) | (tx_index == _TABLE_BYTES - 1)):
                        m.next = "CRC_HIGH"

            with m.State("CRC_HIGH"):
                # Once the last byte is sent, the CRC unit has taken it.
                with m.If(~out_valid):
                    send(crc.crc[8:], crc_byte=False)
                    m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                with m.If(advance):
                    send(crc.crc[:8], crc_byte=False)
                    m.d.comb += request.ready.eq(1)
                    m.next = "IDLE"

        return m
