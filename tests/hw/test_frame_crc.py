"""The link's shared CRC unit in Amaranth's simulator: frames fed through either user's port give
:func:`systolix.protocol.crc16` and the residue after their CRC, whatever the other port does."""

import random

import pytest
from amaranth.sim import Simulator

from systolix import protocol
from systolix.hw.frame_crc import SharedCrc


@pytest.mark.parametrize("seed", [1, 2])
def test_either_port_computes_the_protocols_crc(seed):
    rng = random.Random(seed)
    crc = SharedCrc()
    frames = [(rng.randrange(2), bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
              for _ in range(12)]

    async def bench(ctx):
        for select, body in frames:
            user, other = (crc.transmitter, crc.receiver) if select else (crc.receiver,
                                                                           crc.transmitter)
            ctx.set(crc.select, select)
            ctx.set(user.start, 1)                  # SYNC: the CRC starts again
            await ctx.tick()
            ctx.set(user.start, 0)
            for byte in body + protocol.crc16(body).to_bytes(2, "big"):
                while rng.random() < 0.3:           # gaps
                    ctx.set(other.data, rng.randrange(256))
                    ctx.set(other.valid, rng.randrange(2))
                    await ctx.tick()
                ctx.set(user.data, byte)
                ctx.set(user.valid, 1)
                ctx.set(other.data, rng.randrange(256))
                ctx.set(other.valid, rng.randrange(2))
                await ctx.tick()
                ctx.set(user.valid, 0)
            ctx.set(other.valid, 0)
            # The CRC after the frame's own CRC bytes is the residue; both users see it.
            for port in (user, other):
                assert ctx.get(port.match_detected)
                assert ctx.get(port.crc) == protocol.crc16(
                    body + protocol.crc16(body).to_bytes(2, "big"))

    sim = Simulator(crc)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_the_crc_of_a_body():
    crc = SharedCrc()
    body = b"123456789"

    async def bench(ctx):
        ctx.set(crc.select, 1)
        ctx.set(crc.receiver.start, 1)              # a start from either user counts
        await ctx.tick()
        ctx.set(crc.receiver.start, 0)
        for byte in body:
            ctx.set(crc.transmitter.data, byte)
            ctx.set(crc.transmitter.valid, 1)
            await ctx.tick()
        ctx.set(crc.transmitter.valid, 0)
        assert ctx.get(crc.transmitter.crc) == protocol.crc16(body) == 0x29B1
        assert not ctx.get(crc.transmitter.match_detected)

    sim = Simulator(crc)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
