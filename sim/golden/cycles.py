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

from systolix.hw.array import array_timing

__all__ = ["StreamCycles", "simulate_array_cycles"]


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


def simulate_array_cycles(config, tile_lengths, *, weight_offer=None, activation_offer=None,
                          result_ready=None, max_cycles=None):
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

    Returns
    -------
    StreamCycles
    """
    rows = config.rows
    timing = array_timing(config)
    lasts = [i == n - 1 for n in tile_lengths for i in range(n)]
    if max_cycles is None:
        given = [len(p) for p in (weight_offer, activation_offer, result_ready) if p is not None]
        max_cycles = min(given) if given else (
            (len(tile_lengths) + 1) * (rows + timing.load_hold + timing.latency + 4)
            + 2 * len(lasts))
    always = np.ones(max_cycles, dtype=bool)
    weight_offer = always if weight_offer is None else weight_offer
    activation_offer = always if activation_offer is None else activation_offer
    result_ready = always if result_ready is None else result_ready

    weights = _Source(rows * len(tile_lengths), weight_offer)
    activations = _Source(len(lasts), activation_offer)
    cycles = StreamCycles([], [], [])

    shadow_full, load_row, load_hold, write_pending = False, 0, 0, False
    credits, need_swap = timing.result_depth, True
    # Whether a result is complete (its last column written) in each of the coming cycles.
    completes = deque([False] * (timing.latency - 2))
    level, out_valid = 0, False
    for cycle in range(max_cycles):
        if len(cycles.results) == len(lasts):
            break
        # Combinational handshakes of this cycle.
        weights_ready = not shadow_full and load_hold == 0
        activations_ready = credits != 0 and (not need_swap or (shadow_full and not
                                                                write_pending))
        take_weight = weights.valid(cycle) and weights_ready
        accept = activations.valid(cycle) and activations_ready
        sent = out_valid and bool(result_ready[cycle])
        read = level != 0 and (not out_valid or bool(result_ready[cycle]))
        complete = completes.popleft()

        # Register updates at the end of the cycle.
        write_pending = take_weight
        if take_weight:
            cycles.weights.append(cycle)
            weights.sent += 1
            weights.presenting = False
            shadow_full = load_row == rows - 1
            load_row = (load_row + 1) % rows
        load_hold = max(load_hold - 1, 0)
        completes.append(accept)
        if accept:
            cycles.activations.append(cycle)
            if need_swap:
                shadow_full, load_hold = False, timing.load_hold
            need_swap = lasts[activations.sent]
            activations.sent += 1
            activations.presenting = False
        if sent:
            cycles.results.append(cycle)
        level += complete - read
        credits += sent - accept
        out_valid = read or (out_valid and not sent)
    return StreamCycles(tuple(cycles.weights), tuple(cycles.activations), tuple(cycles.results))
