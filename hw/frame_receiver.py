"""The receiving half of the host link: request frames in, the engine's input words and
``start`` and a reply request out (docs/protocol.md)."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.config import check_int
from systolix.memory_map import MAX_WORDS, weight_write_layout
from systolix.protocol import ErrorCode, FrameType

from .frame_crc import crc_signature
from .reply_transmitter import reply_layout

__all__ = ["FrameReceiver"]


_BATCH_BYTES = protocol.RUN_HEADER_LAYOUT.size // 8
_LOAD_HEADER_BYTES = protocol.LOAD_HEADER_LAYOUT.size // 8
_STATUS_BYTES = protocol.STATUS_LAYOUT.size // 8
_ERROR_BYTES = protocol.ERROR_LAYOUT.size // 8
_TAIL_BYTES = protocol.RESULT_TAIL_LAYOUT.size // 8


class FrameReceiver(wiring.Component):
    """Takes request frames of :mod:`systolix.protocol` from ``host_in``, one at a time, and
    decides what each gets: the engine's work and a reply.

    Between frames the receiver hunts for ``SYNC``; it then takes the type, the length, the
    payload and the CRC, each byte into the CRC unit on ``crc`` (``SYNC`` restarts it, in the
    next cycle). A RUN's batch and length are checked as soon as the batch field is in; if they fit, its input words
    go out on ``inputs`` as their last byte arrives (least significant byte first), and a word
    with a bit set above ``word_bits`` in its last byte refuses the frame (``BAD_WORD``; the
    word still goes out, cut to ``word_bits``, and is discarded with the others). After the
    CRC, a good RUN is started (``start`` with its batch) and answered with a RESULT, a good
    STATUS with a STATUS_REPLY; a frame that fails a check, in the order of
    :class:`~systolix.protocol.ReferenceDevice`, or in which no byte is offered for
    ``timeout_cycles`` cycles (``TIMEOUT``), is answered with an ERROR, after ``start`` with
    batch 0 if words of it went out. The reply is offered on ``reply`` until it is taken, which
    tells the receiver that the reply has been sent: then it hunts for the next ``SYNC``.

    With ``weight_bits`` the receiver also takes LOAD frames: their address and word count
    are checked as a RUN's batch is (``BAD_ADDRESS`` unless the words lie in the
    ``weight_words`` of the weight memory), their words go out on ``load`` with consecutive
    addresses as their last byte arrives, and a good LOAD is answered with LOADED. A refused
    LOAD may have written some of its words (the host sends it again).

    Latency: ``start``, or the ``reply`` of a STATUS request, is offered 2 cycles after the last
    CRC byte is taken (later if an input word is still waiting to be taken); the reply to a
    RUN 1 cycle after ``start`` is taken.

    Throughput: ``host_in`` takes a byte a cycle from ``SYNC`` to the CRC, except 2 cycles
    after a RUN's batch field (a LOAD's word count), 1 cycle after the payload, 1 cycle after
    each input (or weight) word and cycles in which that word is not taken; it is not ready
    from the last CRC byte until the reply has been taken.

    Parameters
    ----------
    word_bits : int
        Bits of an input word, 1..65535; a word is ``ceil(word_bits / 8)`` bytes on the link.
    vector_words, output_codes : int
        Input words and output codes of a vector, 1..65535.
    max_batch : int
        The largest batch a RUN may carry, 1..``protocol.frame_max_batch(...)``.
    timeout_cycles : int or None
        Cycles without a byte offered in the middle of a frame after which it is refused,
        1..2**32; ``None`` waits forever.
    weight_bits, weight_words : int or None
        Bits and words of the weight memory the host loads (LOAD frames); ``None`` (the
        default): LOAD is an unknown type.

    Attributes
    ----------
    host_in : In(stream.Signature(8))
    inputs : Out(stream.Signature(word_bits))
        The RUN's input words, for the engine.
    start : Out(stream.Signature(unsigned(16)))
        The batch of a good RUN, or 0: discard the words that went out.
    reply : Out(stream.Signature(reply_layout()))
        The reply's type and payload length; for an ERROR its code and the request's type.
    crc : Out(crc_signature())
    load : Out(stream.Signature(weight_write_layout(weight_bits)))
        Only with ``weight_bits``: the LOAD's words and their addresses, for the engine.
    """

    def __init__(self, *, word_bits, vector_words, output_codes, max_batch, timeout_cycles,
                 weight_bits=None, weight_words=None):
        self.word_bits = check_int("word_bits", word_bits, 1, protocol.MAX_PAYLOAD)
        self.vector_words = check_int("vector_words", vector_words, 1, protocol.MAX_PAYLOAD)
        self.output_codes = check_int("output_codes", output_codes, 1, protocol.MAX_PAYLOAD)
        self.max_batch = check_int("max_batch", max_batch, 1, protocol.frame_max_batch(
            vector_words, word_bits, output_codes))
        if timeout_cycles is not None:
            check_int("timeout_cycles", timeout_cycles, 1, 1 << 32)
        self.timeout_cycles = timeout_cycles
        if (weight_bits is None) != (weight_words is None):
            raise ValueError("weight_bits and weight_words go together")
        members = {
            "host_in": In(stream.Signature(8)),
            "inputs": Out(stream.Signature(word_bits)),
            "start": Out(stream.Signature(unsigned(16))),
            "reply": Out(stream.Signature(reply_layout())),
            "crc": Out(crc_signature()),
        }
        if weight_bits is not None:
            check_int("weight_bits", weight_bits, 1, 1024)
            check_int("weight_words", weight_words, 1, MAX_WORDS)
            members["load"] = Out(stream.Signature(weight_write_layout(weight_bits)))
        self.weight_bits, self.weight_words = weight_bits, weight_words
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        host_in, crc = self.host_in, self.crc
        word_bytes = protocol.word_bytes(self.word_bits)
        batch_bits = self.max_batch.bit_length()
        loads = self.weight_bits is not None
        load_bytes = protocol.word_bytes(self.weight_bits) if loads else word_bytes
        register_bytes = max(word_bytes, load_bytes)

        # The states that are always ready test host_in.valid alone: with host_in.ready (the
        # ready of every state, the engine's among them) in their conditions the receiver's
        # deepest paths ran from the engine's ready through all of its states into the error
        # register. `in_header` says the receiver is in one of the states that take every
        # byte into the CRC unit (the frame's header fields and CRC), written by the
        # transitions into and out of them (`goto`): it and PAYLOAD's ready are the CRC unit's
        # enable, without a decode of the state (which was the iCEBreaker's critical path, into
        # the CRC's enable).
        header_states = ("TYPE", "LENGTH_LOW", "LENGTH_HIGH", "ADDRESS_LOW", "ADDRESS_HIGH",
                         "BATCH_LOW", "BATCH_HIGH", "CRC_HIGH", "CRC_LOW")
        in_header = Signal()
        payload_taking = Signal()       # PAYLOAD takes the byte offered
        current = [None]                # the state whose statements are being written

        def in_state(name):
            """``m.State(name)``, noting it for :func:`goto`."""
            current[0] = name
            return m.State(name)

        def goto(name):
            """``m.next = name``, keeping ``in_header`` in step: written by every transition
            but those of the states after the header that lead only to others (where
            ``in_header`` is 0 already, and their conditions, the reply's handshake among them,
            stay off its enable)."""
            m.next = name
            entering = name in header_states
            if current[0] in ("CHECK", "DECIDE", "VERDICT", "DISCARD", "START", "REPLY"):
                assert not entering
            else:
                m.d.sync += in_header.eq(entering)

        rx_type = Signal(8)
        is_run = Signal()
        is_status = Signal()
        is_load = Signal()               # a LOAD frame (only with weight_bits)
        writing = Signal()               # the LOAD's words go to the weight memory
        address = Signal(16)             # the LOAD's address of the next word
        length_low = Signal(8)
        remaining = Signal(16)           # payload bytes still to come
        payload_done = Signal()          # remaining == 0, registered
        batch = Signal(16)
        bad_batch = Signal()             # batch is not in 1..max_batch
        bad_length = Signal()            # the payload is not the batch's
        error = Signal(range(max(ErrorCode) + 1))  # ErrorCode of the frame, 0 while acceptable
        failed = Signal()                # error != 0, registered
        bad_header = Signal()            # the length does not fit the type, or it is unknown
        result_length = Signal(16)       # a RESULT's payload bytes for the batch
        loaded = Signal()                # the frame's words go to the engine
        bad_word = Signal()              # a word had a bit set above word_bits
        word = Signal(register_bytes * 8)  # input word, least significant byte first, at the top
        word_valid = Signal()
        byte_index = Signal(range(register_bytes))

        # The words of a RUN and of a LOAD: which, their bytes and their bits.
        word_kinds = [(~is_load, word_bytes, self.word_bits)]
        if loads:
            word_kinds.append((is_load, load_bytes, self.weight_bits))

        def count_payload(value):
            """``remaining <= value``, keeping ``payload_done`` in step."""
            m.d.sync += [remaining.eq(value), payload_done.eq(value == 0)]

        def count_byte():
            """``remaining <= remaining - 1``, ``payload_done`` from ``remaining == 1``: with
            the decrement's carry chain before the test for zero, the iCEBreaker's critical
            path ran from ``remaining`` into ``payload_done``."""
            m.d.sync += [remaining.eq(remaining - 1), payload_done.eq(remaining == 1)]

        m.d.comb += [self.inputs.valid.eq(word_valid & ~is_load),
                     self.inputs.payload.eq(word[(register_bytes - word_bytes) * 8:]
                                            [:self.word_bits]),
                     self.start.payload.eq(batch)]
        word_ready = Signal()            # the word waiting goes out in this cycle
        m.d.comb += word_ready.eq(self.inputs.ready)
        if loads:
            load = self.load
            m.d.comb += [load.valid.eq(word_valid & is_load), load.payload.addr.eq(address),
                         load.payload.data.eq(word[(register_bytes - load_bytes) * 8:]
                                              [:self.weight_bits]),
                         word_ready.eq(Mux(is_load, load.ready, self.inputs.ready))]
            with m.If(load.valid & load.ready):
                m.d.sync += address.eq(address + 1)
        with m.If(word_valid & word_ready):
            m.d.sync += word_valid.eq(0)

        # The reply follows from the frame's registers: an ERROR of its error and type if it
        # failed, else the answer to its type. Each bit is a function of three or four
        # registers; the iCEBreaker's critical path was the enable of reply registers written
        # on every transition into REPLY (eight LUTs from the state).
        m.d.comb += [
            self.reply.payload.type.eq(Mux(failed, FrameType.ERROR,
                                           Mux(is_run, FrameType.RESULT,
                                               Mux(is_load, FrameType.LOADED,
                                                   FrameType.STATUS_REPLY)))),
            self.reply.payload.length.eq(Mux(failed, _ERROR_BYTES,
                                             Mux(is_run, result_length,
                                                 Mux(is_load, 0, _STATUS_BYTES)))),
            self.reply.payload.error.code.eq(error),
            self.reply.payload.error.frame_type.eq(rx_type),
        ]

        m.d.comb += [host_in.ready.eq(in_header), crc.data.eq(host_in.payload),
                     crc.valid.eq(host_in.valid & (in_header | payload_taking))]
        # The CRC unit restarts in the cycle after SYNC, with the type byte if it comes then
        # (the unit takes start and a byte together): from a register, not from the byte's
        # comparison with SYNC, whose path into every bit of the CRC was the iCEBreaker's
        # critical path.
        restart = Signal()
        m.d.sync += restart.eq(0)
        m.d.comb += crc.start.eq(restart)

        # -- Timeout: set for a cycle after timeout_cycles cycles without a byte offered. -------
        receiving = Signal()
        timed_out = Signal()
        if self.timeout_cycles is not None:
            idle = Signal(range(self.timeout_cycles + 1))
            m.d.sync += [idle.eq(0), timed_out.eq(0)]
            with m.If(receiving & ~host_in.valid):
                m.d.sync += [idle.eq(idle + 1),
                             timed_out.eq(idle == self.timeout_cycles - 1)]

        def fail(code):
            """The frame is refused with the ErrorCode ``code``."""
            m.d.sync += [error.eq(code), failed.eq(1)]

        # The header's error is set a cycle after its length is taken, from registers: with
        # the length's comparisons in the error's enable, the iCEBreaker's critical path ran
        # from the host's byte into the error register. The next state takes host bytes, but
        # none in that cycle (it has just taken one: no timeout), and nothing reads the error
        # before the payload is over.
        with m.If(bad_header):
            fail(Mux(is_run | is_load | is_status, ErrorCode.BAD_LENGTH, ErrorCode.UNKNOWN_TYPE))
            m.d.sync += bad_header.eq(0)

        def receive():
            """In a state that waits for host bytes: give up on the frame after a timeout."""
            m.d.comb += receiving.eq(1)
            with m.If(timed_out):
                refuse()                # the error is set below, beside the FSM

        def refuse():
            """Answer the frame with an ERROR of the code in ``error``, discarding its words
            (``batch`` is 0 from then on: below)."""
            with m.If(loaded):
                goto("DISCARD")
            with m.Else():
                goto("REPLY")

        # start's payload is the batch register, 0 for a frame refused after its words went
        # out, with no multiplexer between the register and the sequencer's test of it. It is
        # cleared on a timeout (which comes only in a state that takes host bytes: it refuses
        # the frame) and in VERDICT unless the frame is good, not where each state refuses
        # the frame: that way the refusals of every state were the iCEBreaker's critical path,
        # into the register's enable. A frame refused before its words went out starts
        # nothing, whatever its batch.
        frame_good = Signal()
        m.d.comb += frame_good.eq(crc.match_detected & ~failed & ~bad_word)
        with m.If(timed_out):
            m.d.sync += batch.eq(0)

        with m.FSM(name="receiver"):
            with in_state("HUNT"):
                m.d.comb += host_in.ready.eq(1)
                # The frame's registers are cleared in every cycle of this state (the
                # transmitter has taken the reply before it), not with SYNC: the byte's
                # comparison in their enables was the iCEBreaker's critical path.
                m.d.sync += [rx_type.eq(0), error.eq(0), failed.eq(0), loaded.eq(0),
                             bad_word.eq(0), writing.eq(0)]
                with m.If(host_in.valid & (host_in.payload == protocol.SYNC)):
                    m.d.sync += restart.eq(1)
                    goto("TYPE")

            with in_state("TYPE"):
                with m.If(host_in.valid):
                    m.d.sync += [rx_type.eq(host_in.payload),
                                 is_run.eq(host_in.payload == FrameType.RUN),
                                 is_status.eq(host_in.payload == FrameType.STATUS),
                                 is_load.eq(loads & (host_in.payload == FrameType.LOAD))]
                    goto("LENGTH_LOW")
                receive()

            with in_state("LENGTH_LOW"):
                with m.If(host_in.valid):
                    m.d.sync += length_low.eq(host_in.payload)
                    goto("LENGTH_HIGH")
                receive()

            with in_state("LENGTH_HIGH"):
                length = Cat(length_low, host_in.payload)
                with m.If(host_in.valid):
                    count_payload(length)
                    m.d.sync += bad_header.eq(
                        Mux(is_run, length < _BATCH_BYTES,
                            Mux(is_load, length < _LOAD_HEADER_BYTES, ~is_status | (length != 0))))
                    goto("PAYLOAD")
                    with m.If(is_run & (length >= _BATCH_BYTES)):
                        goto("BATCH_LOW")
                    if loads:
                        with m.Elif(is_load & (length >= _LOAD_HEADER_BYTES)):
                            goto("ADDRESS_LOW")
                receive()

            # A LOAD's address, then its words (as a RUN's batch, into `batch`).
            header = [(address, 0, "ADDRESS_LOW", "ADDRESS_HIGH"),
                      (address, 1, "ADDRESS_HIGH", "BATCH_LOW"),
                      (batch, 0, "BATCH_LOW", "BATCH_HIGH"), (batch, 1, "BATCH_HIGH", "CHECK")]
            for field, index, state, following in header[0 if loads else 2:]:
                with in_state(state):
                    with m.If(host_in.valid):
                        m.d.sync += field.word_select(index, 8).eq(host_in.payload)
                        count_byte()
                        goto(following)
                    receive()

            with in_state("CHECK"):
                # Below max_batch, batch has batch_bits bits: the product is the words' bytes.
                m.d.sync += [
                    bad_batch.eq((batch == 0) | (batch > self.max_batch)),
                    bad_length.eq(remaining != batch[:batch_bits] * (self.vector_words
                                                                     * word_bytes)),
                    byte_index.eq(0),
                    result_length.eq(batch[:batch_bits] * self.output_codes + _TAIL_BYTES),
                ]
                if loads:
                    with m.If(is_load):
                        m.d.sync += [
                            bad_batch.eq((batch == 0)
                                         | (address + batch > self.weight_words)),
                            bad_length.eq(remaining != batch * load_bytes),
                        ]
                goto("DECIDE")

            with in_state("DECIDE"):
                with m.If(bad_batch):
                    fail(Mux(is_load, ErrorCode.BAD_ADDRESS, ErrorCode.BAD_BATCH))
                with m.Elif(bad_length):
                    fail(ErrorCode.BAD_LENGTH)
                with m.Elif(is_load):
                    m.d.sync += writing.eq(1)
                with m.Else():
                    m.d.sync += loaded.eq(1)
                goto("PAYLOAD")

            with in_state("PAYLOAD"):
                # A RUN's input words or a LOAD's weight words, or the payload of a frame that
                # is refused.
                # Not while a word waits, whether or not the engine takes it in this cycle:
                # the engine's ready then reaches no byte's enables (the iCEBreaker's critical
                # path was the engine's idle through this ready into the payload's counters).
                payload_ready = ~payload_done & ~word_valid
                m.d.comb += [host_in.ready.eq(payload_ready), payload_taking.eq(payload_ready)]
                # This state's ready, not host_in.ready: synthesis does not know that the
                # other states' terms of host_in.ready are 0 here, and they were the
                # iCEBreaker's critical path into the payload counter's enable.
                with m.If(host_in.valid & payload_ready):
                    count_byte()
                    m.d.sync += [word.eq(Cat(word[8:], host_in.payload)),
                                 byte_index.eq(byte_index + 1)]
                    for kind, size, bits in word_kinds:
                        with m.If(kind & (byte_index == size - 1)):
                            m.d.sync += [byte_index.eq(0), word_valid.eq(loaded | writing)]
                            if bits % 8:
                                # The last byte's bits above the word's must be 0. Noted here,
                                # the error set in VERDICT: off the paths into error, and a
                                # frame whose words do not go out has its error already.
                                with m.If(host_in.payload[bits % 8:].any()):
                                    m.d.sync += bad_word.eq(1)
                with m.If(payload_done):
                    goto("CRC_HIGH")
                receive()

            for state, following in (("CRC_HIGH", "CRC_LOW"), ("CRC_LOW", "VERDICT")):
                with in_state(state):
                    with m.If(host_in.valid):
                        goto(following)
                    receive()

            with in_state("VERDICT"):
                # The CRC unit has taken the whole frame; the last word must reach the engine
                # before start.
                m.d.sync += batch.eq(Mux(frame_good, batch, 0))
                with m.If(~word_valid):
                    with m.If(~crc.match_detected):
                        fail(ErrorCode.BAD_CRC)
                        refuse()
                    with m.Elif(failed):
                        refuse()
                    with m.Elif(bad_word):
                        fail(ErrorCode.BAD_WORD)
                        refuse()
                    with m.Elif(is_run):
                        goto("START")
                    with m.Else():
                        goto("REPLY")

            with in_state("DISCARD"):
                m.d.comb += self.start.valid.eq(~word_valid)
                with m.If(self.start.valid & self.start.ready):
                    goto("REPLY")

            with in_state("START"):
                m.d.comb += self.start.valid.eq(1)
                with m.If(self.start.ready):
                    goto("REPLY")

            with in_state("REPLY"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    goto("HUNT")

        # A timeout comes only in a state that takes host bytes (receive()), where it refuses
        # the frame: its error is set here, not in each of those states (whose decode in the
        # error register's multiplexer was the iCEBreaker's critical path).
        with m.If(timed_out):
            fail(ErrorCode.TIMEOUT)
        return m
