"""The inference engine: memories baked from packed images, a sequencer, the array and the
requantization unit, running a whole integer program on a batch of input vectors."""

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from systolix.config import ArrayConfig
from systolix.memory_map import (HEADER_WORDS, LAYER_LAYOUTS, REQUANT_LAYOUT, TOTALS_LAYOUT,
                                 MemoryImages, activation_word_layout, layer_records,
                                 memory_contents, output_layout)
from systolix.numeric import CODE_BITS
from systolix.timing import default_requant_lanes

from .array import SystolicArray, results_layout
from .mac import accumulate, accumulator_shape
from .requant import Requantizer

__all__ = ["input_word_layout", "InferenceEngine"]

_RECORD_WORDS = max(HEADER_WORDS, len(LAYER_LAYOUTS))


def input_word_layout(config):
    """Payload of :attr:`InferenceEngine.inputs`: one activation buffer word
    (:func:`systolix.memory_map.activation_word_layout`) as plain bits: Yosys 0.70's ABC9 pass
    fails on ports named after array elements (Yosys issue 4349)."""
    return unsigned(activation_word_layout(config).size)


class InferenceEngine(wiring.Component):
    """Runs the integer program packed into ``images`` on batches of input vectors.

    Usage: while idle, write the batch into the input buffer on ``inputs`` (``vector_words``
    words a vector, the layout of docs/memory-map.md, from address 0), then send the batch size
    (``1..max_batch``) on ``start``; a batch size of 0 runs nothing and only rewinds the
    input address (the host link sends it after a frame that failed its check). The engine runs every layer and then sends the last layer's
    ``batch * output_codes`` codes on ``outputs`` (vector by vector, channel by channel), the
    final one with ``last``; then it is idle again and the next ``inputs`` word goes to address
    0. ``busy`` is set from ``start`` to the final output; ``cycles`` holds the compute cycles of
    the last run.

    The memories are initialised from ``images`` (so the model is in the bitstream): weights,
    requantization constants and the program. The sequencer reads the program at run time, so
    images with the same memory shapes can replace these without changing the logic.

    Sequencing, per layer: the record is read (``len(LAYER_LAYOUTS) + 1`` cycles); the activation
    feeder sends, per output tile ``j``, per K tile ``t``, the batch's ``t``-th words from the
    layer's input buffer; the weight feeder independently streams the whole weight memory in
    address order (the array's double buffering lets each tile load while the previous one
    computes); the result sink adds each K tile's sums into the accumulator buffer and, after
    the last K tile, queues the finished sums; the requantization issuer takes one queued vector
    every ``cols`` cycles, one channel a cycle, and writes the codes into the other activation
    buffer (or, in the last layer, the output memory). The next layer starts when the last code
    is written.

    Throughput: one array tile-vector a cycle while the requantization unit keeps up, i.e. in
    layers with at least ``cols`` K tiles; otherwise ``cols`` cycles per vector and output tile.
    :func:`systolix.sim.golden.engine.engine_cycles` gives the exact cycle count of a run.

    Parameters
    ----------
    config : ArrayConfig
    images : MemoryImages
        From :func:`systolix.sw.pack.pack` for ``config``.
    requant_lanes : int, optional
        Channels requantized a cycle (default :func:`default_requant_lanes`).
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
    vector_words, output_codes, max_batch, word_bits : int
        Words of an input vector (layer 0's K tiles), codes of an output vector, the most
        vectors a run may take, and bits of an input word.
    """

    def __init__(self, config, images, *, requant_lanes=None, filler=None):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(images, MemoryImages):
            raise TypeError(f"images must be MemoryImages, not {images!r}")
        if images.weight_width != config.cols * config.weight_bits:
            raise ValueError(f"the images were packed for another array than {config.name}")
        if requant_lanes is None:
            requant_lanes = default_requant_lanes(config)
        if requant_lanes not in (1, 2, 4, 8, 16, 32) or config.rows % requant_lanes or \
                config.cols % requant_lanes:
            raise ValueError(f"requant_lanes must be a power of two that divides rows "
                             f"({config.rows}) and cols ({config.cols}), not {requant_lanes!r}")
        self.config = config
        self.images = images
        self.requant_lanes = requant_lanes
        self.filler = filler
        records = layer_records(images)
        self.vector_words = records[0]["k_tiles"]
        self.output_codes = records[-1]["outputs"]
        self.max_batch = images.max_batch
        self.word_bits = config.rows * config.activation_bits
        super().__init__({
            "inputs": In(stream.Signature(input_word_layout(config))),
            "start": In(stream.Signature(unsigned(16))),
            "outputs": Out(stream.Signature(output_layout())),
            "busy": Out(1),
            "cycles": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        config, images = self.config, self.images
        memories = images.memories
        rows, cols = config.rows, config.cols
        sums_layout = results_layout(config).members["data"]
        bounds = _Bounds(config, memories)
        tag_layout = _tag_layout(config, bounds, self.requant_lanes)

        m.submodules.array = array = SystolicArray(config)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=sums_layout.size,
                                                           depth=memories.batch + 1)
        requantizers = [Requantizer(config.accumulator_bits, tag_layout)
                        for _ in range(self.requant_lanes)]
        for index, requantizer in enumerate(requantizers):
            m.submodules[f"requantizer_{index}"] = requantizer

        weight_memory = m.submodules.weight_memory = Memory(
            shape=images.weight_width, depth=memories.weight_words,
            init=memory_contents(images, "weights", self.filler))
        requant_memory = m.submodules.requant_memory = Memory(
            shape=images.requant_width, depth=memories.requant_words,
            init=memory_contents(images, "requant", self.filler))
        program_memory = m.submodules.program_memory = Memory(
            shape=images.program_width, depth=memories.program_words,
            init=memory_contents(images, "program", self.filler))
        buffers = [Memory(shape=self.word_bits, depth=memories.activation_words, init=[])
                   for _ in range(2)]
        m.submodules.buffer_0, m.submodules.buffer_1 = buffers
        accumulator_memory = m.submodules.accumulator_memory = Memory(
            shape=sums_layout, depth=memories.batch, init=[])
        output_memory = m.submodules.output_memory = Memory(
            shape=CODE_BITS * self.requant_lanes, depth=memories.output_codes, init=[])

        # -- Sequencer: reads the header, then each layer's record, and runs the layer. --------
        idle = Signal()
        batch_last = Signal(bounds.batch)             # batch - 1
        record = Signal(data.ArrayLayout(images.program_width, _RECORD_WORDS))
        fields = {}
        for index, layout in enumerate(LAYER_LAYOUTS):
            fields.update({name: layout(record[index][:layout.size])[name] for name, _ in layout})
        # The loop bounds of the layer, registered off the record (so that no counter compares
        # against a subtraction) and only as wide as the memories need: the packer's fit check
        # keeps every program field within them.
        k_tiles = fields["k_tiles"][:bounds.k_tiles.width]
        k_last = Signal(bounds.k_tiles)
        n_last = Signal(bounds.n_tiles)
        outputs_last = Signal(bounds.channels)
        m.d.sync += [k_last.eq(fields["k_tiles"] - 1), n_last.eq(fields["n_tiles"] - 1),
                     outputs_last.eq(fields["outputs"] - 1)]
        weight_total = Signal(range(memories.weight_words + 1))
        fetch_addr = Signal(range(memories.program_words + 1))
        fetch_count = Signal(range(_RECORD_WORDS + 1))
        program_read = program_memory.read_port()
        header_done = Signal()                        # strobes
        layer_start = Signal()
        layer_done = Signal()
        run_layer = Signal()                          # feeder, sink and issuer work on a layer
        cycles = Signal(32)
        m.d.comb += [program_read.addr.eq(fetch_addr), self.cycles.eq(cycles),
                     self.busy.eq(~idle), self.inputs.ready.eq(idle), self.start.ready.eq(idle)]
        with m.Switch(fetch_count):
            for index in range(_RECORD_WORDS):
                with m.Case(index + 1):
                    m.d.sync += record[index].eq(program_read.data)

        def fetch(words):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(fetch_count != words):
                m.d.sync += [fetch_addr.eq(fetch_addr + 1), fetch_count.eq(fetch_count + 1)]
            with m.Else():
                m.d.sync += fetch_count.eq(0)

        outputs_sent = self._output_stream(m, output_memory, batch_last, outputs_last,
                                           layer_done & fields["last"])
        with m.FSM(name="sequencer") as sequencer:
            with m.State("IDLE"):
                with m.If(self.start.valid & (self.start.payload != 0)):
                    m.d.sync += [batch_last.eq(self.start.payload - 1), cycles.eq(0),
                                 fetch_addr.eq(0), fetch_count.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                fetch(HEADER_WORDS)
                with m.If(fetch_count == HEADER_WORDS):
                    m.d.comb += header_done.eq(1)
                    m.d.sync += weight_total.eq(TOTALS_LAYOUT(record[2]).weight_words)
                    m.next = "RECORD"
            with m.State("RECORD"):
                fetch(len(LAYER_LAYOUTS))
                with m.If(fetch_count == len(LAYER_LAYOUTS)):
                    m.d.comb += layer_start.eq(1)
                    m.next = "LAYER"
            with m.State("LAYER"):
                m.d.sync += cycles.eq(cycles + 1)
                with m.If(layer_done):
                    m.next = "RECORD"
                    with m.If(fields["last"]):
                        m.next = "OUTPUT"
            with m.State("OUTPUT"):
                with m.If(outputs_sent):
                    m.next = "IDLE"
        # (Flags of the state as plain expressions: a simulator evaluates them from time 0.)
        m.d.comb += [idle.eq(sequencer.ongoing("IDLE")), run_layer.eq(sequencer.ongoing("LAYER"))]

        # -- Host input: words into buffer 0 while idle. ----------------------------------------
        input_addr = Signal(range(memories.activation_words))
        buffer_writes = [buffer.write_port(granularity=config.activation_bits)
                         for buffer in buffers]
        buffer_reads = [buffer.read_port() for buffer in buffers]
        with m.If(self.inputs.valid & idle):
            m.d.sync += input_addr.eq(input_addr + 1)
        with m.If(self.start.valid & idle):
            m.d.sync += input_addr.eq(0)

        # -- Weight feeder: the whole weight memory, in address order, once per run. ------------
        weight_read = weight_memory.read_port()
        weight_addr = Signal(range(memories.weight_words + 1))
        weight_feed = Signal()
        weight_valid = Signal()
        weight_advance = Signal()
        m.d.comb += [
            weight_advance.eq(~weight_valid | array.weights.ready),
            weight_read.en.eq(weight_advance),
            weight_read.addr.eq(weight_addr),
            array.weights.valid.eq(weight_valid),
            array.weights.payload.eq(weight_read.data),
        ]
        with m.If(weight_advance):
            m.d.sync += weight_valid.eq(weight_feed)
            with m.If(weight_feed):
                m.d.sync += weight_addr.eq(weight_addr + 1)
                with m.If(weight_addr == weight_total - 1):
                    m.d.sync += weight_feed.eq(0)
        with m.If(header_done):
            m.d.sync += [weight_addr.eq(0), weight_feed.eq(1)]

        # -- Activation feeder: per output tile j, per K tile t, the batch's vectors i; the word
        # of (i, t) is at i * k_tiles + t of the layer's input buffer. --------------------------
        feed = _LoopCounters("feed", bounds)
        feed_addr = Signal(range(memories.activation_words))
        feeding = Signal()
        feed_valid = Signal()
        feed_last = Signal()
        feed_advance = Signal()
        m.d.comb += [
            feed_advance.eq(~feed_valid | array.activations.ready),
            array.activations.valid.eq(feed_valid),
            array.activations.payload.data.eq(Mux(fields["input_buffer"], buffer_reads[1].data,
                                                  buffer_reads[0].data)),
            array.activations.payload.last.eq(feed_last),
        ]
        for read in buffer_reads:
            m.d.comb += [read.en.eq(feed_advance), read.addr.eq(feed_addr)]
        with m.If(feed_advance):
            m.d.sync += feed_valid.eq(feeding)
            with m.If(feeding):
                m.d.sync += feed_last.eq(feed.index == batch_last)
                feed.step(m, batch_last, k_last, n_last,
                          on_vector=[feed_addr.eq(feed_addr + k_tiles)],
                          on_k_tile=[feed_addr.eq(feed.k_tile + 1)],
                          on_n_tile=[feed_addr.eq(0)],
                          on_layer=[feed_addr.eq(0), feeding.eq(0)])
        with m.If(layer_start):
            m.d.sync += feeding.eq(1)

        # -- Result sink: each K tile's sums into the accumulator buffer; after the last K tile,
        # the finished sums into the queue. ------------------------------------------------------
        sink = _LoopCounters("sink", bounds)
        sink_first = Signal()                   # sink.k_tile == 0, registered
        sink_final = Signal()                   # sink.k_tile == k_last, registered
        sink_next = Signal.like(sink.index)     # the vector index after sink.index, registered
        sink_take = Signal()
        sums = Signal(sums_layout)
        accumulator_write = accumulator_memory.write_port()
        accumulator_read = accumulator_memory.read_port(transparent_for=(accumulator_write,))
        results = array.results.payload.data
        m.d.comb += [
            array.results.ready.eq(run_layer & (~sink_final | queue.w_rdy)),
            sink_take.eq(array.results.valid & array.results.ready),
            accumulator_read.addr.eq(Mux(sink_take, sink_next, sink.index)),
            accumulator_write.addr.eq(sink.index),
            accumulator_write.data.eq(sums),
            accumulator_write.en.eq(sink_take & ~sink_final),
            queue.w_data.eq(sums),
            queue.w_en.eq(sink_take & sink_final),
        ]
        for c in range(cols):
            m.d.comb += sums[c].eq(Mux(sink_first, results[c],
                                       accumulate(config, accumulator_read.data[c], results[c])))
        with m.If(sink_take):
            sink.step(m, batch_last, k_last, n_last)
            m.d.sync += sink_next.eq(Mux(sink_next == batch_last, 0, sink_next + 1))
            with m.If(sink.index == batch_last):    # on to the next K tile
                m.d.sync += [sink_first.eq(sink_final),
                             sink_final.eq(Mux(sink_final, k_last == 0, sink.k_tile + 1 == k_last))]

        # -- Requantization issuer: one queued vector every `cols` cycles, one channel a cycle.
        # Channel n of vector i goes to word i * output_words + n // rows, lane n % rows, of the
        # other buffer, or in the last layer to output code i * outputs + n. --------------------
        lanes = self.requant_lanes
        vector = Signal(sums_layout)
        have_vector = Signal()
        channel = Signal(range(cols))       # the first of the `lanes` channels being issued
        last_channel = Signal()
        take_vector = Signal()
        m.d.comb += [
            last_channel.eq(channel == cols - lanes),
            take_vector.eq(run_layer & queue.r_rdy & (~have_vector | last_channel)),
            queue.r_en.eq(take_vector),
        ]
        with m.If(take_vector):
            m.d.sync += [vector.eq(queue.r_data), have_vector.eq(1), channel.eq(0)]
        with m.Elif(have_vector & last_channel):
            m.d.sync += have_vector.eq(0)
        with m.If(have_vector & ~last_channel):
            m.d.sync += channel.eq(channel + lanes)

        # Where the codes go: channel n (a multiple of `lanes`) of vector i is lane n % rows of
        # buffer word i * output_words + n // rows, or in the last layer lane n % lanes of
        # output word i * ceil(outputs / lanes) + n // lanes.
        issue = _LoopCounters("issue", bounds)
        n, tile_n = Signal(bounds.channels_end), Signal(bounds.channels_end)
        word, tile_word = Signal(bounds.address), Signal(bounds.address)
        lane, tile_lane = Signal(range(rows)), Signal(range(rows))
        vector_base = Signal(bounds.address)
        lane_shift = lanes.bit_length() - 1
        stride = Signal(bounds.address)
        m.d.sync += stride.eq(Mux(fields["last"], (fields["outputs"] + lanes - 1) >> lane_shift,
                                  fields["output_words"]))
        next_word = Mux(lane == rows - lanes, word + 1, word)
        next_lane = Mux(lane == rows - lanes, 0, lane + lanes)
        with m.If(have_vector):
            with m.If(~last_channel):
                m.d.sync += [n.eq(n + lanes), word.eq(next_word), lane.eq(next_lane)]
            with m.Elif(issue.index != batch_last):
                m.d.sync += [n.eq(tile_n), word.eq(tile_word), lane.eq(tile_lane),
                             vector_base.eq(vector_base + stride)]
            with m.Else():
                m.d.sync += [n.eq(n + lanes), word.eq(next_word), lane.eq(next_lane),
                             tile_n.eq(n + lanes), tile_word.eq(next_word),
                             tile_lane.eq(next_lane), vector_base.eq(0)]
            with m.If(last_channel):
                issue.step(m, batch_last, 0, n_last)

        issued = Signal(data.StructLayout({"valid": 1, "tag": tag_layout,
                                           "acc": data.ArrayLayout(accumulator_shape(config),
                                                                   lanes)}))
        final_issue = last_channel & issue.is_last(batch_last, 0, n_last)
        m.d.sync += [
            issued.valid.eq(have_vector),
            issued.tag.addr.eq(vector_base + Mux(fields["last"], n >> lane_shift, word)),
            issued.tag.lane.eq(lane),
            issued.tag.write.eq(Cat(n + index < fields["outputs"][:bounds.channels_end.width]
                                    for index in range(lanes))),
            issued.tag.final.eq(have_vector & final_issue),
        ]
        codes = []
        for index, requantizer in enumerate(requantizers):
            constants_read = requant_memory.read_port()
            constants = REQUANT_LAYOUT(constants_read.data)
            given = requantizer.input.payload
            m.d.comb += constants_read.addr.eq(fields["requant_base"] + n + index)
            m.d.sync += issued.acc[index].eq(vector[channel + index])
            m.d.comb += [
                requantizer.input.valid.eq(issued.valid),
                given.acc.eq(issued.acc[index]),
                given.bias.eq(constants.bias),
                given.multiplier.eq(constants.multiplier),
                given.shift.eq(constants.shift),
                given.tag.eq(issued.tag),
                requantizer.zero_point.eq(fields["output_zero_point"]),
                requantizer.low.eq(fields["output_low"]),
                requantizer.high.eq(fields["output_high"]),
            ]
            codes.append(requantizer.output.payload.code)

        # -- Requantized codes into the other buffer or the output memory. -----------------------
        done = requantizers[0].output
        tag = done.payload.tag
        write = Mux(done.valid, tag.write, 0)
        code_mask = (Const(1, CODE_BITS + 1) << fields["output_bits"]) - 1
        output_write = output_memory.write_port(granularity=CODE_BITS)
        m.d.comb += [
            layer_done.eq(done.valid & tag.final),
            output_write.addr.eq(tag.addr),
            output_write.data.eq(Cat((code & code_mask)[:CODE_BITS] for code in codes)),
            output_write.en.eq(Mux(fields["last"], write, 0)),
        ]
        for index, port in enumerate(buffer_writes):
            hidden = ~fields["last"] & (fields["input_buffer"] != index)
            m.d.comb += [
                port.addr.eq(tag.addr),
                port.data.eq(Cat(code[:config.activation_bits] for code in codes)
                             .replicate(rows // lanes)),
                port.en.eq(Mux(hidden, write << tag.lane, 0)),
            ]
        with m.If(idle):
            m.d.comb += [buffer_writes[0].addr.eq(input_addr),
                         buffer_writes[0].data.eq(self.inputs.payload),
                         buffer_writes[0].en.eq(Mux(self.inputs.valid, (1 << rows) - 1, 0))]

        # Between layers every loop restarts from zero.
        with m.If(~run_layer):
            for counters in (feed, sink, issue):
                counters.reset(m)
            m.d.sync += [sink_first.eq(1), sink_final.eq(k_last == 0),
                         sink_next.eq(batch_last != 0)]
            m.d.sync += [feed_addr.eq(0), n.eq(0), word.eq(0), lane.eq(0), tile_n.eq(0),
                         tile_word.eq(0), tile_lane.eq(0), vector_base.eq(0)]
        return m

    def _output_stream(self, m, output_memory, batch_last, outputs_last, start):
        """Send the run's codes from the output memory on :attr:`outputs`, from the cycle after
        the ``start`` strobe; returns the strobe of the final transfer."""
        lanes = self.requant_lanes
        read = output_memory.read_port()
        addr = Signal(range(self.images.memories.output_codes + 1))
        lane, read_lane = Signal(range(lanes)), Signal(range(lanes))
        channel, index = Signal.like(outputs_last), Signal.like(batch_last)
        streaming, valid, last, advance, final = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            advance.eq(~valid | self.outputs.ready),
            read.en.eq(advance),
            read.addr.eq(addr),
            self.outputs.valid.eq(valid),
            self.outputs.payload.code.eq(read.data.word_select(read_lane, CODE_BITS)),
            self.outputs.payload.last.eq(last),
            final.eq(valid & self.outputs.ready & last),
        ]
        with m.If(advance):
            m.d.sync += valid.eq(streaming)
            with m.If(streaming):
                m.d.sync += [read_lane.eq(lane), last.eq(0)]
                with m.If(channel != outputs_last):
                    m.d.sync += channel.eq(channel + 1)
                    with m.If(lane != lanes - 1):
                        m.d.sync += lane.eq(lane + 1)
                    with m.Else():
                        m.d.sync += [lane.eq(0), addr.eq(addr + 1)]
                with m.Else():
                    m.d.sync += [channel.eq(0), lane.eq(0), addr.eq(addr + 1),
                                 index.eq(index + 1)]
                    with m.If(index == batch_last):
                        m.d.sync += [streaming.eq(0), last.eq(1)]
        with m.If(start):
            m.d.sync += [streaming.eq(1), addr.eq(0), lane.eq(0), channel.eq(0), index.eq(0)]
        return final


def _tag_layout(config, bounds, lanes):
    """What travels with ``lanes`` channels through the requantization units: where their
    codes go."""
    return data.StructLayout({
        "addr": bounds.address,        # buffer word, or output memory word
        "lane": range(config.rows),    # the first code's lane within a buffer word
        "write": lanes,                # per channel: a real one (not tile padding)
        "final": 1,                    # the last channels of the layer
    })


class _Bounds:
    """Shapes of the engine's counters and addresses: as wide as its memories need.

    A program that packs into the memories (:func:`systolix.sw.pack.check_fit`) has at most
    ``activation_words`` K tiles in a layer (one vector fills that many buffer words) and as
    many as the weight memory holds (``rows`` words each); at most ``requant_words`` channels
    and so ``requant_words // cols`` output tiles; every buffer word address and output memory
    word address lies below the larger of the two depths.
    """

    def __init__(self, config, memories):
        weight_tiles = max(1, memories.weight_words // config.rows)
        self.k_tiles = Shape.cast(range(min(memories.activation_words, weight_tiles)))
        self.n_tiles = Shape.cast(range(max(1, min(memories.requant_words // config.cols,
                                                   weight_tiles))))
        self.batch = Shape.cast(range(memories.batch))
        self.channels = Shape.cast(range(memories.requant_words))
        self.channels_end = Shape.cast(range(memories.requant_words + 1))
        self.address = Shape.cast(range(max(memories.activation_words,
                                            memories.output_codes) + 1))


class _LoopCounters:
    """The loop counters of a layer: output tile, K tile and vector of the batch."""

    def __init__(self, name, bounds):
        self.index = Signal(bounds.batch, name=f"{name}_index")
        self.k_tile = Signal(bounds.k_tiles, name=f"{name}_k_tile")
        self.n_tile = Signal(bounds.n_tiles, name=f"{name}_n_tile")

    def is_last(self, batch_last, k_last, n_last):
        """Whether this is the last vector of the layer's last tile (``k_last`` and ``n_last``
        are the last K tile and output tile)."""
        return (self.index == batch_last) & (self.k_tile == k_last) & (self.n_tile == n_last)

    def reset(self, m):
        m.d.sync += [self.index.eq(0), self.k_tile.eq(0), self.n_tile.eq(0)]

    def step(self, m, batch_last, k_last, n_last, *, on_vector=(), on_k_tile=(), on_n_tile=(),
             on_layer=()):
        """Advance by one vector; the ``on_*`` statements run when the vector index, the K tile,
        the output tile or the whole layer (its last vector) moves on."""
        with m.If(self.index != batch_last):
            m.d.sync += [self.index.eq(self.index + 1), *on_vector]
        with m.Else():
            m.d.sync += self.index.eq(0)
            with m.If(self.k_tile != k_last):
                m.d.sync += [self.k_tile.eq(self.k_tile + 1), *on_k_tile]
            with m.Else():
                m.d.sync += self.k_tile.eq(0)
                with m.If(self.n_tile != n_last):
                    m.d.sync += [self.n_tile.eq(self.n_tile + 1), *on_n_tile]
                with m.Else():
                    m.d.sync += [self.n_tile.eq(0), *on_layer]
