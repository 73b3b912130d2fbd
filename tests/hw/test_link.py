# amaranth: UnusedElaboratable=no
"""The frame link in Amaranth's simulator, against a stand-in engine and the protocol's
:class:`~systolix.protocol.ReferenceDevice`: every reply byte for byte, with and without gaps on
``host_in`` and back-pressure on ``host_out``; and once with the real engine, against the golden
models. Then 1,280 random and malformed requests (random_session), sent to the link with the
stand-in and with the real engine and to the reference device, answered alike byte for byte.

The components of the tests of bad arguments are never elaborated; the first line tells Amaranth
not to warn about that.
"""

import random
from dataclasses import replace

import numpy as np
import pytest
from amaranth.hdl import Fragment, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from systolix import protocol
from systolix.boards.memory_files import STATUS_MEMORY, read_hex, write_memory_files
from systolix.boards.tops import FILLER
from systolix.boards.synth import synthesize
from systolix.config import ArrayConfig
from systolix.hw.engine import InferenceEngine
from systolix.hw.link import FrameLink, engine_signature
from systolix.protocol import ErrorCode, FrameType, ReferenceDevice, Status
from systolix.sw.stimulus import random_program
from systolix.sw.driver import GoldenTransport
from systolix.memory_map import MemoryConfig, pack_vectors, unpack_outputs
from systolix.sim.golden.program import run_program
from systolix.sw.pack import pack

# 3 rows of 3-bit codes: 9-bit words, two bytes each on the link.
CONFIG = ArrayConfig(rows=3, cols=2, weight_bits=2, activation_bits=3, activation_signed=True)
VECTOR_WORDS = 2   # 5 inputs
OUTPUT_CODES = 5
MAX_BATCH = 3
DELAY = 7          # compute cycles of the stand-in engine per vector
TIMEOUT = 40
PROGRAM = random_program(np.random.default_rng(0), CONFIG, [5, OUTPUT_CODES])
IMAGES = pack(PROGRAM, CONFIG, MemoryConfig(batch=MAX_BATCH))


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
        self.starts = Signal(16)
        self.discards = Signal(16)

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


def rtl_exchange(chunks, replies, *, gaps=0.0, ready=1.0, seed=0, quiet=50, engine=None,
                 filler=None, status_memory=None):
    """Send ``chunks`` (bytes, or an int: that many idle cycles) to a link with ``engine`` (a
    stand-in engine by default) and take its bytes until ``replies`` frames and then ``quiet``
    cycles without a byte have passed; return the bytes, and the stand-in engine's start and
    discard counts (``None`` with another engine). ``status_memory``: contents that replace
    those of the link's status memory (as a bitstream patcher does)."""
    rng = random.Random(seed)
    engine = StandInEngine() if engine is None else engine
    link = FrameLink.for_engine(engine, timeout_cycles=TIMEOUT, filler=filler)
    if status_memory is not None:
        link.status_memory.init = status_memory
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
        idle = frames = start = 0      # whole frames received, where the next one starts
        # Until the replies and quiet cycles, or (a reply missing) 1000 cycles without a byte.
        while (frames < replies and idle < 1000) or idle < quiet:
            accept = rng.random() < ready
            ctx.set(link.host_out.ready, accept)
            _, _, valid, byte = await ctx.tick().sample(link.host_out.valid,
                                                         link.host_out.payload)
            idle = 0 if valid else idle + 1
            if valid and accept:
                received.append(byte)
                frame = received[start:]
                if len(frame) >= 4 and len(frame) == 6 + int.from_bytes(frame[2:4], "little"):
                    frames, start = frames + 1, len(received)
        if isinstance(engine, StandInEngine):
            counts["starts"] = ctx.get(engine.starts)
            counts["discards"] = ctx.get(engine.discards)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(host_in)
    sim.add_testbench(host_out)
    sim.run()
    return bytes(received), counts.get("starts"), counts.get("discards")


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


