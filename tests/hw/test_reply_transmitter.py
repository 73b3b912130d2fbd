# amaranth: UnusedElaboratable=no
"""The link's reply transmitter in Amaranth's simulator: every reply frame byte for byte against
:mod:`systolix.protocol`'s encoders, with random gaps between requests and between the engine's
codes, random stalls on ``host_out`` and an engine that stays busy after its last code; the
stream rules on ``host_out``; its latencies and throughput."""

import random
from dataclasses import replace

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from systolix import protocol
from systolix.hw.frame_crc import SharedCrc
from systolix.hw.reply_transmitter import ReplyTransmitter
from systolix.protocol import FrameType, Status

STATUS = Status(protocol=protocol.PROTOCOL_VERSION, busy=0, header_word=0x1234_5678,
                config_word=0x9ABC_DEF0, image_checksum=0x0F1E_2D3C, vector_words=3,
                word_bits=17, output_codes=6, max_batch=9, cycles=0)


def random_replies(rng, count):
    """``(type, error, codes, busy, cycles)`` of replies of every kind: ``error`` is the ERROR
    payload, ``codes`` a RESULT's, ``busy`` and ``cycles`` the engine's (for a RESULT, once it
    has sent its last code)."""
    replies = []
    for _ in range(count):
        frame_type = rng.choice([FrameType.RESULT, FrameType.RESULT, FrameType.STATUS_REPLY,
                                 FrameType.ERROR])
        codes = [rng.randrange(256) for _ in range(rng.randint(1, 12))]
        replies.append((frame_type, (rng.randrange(256), rng.randrange(256)), codes,
                        rng.randrange(2) if frame_type == FrameType.STATUS_REPLY else 0,
                        rng.randrange(1 << 32)))
    return replies


def payload_of(frame_type, error, codes, busy, cycles):
    if frame_type == FrameType.RESULT:
        return protocol.encode_result(codes, cycles)
    if frame_type == FrameType.ERROR:
        return protocol.encode_error(*error)
    return replace(STATUS, busy=busy, cycles=cycles).encode()


def simulate(replies, *, offer=1.0, code_offer=None, ready=1.0, seed=0, busy_after=(0, 0)):
    """Ask a transmitter for ``replies`` and take its bytes, checking the stream rules on
    ``host_out``. Requests and codes are offered with probability ``offer`` (codes:
    ``code_offer``, by default the same) a cycle and held until taken, ``host_out`` is ready with probability ``ready``; the engine stays busy for
    ``randint(*busy_after)`` cycles after its last code. Returns the bytes and the cycles of
    events: ``"request valid"``, ``"request taken"``, ``"code valid"``, ``"byte valid"`` (first
    cycle of each byte) and ``"byte taken"``."""
    rng = random.Random(seed)
    code_offer = offer if code_offer is None else code_offer
    m = Module()
    m.submodules.transmitter = tx = ReplyTransmitter(STATUS)
    m.submodules.crc = crc = SharedCrc()
    wiring.connect(m, tx.crc, crc.transmitter)
    m.d.comb += crc.select.eq(tx.request.valid)
    received = bytearray()
    events = {name: [] for name in ("request valid", "request taken", "code valid",
                                    "byte valid", "byte taken")}

    async def bench(ctx):
        queue = list(replies)
        request = None         # the reply being asked for
        codes = []             # its codes not yet taken
        presenting = False     # a code is offered
        busy_left = None       # cycles the engine stays busy after its last code
        pending = None         # a host_out byte offered and not taken
        cycle = valid = 0
        while queue or request is not None or valid:
            if request is None and queue and rng.random() < offer:
                request = queue.pop(0)
                frame_type, error, codes, busy, cycles = request
                codes = list(codes) if frame_type == FrameType.RESULT else []
                length = len(payload_of(*request))
                ctx.set(tx.request.payload, {"type": frame_type, "length": length,
                                             "error": {"code": error[0], "frame_type": error[1]}})
                ctx.set(tx.request.valid, 1)
                events["request valid"].append(cycle)
                if frame_type == FrameType.RESULT:
                    ctx.set(tx.busy, 1)
                    ctx.set(tx.cycles, rng.randrange(1 << 32))   # not final while busy
                else:
                    ctx.set(tx.busy, busy)
                    ctx.set(tx.cycles, cycles)
            if codes and not presenting and rng.random() < code_offer:
                presenting = True
                ctx.set(tx.codes.payload, {"code": codes[0], "last": len(codes) == 1})
                ctx.set(tx.codes.valid, 1)
                events["code valid"].append(cycle)
            host_ready = rng.random() < ready
            ctx.set(tx.host_out.ready, host_ready)
            _, _, request_ready, code_ready, valid, byte = await ctx.tick().sample(
                tx.request.ready, tx.codes.ready, tx.host_out.valid, tx.host_out.payload)
            if pending is not None:
                assert valid and byte == pending, f"host_out withdrawn or changed, cycle {cycle}"
            elif valid:
                events["byte valid"].append(cycle)
            pending = byte if valid and not host_ready else None
            if valid and host_ready:
                received.append(byte)
                events["byte taken"].append(cycle)
            if presenting and code_ready:
                presenting = False
                codes.pop(0)
                ctx.set(tx.codes.valid, 0)
                if not codes:
                    busy_left = rng.randint(*busy_after)
            if busy_left is not None:
                if busy_left == 0:
                    ctx.set(tx.busy, 0)
                    ctx.set(tx.cycles, request[4])
                    busy_left = None
                else:
                    busy_left -= 1
            if request is not None and request_ready:
                events["request taken"].append(cycle)
                request = None
                ctx.set(tx.request.valid, 0)
            cycle += 1
            assert cycle < 100_000

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return bytes(received), events


