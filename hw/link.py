"""Frame bridge between the host's byte stream and the inference engine (docs/protocol.md)."""

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from systolix import protocol
from systolix.config import ArrayConfig, check_int
from systolix.memory_map import MemoryImages, output_layout, weight_write_layout

from .frame_crc import SharedCrc
from .frame_receiver import FrameReceiver
from .reply_transmitter import ReplyTransmitter, status_memory_data


__all__ = ["engine_signature", "FrameLink"]


def engine_signature(word_bits, weight_bits=None):
    """The ports of the inference engine, seen from the engine, with ``word_bits``-bit input
    words (and, for an engine whose weights the host loads, ``weight_bits``-bit weight memory
    words).

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
    load : In(stream.Signature(weight_write_layout(weight_bits)))
        Only with ``weight_bits``: weight memory words to write, with their addresses.
    """
    members = {
        "inputs": In(stream.Signature(word_bits)),
        "start": In(stream.Signature(unsigned(16))),
        "outputs": Out(stream.Signature(output_layout())),
        "busy": Out(1),
        "cycles": Out(32),
    }
    if weight_bits is not None:
        members["load"] = In(stream.Signature(weight_write_layout(weight_bits)))
    return wiring.Signature(members)


class FrameLink(wiring.Component):
    """Bridge between the host's byte streams and the engine, speaking the framed protocol of
    :mod:`systolix.protocol`.

    The link is three components joined with :func:`amaranth.lib.wiring.connect`: a
    :class:`~systolix.hw.frame_receiver.FrameReceiver` takes one frame at a time on
    ``host_in``, hunting for ``SYNC`` between frames, passes a RUN's input words to the engine
    as soon as their last byte arrives, issues ``start`` only after the CRC has matched and asks
    for the reply; a :class:`~systolix.hw.reply_transmitter.ReplyTransmitter` sends it: the
    RESULT frame's header (its length is known from the batch) while the engine computes, then
    the engine's output codes as they come, then the run's cycles and the CRC; a STATUS request
    is answered at once from constants, the transmitter's status memory (the fields that
    describe the model, :data:`~systolix.hw.reply_transmitter.MODEL_FIELDS`: a block RAM that a
    bitstream patcher rewrites with the engine's memories) and the engine's ``busy`` and
    ``cycles``. For images
    whose weights the host loads (``images.memories.upload_weights``) a LOAD's words go to the
    engine's ``load`` as their last byte arrives, and a good LOAD is answered with LOADED (see
    :class:`~systolix.hw.frame_receiver.FrameReceiver`). Every reply
    byte leaves through an output register. Both compute the CRC
    (:data:`~systolix.protocol.CRC_PARAMETERS`) with one
    :class:`~systolix.hw.frame_crc.SharedCrc`, the receiver's until it asks for the reply.

    A frame that fails a check (CRC, type, length, batch, a RUN's input words without bits above
    ``word_bits``; in the order of :class:`~systolix.protocol.ReferenceDevice`) is read to the
    end of its declared length and answered with an ERROR; a frame of which no byte is offered
    for ``timeout_cycles`` cycles is answered with an ERROR (``TIMEOUT``). Either way the link
    then hunts for the next ``SYNC``. If a refused RUN has already passed words to the engine,
    the link first sends ``start`` with batch 0, which tells the engine to discard them.

    Latency: a reply's ``SYNC`` is offered 4 cycles after the last CRC byte of a STATUS request
    is accepted. For a RUN, ``start`` is offered 2 cycles after it, and the RESULT's ``SYNC`` 3
    cycles after ``start`` is accepted. An output code is offered on ``host_out`` 1 cycle after
    the engine offers it; the cycles follow once the engine is no longer busy.

    Throughput: one byte per cycle on each stream. ``host_in`` is ready in every cycle in which
    the link receives, except 2 cycles after a RUN's batch field, 1 cycle after every payload,
    1 cycle after every input word and cycles in which the engine does not take it; it is not
    ready from the end of a request to the end of its reply. ``host_out`` may be stalled at any
    time.

    Resources (``systolix.boards.synth``, 32-bit input words): about 530 iCE40UP5K logic cells
    and a block RAM (the status memory) with the timeout, 500 without, 40..46 MHz; about 580 ECP5 logic cells, 100 MHz. The largest
    parts are the transmitter's table of reply bytes (about 100 LUTs), the timeout counter
    (about 55 cells) and the CRC unit.

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
    filler : int, optional
        Seed of the unused bytes of the transmitter's status memory
        (:func:`~systolix.hw.reply_transmitter.status_memory_contents`).

    Attributes
    ----------
    host_in : In(stream.Signature(8))
        Bytes from the host.
    host_out : Out(stream.Signature(8))
        Bytes to the host.
    engine : In(engine_signature(word_bits, weight_bits))
        The engine's ports, flipped: ``wiring.connect(m, link.engine, engine)``.
    status : protocol.Status
        What STATUS reports while the engine is idle before its first run.
    max_batch : int
        The most vectors a RUN may carry, ``status.max_batch``.
    word_bits : int
        Bits of an input word, ``rows * activation_bits``.
    weight_bits : int or None
        Bits of a weight memory word that LOAD writes, or ``None``: the weights are baked in.
    status_memory : amaranth.lib.memory.MemoryData
        The reply transmitter's status memory
        (:func:`~systolix.hw.reply_transmitter.status_memory_data`): what a bitstream patcher
        rewrites, and a test may too before the link is elaborated.
    """

    def __init__(self, config, images, *, vector_words, output_codes, max_batch,
                 timeout_cycles=1 << 24, filler=None):
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
        self.weight_bits = images.weight_width if images.memories.upload_weights else None
        self.status_memory = status_memory_data(self.status, filler)
        super().__init__({
            "host_in": In(stream.Signature(8)),
            "host_out": Out(stream.Signature(8)),
            "engine": In(engine_signature(self.word_bits, self.weight_bits)),
        })

    @classmethod
    def for_engine(cls, engine, **kwargs):
        """The link for ``engine``, from its ``config``, ``images``, ``vector_words``,
        ``output_codes`` and ``max_batch``; ``kwargs`` go to the constructor."""
        return cls(engine.config, engine.images, vector_words=engine.vector_words,
                   output_codes=engine.output_codes, max_batch=engine.max_batch, **kwargs)

    def elaborate(self, platform):
        m = Module()
        engine = self.engine
        m.submodules.receiver = receiver = FrameReceiver(
            word_bits=self.word_bits, vector_words=self.vector_words,
            output_codes=self.output_codes, max_batch=self.max_batch,
            timeout_cycles=self.timeout_cycles, weight_bits=self.weight_bits,
            weight_words=None if self.weight_bits is None else self.images.memories.weight_words)
        m.submodules.transmitter = transmitter = ReplyTransmitter(
            self.status, status_memory=self.status_memory)
        m.submodules.crc = crc = SharedCrc()

        wiring.connect(m, wiring.flipped(self.host_in), receiver.host_in)
        wiring.connect(m, receiver.inputs, wiring.flipped(engine.inputs))
        wiring.connect(m, receiver.start, wiring.flipped(engine.start))
        if self.weight_bits is not None:
            wiring.connect(m, receiver.load, wiring.flipped(engine.load))
        wiring.connect(m, receiver.reply, transmitter.request)
        wiring.connect(m, wiring.flipped(engine.outputs), transmitter.codes)
        wiring.connect(m, transmitter.host_out, wiring.flipped(self.host_out))
        wiring.connect(m, receiver.crc, crc.receiver)
        wiring.connect(m, transmitter.crc, crc.transmitter)
        m.d.comb += [
            transmitter.busy.eq(engine.busy),
            transmitter.cycles.eq(engine.cycles),
            crc.select.eq(receiver.reply.valid),    # the receiver waits for the reply
        ]
        return m
