"""A2Q+ quantization-aware fine-tuning of a float model: dense, convolution and pooling layers
(numpy).

Colbert et al. (2024, "A2Q+: improving accumulator-aware weight quantization") train each
output channel's weights in the form

    ``w = g * (v - mean(v)) / ||v - mean(v)||_1``,  ``g <= s * (2^P - 2) / (2^N - 1)``

(weight normalisation, zero-centred: ``pos_c == neg_c == g / 2``; ``s`` the channel's weight
scale, ``N`` the input bits) and quantize them to ``q = clip(trunc(w / s), -Q, Q)``. Rounding
toward zero and clipping never increase a magnitude, so every channel of every step's codes
meets ``max(pos_c, neg_c) <= (2^(P-1) - 1) / (2^N - 1)``, the A2Q+ condition of
:func:`~systolix.sw.a2q.meets_bound`: the data-free bound for unsigned inputs holds throughout
training, not only at its end.

:func:`finetune` starts from the post-training model of :func:`~systolix.sw.qmodel.quantize`
(``method="a2q+"``): its input quantizer, its weight scales and the float biases. Parameters are
in code units: ``v`` and ``r = g / s`` (capped at ``(2^P - 2) / (2^N - 1)``), with ``log s``
trained separately, so the direction, the norm and the scale of the weights train at the same
pace. Initialisation (A2Q+'s Euclidean projection): ``v`` the projection of the zero-centred
real codes ``(w - mean(w)) / s`` onto the L1 ball of the cap, ``r`` its norm; ``s`` is searched
per channel (1/4 to 4 times the post-training scale) for the truncated codes closest to the
weights, as a projection at a fine scale truncates to zero.

Training: the forward pass of the quantized model (weights and every layer's input codes
fake-quantized; straight-through estimators, zero gradient where a code is clipped), softmax
cross-entropy on the training split against half the label and half the float model's
softmax (distillation from the model being quantized), Adam (learning rate 0.003, cosine
decay, batches of 64, seeded shuffles). Before every epoch each hidden layer's input quantizer
is calibrated on the fake-quantized model's own activations (as
:func:`~systolix.sw.qmodel.quantize` calibrates on the float model's): a tight bound shrinks the
weights, and the activations with them. The output quantizer is calibrated at the end.
The result is a :class:`~systolix.sw.qmodel.QuantizedModel`
with those codes and quantizers, which :func:`~systolix.sw.lower.lower` turns into an
:class:`~systolix.sw.program.IntegerProgram` like any other.

Every layer is a GEMM on the patches of its input map (:meth:`~systolix.sw.models.FloatModel.gemm`,
im2col): a convolution's weights are a ``(K, N)`` matrix, ``K = kh * kw * c_in``, trained like a
dense layer's, the A2Q+ bound per output channel over its ``K`` rows (a grouped convolution's
mean and norm over the rows of its group, the others zero). Backward: to the weights
``patches^T @ grad``, to the input ``grad @ W^T`` added back into the map by
:func:`~systolix.sw.models.unpatch` (the transpose of im2col); average pooling through its
fixed matrix, max pooling to the largest entry of each window.

The digits MLP (64-64-32-10, 1437 training images) fine-tunes for 100 epochs in a few seconds,
the digits CNN in about 90 s of CPU time.
"""

import dataclasses

import numpy as np

from systolix.config import check_int

from .a2q import a2q_plus_l1_limit, least_error, meets_bound, project_l1_ball
from .models import FloatModel, patches, unpatch
from .qmodel import QuantizedMaxPool, QuantizedModel, fold_clip, layer_from_codes, quantize
from .quant import activation_params

__all__ = ["EPOCHS", "DISTILLATION", "finetune"]

EPOCHS = 100
"""Epochs of :func:`finetune` by default."""

_BATCH = 64
_RATE = 3e-3

DISTILLATION = 0.5
"""The weight of the float model's softmax in the training target of :func:`finetune`."""


