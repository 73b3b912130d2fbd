"""Cycle models of the inference engine's components (:mod:`systolix.hw`), one class each, with
the names of the gateware's.

Each model holds the registers of its component that decide when something happens (and the
addresses it reads, which the memory map fixes), and steps them one cycle at a time with the
same rules as the gateware: read its properties (the component's outputs in the current cycle),
then call ``step`` with the component's inputs in that cycle. The data itself is the business of
:mod:`systolix.sim.golden.program`. :func:`systolix.sim.golden.engine.engine_cycles` composes them.

Loop bounds are passed as :class:`Bounds` (sizes, not the gateware's "last" values).
"""

from collections import deque
from typing import NamedTuple

from systolix.memory_map import HEADER_WORDS, LAYER_KINDS, RECORD_WORDS
from systolix.timing import (REQUANT_LATENCY, layernorm_row_cycles, layernorm_row_latency,
                             softmax_row_cycles, softmax_row_latency)

__all__ = ["Bounds", "Loop", "feed_order", "MemoryToStream", "Sequencer", "WeightFeeder",
           "StationaryFeeder", "ActivationFeeder", "KTileAccumulator", "Queue",
           "RequantIssuer", "PostOps", "RowOps", "Requantizer", "Writeback", "OutputStreamer"]


class Bounds(NamedTuple):
    """The loop sizes of a layer: its vectors (an output position of an input of the batch
    each), K tiles, output tiles."""
    batch: int
    k_tiles: int
    n_tiles: int


class Loop:
    """The loop counters of a layer (output tile, K tile, vector), as
    :class:`systolix.hw.loops.LoopCounters`."""

    def __init__(self):
        self.n_tile = self.k_tile = self.index = 0

    def at_last(self, bounds):
        """Whether this is the last vector of the last tile of a layer of ``bounds``."""
        return (self.index == bounds.batch - 1 and self.k_tile == bounds.k_tiles - 1
                and self.n_tile == bounds.n_tiles - 1)

    def reset(self):
        self.n_tile = self.k_tile = self.index = 0

    def step(self, bounds):
        if self.index != bounds.batch - 1:
            self.index += 1
        elif self.k_tile != bounds.k_tiles - 1:
            self.index, self.k_tile = 0, self.k_tile + 1
        elif self.n_tile != bounds.n_tiles - 1:
            self.index, self.k_tile, self.n_tile = 0, 0, self.n_tile + 1
        else:
            self.index = self.k_tile = self.n_tile = 0


class MemoryToStream:
    """:class:`systolix.hw.memory_stream.MemoryToStream`: ``valid`` and the request whose word
    is on ``words`` (``word``)."""

    def __init__(self):
        self.valid, self.word = False, None

    def ready(self, words_ready):
        """``requests.ready`` (and ``read.en``) when ``words.ready`` is ``words_ready``."""
        return not self.valid or bool(words_ready)

    def step(self, request, words_ready):
        """A cycle with ``request`` (``None`` when ``requests.valid`` is low); returns whether
        it was taken."""
        if not self.ready(words_ready):
            return False
        self.valid = request is not None
        if self.valid:
            self.word = request
        return self.valid


_MATMUL = LAYER_KINDS.index("matmul")


class Sequencer:
    """:class:`systolix.hw.sequencer.Sequencer` running the layer ``records`` (dicts of
    :data:`~systolix.memory_map.LAYER_LAYOUTS` fields); ``passes`` counts a matmul layer's
    passes (one per input and head)."""

    def __init__(self, records):
        self.records = records
        self.state, self.fetch_count, self.cycles, self.layer = "IDLE", 0, 0, 0
        self.batch, self.passes = 0, 0

    @property
    def header_done(self):
        return self.state == "HEADER" and self.fetch_count == HEADER_WORDS

    @property
    def layer_start(self):
        return self.state == "RECORD" and self.fetch_count == RECORD_WORDS

    @property
    def running(self):
        return self.state == "LAYER"

    @property
    def repeat(self):
        return self.state == "REPEAT"

    @property
    def last_pass(self):
        """Whether the layer's ``layer_done`` ends it (not only a pass of a matmul layer)."""
        return not self.matmul or self.passes == self.batch * self.record["groups"] - 1

    @property
    def matmul(self):
        """Whether the layer being read or run is a matmul layer."""
        return self.record["kind"] == _MATMUL

    @property
    def idle(self):
        return self.state == "IDLE"

    @property
    def record(self):
        """The fields of the layer being read or run."""
        return self.records[min(self.layer, len(self.records) - 1)]

    @property
    def bounds(self):
        """The loops of the layer (of one pass of a matmul layer: its ``positions`` vectors)."""
        return Bounds((1 if self.matmul else self.batch) * self.record["positions"],
                      self.record["k_tiles"], self.record["n_tiles"])

    def _fetch(self, words, following):
        # The run's count starts in the header's first cycle (the last run's until then).
        self.cycles = 1 if self.state == "HEADER" and self.fetch_count == 0 else self.cycles + 1
        if self.fetch_count != words:
            self.fetch_count += 1
        else:
            self.fetch_count, self.state = 0, following

    def step(self, start=0, layer_done=False, outputs_sent=False):
        """``start``: the batch size on a ``start`` transfer (0 for none or an empty batch)."""
        if self.state == "IDLE":
            if start:
                self.batch, self.fetch_count, self.layer = start, 0, 0
                self.state = "HEADER"
        elif self.state == "HEADER":
            self._fetch(HEADER_WORDS, "RECORD")
        elif self.state == "RECORD":
            self._fetch(RECORD_WORDS, "LAYER")
        elif self.state == "LAYER":
            self.cycles += 1
            if layer_done and not self.last_pass:
                self.state, self.passes = "REPEAT", self.passes + 1
            elif layer_done:
                self.state = "OUTPUT" if self.record["last"] else "RECORD"
                self.layer, self.passes = self.layer + 1, 0
        elif self.state == "REPEAT":
            self.cycles += 1
            self.state = "LAYER"
        elif outputs_sent:
            self.state = "IDLE"


