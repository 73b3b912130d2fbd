"""The frame check of the host link: one CRC unit shared by its receiver and transmitter."""

from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol

__all__ = ["crc_signature", "SharedCrc"]


def crc_signature():
    """The port of a user of the frame check, seen from the user.

    Members
    -------
    start : Out(1)
        Restart the CRC in this cycle (the byte after ``SYNC`` is the first one it takes).
    data : Out(8)
    valid : Out(1)
        ``data`` goes into the CRC in this cycle.
    crc : In(16)
        The CRC of the bytes taken since ``start``.
    match_detected : In(1)
        ``crc`` is the residue: the bytes taken, a CRC sent high byte first included, check.
    """
    return wiring.Signature({
        "start": Out(1),
        "data": Out(8),
        "valid": Out(1),
        "crc": In(16),
        "match_detected": In(1),
    })


class SharedCrc(wiring.Component):
    """One :data:`~systolix.protocol.CRC_PARAMETERS` CRC unit for two users that never need it
    at the same time: the receiver while it takes a request, the transmitter while it sends the
    reply. ``start`` comes from either user; ``data`` and ``valid`` from the one ``select``
    names. Both users see the unit's ``crc`` and ``match_detected``.

    Latency: a byte taken in cycle ``t`` is in ``crc`` and ``match_detected`` in ``t + 1``.

    Attributes
    ----------
    receiver, transmitter : In(crc_signature())
    select : In(1)
        0: the receiver feeds the unit; 1: the transmitter.
    """

    def __init__(self):
        super().__init__({
            "receiver": In(crc_signature()),
            "transmitter": In(crc_signature()),
            "select": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = protocol.CRC_PARAMETERS.create()
        receiver, transmitter = self.receiver, self.transmitter
        m.d.comb += [
            crc.data.eq(Mux(self.select, transmitter.data, receiver.data)),
            crc.valid.eq(Mux(self.select, transmitter.valid, receiver.valid)),
            crc.start.eq(receiver.start | transmitter.start),
        ]
        for user in (receiver, transmitter):
            m.d.comb += [user.crc.eq(crc.crc), user.match_detected.eq(crc.match_detected)]
        return m
