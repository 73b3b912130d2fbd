# amaranth: UnusedElaboratable=no
"""The link's frame receiver in Amaranth's simulator: for every request, the words and ``start``
it gives the engine and the reply it asks for, against :class:`systolix.protocol.ReferenceDevice`,
with random gaps on ``host_in`` and random stalls on ``inputs``, ``start`` and ``reply``; the
stream rules on its outputs; its latencies and throughput."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from systolix import protocol
from systolix.codec import decode
from systolix.hw.frame_crc import SharedCrc
from systolix.hw.frame_receiver import FrameReceiver
from systolix.hw.reply_transmitter import reply_layout
from systolix.protocol import ErrorCode, FrameType, ReferenceDevice, Status

WORD_BITS = 9      # two bytes a word
VECTOR_WORDS = 2
OUTPUT_CODES = 5
MAX_BATCH = 3
TIMEOUT = 40
WORD_BYTES = protocol.word_bytes(WORD_BITS)
STATUS = Status(protocol=protocol.PROTOCOL_VERSION, busy=0, header_word=0, config_word=0,
                image_checksum=0, vector_words=VECTOR_WORDS, word_bits=WORD_BITS,
                output_codes=OUTPUT_CODES, max_batch=MAX_BATCH, cycles=0)
STATUS_FRAME = protocol.encode_frame(FrameType.STATUS)


def reference_reply(frame):
    """``(type, length, error)`` of the reply :class:`ReferenceDevice` gives ``frame``;
    ``error`` is ``(code, frame_type)`` for an ERROR, ``None`` otherwise."""
    def compute(batch, words):
        return [0] * (batch * OUTPUT_CODES), 0
    reply = protocol.decode_frame(ReferenceDevice(STATUS, compute).respond(frame))
    error = protocol.decode_error(reply.payload) if reply.type == FrameType.ERROR else None
    return reply.type, len(reply.payload), error


def loaded(frame):
    """Whether the receiver passes ``frame``'s words to the engine: a RUN whose batch and
    length fit, as far as its bytes go (the CRC is checked only at the end)."""
    if len(frame) < 6 or frame[1] != FrameType.RUN:
        return False
    length = int.from_bytes(frame[2:4], "little")
    batch = int.from_bytes(frame[4:6], "little")
    return 1 <= batch <= MAX_BATCH and length == 2 + batch * VECTOR_WORDS * WORD_BYTES


def expected(request):
    """``(words, starts, replies)`` for one request: ``("frame", bytes)``, ``("cut", bytes)``
    (a frame cut short, which times out) or ``("garbage", bytes)`` (skipped)."""
    kind, frame = request
    if kind == "garbage":
        return [], [], []
    if kind == "cut":
        reply = (FrameType.ERROR, 2, (ErrorCode.TIMEOUT, frame[1] if len(frame) > 1 else 0))
        payload = frame[6:]
    else:
        reply = reference_reply(frame)
        payload = frame[6:-protocol.CRC_BYTES]
    if not loaded(frame):
        return [], [], [reply]
    words = [int.from_bytes(payload[i:i + WORD_BYTES], "little") & ((1 << WORD_BITS) - 1)
             for i in range(0, len(payload) - WORD_BYTES + 1, WORD_BYTES)]
    start = int.from_bytes(frame[4:6], "little") if reply[0] == FrameType.RESULT else 0
    return words, [start], [reply]


def run_frame(rng, batch=None):
    batch = rng.randint(1, MAX_BATCH) if batch is None else batch
    words = [rng.randrange(1 << WORD_BITS) for _ in range(batch * VECTOR_WORDS)]
    return protocol.encode_frame(FrameType.RUN, protocol.encode_run(batch, words, WORD_BITS))


def corrupt(frame, index):
    return frame[:index] + bytes([frame[index] ^ 0x10]) + frame[index + 1:]


def bad_word_frame(rng, batch=None):
    """A RUN with bits set above WORD_BITS in the last byte of one of its words."""
    payload = bytearray(protocol.decode_frame(run_frame(rng, batch)).payload)
    word = rng.randrange((len(payload) - 2) // WORD_BYTES)
    payload[2 + (word + 1) * WORD_BYTES - 1] |= rng.randrange(1, 1 << (8 - WORD_BITS % 8)) << (
        WORD_BITS % 8)
    return protocol.encode_frame(FrameType.RUN, bytes(payload))


def random_requests(rng, count):
    """Good and bad frames of every kind, frames cut short, garbage between frames."""
    requests = []
    for _ in range(count):
        kind = rng.choice(["run", "run", "status", "crc", "type", "length", "batch", "word",
                           "cut", "garbage"])
        if kind == "run":
            requests.append(("frame", run_frame(rng)))
        elif kind == "word":
            requests.append(("frame", bad_word_frame(rng)))
        elif kind == "status":
            requests.append(("frame", STATUS_FRAME))
        elif kind == "crc":        # the type, payload or CRC: the length stays what it was
            frame = run_frame(rng) if rng.random() < 0.7 else STATUS_FRAME
            requests.append(("frame", corrupt(frame, rng.choice([1, *range(4, len(frame))]))))
        elif kind == "type":
            requests.append(("frame", protocol.encode_frame(rng.choice([0, 3, 0x81, 0xFF]),
                                                            bytes(rng.randrange(4)))))
        elif kind == "length":
            frame_type, payload = rng.choice([
                (FrameType.STATUS, b"\0"), (FrameType.RUN, b""), (FrameType.RUN, b"\1"),
                (FrameType.RUN, protocol.encode_run(1, [0] * 3, WORD_BITS)),
                (FrameType.RUN, protocol.encode_run(2, [1] * 4, WORD_BITS) + b"\0")])
            requests.append(("frame", protocol.encode_frame(frame_type, payload)))
        elif kind == "batch":
            batch = rng.choice([0, MAX_BATCH + 1, 0xFFFF])
            requests.append(("frame", protocol.encode_frame(
                FrameType.RUN, batch.to_bytes(2, "little") + bytes(2 * rng.randrange(6)))))
        elif kind == "cut":
            frame = run_frame(rng)
            requests.append(("cut", frame[:rng.randrange(1, len(frame) - 1)]))
        else:
            requests.append(("garbage", bytes(rng.choice([0, 0x13, 0xFF, 0x5A])
                                              for _ in range(rng.randint(1, 4)))))
    return requests


def simulate(requests, *, gaps=0.0, ready=1.0, seed=0, quiet=60, stall_inputs=0):
    """Send ``requests`` to a receiver and take what it gives, checking the stream rules on its
    outputs every cycle. Returns the payloads taken on ``inputs``, ``start`` and ``reply`` and
    the cycles of events: ``"byte"`` (a host byte taken), ``"<output> valid"`` (first cycle of
    an offer) and ``"<output> taken"``. ``inputs`` is not ready in the first ``stall_inputs``
    cycles."""
    rng = random.Random(seed)
    m = Module()
    m.submodules.receiver = receiver = FrameReceiver(
        word_bits=WORD_BITS, vector_words=VECTOR_WORDS, output_codes=OUTPUT_CODES,
        max_batch=MAX_BATCH, timeout_cycles=TIMEOUT)
    m.submodules.crc = crc = SharedCrc()
    wiring.connect(m, receiver.crc, crc.receiver)
    m.d.comb += crc.select.eq(receiver.reply.valid)
    outputs = {"inputs": receiver.inputs, "start": receiver.start, "reply": receiver.reply}
    replies = sum(len(expected(request)[2]) for request in requests)
    got = {name: [] for name in outputs}
    events = {name: [] for name in ("byte", *(f"{o} {e}" for o in outputs
                                              for e in ("valid", "taken")))}

    async def host(ctx):
        for kind, frame in requests:
            for byte in frame:
                while rng.random() < gaps:
                    await ctx.tick()
                ctx.set(receiver.host_in.valid, 1)
                ctx.set(receiver.host_in.payload, byte)
                await ctx.tick().until(receiver.host_in.ready)
                ctx.set(receiver.host_in.valid, 0)
            if kind == "cut":
                await ctx.tick().repeat(TIMEOUT + 5)

    async def environment(ctx):
        pending = {}     # payloads offered and not taken in the previous cycle
        idle = cycle = 0
        while len(got["reply"]) < replies or idle < quiet:
            readiness = {name: rng.random() < ready for name in outputs}
            readiness["inputs"] &= cycle >= stall_inputs
            for name, port in outputs.items():
                ctx.set(port.ready, readiness[name])
            _, _, host_valid, host_ready, *values = await ctx.tick().sample(
                receiver.host_in.valid, receiver.host_in.ready,
                *(signal for port in outputs.values() for signal in (port.valid, port.payload)))
            if host_valid and host_ready:
                events["byte"].append(cycle)
            idle = 0 if host_valid or any(values[::2]) else idle + 1
            for (name, port), valid, payload in zip(outputs.items(), values[::2], values[1::2]):
                payload = payload.as_value().value if hasattr(payload, "as_value") else payload
                if name in pending:
                    assert valid and pending.pop(name) == payload, (
                        f"{name} was withdrawn or changed before it was taken, cycle {cycle}")
                elif valid:
                    events[f"{name} valid"].append(cycle)
                if valid and readiness[name]:
                    events[f"{name} taken"].append(cycle)
                    got[name].append(payload)
                elif valid:
                    pending[name] = payload
            assert not (host_ready and values[4]), f"host_in ready while replying, cycle {cycle}"
            # The last word reaches the engine before start.
            assert not (values[0] and values[2]), f"start with a word pending, cycle {cycle}"
            cycle += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(environment)
    sim.run()
    got["reply"] = [decode(reply_layout(), value) for value in got["reply"]]
    return got, events


def check(requests, got):
    want = [[], [], []]
    for request in requests:
        for collected, part in zip(want, expected(request)):
            collected += part
    want_words, want_starts, want_replies = want
    assert got["inputs"] == want_words
    assert got["start"] == want_starts
    assert len(got["reply"]) == len(want_replies)
    for reply, (want_type, want_length, want_error) in zip(got["reply"], want_replies):
        assert (reply["type"], reply["length"]) == (want_type, want_length)
        if want_error is not None:
            assert (reply["error"]["code"], reply["error"]["frame_type"]) == want_error


@pytest.mark.parametrize("seed, gaps, ready", [(1, 0.0, 1.0), (2, 0.3, 0.5), (3, 0.1, 0.2)])
def test_every_kind_of_request_against_the_reference(seed, gaps, ready):
    requests = random_requests(random.Random(seed), 30)
    got, _ = simulate(requests, gaps=gaps, ready=ready, seed=seed)
    check(requests, got)


def test_latency_and_throughput_without_stalls():
    rng = random.Random(4)
    frames = [run_frame(rng, 2), STATUS_FRAME, corrupt(run_frame(rng, 1), 7),
              protocol.encode_frame(3, b"ab"), bad_word_frame(rng, 2), run_frame(rng, MAX_BATCH)]
    requests = [("frame", frame) for frame in frames]
    got, events = simulate(requests)
    check(requests, got)
    bytes_taken = iter(events["byte"])
    starts, replies = iter(events["start valid"]), iter(events["reply valid"])
    start_taken = iter(events["start taken"])
    reply_taken = [None, *events["reply taken"]]
    for index, frame in enumerate(frames):
        cycles = [next(bytes_taken) for _ in frame]
        first, last = cycles[0], cycles[-1]
        reply = next(replies)
        words, start, _ = expected(("frame", frame))
        # One byte a cycle, but for 2 cycles after a RUN's batch field, 1 after the payload
        # and 1 after each input word (the last one's is the payload's).
        assert last - first == (len(frame) - 1 + (3 if frame[1] == FrameType.RUN else 1)
                                + max(len(words) - 1, 0))
        if start:
            # start 2 cycles after the last CRC byte, the reply 1 cycle after start is taken.
            assert next(starts) == last + 2
            assert reply == next(start_taken) + 1
        else:
            assert reply == last + 2
        # Not ready from the last CRC byte until the reply is taken, then at once.
        assert index == 0 or first == reply_taken[index] + 1


def test_a_word_with_bits_above_word_bits_refuses_the_run():
    rng = random.Random(7)
    requests = [("frame", bad_word_frame(rng, batch)) for batch in (1, 2, MAX_BATCH)]
    got, _ = simulate(requests)
    check(requests, got)
    # Every word went to the engine, cut to WORD_BITS, and was discarded: start 0, no run.
    assert len(got["inputs"]) == (1 + 2 + MAX_BATCH) * VECTOR_WORDS
    assert got["start"] == [0, 0, 0]
    assert [(reply["error"]["code"], reply["error"]["frame_type"]) for reply in got["reply"]] \
        == [(ErrorCode.BAD_WORD, FrameType.RUN)] * 3


def test_a_frame_cut_short_is_refused_after_timeout_cycles():
    rng = random.Random(5)
    for cut in (1, 3, 6, 11):
        frame = run_frame(rng, 2)[:cut]
        got, events = simulate([("cut", frame), ("frame", STATUS_FRAME)])
        check([("cut", frame), ("frame", STATUS_FRAME)], got)
        last = events["byte"][cut - 1]
        refused = events["start valid" if cut >= 6 else "reply valid"][0]
        # The batch is checked in the 2 cycles after its field, which are not counted.
        assert refused == last + TIMEOUT + 2 + (2 if cut == 6 else 0)


def test_a_word_waiting_when_the_frame_times_out_goes_before_the_discard():
    frame = run_frame(random.Random(6), 2)[:8]      # the batch and one word
    got, events = simulate([("cut", frame), ("frame", STATUS_FRAME)],
                           stall_inputs=TIMEOUT + 30)
    check([("cut", frame), ("frame", STATUS_FRAME)], got)
    assert events["start valid"][0] == events["inputs taken"][-1] + 1 == TIMEOUT + 30 + 1


def test_without_timeout_a_cut_frame_waits():
    m = Module()
    m.submodules.receiver = receiver = FrameReceiver(
        word_bits=WORD_BITS, vector_words=VECTOR_WORDS, output_codes=OUTPUT_CODES,
        max_batch=MAX_BATCH, timeout_cycles=None)

    async def bench(ctx):
        ctx.set(receiver.reply.ready, 1)
        for byte in STATUS_FRAME[:3]:
            ctx.set(receiver.host_in.valid, 1)
            ctx.set(receiver.host_in.payload, byte)
            await ctx.tick()
        ctx.set(receiver.host_in.valid, 0)
        for _ in range(300):
            await ctx.tick()
            assert not ctx.get(receiver.reply.valid)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("kwargs, message", [
    ({"word_bits": 0}, r"^word_bits must be an integer in 1\.\.65535, not 0$"),
    ({"max_batch": 0}, r"^max_batch must be an integer in 1\.\.\d+, not 0$"),
    ({"max_batch": 100000}, r"^max_batch must be an integer in 1\.\.\d+, not 100000$"),
    ({"timeout_cycles": 0}, r"^timeout_cycles must be an integer in 1\.\.4294967296, not 0$"),
])
def test_bad_parameters_are_named(kwargs, message):
    options = dict(word_bits=WORD_BITS, vector_words=VECTOR_WORDS, output_codes=OUTPUT_CODES,
                   max_batch=MAX_BATCH, timeout_cycles=TIMEOUT)
    with pytest.raises(ValueError, match=message):
        FrameReceiver(**{**options, **kwargs})
