"""Accumulator-aware post-training rounding with error feedback, in the manner of AXE.

GPTQ (Frantar et al., 2023) and GPFQ (Lybrand and Saab, 2021) quantize a layer's weight matrix
one input row ``k`` at a time and feed the error of each rounded row into the rows not yet
rounded, so that the layer's outputs on calibration data stay close to the float ones. AXE
(Colbert et al., 2024, "Accumulator-aware post-training quantization") adds the accumulator
bound: while the rows are fixed, each output channel's remaining budget is tracked and every
code is clipped into it, so the finished integers meet the data-free bound for ``P`` by
construction.

Here, per layer (:func:`axe_quantize`):

1. The target is the float layer on the float inputs ``X``; the codes multiply the inputs of
   the already quantized layers before it, ``X~`` (real values ``s_x (q_x - z_x)``, a
   convolution's patches). The least-squares weights ``w* = (X~^T X~ + d I)^-1 X~^T X w`` turn
   ``||X w - X~ s q||^2`` into ``||X~ (w* - s q)||^2`` plus a constant (the residual of ``w*`` is
   orthogonal to the columns of ``X~``), GPTQ's objective with ``H = X~^T X~ + d I`` (``d``: 1 %
   of the mean diagonal), which also absorbs the error of the layers before.
2. The rows are visited in the order of decreasing ``H[k, k]`` (GPTQ's activation order: the
   inputs that matter most spend the budget first). Each row's real codes ``w[k] / s`` are
   rounded to nearest and clipped, per channel, to the code range and to the remaining budget:
   A2Q, the L1 norm (``|q| <= left``); A2Q+, the positive and the negative parts separately
   (``-negative_left <= q <= positive_left``, the condition :func:`~systolix.sw.a2q.meets_bound`
   checks, which holds with or without zero-centred weights). The error ``(w[k] - s q) /
   U[k, k]`` goes into the remaining rows through the Cholesky factor ``U`` of ``H^-1``.
3. Before the rows are visited, each channel's ``w*`` is projected (Euclidean) onto the
   constraint set at its scale, as A2Q+ initialises its training: the greedy pass then starts
   from weights that fit instead of spending the whole budget on the first rows.
4. Scales: as in :func:`~systolix.sw.a2q.accumulator_aware_quantize`, candidates from the
   plain scale up to the one at which the unrounded channel meets its bound (geometric steps);
   with the codes of rounding each weight on its own (``candidate``, which meet the bound too),
   each channel keeps the candidate of least output error ``(w* - s q)^T H (w* - s q)``.

Channels are independent (one ``H`` per group of input rows: a grouped convolution's rows
outside a channel's group stay zero), so every step is one vectorised operation over the
channels of a group. The digits MLP quantizes in well under a second.
"""

import numpy as np

from .a2q import feasible_budget, meets_bound, project_l1_ball
from .quant import pow2_ceil

__all__ = ["SCALE_STEPS", "axe_quantize", "least_squares_target"]

SCALE_STEPS = 16
"""Candidate scales per channel (geometric, from the plain scale to the bound's)."""

_DAMPING = 0.01


def least_squares_target(float_inputs, quantized_inputs, weights, damping=_DAMPING):
    """``(w*, H)``: the weights that best map ``quantized_inputs`` onto ``float_inputs @
    weights``, and the damped ``H = X~^T X~ + d I`` of GPTQ's objective.

    Parameters
    ----------
    float_inputs, quantized_inputs : numpy.ndarray of float, shape (n, K)
    weights : numpy.ndarray of float, shape (K, N)
    damping : float
        ``d`` as a fraction of the mean of ``diag(X~^T X~)``.
    """
    x = np.asarray(quantized_inputs, dtype=np.float64)
    hessian = x.T @ x
    hessian += np.eye(len(hessian)) * damping * max(float(np.mean(np.diag(hessian))), 1e-12)
    target = np.linalg.solve(hessian, x.T @ (np.asarray(float_inputs, dtype=np.float64)
                                              @ weights))
    return target, hessian


def _constrain_real(real, method, budget):
    """The Euclidean projection of real codes (K, N) onto the ``method`` constraint set."""
    if method == "a2q":
        return project_l1_ball(real, budget)
    return (project_l1_ball(np.maximum(real, 0.0), budget)
            - project_l1_ball(np.maximum(-real, 0.0), budget))