def frames_of(replies):
    return b"".join(protocol.encode_frame(reply[0], payload_of(*reply)) for reply in replies)


@pytest.mark.parametrize("seed, offer, ready, busy_after", [
    (1, 1.0, 1.0, (0, 0)), (2, 0.5, 0.5, (0, 6)), (3, 0.8, 0.2, (0, 3)), (4, 0.2, 0.9, (2, 9))])
def test_every_kind_of_reply_byte_for_byte(seed, offer, ready, busy_after):
    replies = random_replies(random.Random(seed), 25)
    output, _ = simulate(replies, offer=offer, ready=ready, seed=seed, busy_after=busy_after)
    assert output == frames_of(replies)


def frame_cycles(replies, events):
    """The cycles in which each byte of each reply is first offered."""
    valid, first = events["byte valid"], 0
    for reply in replies:
        length = len(protocol.encode_frame(reply[0], payload_of(*reply)))
        yield reply, valid[first:first + length]
        first += length


def test_latency():
    replies = random_replies(random.Random(5), 12)
    output, events = simulate(replies, code_offer=0.4, seed=5)
    assert output == frames_of(replies)
    codes = iter(events["code valid"])
    for index, (reply, cycles) in enumerate(frame_cycles(replies, events)):
        # SYNC 2 cycles after the request, a code 1 cycle after it is offered (or after the
        # byte before it), the request taken as the last CRC byte goes into the register.
        assert cycles[0] == events["request valid"][index] + 2
        if reply[0] == FrameType.RESULT:
            for position in range(4, 4 + len(reply[2])):
                assert cycles[position] == max(next(codes), cycles[position - 1]) + 1
        assert cycles[-1] == events["request taken"][index] + 1


def test_throughput():
    replies = random_replies(random.Random(6), 12)
    output, events = simulate(replies)
    assert output == frames_of(replies)
    for reply, cycles in frame_cycles(replies, events):
        # One byte a cycle, but none in the cycle before the CRC (and, for a RESULT, after
        # the codes).
        bubbles = {len(cycles) - 3: 1}
        if reply[0] == FrameType.RESULT:
            bubbles[4 + len(reply[2]) - 1] = 1
        gaps = [b - a - 1 for a, b in zip(cycles, cycles[1:])]
        assert gaps == [bubbles.get(i, 0) for i in range(len(cycles) - 1)]


def test_status_must_be_a_status():
    with pytest.raises(TypeError, match=r"^status must be a protocol\.Status, not 3$"):
        ReplyTransmitter(3)
