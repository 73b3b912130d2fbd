"""The timing contract: cycle counts that the gateware guarantees and the cycle models, the
testbenches and the reports rely on.

Each block's docstring states its latency and throughput; the numbers that other parts compute
with are defined here, once.
"""

from typing import NamedTuple

__all__ = ["ArrayTiming", "column_delay", "array_timing", "REQUANT_LATENCY",
           "default_requant_lanes"]


class ArrayTiming(NamedTuple):
    """Cycle counts of a :class:`systolix.hw.array.SystolicArray`, derived from its
    configuration.

    Attributes
    ----------
    latency : int
        Cycles from the cycle an activation vector is accepted to the first cycle its result is
        offered on ``results``: ``rows + skew + 4``.
    column_write : int
        Cycles from acceptance to the cycle column 0 writes the result into the result buffer;
        column ``c`` writes :func:`column_delay` ``(config, c)`` cycles later.
    result_depth : int
        Entries of the result buffer, a power of two of at least ``latency + 1``: enough credits
        to accept a vector every cycle while ``results`` is always ready.
    load_hold : int
        Cycles the weight loader waits, after the first vector of a tile is accepted, before it
        takes the first row of the next tile (so the shadow registers are not overwritten before
        the new tile's wavefront has copied them): ``max(skew - 2, 0)``.
    skew : int
        Cycles between the first and the last column: the last column's
        :func:`column_delay`.
    """
    latency: int
    column_write: int
    result_depth: int
    load_hold: int
    skew: int


def column_delay(config, column):
    """Cycles after column 0 that column ``column`` of an array of ``config`` gets an activation
    and writes a result: one a column with LUT cells, one a pair of columns with DSP cells
    (``pe="dsp"``: both columns of a pair work in the same cycle)."""
    return column // 2 if config.pe == "dsp" else column


def array_timing(config):
    """The :class:`ArrayTiming` of an array built from ``config`` (an
    :class:`~systolix.config.ArrayConfig`)."""
    skew = column_delay(config, config.cols - 1)
    latency = config.rows + skew + 4
    return ArrayTiming(
        latency=latency,
        column_write=config.rows + 2,
        result_depth=1 << latency.bit_length(),
        load_hold=max(skew - 2, 0),
        skew=skew,
    )


REQUANT_LATENCY = 5
"""Cycles of :class:`systolix.hw.requant.Requantizer` from a value on ``input`` to its code on
``output``; one value a cycle."""


def default_requant_lanes(config):
    """Channels the engine requantizes a cycle unless told otherwise: 2 where they divide
    ``rows`` and ``cols`` (so that a K tile of at least ``cols / 2`` words keeps up with the
    array), else 1."""
    return 2 if config.rows % 2 == 0 and config.cols % 2 == 0 else 1