def _gptq(target, hessian, scale, high, method, budget):
    """One GPTQ pass over the rows of ``target`` (K, N) at per-channel ``scale``, clipping
    every code to ``-high..high`` and the channel's remaining budget; returns the codes."""
    count, channels = target.shape
    order = np.argsort(-np.diag(hessian), kind="stable")
    hessian = hessian[np.ix_(order, order)]
    real = target[order] / scale
    if method != "none":
        real = _constrain_real(real, method, budget)
    inverse = np.linalg.inv(hessian)
    upper = np.linalg.cholesky((inverse + inverse.T) / 2).T
    codes = np.zeros((count, channels), dtype=np.int64)
    positive = np.full(channels, float(budget))
    negative = np.full(channels, float(budget))
    for k in range(count):
        code = np.clip(np.floor(real[k] + 0.5), -high, high)
        if method == "a2q":
            code = np.clip(code, -np.floor(positive), np.floor(positive))
            positive -= np.abs(code)
        elif method == "a2q+":
            code = np.clip(code, -np.floor(negative), np.floor(positive))
            positive -= np.maximum(code, 0.0)
            negative -= np.maximum(-code, 0.0)
        codes[k] = code
        error = (real[k] - code) / upper[k, k]
        real[k + 1:] -= np.outer(upper[k, k + 1:], error)
    result = np.empty_like(codes)
    result[order] = codes
    return result


def axe_quantize(weights, scale, bits, method, accumulator_bits, input_bits, input_signed,
                 float_inputs, quantized_inputs, mask=None, per_channel=True, pow2=False,
                 candidate=None):
    """Quantize ``weights`` row by row with error feedback under the ``method`` bound.

    Parameters
    ----------
    weights : array_like of float, shape (K, N)
    scale : array_like of float, shape (N,)
        The plain scale of each channel (the first candidate).
    bits : int
        Weight bits, 2..8.
    method : str
        ``"none"`` (GPTQ with no bound), ``"a2q"`` or ``"a2q+"``.
    accumulator_bits, input_bits, input_signed
        ``P`` and the input codes, as for :func:`~systolix.sw.a2q.weight_budget`.
    float_inputs, quantized_inputs : array_like of float, shape (n, K)
        The layer's calibration inputs in the float model and in the quantized model (real
        values of its centred input codes), row for row.
    mask : array_like of bool, shape (K, N), optional
        Where a weight may be nonzero (a grouped convolution's group mask); all by default.
    per_channel, pow2
        One scale per channel or one factor for the tensor; power-of-two scales.
    candidate : tuple (codes, scale), optional
        Codes that meet the bound (each weight rounded on its own, for example) that a channel
        keeps where their output error is smaller.

    Returns
    -------
    codes : numpy.ndarray of int64, shape (K, N)
        Zero outside ``mask``; every channel meets the bound (:func:`~systolix.sw.a2q.meets_bound`).
    scale : numpy.ndarray of float64, shape (N,)
    """
    weights = np.asarray(weights, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    float_inputs = np.asarray(float_inputs, dtype=np.float64)
    quantized_inputs = np.asarray(quantized_inputs, dtype=np.float64)
    mask = np.ones(weights.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    high = (1 << (bits - 1)) - 1
    budget = (np.inf if method == "none" else
              feasible_budget(method, accumulator_bits, input_bits, input_signed))
    groups = np.unique(mask, axis=1)
    targets = np.zeros_like(weights)
    errors_of = []
    for pattern in groups.T:
        rows = np.flatnonzero(pattern)
        columns = np.flatnonzero((mask == pattern[:, None]).all(axis=0))
        target, hessian = least_squares_target(float_inputs[:, rows], quantized_inputs[:, rows],
                                               weights[np.ix_(rows, columns)])
        targets[np.ix_(rows, columns)] = target
        errors_of.append((rows, columns, target, hessian))
    positive = np.maximum(targets, 0.0).sum(axis=0) / scale
    negative = np.maximum(-targets, 0.0).sum(axis=0) / scale
    needed = positive + negative if method == "a2q" else np.maximum(positive, negative)
    largest = float(np.max(needed, initial=0.0)) / budget
    steps = 1 if method == "none" or largest <= 1 else SCALE_STEPS
    best_codes = np.zeros(weights.shape, dtype=np.int64)
    best_scale = scale.copy()
    best_error = np.full(scale.shape, np.inf)
    trials = [(None, pow2_ceil(scale * factor) if pow2 else scale * factor)
              for factor in np.geomspace(1.0, max(1.0, largest), steps)]
    if candidate is not None:
        trials.append(candidate)
    for given, trial_scale in trials:
        codes = np.zeros(weights.shape, dtype=np.int64)
        error = np.zeros(scale.shape)
        for rows, columns, target, hessian in errors_of:
            part = (given[np.ix_(rows, columns)] if given is not None else
                    _gptq(target, hessian, trial_scale[columns], high, method, budget))
            codes[np.ix_(rows, columns)] = part
            residual = target - trial_scale[columns] * part
            error[columns] = np.einsum("kc,kj,jc->c", residual, hessian, residual)
        if not per_channel:
            error = np.full(scale.shape, error.sum())
        better = error < best_error
        best_codes[:, better] = codes[:, better]
        best_scale[better] = trial_scale[better]
        best_error[better] = error[better]
    if method != "none":
        assert meets_bound(best_codes, method, accumulator_bits, input_bits,
                           input_signed).all()
    return best_codes, best_scale
