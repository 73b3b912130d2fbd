# amaranth: UnusedElaboratable=no
"""The frame link in Amaranth's simulator, against a stand-in engine and the protocol's
:class:`~systolix.protocol.ReferenceDevice`: every reply byte for byte, with and without gaps on
``host_in`` and back-pressure on ``host_out``; and once with the real engine, against the golden
models.

The components of the tests of bad arguments are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import random

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix import protocol
from systolix.boards.synth import synthesize
from systolix.config import ArrayConfig
from systolix.hw.engine import InferenceEngine
from systolix.hw.link import FrameLink, engine_signature
from systolix.protocol import ErrorCode, FrameType, ReferenceDevice, Status
from systolix.sw.stimulus import random_program
from systolix.sw.driver import GoldenTransport
from systolix.memory_map import MemoryConfig, pack_vectors
from systolix.sw.pack import pack

# 3 rows of 3-bit codes: 9-bit words, two bytes each on the link.
CONFIG = ArrayConfig(rows=3, cols=2, weight_bits=2, activation_bits=3, activation_signed=True)
VECTOR_WORDS = 2   # 5 inputs
OUTPUT_CODES = 5
MAX_BATCH = 3
DELAY = 7          # compute cycles of the stand-in engine per vector
TIMEOUT = 40
IMAGES = pack(random_program(np.random.default_rng(0), CONFIG, [5, OUTPUT_CODES]), CONFIG,
              MemoryConfig(batch=MAX_BATCH))


class StandInEngine(wiring.Component):
    """The engine's port contract with made-up arithmetic.

    Input words are stored from address 0; ``start`` with batch ``b`` waits ``b * DELAY``
    cycles (busy), then sends code ``(word[i * vector_words + c % vector_words] + c) mod 256``
    for vector ``i``, channel ``c``; ``cycles`` becomes ``b * DELAY``. ``start`` with 0 only
    rewinds the write address. ``starts`` and ``discards`` count the two kinds of ``start``.
    """

    def __init__(self):
        super().__init__(engine_signature(CONFIG.rows * CONFIG.activation_bits))
        self.config, self.images = CONFIG, IMAGES
        self.vector_words, self.output_codes, self.max_batch = VECTOR_WORDS, OUTPUT_CODES, MAX_BATCH
        self.starts = Signal(8)
        self.discards = Signal(8)

    def elaborate(self, platform):
        m = Module()
        depth = MAX_BATCH * VECTOR_WORDS
        m.submodules.buffer = buffer = Memory(shape=len(self.inputs.payload),
                                              depth=depth, init=[])
        write, read = buffer.write_port(), buffer.read_port(domain="comb")
        address = Signal(range(depth + 1))
        batch = Signal(range(MAX_BATCH + 1))
        computing = Signal(range(MAX_BATCH * DELAY + 1))
        counted = Signal(32)
        vector = Signal(range(MAX_BATCH))
        base = Signal(range(depth))
        channel = Signal(range(OUTPUT_CODES))
        column = Signal(range(VECTOR_WORDS))
        sending = Signal()

        m.d.comb += [
            self.inputs.ready.eq(~self.busy),
            self.start.ready.eq(~self.busy),
            write.addr.eq(address),
            write.data.eq(self.inputs.payload),
            write.en.eq(self.inputs.valid & self.inputs.ready),
            read.addr.eq(base + column),
            self.outputs.valid.eq(sending),
            self.outputs.payload.code.eq(read.data + channel),
            self.outputs.payload.last.eq((vector == batch - 1) & (channel == OUTPUT_CODES - 1)),
        ]
        with m.If(write.en):
            m.d.sync += address.eq(address + 1)
        with m.If(self.start.valid & self.start.ready):
            m.d.sync += address.eq(0)
            with m.If(self.start.payload == 0):
                m.d.sync += self.discards.eq(self.discards + 1)
            with m.Else():
                m.d.sync += [self.starts.eq(self.starts + 1), self.busy.eq(1),
                             batch.eq(self.start.payload), computing.eq(1), counted.eq(0),
                             vector.eq(0), base.eq(0), channel.eq(0), column.eq(0)]
        with m.If(computing != 0):
            m.d.sync += [computing.eq(computing + 1), counted.eq(counted + 1)]
            with m.If(computing == batch * DELAY):
                m.d.sync += [computing.eq(0), sending.eq(1)]
        with m.If(self.outputs.valid & self.outputs.ready):
            m.d.sync += [channel.eq(channel + 1), column.eq(column + 1)]
            with m.If(column == VECTOR_WORDS - 1):
                m.d.sync += column.eq(0)
            with m.If(channel == OUTPUT_CODES - 1):
                m.d.sync += [channel.eq(0), column.eq(0), vector.eq(vector + 1),
                             base.eq(base + VECTOR_WORDS)]
            with m.If(self.outputs.payload.last):
                m.d.sync += [sending.eq(0), self.busy.eq(0), self.cycles.eq(counted)]
        return m


def ref_compute(batch, words):
    codes = [(words[i * VECTOR_WORDS + c % VECTOR_WORDS] + c) & 0xFF
             for i in range(batch) for c in range(OUTPUT_CODES)]
    return codes, batch * DELAY


def make_link(**kwargs):
    options = dict(vector_words=VECTOR_WORDS, output_codes=OUTPUT_CODES, max_batch=MAX_BATCH,
                   timeout_cycles=TIMEOUT)
    return FrameLink(CONFIG, IMAGES, **{**options, **kwargs})


def test_stand_in_has_the_real_engines_ports_and_numbers():
    engine = InferenceEngine(CONFIG, IMAGES)
    assert (engine.vector_words, engine.output_codes, engine.max_batch) == (
        VECTOR_WORDS, OUTPUT_CODES, MAX_BATCH)
    link = FrameLink.for_engine(engine)
    assert link.engine.signature == engine_signature(engine.word_bits).flip()
    m = Module()
    m.submodules.link, m.submodules.engine = link, engine
    wiring.connect(m, link.engine, engine)
    Fragment.get(m, None)


def reference():
    return ReferenceDevice(make_link().status, ref_compute)


def run_frame(rng, batch, word_bits=9):
    words = [rng.randrange(1 << word_bits) for _ in range(batch * VECTOR_WORDS)]
    return protocol.encode_frame(FrameType.RUN, protocol.encode_run(batch, words, word_bits))


STATUS_FRAME = protocol.encode_frame(FrameType.STATUS)


def rtl_exchange(chunks, replies, *, gaps=0.0, ready=1.0, seed=0, quiet=50):
    """Send ``chunks`` (bytes, or an int: that many idle cycles) to a link with a stand-in
    engine and take its bytes until ``replies`` frames and then ``quiet`` cycles without a byte
    have passed; return the bytes, and the engine's start and discard counts."""
    rng = random.Random(seed)
    engine = StandInEngine()
    link = FrameLink.for_engine(engine, timeout_cycles=TIMEOUT)
    m = Module()
    m.submodules.link, m.submodules.engine = link, engine
    wiring.connect(m, link.engine, engine)
    received = bytearray()
    counts = {}

    async def host_in(ctx):
        for chunk in chunks:
            if isinstance(chunk, int):
                await ctx.tick().repeat(chunk)
                continue
            for byte in chunk:
                while rng.random() < gaps:
                    await ctx.tick()
                ctx.set(link.host_in.valid, 1)
                ctx.set(link.host_in.payload, byte)
                await ctx.tick().until(link.host_in.ready)
                ctx.set(link.host_in.valid, 0)

    async def host_out(ctx):
        idle = 0
        while len(whole_frames(bytes(received))) < replies or idle < quiet:
            accept = rng.random() < ready
            ctx.set(link.host_out.ready, accept)
            _, _, valid, byte = await ctx.tick().sample(link.host_out.valid,
                                                         link.host_out.payload)
            idle = 0 if valid else idle + 1
            if valid and accept:
                received.append(byte)
        counts["starts"] = ctx.get(engine.starts)
        counts["discards"] = ctx.get(engine.discards)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host_in)
    sim.add_testbench(host_out)
    sim.run()
    return bytes(received), counts["starts"], counts["discards"]


