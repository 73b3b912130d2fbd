"""Stimulus for the array testbenches: weight tiles, activation vectors and stream patterns.

A scenario is a small JSON-serialisable dict; :func:`make_stimulus` turns it, deterministically
from its seed, into codes and per-cycle environment patterns. The cocotb testbench drives the
hardware with the stimulus and the golden model and cycle model predict the outcome from the
same stimulus.

Scenario keys: ``name``; ``seed``; ``tiles`` (vectors per weight tile); ``data`` (``"random"``:
uniform over the full code ranges, ``"lowest"`` / ``"highest"``: every code at the end of its
range, ``"extreme"``: each code independently at one end of its range, ``"adversarial"``: tiles
alternately made of the weight and activation codes whose product is the largest and the
smallest possible, so partial sums reach the most positive and the most negative value any tile
can give, then extreme codes); ``offer`` (probability that a source offers a beat in a cycle) and ``ready``
(probability that the result sink is ready in a cycle).
"""

from dataclasses import dataclass

import numpy as np

from systolix.timing import array_timing
from systolix.sim.golden import array_matmul

__all__ = ["DATA_KINDS", "Stimulus", "scenario", "make_stimulus", "tile_stimulus"]


DATA_KINDS = ("random", "lowest", "highest", "extreme", "adversarial")


def scenario(name, *, seed=0, tiles=(16,), data="random", offer=1.0, ready=1.0):
    """A scenario dict with defaults filled in (see the module docstring)."""
    if data not in DATA_KINDS:
        raise ValueError(f"data must be one of {', '.join(map(repr, DATA_KINDS))}, not {data!r}")
    return {"name": name, "seed": seed, "tiles": list(tiles), "data": data,
            "offer": offer, "ready": ready}


@dataclass(frozen=True)
class Stimulus:
    """Codes and patterns of one scenario, and the golden results.

    Attributes
    ----------
    weights : list of numpy.ndarray, each (rows, cols)
    activations : list of numpy.ndarray, each (n_tile, rows)
    expected : list of numpy.ndarray, each (n_tile, cols): the golden ``X @ W`` per tile
    overflows : int
        Results in which the ``P``-bit accumulator wrapped or saturated (differ from the exact
        integer sum).
    weight_offer, activation_offer, result_ready : numpy.ndarray of bool, per cycle
    """
    weights: list
    activations: list
    expected: list
    overflows: int
    weight_offer: np.ndarray
    activation_offer: np.ndarray
    result_ready: np.ndarray

    @property
    def cycles(self):
        """Length of the patterns: the most cycles the scenario may take."""
        return len(self.result_ready)


def _codes(rng, kind, shape, code_range):
    low, high = code_range
    if kind == "random":
        return rng.integers(low, high + 1, size=shape)
    if kind == "lowest":
        return np.full(shape, low)
    if kind == "highest":
        return np.full(shape, high)
    return np.where(rng.random(shape) < 0.5, low, high)


def _adversarial_tile(rng, config, index, n):
    pairs = [(w, x) for w in config.weight_range for x in config.activation_range]
    w_end, x_end = (max if index % 2 == 0 else min)(pairs, key=lambda pair: pair[0] * pair[1])
    x = _codes(rng, "extreme", (n, config.rows), config.activation_range)
    x[:(n + 1) // 2] = x_end
    return np.full((config.rows, config.cols), w_end), x


def make_stimulus(config, spec):
    """Turn a scenario ``spec`` into a :class:`Stimulus` for an array built from ``config``."""
    rng = np.random.default_rng(spec["seed"])
    if spec["data"] == "adversarial":
        weights, activations = zip(*(_adversarial_tile(rng, config, index, n)
                                     for index, n in enumerate(spec["tiles"])))
    else:
        weights = [_codes(rng, spec["data"], (config.rows, config.cols), config.weight_range)
                   for _ in spec["tiles"]]
        activations = [_codes(rng, spec["data"], (n, config.rows), config.activation_range)
                       for n in spec["tiles"]]
    return tile_stimulus(config, weights, activations, rng, spec["offer"], spec["ready"])


def tile_stimulus(config, weights, activations, rng, offer=1.0, ready=1.0):
    """A :class:`Stimulus` of given weight tiles (each ``(rows, cols)``) and the activation
    vectors sent with each (``(n, rows)``), with stream patterns drawn from ``rng`` (sources
    offer a beat with probability ``offer``, the sink is ready with probability ``ready``)."""
    weights = [np.asarray(w, dtype=np.int64) for w in weights]
    activations = [np.asarray(x, dtype=np.int64) for x in activations]
    expected = [array_matmul(config, x, w) for x, w in zip(activations, weights)]
    overflows = sum(int(np.count_nonzero(y != x @ w))
                    for x, w, y in zip(activations, weights, expected))
    # Enough cycles for every beat to get through at the slowest of the given rates.
    timing = array_timing(config)
    beats = sum(len(x) for x in activations) + config.rows * len(activations)
    rate = min(offer, ready)
    cycles = int(beats / rate * 2) + len(activations) * (timing.load_hold + 4) \
        + 2 * timing.latency + 64
    patterns = [rng.random(cycles) < probability for probability in (offer, offer, ready)]
    return Stimulus(weights, activations, expected, overflows, *patterns)