class WeightFeeder:
    """:class:`systolix.hw.feeders.WeightFeeder`: ``reader.word`` is the address of the word
    on ``weights``."""

    def __init__(self):
        self.reader = MemoryToStream()
        self.addr, self.feed, self.total = 0, False, 0

    @property
    def valid(self):
        return self.reader.valid

    def step(self, start, total, ready):
        if self.reader.step(self.addr if self.feed else None, ready):
            self.feed = self.addr != self.total - 1
            self.addr += 1
        if start:
            self.addr, self.feed, self.total = 0, True, total


class StationaryFeeder:
    """:class:`systolix.hw.stationary.StationaryFeeder` of an array of ``rows`` rows:
    ``gate`` is the words a ``gemm`` layer may still pass, ``tiles`` the tiles a matmul layer
    still sends after the one being read (``fill``) or sent (``beat``)."""

    def __init__(self, rows):
        self.rows = rows
        self.gate, self.state, self.fill, self.beat, self.tiles = 0, "IDLE", 0, 0, 0

    def valid(self, gemm_valid):
        """``weights.valid`` when the weight feeder's ``valid`` is ``gemm_valid``."""
        return self.state == "SEND" or bool(self.gate and gemm_valid)

    def gemm_ready(self, ready):
        """``gemm.ready`` when the array's ``weights.ready`` is ``ready``."""
        return bool(self.gate and ready)

    def step(self, start, record, batch, gemm_take, ready):
        """A cycle; ``start`` (the ``layer_start`` strobe) samples the layer's ``record`` and
        ``batch``; ``gemm_take``: a gemm word passed; ``ready``: ``weights.ready``."""
        if gemm_take:
            self.gate -= 1
        if self.state == "INIT":
            self.state, self.fill = "FILL", 0
        elif self.state == "FILL":
            if self.fill == self.rows:
                self.state, self.beat = "SEND", 0
            else:
                self.fill += 1
        elif self.state == "SEND" and ready:
            if self.beat != self.rows - 1:
                self.beat += 1
            elif self.tiles:
                self.state, self.fill, self.tiles = "FILL", 0, self.tiles - 1
            else:
                self.state = "IDLE"
        if start and record["kind"] == LAYER_KINDS.index("gemm"):
            self.gate = record["k_tiles"] * record["n_tiles"] * self.rows
        elif start and record["kind"] == _MATMUL:
            self.state = "INIT"
            self.tiles = batch * record["groups"] * record["n_tiles"] * record["k_tiles"] - 1


def feed_order(record, batch):
    """The words the activation feeder sends for a layer of ``record`` (a dict of
    :data:`~systolix.memory_map.LAYER_LAYOUTS` fields) on ``batch`` inputs, in order: per
    output tile, per K tile ``(ky, kx, ct)``, per input ``b`` and output position ``(oy, ox)``,
    ``(address, last)`` with the buffer address of the pixel the window reads, or ``None``
    outside the map (a word of ``pad_code``), and ``last`` on the tile's final vector."""
    r = record
    for _ in range(r["n_tiles"]):
        for ky in range(r["kernel_height"]):
            for kx in range(r["kernel_width"]):
                for ct in range(r["c_tiles"]):
                    for b in range(batch):
                        for oy in range(r["output_height"]):
                            for ox in range(r["output_width"]):
                                iy = oy * r["stride_height"] - r["pad_top"] + ky
                                ix = ox * r["stride_width"] - r["pad_left"] + kx
                                inside = 0 <= iy < r["height"] and 0 <= ix < r["width"]
                                address = (b * r["image_words"]
                                           + (iy * r["width"] + ix) * r["c_tiles"] + ct
                                           if inside else None)
                                yield address, (b == batch - 1 and oy == r["output_height"] - 1
                                                and ox == r["output_width"] - 1)