def _centre(v, mask):
    """``v`` minus each channel's mean over its rows of ``mask`` (a grouped convolution's rows
    inside the channel's group; every row of a dense layer), zero outside them."""
    return (v - (v * mask).sum(axis=0) / mask.sum(axis=0)) * mask


def _weights(v, r, log_s, limit, high, mask):
    """One layer's A2Q+ weights: the fake-quantized weights ``s q``, the codes ``q`` and what
    the backward pass needs. ``v`` and ``r = g / s`` are in units of the scale (codes), so the
    weights' direction and their scale train at the same pace; ``mask`` (K, N) the rows of each
    channel (zero outside a grouped convolution's group)."""
    s = np.exp(log_s)
    centred = _centre(v, mask)
    norm = np.maximum(np.abs(centred).sum(axis=0), 1e-12)
    u = centred / norm
    capped = r >= limit
    gain = np.minimum(r, limit)
    z = gain * u
    inside = np.abs(z) < high
    q = np.clip(np.trunc(z), -high, high)
    return s * q, q.astype(np.int64), (s, centred, norm, u, capped, gain, inside, q, mask)


def _weight_gradients(grad_wq, cache):
    """Gradients of ``v``, ``r`` and ``log s`` from that of the fake-quantized weights
    (straight through the rounding, zero where a code is clipped)."""
    s, centred, norm, u, capped, gain, inside, q, mask = cache
    grad_z = s * grad_wq * inside
    grad_log_s = s * np.sum(grad_wq * q, axis=0)
    grad_r = np.where(capped, 0.0, np.sum(grad_z * u, axis=0))
    grad_u = gain * grad_z
    grad_centred = (grad_u - np.sign(centred) * np.sum(grad_u * centred, axis=0) / norm) / norm
    return _centre(grad_centred, mask), grad_r, grad_log_s


def _fake_quantize(values, params):
    """Real values of the codes of ``values`` and the straight-through mask (inside the codes)."""
    real = values / params.scale + params.zero_point
    codes = np.clip(np.floor(real + 0.5), params.low, params.high)
    return params.scale * (codes - params.zero_point), (real >= params.low) & (real <= params.high)


def _initial(weights, scale, limit, high, mask):
    """Euclidean-projection initialisation: per channel, ``v`` the projection of the
    zero-centred real codes ``(w - mean(w)) / s`` onto the L1 ball of radius ``limit``, and the
    scale ``s`` among ``scale`` times 1/4..4 whose truncated codes are closest to the weights (a
    projection at a fine scale truncates to zero); the mean over each channel's rows of
    ``mask``."""
    centred = _centre(weights, mask)

    def trial(factor):
        candidate = scale * factor
        v = project_l1_ball(centred / candidate, limit)
        codes = np.clip(np.trunc(v), -high, high)
        return v, candidate, np.sum((weights - candidate * codes) ** 2, axis=0)

    return least_error(trial(factor) for factor in np.geomspace(0.25, 4.0, 17))


def _max_pool(window, inputs):
    """Max pooling's output ``(n * positions, channels)`` and the tap each output takes."""
    taps = window.kernel_height * window.kernel_width
    candidates = patches(window, inputs, -np.inf).reshape(-1, taps, window.channels)
    chosen = candidates.argmax(axis=1)
    return np.take_along_axis(candidates, chosen[:, None], axis=1)[:, 0], chosen


def _input_gradient(window, weights, chosen, error, count):
    """The gradient of a layer's input map ``(count, inputs)`` from that of its output
    ``error`` ``(count * positions, N)``: through the patches' matrix ``weights`` (``error @
    weights^T``), or for max pooling (``weights`` None) to the ``chosen`` tap of each window,
    then each patch entry added back to the input it reads (:func:`~.models.unpatch`)."""
    if weights is not None:
        return unpatch(window, error @ weights.T, count)
    taps = window.kernel_height * window.kernel_width
    spread = np.zeros((len(error), taps, window.channels))
    np.put_along_axis(spread, chosen[:, None], error[:, None], axis=1)
    return unpatch(window, spread.reshape(len(error), window.patch), count)


