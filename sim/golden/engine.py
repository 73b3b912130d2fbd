"""Cycle model of :class:`systolix.hw.engine.InferenceEngine`: the exact cycles of a run.

The model steps every register of the engine that decides when something happens (sequencer
state, weight and activation feeders, the array's handshakes through
:class:`~systolix.sim.golden.cycles.ArrayModel`, the result sink, the result queue, the
requantization issuer and its pipeline) one cycle at a time, with the same rules as the
gateware; the data itself is the business of :func:`systolix.sim.golden.program.run_program`.
A run does not depend on the host once it has started, so its cycle count depends only on the
program, the array, the memory depths and the batch size.
"""

from typing import NamedTuple

from systolix.memory_map import HEADER_WORDS, LAYER_LAYOUTS, layer_records
from systolix.timing import REQUANT_LATENCY, default_requant_lanes

from .cycles import ArrayModel

__all__ = ["EngineCycles", "engine_cycles"]


class EngineCycles(NamedTuple):
    """Cycle counts of one run of an :class:`~systolix.hw.engine.InferenceEngine`.

    Attributes
    ----------
    compute : int
        What the engine's ``cycles`` output holds after the run: the cycles from the one after
        ``start`` was accepted to the one in which the last output code is written.
    layers : tuple of int
        The cycles of each layer, its record read included (the header is in layer 0's).
    first_output : int
        Cycles from the ``start`` transfer to the first valid ``outputs`` beat:
        ``compute + 2``. With ``outputs`` always ready, the last code is sent
        ``batch * outputs - 1`` cycles later.
    """
    compute: int
    layers: tuple
    first_output: int


class _Loop:
    """The loop counters of a layer (output tile, K tile, vector), as in the gateware."""

    def __init__(self, batch, k_tiles, n_tiles):
        self.sizes = (n_tiles, k_tiles, batch)
        self.position = [0, 0, 0]

    def at_last(self, level=0):
        """Whether every counter from ``level`` inward is at its last value."""
        return all(value == size - 1
                   for value, size in zip(self.position[level:], self.sizes[level:]))

    def step(self):
        for level in (2, 1, 0):
            if self.position[level] != self.sizes[level] - 1:
                self.position[level] += 1
                return
            self.position[level] = 0


class _Queue:
    """:class:`amaranth.lib.fifo.SyncFIFOBuffered` of ``depth`` entries: handshakes only."""

    def __init__(self, depth):
        self.inner_depth, self.inner_level, self.r_rdy = depth - 1, 0, False

    @property
    def w_rdy(self):
        return self.inner_level != self.inner_depth

    def step(self, write, read):
        inner_read = self.inner_level != 0 and (not self.r_rdy or read)
        self.inner_level += write - inner_read
        self.r_rdy = True if inner_read else (self.r_rdy and not read)


def engine_cycles(config, images, batch, requant_lanes=None):
    """The :class:`EngineCycles` of a run of ``batch`` vectors on an engine of ``config`` with
    ``images`` that requantizes ``requant_lanes`` channels a cycle (default:
    :func:`~systolix.hw.engine.default_requant_lanes`)."""
    lanes = requant_lanes or default_requant_lanes(config)
    records = layer_records(images)
    cols = config.cols
    array = ArrayModel(config)
    queue = _Queue(images.memories.batch + 1)
    weight_total = len(images.weights)
    weight_addr, weight_feed, weight_valid = 0, False, False
    feeding, feed_valid, feed_last = False, False, False
    have_vector, channel = False, 0
    pending_done = None       # the cycle in which the requantization unit ends the layer

    cycle, layers = 0, []
    # The header: HEADER_WORDS reads and the cycle that takes the last word.
    weight_feed_from = cycle + HEADER_WORDS
    cycle_of_layer_start = cycle
    for index, record in enumerate(records):
        feed = _Loop(batch, record["k_tiles"], record["n_tiles"])
        sink = _Loop(batch, record["k_tiles"], record["n_tiles"])
        issue = _Loop(batch, 1, record["n_tiles"])
        record_end = cycle + (HEADER_WORDS + 1 if index == 0 else 0) + len(LAYER_LAYOUTS)
        layer_done = False
        while not layer_done:
            run_layer = cycle > record_end
            header_done = cycle == weight_feed_from
            layer_start = cycle == record_end

            # Combinational handshakes.
            take_weight = weight_valid and array.weights_ready
            weight_advance = not weight_valid or array.weights_ready
            accept = feed_valid and array.activations_ready
            accept_last = feed_last
            feed_advance = not feed_valid or array.activations_ready
            sink_final = sink.position[1] == record["k_tiles"] - 1
            results_ready = run_layer and (not sink_final or queue.w_rdy)
            sink_take = array.results_valid and results_ready
            last_channel = channel == cols - lanes
            take_vector = run_layer and queue.r_rdy and (not have_vector or last_channel)
            layer_done = pending_done == cycle

            # Register updates.
            if weight_advance:
                weight_valid = weight_feed
                if weight_feed:
                    weight_feed = weight_addr != weight_total - 1
                    weight_addr += 1
            if header_done:
                weight_addr, weight_feed = 0, True
            if feed_advance:
                feed_valid = feeding
                if feeding:
                    feed_last = feed.position[2] == batch - 1
                    feeding = not feed.at_last()
                    feed.step()
            if layer_start:
                feeding = True
            if have_vector and last_channel:
                if issue.at_last():
                    pending_done = cycle + 1 + REQUANT_LATENCY
                issue.step()
            if take_vector:
                have_vector, channel = True, 0
            elif have_vector:
                have_vector, channel = not last_channel, channel + lanes * (not last_channel)
            array.step(take_weight, accept, accept_last, results_ready)
            queue.step(sink_take and sink_final, take_vector)
            if sink_take:
                sink.step()
            cycle += 1
        layers.append(cycle - cycle_of_layer_start)
        cycle_of_layer_start = cycle
    return EngineCycles(compute=cycle, layers=tuple(layers), first_output=cycle + 2)
