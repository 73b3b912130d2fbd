"""Frame bridge between the host's byte stream and the inference engine (docs/protocol.md)."""

from dataclasses import asdict

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.config import ArrayConfig, check_int
from systolix.protocol import ErrorCode, FrameType
from systolix.memory_map import MemoryImages, output_layout


__all__ = ["engine_signature", "FrameLink"]


def engine_signature(word_bits):
    """The ports of the inference engine, seen from the engine, with ``word_bits``-bit input
    words.

    The engine views an input word with :func:`systolix.hw.engine.input_word_layout`; here it
    is plain bits, which :func:`amaranth.lib.wiring.connect` accepts as the same port (it
    compares widths). Plain bits also keep Yosys 0.70's ABC9 from failing on the link alone: it
    names the bits of a wire ``name[i]``, which clash with the wires Amaranth names after the
    elements of an array layout (``Assert `count_id(wire->name) == 0' failed``).

    Members
    -------
    inputs : In(stream.Signature(word_bits))
        Activation buffer words, written from address 0.
    start : In(stream.Signature(unsigned(16)))
        Batch size ``1..max_batch``: run over the words written since the previous ``start``.
        0: discard those words and run nothing (the next word again goes to address 0).
    outputs : Out(stream.Signature(output_layout()))
        ``batch * output_codes`` codes, vector by vector, ``last`` on the final one.
    busy : Out(1)
    cycles : Out(32)
        Compute cycles of the last completed run.
    """
    return wiring.Signature({
        "inputs": In(stream.Signature(word_bits)),
        "start": In(stream.Signature(unsigned(16))),
        "outputs": Out(stream.Signature(output_layout())),
        "busy": Out(1),
        "cycles": Out(32),
    })


_HEADER_BYTES = protocol.FRAME_HEADER_LAYOUT.size // 8
_STATUS_BYTES = protocol.STATUS_LAYOUT.size // 8
_ERROR_BYTES = protocol.ERROR_LAYOUT.size // 8
_BATCH_BYTES = protocol.RUN_HEADER_LAYOUT.size // 8
_TAIL_BYTES = protocol.RESULT_TAIL_LAYOUT.size // 8

# Bytes the transmitter sends from its table, Cat(frame header, status, error): offsets.
_STATUS_START = _HEADER_BYTES
_CYCLES_START = _STATUS_START + protocol.STATUS_LAYOUT["cycles"].offset // 8
_ERROR_START = _STATUS_START + _STATUS_BYTES
_TABLE_BYTES = _ERROR_START + _ERROR_BYTES