def whole_frames(stream):
    """The bytes of each whole frame at the start of ``stream``."""
    position, frames = 0, []

    def read(count):
        nonlocal position
        chunk = stream[position:position + count]
        position += len(chunk)
        return chunk

    while True:
        try:
            frames.append(protocol.read_frame(read))
        except protocol.ProtocolError:
            return frames


def split_frames(stream):
    """The frames of ``stream``, decoded; ``stream`` must be nothing but whole frames."""
    frames = whole_frames(stream)
    assert b"".join(frames) == stream
    return [protocol.decode_frame(frame) for frame in frames]


def corrupt(frame, index):
    return frame[:index] + bytes([frame[index] ^ 0x10]) + frame[index + 1:]


def test_run_gives_the_reference_result():
    rng = random.Random(1)
    frame = run_frame(rng, 2)
    output, starts, discards = rtl_exchange([frame], 1)
    assert output == reference().respond(frame)
    (result,) = split_frames(output)
    assert result.type == FrameType.RESULT
    assert protocol.decode_result(result.payload).cycles == 2 * DELAY
    assert (starts, discards) == (1, 0)


def test_status_reports_constants_and_last_cycles():
    rng = random.Random(2)
    requests = [STATUS_FRAME, run_frame(rng, 3), STATUS_FRAME]
    output, _, _ = rtl_exchange(requests, 3)
    device = reference()
    assert output == b"".join(device.respond(request) for request in requests)
    first, _, last = split_frames(output)
    assert Status.decode(first.payload) == Status(
        protocol=protocol.PROTOCOL_VERSION, busy=0, header_word=IMAGES.program[0],
        config_word=IMAGES.program[1], image_checksum=protocol.image_checksum(IMAGES),
        vector_words=VECTOR_WORDS, word_bits=9, output_codes=OUTPUT_CODES,
        max_batch=MAX_BATCH, cycles=0)
    assert Status.decode(last.payload).cycles == 3 * DELAY