class ActivationFeeder:
    """:class:`systolix.hw.feeders.ActivationFeeder`: ``reader.word`` is ``(address, last)`` of
    the word on ``activations`` (:func:`feed_order`; the address ``None`` for padding)."""

    def __init__(self):
        self.reader = MemoryToStream()
        self.order, self.feeding, self.pending, self.remaining = iter(()), False, None, 0

    @property
    def valid(self):
        return self.reader.valid

    @property
    def last(self):
        return self.reader.word[1]

    def step(self, start, running, ready, record, batch):
        """A cycle; ``record`` and ``batch`` are the layer's fields and the run's inputs."""
        if self.feeding:
            if self.pending is None:
                self.pending = next(self.order)
            if self.reader.step(self.pending, ready):
                self.pending = None
                self.remaining -= 1
                self.feeding = self.remaining != 0
        else:
            self.reader.step(None, ready)
        if start:
            self.feeding, self.pending = True, None
            self.order = feed_order(record, batch)
            self.remaining = (record["n_tiles"] * record["k_tiles"] * batch
                              * record["positions"])


class KTileAccumulator:
    """:class:`systolix.hw.accumulator.KTileAccumulator`: ``loop`` is the position of the next
    result (vector, K tile, output tile)."""

    def __init__(self):
        self.loop = Loop()

    def final(self, bounds):
        """Whether the next result is of the layer's last K tile (its sums go out)."""
        return self.loop.k_tile == bounds.k_tiles - 1

    def ready(self, running, sums_ready, bounds):
        """``results.ready``."""
        return running and (not self.final(bounds) or sums_ready)

    def sums_valid(self, results_valid, running, bounds):
        return results_valid and running and self.final(bounds)

    def step(self, take, running, bounds):
        if take:
            self.loop.step(bounds)
        if not running:
            self.loop.reset()


class Queue:
    """:class:`systolix.hw.queue.Queue` of ``depth`` entries (the transfers of
    :class:`amaranth.lib.fifo.SyncFIFOBuffered`): handshakes only."""

    def __init__(self, depth):
        self.inner_depth, self.inner_level, self.r_rdy = depth - 1, 0, False

    @property
    def w_rdy(self):
        return self.inner_level != self.inner_depth

    def step(self, write, read):
        """``write``, ``read``: ``w_en``, ``r_en`` (each ignored unless ready or valid)."""
        write, read = write and self.w_rdy, read and self.r_rdy
        inner_read = self.inner_level != 0 and (not self.r_rdy or read)
        self.inner_level += write - inner_read
        self.r_rdy = True if inner_read else (self.r_rdy and not read)


class RequantIssuer:
    """:class:`systolix.hw.issuer.RequantIssuer` of an array of ``cols`` columns and ``lanes``
    lanes: ``final`` is its registered tag's ``final`` bit (with ``valid``)."""

    def __init__(self, cols, lanes):
        self.cols, self.lanes = cols, lanes
        self.have_vector, self.channel, self.loop = False, 0, Loop()
        self.issued, self.final = False, False
        self.columns_next = True

    @property
    def last_channel(self):
        return self.channel == self.cols - self.lanes

    def ready(self, running):
        """``vectors.ready``."""
        return running and (not self.have_vector or self.last_channel)

    def step(self, take, running, bounds, matmul=False):
        """A cycle; ``bounds.batch`` is the vectors issued a tile; in a ``matmul`` layer the
        first vector of each tile (its column terms) is taken without being issued."""
        issues = Bounds(bounds.batch, 1, bounds.n_tiles)
        tile_end = (self.have_vector and self.last_channel
                    and self.loop.index == issues.batch - 1)
        column = matmul and (self.columns_next or tile_end)
        if tile_end:
            self.columns_next = True
        if take and column:
            self.columns_next = False
        take = take and not column
        if not running:
            self.columns_next = True
        self.issued = self.have_vector
        self.final = self.have_vector and self.last_channel and self.loop.at_last(issues)
        if self.have_vector and self.last_channel:
            self.loop.step(issues)
        if take:
            self.have_vector, self.channel = True, 0
        elif self.have_vector:
            if self.last_channel:
                self.have_vector = False
            else:
                self.channel += self.lanes
        if not running:
            self.loop.reset()


