"""The inference engine: memories baked from packed images and the components that run a whole
integer program on a batch of input vectors, joined by their streams."""

from amaranth.hdl import Module, Mux, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig
from systolix.memory_map import (LAYER_KINDS, MemoryImages, engine_units, memory_contents,
                                 output_codes, output_layout, vector_words,
                                 weight_write_layout, windowed)
from systolix.numeric import CODE_BITS
from systolix.timing import default_requant_lanes

from .accumulator import KTileAccumulator, sums_layout
from .array import SystolicArray
from .feeders import ActivationFeeder, WeightFeeder
from .issuer import RequantIssuer, check_lanes
from .output_streamer import OutputStreamer
from .postops import PostOps
from .queue import Queue
from .requant import Requantizer
from .rowops import RowOps
from .sequencer import Sequencer
from .spram import SinglePortMemory
from .stationary import StationaryFeeder
from .writeback import Writeback, input_word_layout

__all__ = ["input_word_layout", "InferenceEngine"]


class InferenceEngine(wiring.Component):
    """Runs the integer program packed into ``images`` on batches of input vectors.

    Usage: while idle, write the batch into the input buffer on ``inputs`` (``vector_words``
    words a vector, the layout of docs/memory-map.md, from address 0), then send the batch size
    (``1..max_batch``) on ``start``; a batch size of 0 runs nothing and only rewinds the
    input address (the host link sends it after a frame that failed its check). The engine
    runs every layer and then sends the last layer's ``batch * output_codes`` codes on
    ``outputs`` (vector by vector, channel by channel), the final one with ``last``; then it is
    idle again and the next ``inputs`` word goes to address 0. ``busy`` is set from ``start``
    to the final output; ``cycles`` holds the compute cycles of the last run.

    The memories are initialised from ``images`` (so the model is in the bitstream): weights,
    requantization constants and the program. The sequencer reads the program at run time, so
    images with the same memory shapes can replace these without changing the logic.

    With ``images.memories.upload_weights`` the weight memory is a
    :class:`~systolix.hw.spram.SinglePortMemory` (the SPRAM of an iCE40 UltraPlus) that starts
    with undefined contents: the host writes the weight image into it on ``load`` (one word a
    cycle while the engine is idle: ``load.ready`` is ``~busy``) before the first run.

    The engine only joins its components (docs/engine.md)::

        weight memory --> WeightFeeder ------------> weights
        buffers ------> ActivationFeeder ----------> activations   SystolicArray
        results --> KTileAccumulator --> queue --> RequantIssuer --> Requantizer x lanes
        buffers ------> PostOps (max pooling, add, GELU) ------------^
            --> Writeback --> buffers, output memory --> OutputStreamer --> outputs
        buffers, requant memory --> RowOps (softmax, LayerNorm) --^ (Writeback)

    with the :class:`~systolix.hw.sequencer.Sequencer` driving the strobes, the layer's fields
    and its loop bounds; the record's ``kind`` gives the buffers' read ports and the
    requantization units to the activation feeder (dense and convolution layers) or the
    :class:`~systolix.hw.postops.PostOps` unit (max pooling, add and GELU layers, with
    ``windows``; its GELU lanes only for images with a GELU layer) or the
    :class:`~systolix.hw.rowops.RowOps` unit (softmax and LayerNorm layers, only for images
    with one: its units as long as their longest rows, ``softmax_length`` and
    ``layernorm_channels``, which also writes the writeback in place of the requantization
    units); ``inputs`` goes through
    the :class:`~systolix.hw.writeback.Writeback` into buffer 0, ``start`` to the sequencer. The
    queue (:class:`~systolix.hw.queue.Queue`, ``batch + 1`` entries: the transfers of an
    :class:`amaranth.lib.fifo.SyncFIFOBuffered`, its ready a register) holds the
    finished sums of up to a batch. Images with a matmul layer (``matmul``) add a
    :class:`~systolix.hw.stationary.StationaryFeeder` between the weight feeder and the array
    (the layer's stationary operand from a buffer, through a second read port of each), the
    sequencer's passes over its inputs and heads and the issuer's column terms (docs/engine.md,
    "Matmul layers").

    Throughput: one array tile-vector a cycle while the requantization units keep up, i.e. in
    layers with at least ``cols / requant_lanes`` K tiles; otherwise ``cols / requant_lanes``
    cycles per vector and output tile. With bit-serial cells (``pe="serial"``) a tile-vector
    takes as many cycles as the layer's input bits (the record's ``input_bits``, one more for
    unsigned codes on an array of signed ones: :func:`~systolix.timing.vector_planes`). :func:`systolix.sim.golden.engine.engine_cycles` gives
    the exact cycle count of a run.

    Parameters
    ----------
    config : ArrayConfig
    images : MemoryImages
        From :func:`systolix.sw.pack.pack` for ``config``.
    requant_lanes : int, optional
        Channels requantized a cycle (default :func:`default_requant_lanes`).
    windows : bool, optional
        Whether the engine runs convolutions, max pooling, add layers and graphs (the activation
        feeder's window addresses and padding, the sequencer's multiplier of the batch by the
        output positions, the writeback's output base, the post-op unit); by default whether
        the images need them (:func:`~systolix.memory_map.windowed`). An engine without runs
        chains of dense layers only, in about 400 logic cells fewer on iCE40: images with the
        same memory shapes that need windows do not run on it.
    filler : int, optional
        Seed of the pseudo-random words in the unused part of the weight, requantization and
        program memories (:func:`systolix.sw.pack.memory_contents`; zeros without it). Board
        builds use it so that their bitstreams can be patched with another model.

    Attributes
    ----------
    inputs : In(stream.Signature(input_word_layout(config)))
    start : In(stream.Signature(unsigned(16)))
    outputs : Out(stream.Signature(output_layout()))
    busy : Out(1)
    cycles : Out(32)
    load : In(stream.Signature(weight_write_layout(images.weight_width)))
        Only with ``images.memories.upload_weights``: weight memory words to write (address,
        word).
    vector_words, output_codes, max_batch, word_bits : int
        Words of an input vector (layer 0's K tiles), codes of an output vector, the most
        vectors a run may take, and bits of an input word.
    gelu : bool
        Whether the post-op unit has GELU lanes.
    softmax_length, layernorm_channels : int
        The rows of the row unit's softmax and LayerNorm units (0: no such unit).
    """

    def __init__(self, config, images, *, requant_lanes=None, filler=None, windows=None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(images, MemoryImages):
            raise TypeError(f"images must be MemoryImages, not {images!r}")
        if images.weight_width != config.cols * config.weight_bits:
            raise ValueError(f"the images were packed for another array than {config.name}")
        if requant_lanes is None:
            requant_lanes = default_requant_lanes(config)
        check_lanes(config, requant_lanes)
        needs_windows = windowed(images)
        if windows is None:
            windows = needs_windows
        if not isinstance(windows, bool) or needs_windows and not windows:
            raise ValueError(f"windows must be True or False (True for images with "
                             f"convolutions), not {windows!r}")
        self.windows = windows
        # The post-op unit's GELU lanes, the row unit's softmax and LayerNorm units only where
        # the images' layers need them (each as long as the longest row).
        units = engine_units(images)
        self.gelu = units["gelu"]
        self.softmax_length, self.layernorm_channels = (units["softmax_length"],
                                                        units["layernorm_channels"])
        # The stationary feeder, the issuer's column terms and the sequencer's passes only
        # where a matmul layer needs them.
        self.matmul = units["matmul"]
        self.config = config
        self.images = images
        self.requant_lanes = requant_lanes
        self.filler = filler
        self.vector_words = vector_words(images)
        self.output_codes = output_codes(images)
        self.max_batch = images.max_batch
        self.word_bits = config.rows * config.activation_bits
        self.upload_weights = images.memories.upload_weights
        members = {
            "inputs": In(stream.Signature(input_word_layout(config))),
            "start": In(stream.Signature(unsigned(16))),
            "outputs": Out(stream.Signature(output_layout())),
            "busy": Out(1),
            "cycles": Out(32),
        }
        if self.upload_weights:
            members["load"] = In(stream.Signature(weight_write_layout(images.weight_width)))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        config, images, lanes = self.config, self.images, self.requant_lanes
        memories = images.memories

        # The components, in the order the data flows through them.
        matmul = self.matmul
        m.submodules.sequencer = sequencer = Sequencer(config, memories,
                                                       program_width=images.program_width,
                                                       windows=self.windows, matmul=matmul)
        m.submodules.weight_feeder = weight_feeder = WeightFeeder(config, memories)
        m.submodules.activation_feeder = activation_feeder = ActivationFeeder(
            config, memories, program_width=images.program_width, windows=self.windows,
            matmul=matmul)
        m.submodules.array = array = SystolicArray(config)
        m.submodules.accumulator = accumulator = KTileAccumulator(config, memories)
        m.submodules.queue = queue = Queue(sums_layout(config).size, memories.batch + 1)
        m.submodules.issuer = issuer = RequantIssuer(config, memories, lanes, matmul=matmul)
        acc_bits = config.accumulator_bits
        if self.windows:
            m.submodules.postops = postops = PostOps(config, memories, lanes,
                                                     program_width=images.program_width,
                                                     gelu=self.gelu)
            acc_bits = max(acc_bits, postops.sum_bits)
        rowops = None
        if self.softmax_length or self.layernorm_channels:
            m.submodules.rowops = rowops = RowOps(
                config, memories, lanes, softmax_length=self.softmax_length,
                layernorm_channels=self.layernorm_channels, program_width=images.program_width)
        requantizers = [Requantizer(acc_bits, issuer.tag_layout) for _ in range(lanes)]
        for index, requantizer in enumerate(requantizers):
            m.submodules[f"requantizer_{index}"] = requantizer
        m.submodules.writeback = writeback = Writeback(config, memories, lanes,
                                                       bases=self.windows)
        m.submodules.output_streamer = output_streamer = OutputStreamer(config, memories, lanes)

        # The memories: the model's baked in (or the weights written by the host), the buffers
        # and the output memory empty.
        if self.upload_weights:
            weight_memory = m.submodules.weight_memory = SinglePortMemory(
                images.weight_width, memories.weight_words)
            load, write = self.load, weight_memory.write
            m.d.comb += [load.ready.eq(~sequencer.busy), write.addr.eq(load.payload.addr),
                         write.data.eq(load.payload.data), write.en.eq(load.valid & load.ready)]
            weight_read = weight_memory.read
        else:
            weight_memory = m.submodules.weight_memory = Memory(
                shape=images.weight_width, depth=memories.weight_words,
                init=memory_contents(images, "weights", self.filler))
            weight_read = weight_memory.read_port()
        requant_memory = m.submodules.requant_memory = Memory(
            shape=images.requant_width, depth=memories.requant_words,
            init=memory_contents(images, "requant", self.filler))
        program_memory = m.submodules.program_memory = Memory(
            shape=images.program_width, depth=memories.program_words,
            init=memory_contents(images, "program", self.filler))
        buffers = [Memory(shape=self.word_bits, depth=memories.activation_words, init=[])
                   for _ in range(2)]
        m.submodules.buffer_0, m.submodules.buffer_1 = buffers
        output_memory = m.submodules.output_memory = Memory(
            shape=CODE_BITS * lanes, depth=memories.output_codes, init=[])

        # Streams.
        wiring.connect(m, wiring.flipped(self.start), sequencer.start)
        wiring.connect(m, wiring.flipped(self.inputs), writeback.inputs)
        if matmul:
            m.submodules.stationary = stationary = StationaryFeeder(
                config, memories, program_width=images.program_width)
            wiring.connect(m, weight_feeder.weights, stationary.gemm)
            wiring.connect(m, stationary.weights, array.weights)
            for buffer, port in zip(buffers, stationary.buffers):
                wiring.connect(m, port, buffer.read_port())
        else:
            wiring.connect(m, weight_feeder.weights, array.weights)
        wiring.connect(m, activation_feeder.activations, array.activations)
        wiring.connect(m, array.results, accumulator.results)
        wiring.connect(m, accumulator.sums, queue.w_stream)
        wiring.connect(m, queue.r_stream, issuer.vectors)
        for index, requantizer in enumerate(requantizers):
            if not self.windows:
                wiring.connect(m, issuer.channels[index], requantizer.input)
            if rowops is None:
                wiring.connect(m, requantizer.output, writeback.codes[index])
        wiring.connect(m, output_streamer.outputs, wiring.flipped(self.outputs))

        # Memory ports.
        wiring.connect(m, sequencer.program, program_memory.read_port())
        wiring.connect(m, weight_feeder.read, weight_read)
        for index, buffer in enumerate(buffers):
            wiring.connect(m, writeback.buffers[index],
                           buffer.write_port(granularity=config.activation_bits))
            if not self.windows:
                wiring.connect(m, activation_feeder.buffers[index], buffer.read_port())
        for index, port in enumerate(issuer.constants):
            if rowops is None or not self.layernorm_channels or index:
                wiring.connect(m, port, requant_memory.read_port())
        wiring.connect(m, writeback.output, output_memory.write_port(granularity=CODE_BITS))
        wiring.connect(m, output_streamer.read, output_memory.read_port())

        # Strobes, states and the layer's fields and loop bounds from the sequencer.
        layer = sequencer.layer
        loops = {"batch_last": sequencer.vectors_last, "k_last": sequencer.k_last,
                 "n_last": sequencer.n_last}

        def drive(component, **values):
            m.d.comb += [getattr(component, name).eq(value) for name, value in values.items()]

        drive(sequencer, layer_done=writeback.layer_done, outputs_sent=output_streamer.done)
        drive(weight_feeder, start=sequencer.header_done, total=sequencer.weight_words)
        gemm = layer.kind == 0 if self.windows else 1
        feeder_start, feeder_batch_last = sequencer.layer_start & gemm, sequencer.batch_last
        issues_last, output_words, output_base = (sequencer.vectors_last, layer.output_words,
                                                  layer.output_base)
        if matmul:
            # A matmul layer's passes: one head of one input each.
            is_matmul = layer.kind == LAYER_KINDS.index("matmul")
            gemm = gemm | is_matmul
            feeder_start = sequencer.layer_start & gemm | sequencer.repeat
            feeder_batch_last = Mux(is_matmul, 0, sequencer.batch_last)
            issues_last = sequencer.issues_last
            output_words = Mux(is_matmul, layer.window_row_step, layer.output_words)
            output_base = layer.output_base + sequencer.output_offset
            drive(activation_feeder, offset=sequencer.input_offset)
            drive(issuer, matmul=is_matmul)
            drive(stationary, start=sequencer.layer_start, layer=layer,
                  batch_last=sequencer.batch_last, k_last=sequencer.k_last,
                  n_last=sequencer.n_last)
        drive(activation_feeder, start=feeder_start, running=sequencer.running,
              batch_last=feeder_batch_last, k_last=sequencer.k_last,
              n_last=sequencer.n_last, layer=layer,
              input_buffer=layer.input_buffer)
        drive(accumulator, running=sequencer.running, **loops)
        drive(issuer, running=sequencer.running, batch_last=issues_last,
              n_last=sequencer.n_last, last=layer.last, outputs=layer.outputs,
              output_words=output_words, requant_base=layer.requant_base)
        for requantizer in requantizers:
            drive(requantizer, zero_point=layer.output_zero_point, low=layer.output_low,
                  high=layer.output_high, rounding=layer.rounding)
        drive(writeback, last=layer.last, output_buffer=layer.output_buffer,
              output_base=output_base, output_bits=layer.output_bits,
              idle=sequencer.idle, rewind=sequencer.started)
        if self.windows:
            self._post_ops(m, postops, rowops, sequencer, activation_feeder, issuer,
                           requantizers, buffers, is_matmul if matmul else None)
        if rowops is not None:
            self._row_ops(m, rowops, sequencer, issuer, requantizers, writeback,
                          requant_memory)
        drive(output_streamer, start=writeback.layer_done & layer.last,
              batch_last=sequencer.vectors_last, outputs_last=sequencer.outputs_last)
        drive(self, busy=sequencer.busy, cycles=sequencer.cycles)
        return m

    @staticmethod
    def _post_ops(m, postops, rowops, sequencer, activation_feeder, issuer, requantizers,
                  buffers, matmul=None):
        """The post-op unit of an engine with windows: max pooling, add and GELU layers share
        the buffers' read ports with the activation feeder (and the row unit) and the
        requantization units with the issuer, each in the layers of its kind (``matmul``: a
        matmul layer's flag, which runs on the array)."""
        layer = sequencer.layer
        row = _row_kind(layer) if rowops is not None else 0
        post = (layer.kind != 0) & ~row
        if matmul is not None:
            post = post & ~matmul
        m.d.comb += [postops.start.eq(sequencer.layer_start & post),
                     postops.running.eq(sequencer.running),
                     postops.batch_last.eq(sequencer.batch_last), postops.layer.eq(layer)]
        readers = [activation_feeder.buffers, postops.buffers]
        if rowops is not None:
            readers.append(rowops.buffers)
        for buffer, ports in zip(buffers, zip(*readers)):
            port = buffer.read_port()
            feeder_port, postops_port = ports[:2]
            addr = Mux(post, postops_port.addr, feeder_port.addr)
            en = Mux(post, postops_port.en, feeder_port.en)
            if rowops is not None:
                addr, en = Mux(row, ports[2].addr, addr), Mux(row, ports[2].en, en)
            m.d.comb += [port.addr.eq(addr), port.en.eq(en)]
            m.d.comb += [reader.data.eq(port.data) for reader in ports]
        for requantizer, issued, sent in zip(requantizers, issuer.channels, postops.channels):
            source = requantizer.input
            m.d.comb += source.valid.eq(Mux(post, sent.valid, issued.valid))
            m.d.comb += [source.payload[name].eq(Mux(post, sent.payload[name],
                                                     issued.payload[name]))
                         for name in ("acc", "bias", "multiplier", "shift")]
            m.d.comb += source.payload.tag.eq(Mux(post, sent.payload.tag.as_value(),
                                                  issued.payload.tag.as_value()))

    @staticmethod
    def _row_ops(m, rowops, sequencer, issuer, requantizers, writeback, requant_memory):
        """The row unit: softmax and LayerNorm layers; it reads the buffers beside the
        activation feeder and the post-op unit (:meth:`_post_ops`), the requantization memory
        (a LayerNorm layer's constants) through the port of the issuer's lane 0, and writes
        through the writeback in place of the requantization units, in the layers of its
        kinds."""
        layer = sequencer.layer
        row = _row_kind(layer)
        m.d.comb += [rowops.start.eq(sequencer.layer_start & row),
                     rowops.running.eq(sequencer.running),
                     rowops.rows_last.eq(sequencer.vectors_last), rowops.layer.eq(layer)]
        if rowops.layernorm_channels:
            port, issuer_port = requant_memory.read_port(), issuer.constants[0]
            m.d.comb += [port.addr.eq(Mux(row, rowops.constants.addr, issuer_port.addr)),
                         port.en.eq(Mux(row, rowops.constants.en, issuer_port.en)),
                         issuer_port.data.eq(port.data), rowops.constants.data.eq(port.data)]
        for requantizer, unit, codes in zip(requantizers, rowops.codes, writeback.codes):
            m.d.comb += [codes.valid.eq(Mux(row, unit.valid, requantizer.output.valid)),
                         codes.payload.eq(Mux(row, unit.payload.as_value(),
                                              requantizer.output.payload.as_value()))]


def _row_kind(layer):
    """Whether the record ``layer`` runs on the row unit (a softmax or a LayerNorm layer)."""
    return (layer.kind == LAYER_KINDS.index("softmax")) | (layer.kind == LAYER_KINDS.index(
        "layernorm"))