def finetune(model, x, labels, weight_bits=4, activation_bits=4, accumulator_bits=12,
             epochs=EPOCHS, seed=0, overflow="wrap", output_bits=8, activation_clipping="mse",
             activation_scheme="affine", distillation=DISTILLATION, **options):
    """A2Q+ quantization-aware fine-tuning of a float model for accumulator width ``P``.

    Parameters
    ----------
    model : FloatModel
        Dense and convolution layers (their weights trained), average and max pooling.
    x : array_like of float, shape (n, inputs)
        Training inputs (also the calibration of the starting point).
    labels : array_like of int, shape (n,)
    weight_bits, activation_bits, accumulator_bits, overflow, output_bits, \
activation_clipping, activation_scheme, **options
        As for :func:`~systolix.sw.qmodel.quantize` (``method="a2q+"``); the scales are
        learned, one per channel: ``pow2`` and ``per_channel=False`` are refused.
    epochs : int
        1..1000.
    seed : int
        Seeds the shuffles: the same seed gives the same model.
    distillation : float
        0..1: the target of the cross-entropy is ``(1 - distillation)`` times the one-hot
        label plus ``distillation`` times the float model's softmax (knowledge distillation
        from the model being quantized).

    Returns
    -------
    QuantizedModel
        ``method="a2q+"``; every learned layer's codes meet the A2Q+ bound for
        ``accumulator_bits``.
    """
    if not isinstance(model, FloatModel):
        raise ValueError(f"model must be a FloatModel, not {type(model).__name__}")
    check_int("epochs", epochs, 1, 1000)
    if not 0 <= distillation <= 1:
        raise ValueError(f"distillation must be a number in 0..1, not {distillation!r}")
    if options.get("pow2") or not options.get("per_channel", True):
        raise ValueError("fine-tuning learns one scale per channel; power-of-two scales "
                         "(pow2) and per-tensor scales (per_channel=False) are post-training "
                         "options")
    start = quantize(model, x, weight_bits, activation_bits, accumulator_bits, "a2q+", overflow,
                     output_bits, activation_clipping=activation_clipping,
                     activation_scheme=activation_scheme, **options)
    x = model.check_input(x)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(x),):
        raise ValueError(f"labels must have shape ({len(x)},), one per input, not "
                         f"{labels.shape}")
    # Per learned layer (by index): the cap of r, the largest code, each channel's rows and
    # the trained parameters v, r, log s and the bias.
    limits, highs, masks, params = {}, {}, {}, {}
    for index in model.learned:
        window, weight, bias = model.gemm(index)
        quantized = start.layers[index]
        limits[index] = a2q_plus_l1_limit(accumulator_bits, quantized.input.bits)
        highs[index] = (1 << (quantized.weight_bits - 1)) - 1
        masks[index] = (np.ones(weight.shape, dtype=bool) if window is None
                        else window.group_mask(weight.shape[1]))
        v, scale = _initial(weight, quantized.weight_scale, limits[index], highs[index],
                            masks[index])
        params[index] = [v, np.abs(_centre(v, masks[index])).sum(axis=0), np.log(scale),
                         bias.copy()]
    quantizers = [layer.input for layer in start.layers]

    def weights(index):
        return _weights(*params[index][:3], limits[index], highs[index], masks[index])

    def forward(values, caches=None, calibrate=False):
        """The fake-quantized model on ``values``; with ``caches`` a list, what the backward
        pass needs is appended. ``calibrate``: first set each hidden layer's input quantizer
        from the model's own activations, as :func:`~systolix.sw.qmodel.quantize` does from the
        float model's (a tight bound shrinks them far below the float model's); after max
        pooling, that of its input."""
        for index, layer in enumerate(model.layers):
            window, matrix, bias = model.gemm(index)
            if calibrate and index:
                quantizers[index] = quantizers[index - 1] if model.gemm(index - 1)[1] is None \
                    else fold_clip(activation_params(values, quantizers[index].bits,
                                                     activation_scheme, False,
                                                     activation_clipping),
                                   model.layers[index - 1].clip)
            inputs, mask = _fake_quantize(values, quantizers[index])
            cols, wq, cache = None, None, None
            if matrix is None:
                out, cache = _max_pool(window, inputs)
            else:
                cols = patches(window, inputs)
                if index in params:
                    wq, _, cache = weights(index)
                    bias = params[index][3]
                else:
                    wq = matrix
                out = cols @ wq + bias
            if caches is not None:
                caches.append((cols, mask, wq, cache, out))
            values = out.reshape(len(values), -1)
            values = np.maximum(values, 0.0) if layer.relu else values
        return values

    teacher = model.forward(x)
    teacher = np.exp(teacher - teacher.max(axis=1, keepdims=True))
    teacher = distillation * teacher / teacher.sum(axis=1, keepdims=True)
    states = {index: [np.zeros((2,) + p.shape) for p in layer]
              for index, layer in params.items()}
    rng = np.random.default_rng(seed)
    steps = epochs * (len(x) // _BATCH)
    t = 0
    for epoch in range(epochs):
        forward(x, calibrate=True)
        order = rng.permutation(len(x))
        for first in range(0, len(x) - _BATCH + 1, _BATCH):
            chosen = order[first:first + _BATCH]
            t += 1
            rate = _RATE * 0.5 * (1 + np.cos(np.pi * (t - 1) / steps))
            caches = []
            logits = forward(x[chosen], caches)
            logits = logits - logits.max(axis=1, keepdims=True)
            error = np.exp(logits)
            error /= error.sum(axis=1, keepdims=True)
            error -= teacher[chosen]
            error[np.arange(len(chosen)), labels[chosen]] -= 1.0 - distillation
            error /= len(chosen)
            for index in reversed(range(len(model.layers))):
                cols, mask, wq, cache, out = caches[index]
                error = error.reshape(out.shape)
                if model.layers[index].relu:
                    error = error * (out > 0)
                gradients = None
                if index in params:
                    gradients = (*_weight_gradients(cols.T @ error, cache), error.sum(axis=0))
                if index:
                    error = _input_gradient(model.gemm(index)[0], wq, cache, error,
                                            len(chosen)) * mask
                if gradients is None:
                    continue
                for param, gradient, state in zip(params[index], gradients, states[index]):
                    state[0] = 0.9 * state[0] + 0.1 * gradient
                    state[1] = 0.999 * state[1] + 0.001 * gradient ** 2
                    param -= (rate * state[0] / (1 - 0.9 ** t)
                              / (np.sqrt(state[1] / (1 - 0.999 ** t)) + 1e-8))
    logits = forward(x, calibrate=True)
    quantizers.append(activation_params(logits, output_bits, "symmetric", False, "max",
                                        name="output"))
    layers = []
    for index, quantized in enumerate(start.layers):
        window, matrix, bias = model.gemm(index)
        source, target = quantizers[index], quantizers[index + 1]
        if matrix is None:
            layers.append(QuantizedMaxPool(quantized.window, source))
            continue
        if window is not None:
            window = dataclasses.replace(window, pad_code=int(source.zero_point))
        if index in params:
            _, codes, (scale, *_) = weights(index)
            bias = params[index][3]
            assert meets_bound(codes, "a2q+", accumulator_bits, source.bits, False).all()
        else:
            # Average pooling: the codes and scales of quantize's.
            codes, scale = quantized.weight_codes, matrix.max(axis=0)
        layers.append(layer_from_codes(codes, scale, quantized.weight_bits, bias, source,
                                       target, quantized.relu, window))
    return QuantizedModel(tuple(layers), "a2q+", accumulator_bits, overflow)