class _LayerUnit:
    """A unit that runs a whole layer from its ``start`` strobe: ``final`` is set in the cycle
    :meth:`layer_cycles` after the strobe (the final code's tag, with ``valid``)."""

    def __init__(self):
        self.remaining, self.final = 0, False

    def step(self, start, record, batch):
        """A cycle; ``start`` (the strobe) samples the layer's ``record`` and ``batch``."""
        self.final = False
        if self.remaining:
            self.remaining -= 1
            self.final = self.remaining == 0
        if start:
            self.remaining = self.layer_cycles(record, batch)


class PostOps(_LayerUnit):
    """:class:`systolix.hw.postops.PostOps` of an array of ``rows`` rows and ``lanes`` lanes:
    ``final`` is its registered tag's ``final`` bit (with ``valid``). A word takes ``taps + 1 +
    rows / lanes`` cycles (``taps`` = the window's kernel positions, 2 for an add, 1 for a
    GELU)."""

    def __init__(self, rows, lanes):
        super().__init__()
        self.groups = rows // lanes

    def layer_cycles(self, record, batch):
        """Cycles from the layer's ``start`` to its final code."""
        # A GELU layer's window is 1x1.
        taps = (2 if record["kind"] == LAYER_KINDS.index("add")
                else record["kernel_height"] * record["kernel_width"])
        return batch * record["positions"] * record["c_tiles"] * (taps + 1 + self.groups)


class RowOps(_LayerUnit):
    """:class:`systolix.hw.rowops.RowOps` with a LayerNorm unit of ``layernorm_channels``:
    ``final`` is the ``final`` bit of the tag on its ``codes`` (with ``valid``). The first code
    of a layer reaches its unit 3 cycles after ``start`` (a softmax layer) or ``2 channels + 4``
    (a LayerNorm layer: its constants first), the first row's last code leaves
    :func:`~systolix.timing.softmax_row_latency` or :func:`~systolix.timing.layernorm_row_latency`
    cycles after its first code, and every later row's
    :func:`~systolix.timing.softmax_row_cycles` or :func:`~systolix.timing.layernorm_row_cycles`
    cycles after the row before's."""

    def __init__(self, layernorm_channels=0):
        super().__init__()
        self.layernorm_channels = layernorm_channels

    def layer_cycles(self, record, batch):
        """Cycles from the layer's ``start`` to its final code."""
        channels, rows = record["channels"], batch * record["positions"]
        if record["kind"] == LAYER_KINDS.index("softmax"):
            first, row, latency = (3, softmax_row_cycles(channels),
                                   softmax_row_latency(channels))
        else:
            first = 2 * channels + 4
            row = layernorm_row_cycles(channels, self.layernorm_channels)
            latency = layernorm_row_latency(channels, self.layernorm_channels)
        # The final code is on `codes` `first + latency + (rows - 1) * row` cycles after the
        # strobe's.
        return first + (rows - 1) * row + latency - 1


class Requantizer:
    """:class:`systolix.hw.requant.Requantizer`: what its output holds, ``REQUANT_LATENCY``
    cycles after its input (here the ``final`` flag of a tag)."""

    def __init__(self):
        self.pipeline = deque([False] * REQUANT_LATENCY)

    @property
    def output(self):
        return self.pipeline[0]

    def step(self, given):
        self.pipeline.popleft()
        self.pipeline.append(given)


class Writeback:
    """:class:`systolix.hw.writeback.Writeback`: ``layer_done`` with the codes of the final
    tag, and the host input address."""

    def __init__(self):
        self.input_addr = 0

    @staticmethod
    def layer_done(final_codes):
        return bool(final_codes)

    def step(self, idle, input_valid, rewind):
        if input_valid and idle:
            self.input_addr += 1
        if rewind:
            self.input_addr = 0


class OutputStreamer:
    """:class:`systolix.hw.output_streamer.OutputStreamer` of ``lanes`` codes an output word:
    ``reader.word`` is ``(address, lane, last)`` of the code on ``outputs``; vector ``i``'s
    code ``c`` of ``outputs`` is lane ``c % lanes`` of word
    ``i * ceil(outputs / lanes) + c // lanes``."""

    def __init__(self, lanes):
        self.lanes = lanes
        self.reader = MemoryToStream()
        self.streaming, self.index, self.channel = False, 0, 0

    @property
    def valid(self):
        return self.reader.valid

    def done(self, ready):
        """The final transfer."""
        return self.valid and bool(ready) and self.reader.word[2]

    def step(self, start, ready, batch, outputs):
        words = -(-outputs // self.lanes)
        request = (self.index * words + self.channel // self.lanes, self.channel % self.lanes,
                   self.channel == outputs - 1 and self.index == batch - 1)
        if self.reader.step(request if self.streaming else None, ready):
            if self.channel != outputs - 1:
                self.channel += 1
            else:
                self.channel, self.index = 0, self.index + 1
                self.streaming = self.index != batch
        if start:
            self.streaming, self.index, self.channel = True, 0, 0