REFUSED = {
    "bad crc": (corrupt(STATUS_FRAME, 5), ErrorCode.BAD_CRC),
    "bad crc in the header": (corrupt(STATUS_FRAME, 1), ErrorCode.BAD_CRC),
    "unknown type": (protocol.encode_frame(0x33, b"abc"), ErrorCode.UNKNOWN_TYPE),
    "status with payload": (protocol.encode_frame(FrameType.STATUS, b"\0"),
                            ErrorCode.BAD_LENGTH),
    "run without batch": (protocol.encode_frame(FrameType.RUN, b"\1"), ErrorCode.BAD_LENGTH),
    "batch 0": (protocol.encode_frame(FrameType.RUN, b"\0\0"), ErrorCode.BAD_BATCH),
    "batch too large": (protocol.encode_frame(
        FrameType.RUN, protocol.encode_run(MAX_BATCH + 1, [0] * 8, 9)), ErrorCode.BAD_BATCH),
    "too few words": (protocol.encode_frame(
        FrameType.RUN, protocol.encode_run(2, [0] * 3, 9)), ErrorCode.BAD_LENGTH),
    "too many bytes": (protocol.encode_frame(
        FrameType.RUN, protocol.encode_run(1, [0] * 2, 9) + b"\0"), ErrorCode.BAD_LENGTH),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_frames_give_error_then_the_link_recovers(name):
    request_, error = REFUSED[name]
    rng = random.Random(3)
    good = run_frame(rng, 1)
    output, starts, discards = rtl_exchange([request_, good], 2)
    device = reference()
    assert output == device.respond(request_) + device.respond(good)
    refusal, result = split_frames(output)
    assert refusal.type == FrameType.ERROR
    assert protocol.decode_error(refusal.payload) == (error, request_[1])
    assert result.type == FrameType.RESULT
    assert (starts, discards) == (1, 0)


def test_run_with_bad_crc_is_discarded_not_started():
    rng = random.Random(4)
    bad = corrupt(run_frame(rng, 2), 8)
    good = run_frame(rng, 2)
    output, starts, discards = rtl_exchange([bad, good], 2)
    device = reference()
    assert output == device.respond(bad) + device.respond(good)
    assert protocol.decode_error(split_frames(output)[0].payload) == (ErrorCode.BAD_CRC,
                                                                      FrameType.RUN)
    # The good run's words start at address 0 again: its RESULT is the reference's.
    assert (starts, discards) == (1, 1)


def test_garbage_between_frames_is_skipped():
    rng = random.Random(5)
    frame = run_frame(rng, 1)
    output, _, _ = rtl_exchange([b"\x00\x13\xff", frame, b"\x5a", STATUS_FRAME], 2)
    device = reference()
    assert output == device.respond(frame) + device.respond(STATUS_FRAME)


@pytest.mark.parametrize("cut", [2, 7, 12])
def test_truncated_frame_times_out(cut):
    rng = random.Random(6)
    truncated = run_frame(rng, 2)[:cut]
    good = run_frame(rng, 1)
    output, starts, discards = rtl_exchange([truncated, TIMEOUT + 5, good], 2)
    refusal, result = split_frames(output)
    assert protocol.decode_error(refusal.payload) == (ErrorCode.TIMEOUT, FrameType.RUN)
    assert result == protocol.decode_frame(reference().respond(good))
    assert starts == 1 and discards == (1 if cut >= 6 else 0)


def test_corrupted_length_recovers_after_timeout():
    rng = random.Random(7)
    frame = run_frame(rng, 1)
    bad = frame[:3] + b"\x7f" + frame[4:]       # length 0x7f.. far beyond the frame
    output, starts, _ = rtl_exchange([bad, TIMEOUT + 5, STATUS_FRAME], 2)
    refusal, status = split_frames(output)
    assert protocol.decode_error(refusal.payload) == (ErrorCode.TIMEOUT, FrameType.RUN)
    assert status.type == FrameType.STATUS_REPLY and starts == 0


@pytest.mark.parametrize("seed", [10, 11])
def test_back_pressure_and_gaps(seed):
    rng = random.Random(seed)
    requests = [run_frame(rng, rng.randint(1, MAX_BATCH)) for _ in range(3)]
    requests.insert(1, STATUS_FRAME)
    requests.insert(2, corrupt(requests[0], 9))
    output, _, _ = rtl_exchange(requests, len(requests), gaps=0.3, ready=0.4, seed=seed)
    device = reference()
    assert output == b"".join(device.respond(request) for request in requests)


def test_back_to_back_frames_at_full_rate():
    rng = random.Random(12)
    requests = [run_frame(rng, MAX_BATCH), run_frame(rng, 1), STATUS_FRAME]
    output, starts, _ = rtl_exchange([b"".join(requests)], 3)
    device = reference()
    assert output == b"".join(device.respond(request) for request in requests)
    assert starts == 2


def test_documented_latencies():
    """The class docstring's latencies, cycle for cycle, without gaps or stalls."""
    rng = random.Random(13)
    requests = [STATUS_FRAME, run_frame(rng, 2)]
    engine = StandInEngine()
    link = FrameLink.for_engine(engine, timeout_cycles=TIMEOUT)
    m = Module()
    m.submodules.link, m.submodules.engine = link, engine
    wiring.connect(m, link.engine, engine)
    names = ("in_valid", "in_ready", "start_valid", "start_ready", "out_valid", "out_byte",
             "code_valid", "code_ready", "code")
    trace = []

    async def host_in(ctx):
        ctx.set(link.host_in.valid, 1)
        for byte in b"".join(requests):
            ctx.set(link.host_in.payload, byte)
            await ctx.tick().until(link.host_in.ready)
        ctx.set(link.host_in.valid, 0)

    async def monitor(ctx):
        ctx.set(link.host_out.ready, 1)
        while len(whole_frames(bytes(t["out_byte"] for t in trace if t["out_valid"]))) < 2:
            _, _, *values = await ctx.tick().sample(
                link.host_in.valid, link.host_in.ready, link.engine.start.valid,
                link.engine.start.ready, link.host_out.valid, link.host_out.payload,
                engine.outputs.valid, engine.outputs.ready, engine.outputs.payload.code)
            trace.append(dict(zip(names, values)))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host_in)
    sim.add_testbench(monitor)
    sim.run()

    def cycles(*names):
        return [cycle for cycle, t in enumerate(trace) if all(t[name] for name in names)]

    taken = cycles("in_valid", "in_ready")
    status_end = taken[len(STATUS_FRAME) - 1]
    run_end = taken[len(STATUS_FRAME) + len(requests[1]) - 1]
    out = cycles("out_valid")
    # A STATUS reply's SYNC 4 cycles after the request's last CRC byte.
    assert out[0] == status_end + 4 and trace[out[0]]["out_byte"] == protocol.SYNC
    # start 2 cycles after a RUN's last CRC byte, the RESULT's SYNC 3 cycles after start.
    start = cycles("start_valid")[0]
    assert start == run_end + 2 and cycles("start_valid", "start_ready") == [start]
    result = out[len(reference().respond(STATUS_FRAME))]
    assert result == start + 3 and trace[result]["out_byte"] == protocol.SYNC
    # Each code on host_out 1 cycle after the engine offers it, taken at once.
    codes = cycles("code_valid", "code_ready")
    assert codes == cycles("code_valid") and len(codes) == 2 * OUTPUT_CODES
    for cycle in codes:
        assert trace[cycle + 1]["out_valid"]
        assert trace[cycle + 1]["out_byte"] == trace[cycle]["code"]


