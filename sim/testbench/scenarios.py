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
(probability that the result sink is ready in a cycle). With bit-serial cells (``pe="serial"``)
each vector but those of adversarial tiles has a random number of bit-planes
``1..activation_bits``, its codes drawn from the range of that many bits.
"""

from dataclasses import dataclass

import numpy as np

from systolix.codec import encode
from systolix.config import code_range
from systolix.hw.array import activation_beat, activations_layout
from systolix.timing import array_timing
from systolix.sim.golden import array_matmul

__all__ = ["DATA_KINDS", "Stimulus", "scenario", "make_stimulus", "tile_stimulus",
           "activation_words"]


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
    planes : list of int
        The bit-planes of every vector, in order (bit-serial cells; ``activation_bits`` for
        the others).
    """
    weights: list
    activations: list
    expected: list
    overflows: int
    weight_offer: np.ndarray
    activation_offer: np.ndarray
    result_ready: np.ndarray
    planes: list

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
        planes = None
    else:
        weights = [_codes(rng, spec["data"], (config.rows, config.cols), config.weight_range)
                   for _ in spec["tiles"]]
        if config.pe == "serial":
            planes = [int(p) for p in rng.integers(1, config.activation_bits + 1,
                                                   sum(spec["tiles"]))]
            vectors = iter(planes)
            activations = [np.array([_codes(rng, spec["data"], config.rows,
                                            code_range(next(vectors), config.activation_signed))
                                     for _ in range(n)]).reshape(n, config.rows)
                           for n in spec["tiles"]]
        else:
            planes = None
            activations = [_codes(rng, spec["data"], (n, config.rows), config.activation_range)
                           for n in spec["tiles"]]
    return tile_stimulus(config, weights, activations, rng, spec["offer"], spec["ready"],
                         planes)


def tile_stimulus(config, weights, activations, rng, offer=1.0, ready=1.0, planes=None):
    """A :class:`Stimulus` of given weight tiles (each ``(rows, cols)``) and the activation
    vectors sent with each (``(n, rows)``), with stream patterns drawn from ``rng`` (sources
    offer a beat with probability ``offer``, the sink is ready with probability ``ready``);
    ``planes``: the bit-planes of each vector (default ``activation_bits``)."""
    weights = [np.asarray(w, dtype=np.int64) for w in weights]
    activations = [np.asarray(x, dtype=np.int64) for x in activations]
    vectors = sum(len(x) for x in activations)
    planes = [config.activation_bits] * vectors if planes is None else list(planes)
    expected = [array_matmul(config, x, w) for x, w in zip(activations, weights)]
    overflows = sum(int(np.count_nonzero(y != x @ w))
                    for x, w, y in zip(activations, weights, expected))
    # Enough cycles for every beat to get through at the slowest of the given rates.
    timing = array_timing(config)
    beats = sum(array_timing(config, p).interval for p in planes) \
        + config.rows * len(activations)
    rate = min(offer, ready)
    cycles = int(beats / rate * 2) + len(activations) * 4 \
        + 2 * timing.latency + 64
    patterns = [rng.random(cycles) < probability for probability in (offer, offer, ready)]
    return Stimulus(weights, activations, expected, overflows, *patterns, planes)


def activation_words(config, stimulus):
    """The ``activations`` payloads of a :class:`Stimulus`, as integers."""
    planes = iter(stimulus.planes)
    return [encode(activations_layout(config),
                   activation_beat(config, row, index == len(x) - 1, next(planes)))
            for x in stimulus.activations for index, row in enumerate(x)]