class FrameLink(wiring.Component):
    """Bridge between the host's byte streams and the engine, speaking the framed protocol of
    :mod:`systolix.protocol`.

    The link receives one frame at a time on ``host_in``, hunting for ``SYNC`` between frames,
    and computes its CRC as it arrives (:data:`~systolix.protocol.CRC_PARAMETERS`, one
    :class:`amaranth.lib.crc.Processor` shared by receiver and transmitter). A RUN's input words
    are passed to the engine as soon as their last byte arrives; ``start`` is issued only after
    the CRC has matched. Then the RESULT frame's header goes out (its length is known from the
    batch) while the engine computes, then the engine's output codes as they come, then the
    run's cycles and the CRC. A STATUS request is answered at once from constants and the
    engine's ``busy`` and ``cycles``. Every reply byte leaves through an output register.

    A frame that fails a check (CRC, type, length, batch; in the order of
    :class:`~systolix.protocol.ReferenceDevice`) is read to the end of its declared length and
    answered with an ERROR; a frame of which no byte is offered for ``timeout_cycles`` cycles
    is answered with an ERROR (``TIMEOUT``). Either way the link then hunts for the next
    ``SYNC``. If a refused RUN has already passed words to the engine, the link first sends
    ``start`` with batch 0, which tells the engine to discard them.

    Latency: a reply's ``SYNC`` is offered 4 cycles after the last CRC byte of a STATUS request
    is accepted. For a RUN, ``start`` is offered 2 cycles after it, and the RESULT's ``SYNC`` 3
    cycles after ``start`` is accepted. An output code is offered on ``host_out`` 1 cycle after
    the engine offers it; the cycles follow once the engine is no longer busy.

    Throughput: one byte per cycle on each stream. ``host_in`` is ready in every cycle in which
    the link receives, except 2 cycles after a RUN's batch field, 1 cycle after every payload
    and cycles in which the engine does not take an input word; it is not ready from the end of
    a request to the end of its reply. ``host_out`` may be stalled at any time.

    Resources (``systolix.boards.synth``, 32-bit input words): about 570 iCE40UP5K logic cells
    with the timeout, 510 without, 40..46 MHz; about 580 ECP5 LUT4s, 100 MHz. The largest parts
    are the transmitter's table of reply bytes (about 100 LUTs), the timeout counter (about 55
    cells) and the CRC unit.

    Parameters
    ----------
    config : ArrayConfig
        The engine's array: an input word has ``rows * activation_bits`` bits.
    images : MemoryImages
        The engine's memory images: program words 0 and 1 and their checksum are reported by
        STATUS.
    vector_words : int
        Input words per vector, 1..65535.
    output_codes : int
        Output codes per vector, 1..65535.
    max_batch : int
        The most vectors the engine takes in a run, 1..65535. The link accepts at most
        ``min(max_batch, protocol.frame_max_batch(...))``, its :attr:`max_batch`.
    timeout_cycles : int or None
        Cycles without a byte offered in the middle of a frame after which the frame is
        dropped, 1..2**32 (the default, 2**24, is 1.4 s at 12 MHz); ``None`` waits forever.

    Attributes
    ----------
    host_in : In(stream.Signature(8))
        Bytes from the host.
    host_out : Out(stream.Signature(8))
        Bytes to the host.
    engine : In(engine_signature(word_bits))
        The engine's ports, flipped: ``wiring.connect(m, link.engine, engine)``.
    status : protocol.Status
        What STATUS reports while the engine is idle before its first run.
    max_batch : int
        The most vectors a RUN may carry, ``status.max_batch``.
    word_bits : int
        Bits of an input word, ``rows * activation_bits``.
    """

    def __init__(self, config, images, *, vector_words, output_codes, max_batch,
                 timeout_cycles=1 << 24):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(images, MemoryImages):
            raise TypeError(f"images must be MemoryImages, not {type(images).__name__}")
        if len(images.program) < 2:
            raise ValueError(f"images must have at least the 2 header words of a program, not "
                             f"{len(images.program)}")
        self.config = config
        self.images = images
        self.vector_words = check_int("vector_words", vector_words, 1, protocol.MAX_PAYLOAD)
        self.output_codes = check_int("output_codes", output_codes, 1, protocol.MAX_PAYLOAD)
        check_int("max_batch", max_batch, 1, protocol.MAX_PAYLOAD)
        if timeout_cycles is not None:
            check_int("timeout_cycles", timeout_cycles, 1, 1 << 32)
        self.timeout_cycles = timeout_cycles
        self.word_bits = config.rows * config.activation_bits
        self.status = protocol.device_status(images, vector_words=vector_words,
                                             word_bits=self.word_bits,
                                             output_codes=output_codes, max_batch=max_batch)
        self.max_batch = self.status.max_batch
        super().__init__({
            "host_in": In(stream.Signature(8)),
            "host_out": Out(stream.Signature(8)),
            "engine": In(engine_signature(self.word_bits)),
        })

    @classmethod
    def for_engine(cls, engine, **kwargs):
        """The link for ``engine``, from its ``config``, ``images``, ``vector_words``,
        ``output_codes`` and ``max_batch``; ``kwargs`` go to the constructor."""
        return cls(engine.config, engine.images, vector_words=engine.vector_words,
                   output_codes=engine.output_codes, max_batch=engine.max_batch, **kwargs)

    def elaborate(self, platform):
        m = Module()
        host_in, host_out, engine = self.host_in, self.host_out, self.engine
        word_bytes = protocol.word_bytes(self.word_bits)
        batch_bits = self.max_batch.bit_length()

        m.submodules.crc = crc = protocol.CRC_PARAMETERS.create()

        received = Signal()    # a host_in byte is taken this cycle
        sent = Signal()        # a host_out byte is taken this cycle
        m.d.comb += [received.eq(host_in.valid & host_in.ready),
                     sent.eq(host_out.valid & host_out.ready)]

        # -- Receiver registers. ------------------------------------------------------------------
        rx_type = Signal(8)
        is_run = Signal()
        is_status = Signal()
        length_low = Signal(8)
        remaining = Signal(16)           # payload bytes still to come
        payload_done = Signal()          # remaining == 0, registered
        batch = Signal(16)
        bad_batch = Signal()             # batch is not in 1..max_batch
        bad_length = Signal()            # the payload is not the batch's
        error = Signal(8)                # ErrorCode of the frame, 0 while it is acceptable
        loaded = Signal()                # the frame's words go to the engine
        word = Signal(word_bytes * 8)    # input word, assembled least significant byte first
        word_valid = Signal()
        byte_index = Signal(range(word_bytes))

        def count_payload(value):
            """``remaining <= value``, keeping ``payload_done`` in step."""
            m.d.sync += [remaining.eq(value), payload_done.eq(value == 0)]

        m.d.comb += [engine.inputs.valid.eq(word_valid),
                     engine.inputs.payload.eq(word[:self.word_bits]),
                     engine.start.payload.eq(batch)]
        with m.If(engine.inputs.valid & engine.inputs.ready):
            m.d.sync += word_valid.eq(0)

        # -- Transmitter: bytes go out through a register (and, with their flags, into the CRC
        # unit from there); every byte but codes and CRC comes from this table.
        tx_type = Signal(8)
        tx_length = Signal(16)
        tx_index = Signal(range(_TABLE_BYTES))
        header = Signal(protocol.FRAME_HEADER_LAYOUT)
        status = Signal(protocol.STATUS_LAYOUT)
        error_payload = Signal(protocol.ERROR_LAYOUT)
        table = Cat(header.as_value(), status.as_value(), error_payload.as_value())
        m.d.comb += [
            header.sync.eq(protocol.SYNC),
            header.type.eq(tx_type),
            header.length.eq(tx_length),
            error_payload.code.eq(error),
            error_payload.frame_type.eq(rx_type),
            status.busy.eq(engine.busy),
            status.cycles.eq(engine.cycles),
            *(status[name].eq(value) for name, value in asdict(self.status).items()
              if name not in ("busy", "cycles")),
        ]
        out_byte = Signal(8)
        out_valid = Signal()
        out_crc = Signal()               # the byte goes into the CRC
        out_sync = Signal()              # the byte is SYNC: the CRC starts again
        advance = Signal()               # the output register takes a byte this cycle
        m.d.comb += [host_out.payload.eq(out_byte), host_out.valid.eq(out_valid),
                     advance.eq(~out_valid | host_out.ready)]
        with m.If(host_out.ready):
            m.d.sync += out_valid.eq(0)

        def send(byte, *, crc_byte=True, sync=False):
            """Put ``byte`` into the output register (in a cycle with ``advance``)."""
            m.d.sync += [out_byte.eq(byte), out_valid.eq(1), out_crc.eq(crc_byte),
                         out_sync.eq(sync)]

        # -- The CRC unit: the receiver's frame bytes after SYNC, or the transmitter's. ----------
        hunting = Signal()
        replying = Signal()              # the receiver waits for the transmitter
        m.d.comb += [
            crc.data.eq(Mux(replying, out_byte, host_in.payload)),
            crc.valid.eq(Mux(replying, sent & out_crc, received & ~hunting)),
            crc.start.eq(sent & out_sync),
        ]

        # -- Timeout: set for a cycle after timeout_cycles cycles without a byte offered. -------
        receiving = Signal()
        timed_out = Signal()
        if self.timeout_cycles is not None:
            idle = Signal(range(self.timeout_cycles + 1))
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
            with m.If(receiving & ~host_in.valid):
                m.d.sync += [idle.eq(idle + 1),
                             timed_out.eq(idle == self.timeout_cycles - 1)]

        def receive():
            """In a state that waits for host bytes: give up on the frame after a timeout."""
            m.d.comb += receiving.eq(1)
            with m.If(timed_out):
                m.d.sync += error.eq(ErrorCode.TIMEOUT)
                refuse()

        def reply(frame_type, length):
            """Hand a reply of ``frame_type`` with ``length`` payload bytes to the transmitter."""
            m.d.sync += [tx_type.eq(frame_type), tx_length.eq(length)]
            m.next = "REPLY"

        def refuse():
            """Answer the frame with an ERROR of the code in ``error``, discarding its words."""
            with m.If(loaded):
                m.next = "DISCARD"
            with m.Else():
                reply(FrameType.ERROR, _ERROR_BYTES)

        tx_done = Signal()
        with m.FSM(name="receiver"):
            with m.State("HUNT"):
                m.d.comb += [hunting.eq(1), host_in.ready.eq(1)]
                with m.If(received & (host_in.payload == protocol.SYNC)):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += [rx_type.eq(0), error.eq(0), loaded.eq(0)]
                    m.next = "TYPE"

            with m.State("TYPE"):
                m.d.comb += host_in.ready.eq(1)
                with m.If(received):
                    m.d.sync += [rx_type.eq(host_in.payload),
                                 is_run.eq(host_in.payload == FrameType.RUN),
                                 is_status.eq(host_in.payload == FrameType.STATUS)]
                    m.next = "LENGTH_LOW"
                receive()

            with m.State("LENGTH_LOW"):
                m.d.comb += host_in.ready.eq(1)
                with m.If(received):
                    m.d.sync += length_low.eq(host_in.payload)
                    m.next = "LENGTH_HIGH"
                receive()

            with m.State("LENGTH_HIGH"):
                m.d.comb += host_in.ready.eq(1)
                length = Cat(length_low, host_in.payload)
                with m.If(received):
                    count_payload(length)
                    m.next = "PAYLOAD"
                    with m.If(is_run):
                        with m.If(length < _BATCH_BYTES):
                            m.d.sync += error.eq(ErrorCode.BAD_LENGTH)
                        with m.Else():
                            m.next = "BATCH_LOW"
                    with m.Elif(is_status):
                        with m.If(length != 0):
                            m.d.sync += error.eq(ErrorCode.BAD_LENGTH)
                    with m.Else():
                        m.d.sync += error.eq(ErrorCode.UNKNOWN_TYPE)
                receive()

            for index, (state, following) in enumerate((("BATCH_LOW", "BATCH_HIGH"),
                                                        ("BATCH_HIGH", "CHECK"))):
                with m.State(state):
                    m.d.comb += host_in.ready.eq(1)
                    with m.If(received):
                        m.d.sync += batch.word_select(index, 8).eq(host_in.payload)
                        count_payload(remaining - 1)
                        m.next = following
                    receive()

            with m.State("CHECK"):
                # Below max_batch, batch has batch_bits bits: the product is the words' bytes.
                m.d.sync += [
                    bad_batch.eq((batch == 0) | (batch > self.max_batch)),
                    bad_length.eq(remaining != batch[:batch_bits] * (self.vector_words
                                                                     * word_bytes)),
                    byte_index.eq(0),
                ]
                m.next = "DECIDE"

            with m.State("DECIDE"):
                with m.If(bad_batch):
                    m.d.sync += error.eq(ErrorCode.BAD_BATCH)
                with m.Elif(bad_length):
                    m.d.sync += error.eq(ErrorCode.BAD_LENGTH)
                with m.Else():
                    m.d.sync += loaded.eq(1)
                m.next = "PAYLOAD"

            with m.State("PAYLOAD"):
                # A RUN's input words, or the payload of a frame that is refused.
                m.d.comb += host_in.ready.eq(~payload_done & (~word_valid | engine.inputs.ready))
                with m.If(received):
                    count_payload(remaining - 1)
                    m.d.sync += [word.eq(Cat(word[8:], host_in.payload)),
                                 byte_index.eq(byte_index + 1)]
                    with m.If(byte_index == word_bytes - 1):
                        m.d.sync += [byte_index.eq(0), word_valid.eq(loaded)]
                with m.If(payload_done):
                    m.next = "CRC_HIGH"
                receive()

            for state, following in (("CRC_HIGH", "CRC_LOW"), ("CRC_LOW", "VERDICT")):
                with m.State(state):
                    m.d.comb += host_in.ready.eq(1)
                    with m.If(received):
                        m.next = following
                    receive()

            with m.State("VERDICT"):
                # The CRC unit has taken the whole frame; the last word must reach the engine
                # before start.
                with m.If(~word_valid):
                    with m.If(~crc.match_detected):
                        m.d.sync += error.eq(ErrorCode.BAD_CRC)
                        refuse()
                    with m.Elif(error != 0):
                        refuse()
                    with m.Elif(is_run):
                        m.next = "START"
                    with m.Else():
                        reply(FrameType.STATUS_REPLY, _STATUS_BYTES)

            with m.State("DISCARD"):
                m.d.comb += [engine.start.valid.eq(~word_valid), engine.start.payload.eq(0)]
                with m.If(engine.start.valid & engine.start.ready):
                    reply(FrameType.ERROR, _ERROR_BYTES)

            with m.State("START"):
                m.d.comb += engine.start.valid.eq(1)
                with m.If(engine.start.ready):
                    reply(FrameType.RESULT, batch[:batch_bits] * self.output_codes + _TAIL_BYTES)

            with m.State("REPLY"):
                m.d.comb += replying.eq(1)
                with m.If(tx_done):
                    m.next = "HUNT"

        with m.FSM(name="transmitter"):
            with m.State("IDLE"):
                m.d.sync += tx_index.eq(0)
                with m.If(replying):
                    m.next = "HEADER"

            with m.State("HEADER"):
                with m.If(advance):
                    send(table.word_select(tx_index, 8), crc_byte=tx_index != 0,
                         sync=tx_index == 0)
                    m.d.sync += tx_index.eq(tx_index + 1)
                    with m.If(tx_index == _HEADER_BYTES - 1):
                        with m.If(tx_type == FrameType.RESULT):
                            m.next = "CODES"
                        with m.Elif(tx_type == FrameType.ERROR):
                            m.d.sync += tx_index.eq(_ERROR_START)
                            m.next = "BODY"
                        with m.Else():
                            m.next = "BODY"

            with m.State("CODES"):
                m.d.comb += engine.outputs.ready.eq(advance)
                with m.If(advance & engine.outputs.valid):
                    send(engine.outputs.payload.code)
                    with m.If(engine.outputs.payload.last):
                        m.next = "CYCLES"

            with m.State("CYCLES"):
                # The run's cycles are final once the engine is idle.
                m.d.sync += tx_index.eq(_CYCLES_START)
                with m.If(~engine.busy):
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
                    m.d.comb += tx_done.eq(1)
                    m.next = "IDLE"

        return m
