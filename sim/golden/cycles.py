"""Cycle model of :class:`systolix.hw.array.SystolicArray` and of the streams around it.

The model predicts the exact cycle of every transfer on the three streams of the array, given
the environment's behaviour as per-cycle patterns:

* a source (``weights``, ``activations``) offers its next beat in cycle ``t`` if it has one and
  ``offer[t]`` is true, and once it has offered a beat it keeps it valid until it is taken;
* the sink of ``results`` is ready in cycle ``t`` exactly when ``ready[t]`` is true.

Cycle 0 is the first cycle after reset. The cocotb testbenches drive the hardware with the same
patterns and compare every transfer cycle with this model.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np

from systolix.timing import array_timing

__all__ = ["StreamCycles", "ArrayModel", "simulate_array_cycles"]


@dataclass(frozen=True)
class StreamCycles:
    """Cycles of every transfer on the array's streams, in transfer order."""
    weights: tuple
    activations: tuple
    results: tuple


class _Source:
    def __init__(self, beats, offer):
        self.beats, self.offer = beats, offer
        self.sent = 0
        self.presenting = False

    def valid(self, cycle):
        if self.sent < self.beats and not self.presenting:
            self.presenting = bool(self.offer[cycle])
        return self.presenting


class ArrayModel:
    """The handshake state of a :class:`~systolix.hw.array.SystolicArray`, one cycle at a time.

    Read the ``*_ready`` and ``results_valid`` properties (the array's combinational outputs in
    the current cycle), then call :meth:`step` with what happened on the streams in that cycle.
    """

    def __init__(self, config):
        self.config, self.rows = config, config.rows
        self.timing = array_timing(config)
        self.shadow_full, self.load_row, self.write_pending = False, 0, False
        self.credits, self.need_swap = self.timing.result_depth, True
        # Whether a result is complete (written into the result buffer) in each of the coming
        # cycles.
        self.completes = deque([False] * (self.timing.latency - 2))
        self.level, self.results_valid = 0, False
        self.busy = 0       # cycles before a bit-serial array's serializer takes a vector

    @property
    def weights_ready(self):
        return not self.shadow_full

    @property
    def activations_ready(self):
        return self.credits != 0 and self.busy == 0 and (
            not self.need_swap or (self.shadow_full and not self.write_pending))

    def step(self, take_weight, accept, accept_last, results_ready, planes=None):
        """Register updates at the end of a cycle in which a weight row was taken
        (``take_weight``), a vector accepted (``accept``, with its ``last`` flag and, with
        bit-serial cells, its ``planes``: default ``activation_bits``) and ``results`` was
        ready or not. Returns whether a result was sent."""
        sent = self.results_valid and results_ready
        read = self.level != 0 and (not self.results_valid or results_ready)
        complete = self.completes.popleft()
        self.completes.append(False)
        self.busy = max(self.busy - 1, 0)
        self.write_pending = take_weight
        if take_weight:
            self.shadow_full = self.load_row == self.rows - 1
            self.load_row = (self.load_row + 1) % self.rows
        if accept:
            timing = array_timing(self.config, planes)
            self.completes[timing.column_write - 1] = True
            self.busy = timing.interval - 1
            if self.need_swap:
                self.shadow_full = False
            self.need_swap = accept_last
        self.level += complete - read
        self.credits += sent - accept
        self.results_valid = read or (self.results_valid and not sent)
        return sent


def simulate_array_cycles(config, tile_lengths, *, weight_offer=None, activation_offer=None,
                          result_ready=None, max_cycles=None, planes=None):
    """Predict the transfer cycles of a run of a :class:`SystolicArray`.

    Parameters
    ----------
    config : ArrayConfig
    tile_lengths : sequence of int
        Number of activation vectors that use each weight tile (each tile is ``config.rows``
        beats on ``weights``; the last vector of each tile has ``last`` set).
    weight_offer, activation_offer, result_ready : sequence of bool, optional
        Per-cycle environment patterns (see the module docstring); ``None`` means always.
    max_cycles : int, optional
        Give up after this many cycles (default: the length of the patterns, or a bound
        generous enough for a stall-free run).
    planes : sequence of int, optional
        The bit-planes of every vector (bit-serial cells; default ``activation_bits``).

    Returns
    -------
    StreamCycles
    """
    rows = config.rows
    timing = array_timing(config)
    lasts = [i == n - 1 for n in tile_lengths for i in range(n)]
    planes = [config.activation_bits] * len(lasts) if planes is None else list(planes)
    if max_cycles is None:
        given = [len(p) for p in (weight_offer, activation_offer, result_ready) if p is not None]
        max_cycles = min(given) if given else (
            (len(tile_lengths) + 1) * (rows + timing.latency + 4)
            + 2 * sum(array_timing(config, p).interval for p in planes))
    always = np.ones(max_cycles, dtype=bool)
    weight_offer = always if weight_offer is None else weight_offer
    activation_offer = always if activation_offer is None else activation_offer
    result_ready = always if result_ready is None else result_ready

    weights = _Source(rows * len(tile_lengths), weight_offer)
    activations = _Source(len(lasts), activation_offer)
    cycles = StreamCycles([], [], [])
    array = ArrayModel(config)
    for cycle in range(max_cycles):
        if len(cycles.results) == len(lasts):
            break
        take_weight = weights.valid(cycle) and array.weights_ready
        accept = activations.valid(cycle) and array.activations_ready
        for source, taken, transfers in ((weights, take_weight, cycles.weights),
                                         (activations, accept, cycles.activations)):
            if taken:
                transfers.append(cycle)
                source.sent += 1
                source.presenting = False
        if array.step(take_weight, accept, accept and lasts[activations.sent - 1],
                      bool(result_ready[cycle]), planes[activations.sent - 1]):
            cycles.results.append(cycle)
    return StreamCycles(tuple(cycles.weights), tuple(cycles.activations), tuple(cycles.results))