def test_patched_status_memory_reports_the_patched_model(tmp_path):
    """A link built for images A whose status memory is rewritten as ``systolix patch`` rewrites
    it for images B (the memory file the bitstream build and the patcher write) reports B's
    model: header, config and checksum, the rest as before."""
    other = pack(random_program(np.random.default_rng(1), CONFIG, [5, OUTPUT_CODES]), CONFIG,
                 MemoryConfig(batch=MAX_BATCH))
    assert protocol.image_checksum(other) != protocol.image_checksum(IMAGES)
    write_memory_files(other, tmp_path, FILLER)
    output, _, _ = rtl_exchange([STATUS_FRAME], 1, filler=FILLER,
                                status_memory=read_hex(tmp_path / f"{STATUS_MEMORY}.hex"))
    (reply,) = split_frames(output)
    assert Status.decode(reply.payload) == replace(
        make_link().status, **protocol.model_status(other))
    # Unpatched, the same link with the filler reports A.
    output, _, _ = rtl_exchange([STATUS_FRAME], 1, filler=FILLER)
    assert Status.decode(split_frames(output)[0].payload) == make_link().status


REFUSED = {
    "bad crc": (corrupt(STATUS_FRAME, 5), ErrorCode.BAD_CRC),
    "bad crc in the header": (corrupt(STATUS_FRAME, 1), ErrorCode.BAD_CRC),
    "unknown type": (protocol.encode_frame(0x33, b"abc"), ErrorCode.UNKNOWN_TYPE),
    "status with payload": (protocol.encode_frame(FrameType.STATUS, b"\0"),
                            ErrorCode.BAD_LENGTH),
    "load into baked weights": (protocol.encode_frame(
        FrameType.LOAD, protocol.encode_load(0, [1], 4)), ErrorCode.UNKNOWN_TYPE),
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
    assert 0 < result.luts < 600 and result.brams == 1     # the status memory


def test_link_with_the_real_engine_answers_like_the_golden_models():
    config = ArrayConfig(rows=4, cols=3, weight_bits=3, activation_bits=3,
                         activation_signed=True)
    memories = MemoryConfig(weight_words=256, requant_words=64, program_words=64,
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


# -- Weights loaded at run time: LOAD frames into the real engine's weight memory. ---------------

def load_frame(address, words, bits):
    return protocol.encode_frame(FrameType.LOAD, protocol.encode_load(address, words, bits))


@pytest.mark.parametrize("gaps, ready", [(0.0, 1.0), (0.3, 0.6)])
def test_load_and_run_with_the_real_engine_answer_like_the_golden_models(gaps, ready):
    """An engine whose weight memory the host loads (a single-port memory, zeros at first in
    simulation, as in the golden device): refused LOADs of every kind, a RUN before the
    weights, the weights in two LOADs, runs, STATUS; byte for byte as the golden transport,
    which computes with the weights it was sent; at full rate, and with gaps on ``host_in``
    and back-pressure on ``host_out``."""
    config = ArrayConfig(rows=4, cols=3, weight_bits=3, activation_bits=3,
                         activation_signed=True)   # 9-bit weight words: two bytes each
    memories = MemoryConfig(weight_words=60, requant_words=64, program_words=64,
                            activation_words=64, batch=4, output_codes=64, upload_weights=True)
    program = random_program(np.random.default_rng(6), config, [10, 7, 6])
    images = pack(program, config, memories)
    engine = InferenceEngine(config, images)         # its `load` port, the link's LOAD path
    weights, bits = list(images.weights), images.weight_width
    rng = np.random.default_rng(2)
    codes = []

    def run():
        codes.append(rng.integers(-4, 4, size=(3, 10)))
        words = pack_vectors(codes[-1], config, engine.vector_words)
        return protocol.encode_frame(FrameType.RUN, protocol.encode_run(3, words, 12))

    requests = [
        load_frame(59, [1, 2], bits),                                   # past the memory
        protocol.encode_frame(FrameType.LOAD, b"\0\0\0\0"),             # no words
        protocol.encode_frame(FrameType.LOAD, b"\0\0"),                   # no header
        protocol.encode_frame(FrameType.LOAD, protocol.encode_load(0, [3], bits) + b"\0"),
        protocol.encode_frame(FrameType.LOAD, protocol.encode_load(0, [5, 6], bits)[:-1]
                              + b"\x02"),                                # bit 9 set
        corrupt(load_frame(0, weights[:4], bits), 6),                    # bad CRC
        run(),                                                           # zero weights
        load_frame(0, weights[:len(weights) // 2], bits),
        load_frame(len(weights) // 2, weights[len(weights) // 2:], bits),
        run(), STATUS_FRAME, run(),
    ]
    received, _, _ = rtl_exchange(requests, len(requests), gaps=gaps, ready=ready,
                                  engine=engine)
    golden = GoldenTransport(program, config, memories)
    replies = [golden.exchange(request) for request in requests]
    assert received == b"".join(replies)
    kinds = [protocol.decode_frame(reply) for reply in replies]
    assert [protocol.decode_error(frame.payload)[0] for frame in kinds[:6]] == [
        ErrorCode.BAD_ADDRESS, ErrorCode.BAD_ADDRESS, ErrorCode.BAD_LENGTH,
        ErrorCode.BAD_LENGTH, ErrorCode.BAD_WORD, ErrorCode.BAD_CRC]
    assert [frame.type for frame in kinds[7:9]] == [FrameType.LOADED] * 2
    # The runs after the LOADs compute the program.
    assert golden.device.weights[:len(weights)] == weights
    last = program.layers[-1]
    for index, vectors in zip((9, 11), codes[1:]):
        outputs = unpack_outputs(protocol.decode_result(kinds[index].payload).codes,
                                 last.output_bits, last.output_signed)
        assert outputs == run_program(program, vectors).ravel().tolist()


# -- The link and the reference device answer the same byte stream alike. -----------------------

WORD_BITS = CONFIG.rows * CONFIG.activation_bits
WORD_BYTES = protocol.word_bytes(WORD_BITS)
GAP = TIMEOUT + 5       # idle cycles on host_in: a frame in progress times out


def loaded(frame):
    """Whether the link passes ``frame``'s words (the bytes of a frame so far) to the engine: a
    RUN whose batch field is in and whose batch and length fit."""
    if len(frame) < 6 or frame[1] != FrameType.RUN:
        return False
    batch = int.from_bytes(frame[4:6], "little")
    return (1 <= batch <= MAX_BATCH and int.from_bytes(frame[2:4], "little")
            == protocol.run_length(batch, VECTOR_WORDS, WORD_BITS))


def reference_session(chunks, device):
    """What ``device`` (a :class:`ReferenceDevice`) answers to ``chunks`` (bytes, or an int:
    that many idle cycles, at least :data:`GAP`), framed as docs/protocol.md says: bytes before
    ``SYNC`` skipped, a frame read to the end of its declared length and CRC, a frame in
    progress at an idle gap (or at the end) refused with ``TIMEOUT``.

    Returns the replies, each ``(index of the chunk that completed its request, reply bytes)``,
    the engine's starts and discards (``start`` with batch 0: a refused RUN whose words went to
    the engine)."""
    replies, starts, discards = [], 0, 0
    frame = None                 # the frame being read, None while hunting for SYNC
    for index, chunk in enumerate([*chunks, GAP]):
        if isinstance(chunk, int):
            assert chunk >= GAP
            if frame is not None:
                error = protocol.encode_error(ErrorCode.TIMEOUT, frame[1] if len(frame) > 1 else 0)
                replies.append((index, protocol.encode_frame(FrameType.ERROR, error)))
                discards += loaded(frame)
                frame = None
            continue
        for byte in chunk:
            if frame is None:
                if byte == protocol.SYNC:
                    frame = bytearray([byte])
                continue
            frame.append(byte)
            if len(frame) >= 4 and len(frame) == 6 + int.from_bytes(frame[2:4], "little"):
                reply = device.respond(bytes(frame))
                replies.append((index, reply))
                started = reply[1] == FrameType.RESULT
                starts += started
                discards += loaded(frame) and not started
                frame = None
    return replies, starts, discards


def random_session(rng, count):
    """``count`` requests, each a list of chunks for :func:`rtl_exchange`: good frames of every
    type with random fields and malformed ones of every kind (:data:`REQUEST_KINDS`)."""
    def noise(size):
        return bytes(rng.randrange(256) for _ in range(size))

    def words(batch):
        return [rng.randrange(1 << WORD_BITS) for _ in range(batch * VECTOR_WORDS)]

    def run_payload(batch=None):
        batch = rng.randint(1, MAX_BATCH) if batch is None else batch
        return protocol.encode_run(batch, words(batch), WORD_BITS)

    def run(payload=None):
        return protocol.encode_frame(FrameType.RUN, run_payload() if payload is None else payload)

    def good():
        return run() if rng.random() < 0.7 else STATUS_FRAME

    def bad_words():
        """A RUN payload with bits set above WORD_BITS in the last byte of some words."""
        payload = bytearray(run_payload())
        count = (len(payload) - 2) // WORD_BYTES
        for _ in range(rng.choice([1, 1, 2, count])):
            last = 2 + (rng.randrange(count) + 1) * WORD_BYTES - 1
            payload[last] |= rng.randrange(1, 1 << (8 - WORD_BITS % 8)) << WORD_BITS % 8
        return bytes(payload)

    def request(kind):
        if kind == "run":
            return [run(run_payload(rng.choice([None, MAX_BATCH])))]
        if kind == "status":
            return [STATUS_FRAME]
        if kind == "sync inside":          # SYNC in payload bytes, valid or not
            payload = run_payload()
            payload = payload[:2] + bytes([protocol.SYNC, rng.randrange(2)]) * (
                (len(payload) - 2) // 2)
            return [run(payload) if rng.random() < 0.7 else protocol.encode_frame(
                rng.choice([protocol.SYNC, FrameType.RUN, FrameType.STATUS]),
                bytes([protocol.SYNC]) * rng.choice([0, 1, 2, protocol.SYNC]))]
        if kind == "bad word":
            return [run(bad_words())]
        if kind == "bad word, bad crc":
            frame = run(bad_words())
            return [corrupt(frame, rng.randrange(4, len(frame)))]
        if kind == "bad word, bad length":
            return [run(bad_words()[:-rng.randint(1, 2 * WORD_BYTES)])]
        if kind == "bad crc":              # a payload or CRC byte: the framing stays
            frame = good()
            return [corrupt(frame, rng.choice([1, *range(4, len(frame))]))]
        if kind == "bad header":           # the type or length: the framing changes
            frame = bytearray(good())
            frame[rng.randrange(1, 4)] ^= 1 << rng.randrange(8)
            return [bytes(frame)] + ([GAP] if rng.random() < 0.8 else [])
        if kind == "random crc":
            frame = good()
            return [frame[:-2] + noise(2)]
        if kind == "status with payload":
            return [protocol.encode_frame(FrameType.STATUS, noise(rng.randint(1, 30)))]
        if kind == "run without batch":
            return [run(noise(rng.randrange(2)))]
        if kind == "run of the wrong length":
            payload = run_payload()
            return [run(payload + noise(rng.randint(1, 9)) if rng.random() < 0.5
                        else payload[:-rng.randint(1, len(payload) - 2)])]
        if kind == "batch out of range":
            batch = rng.choice([0, MAX_BATCH + 1, 0xFFFF, rng.randrange(MAX_BATCH + 1, 0x10000)])
            size = rng.choice([0, rng.randrange(20),
                               min(batch, MAX_BATCH + 1) * VECTOR_WORDS * WORD_BYTES])
            return [run(batch.to_bytes(2, "little") + noise(size))]
        if kind == "unknown type":
            frame_type = rng.choice([0, 3, 0x7F, 0x80, rng.randrange(3, 256)])
            return [protocol.encode_frame(frame_type, noise(rng.randrange(30)))]
        if kind == "reply types":          # the device's own frames, sent back to it
            return [rng.choice([
                protocol.encode_frame(FrameType.RESULT, protocol.encode_result(
                    noise(OUTPUT_CODES * rng.randint(1, MAX_BATCH)), rng.randrange(1 << 32))),
                protocol.encode_frame(FrameType.STATUS_REPLY, make_link().status.encode()),
                protocol.encode_frame(FrameType.ERROR, protocol.encode_error(
                    rng.choice(list(ErrorCode)), rng.randrange(256)))])]
        if kind == "truncated":            # then a gap: it times out; or the next frame's bytes
            frame = good()
            return [frame[:rng.randrange(1, len(frame))]] + ([GAP] if rng.random() < 0.9 else [])
        if kind == "garbage between frames":
            return [bytes(rng.choice([0x00, 0x13, 0x5A, 0xFF, 0xA4])
                          for _ in range(rng.randint(1, 6))), good()]
        if kind == "random bytes":
            return [noise(rng.randint(1, 24))] + ([GAP] if rng.random() < 0.8 else [])
        assert kind == "sync and noise"
        return [bytes([protocol.SYNC]) + noise(rng.randrange(9))] + (
            [GAP] if rng.random() < 0.8 else [])

    return [request(rng.choice(REQUEST_KINDS)) for _ in range(count)]


REQUEST_KINDS = (
    "run", "status", "sync inside", "bad word", "bad word, bad crc", "bad word, bad length",
    "bad crc", "bad header", "random crc", "status with payload", "run without batch",
    "run of the wrong length", "batch out of range", "unknown type", "reply types",
    "truncated", "garbage between frames", "random bytes", "sync and noise")


def compare_session(requests, *, real_engine=False, **exchange):
    """Send ``requests`` (lists of chunks) to the link and check that it answers every one as
    the reference device does, byte for byte: with the stand-in engine (and the starts and
    discards it counts) against :func:`reference`, or with the real engine of :data:`IMAGES`
    against the golden models' reference device. Returns the number of replies compared."""
    chunks = [chunk for request in requests for chunk in request]
    owner = [number for number, request in enumerate(requests) for _ in request]
    if real_engine:
        engine = InferenceEngine(CONFIG, IMAGES)
        device = GoldenTransport(PROGRAM, CONFIG, MemoryConfig(batch=MAX_BATCH)).device
    else:
        engine, device = StandInEngine(), reference()
    want, want_starts, want_discards = reference_session(chunks, device)
    output, starts, discards = rtl_exchange(chunks, len(want), engine=engine, **exchange)
    position = 0
    for number, (index, reply) in enumerate(want):
        got = output[position:position + len(reply)]
        request = owner[min(index, len(owner) - 1)]
        shown = [chunk if isinstance(chunk, int) else chunk.hex(" ")
                 for chunk in requests[request]]
        assert got == reply, (f"reply {number}, to request {request} {shown}: the link sent "
                              f"{got.hex(' ')}, the reference device {reply.hex(' ')}")
        position += len(reply)
    assert output[position:] == b"", f"more than the reference: {output[position:].hex(' ')}"
    if not real_engine:
        assert (starts, discards) == (want_starts, want_discards)
    return len(want)


SESSIONS = {   # seed: requests, gaps on host_in, ready on host_out, the real engine
    100: (320, 0.0, 1.0, False), 101: (320, 0.2, 0.5, False),
    102: (320, 0.0, 1.0, True), 103: (320, 0.1, 0.4, True)}


@pytest.mark.parametrize("seed", SESSIONS)
def test_random_and_malformed_frames_are_answered_as_the_reference_device_does(seed):
    """The same requests to the link and the reference device: random_session's kinds, with
    and without gaps on host_in and stalls on host_out; over 1,000 replies in all."""
    count, gaps, ready, real_engine = SESSIONS[seed]
    requests = random_session(random.Random(seed), count)
    compared = compare_session(requests, real_engine=real_engine, gaps=gaps, ready=ready,
                               seed=seed)
    assert compared > count * 0.8


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(200, 210))
def test_many_random_and_malformed_frames(seed):
    rng = random.Random(seed)
    compare_session(random_session(rng, 2000), real_engine=seed % 2 == 1,
                    gaps=rng.choice([0.0, 0.2]), ready=rng.choice([1.0, 0.5]), seed=seed)