def test_max_batch_is_limited_by_the_frame_length():
    link = make_link(vector_words=4096, max_batch=1000)
    assert link.max_batch == protocol.frame_max_batch(4096, 9, OUTPUT_CODES) == 7
    assert make_link().max_batch == MAX_BATCH


@pytest.mark.parametrize("kwargs, message", [
    ({"vector_words": 0}, r"^vector_words must be an integer in 1\.\.65535, not 0$"),
    ({"output_codes": 70000}, r"^output_codes must be an integer in 1\.\.65535, not 70000$"),
    ({"max_batch": 0}, r"^max_batch must be an integer in 1\.\.65535, not 0$"),
    ({"timeout_cycles": 0}, r"^timeout_cycles must be an integer in 1\.\.4294967296, not 0$"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_link(**kwargs)


def test_bad_config_and_images_are_refused():
    with pytest.raises(TypeError, match=r"^config must be an ArrayConfig, not 3$"):
        FrameLink(3, IMAGES, vector_words=1, output_codes=1, max_batch=1)
    with pytest.raises(TypeError, match=r"^images must be MemoryImages, not tuple$"):
        FrameLink(CONFIG, (), vector_words=1, output_codes=1, max_batch=1)


@pytest.mark.toolchain
def test_link_synthesizes_for_ice40(tmp_path):
    result = synthesize(make_link(timeout_cycles=1 << 24), place=False, build_dir=tmp_path,
                        name="link")
    assert 0 < result.luts < 600 and result.brams == 0


def test_link_with_the_real_engine_answers_like_the_golden_models():
    config = ArrayConfig(rows=4, cols=3, weight_bits=3, activation_bits=3,
                         activation_signed=True)
    memories = MemoryConfig(weight_words=256, requant_words=64, program_words=32,
                            activation_words=64, batch=4, output_codes=64)
    program = random_program(np.random.default_rng(5), config, [10, 7, 6])
    engine = InferenceEngine(config, pack(program, config, memories))
    link = FrameLink.for_engine(engine)
    m = Module()
    m.submodules.engine, m.submodules.link = engine, link
    wiring.connect(m, link.engine, engine)
    rng = np.random.default_rng(1)
    requests = [STATUS_FRAME]
    for batch in (4, 1):
        words = pack_vectors(rng.integers(-4, 4, size=(batch, 10)), config, engine.vector_words)
        requests.append(protocol.encode_frame(
            FrameType.RUN, protocol.encode_run(batch, words, link.word_bits)))
    requests.append(STATUS_FRAME)
    received = bytearray()

    async def host_in(ctx):
        ctx.set(link.host_in.valid, 1)
        for byte in b"".join(requests):
            ctx.set(link.host_in.payload, byte)
            await ctx.tick().until(link.host_in.ready)
        ctx.set(link.host_in.valid, 0)

    async def host_out(ctx):
        ctx.set(link.host_out.ready, 1)
        while len(whole_frames(bytes(received))) < len(requests):
            _, _, valid, byte = await ctx.tick().sample(link.host_out.valid,
                                                         link.host_out.payload)
            if valid:
                received.append(byte)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host_in)
    sim.add_testbench(host_out)
    sim.run()
    golden = GoldenTransport(program, config, memories)
    assert bytes(received) == b"".join(golden.exchange(request) for request in requests)
