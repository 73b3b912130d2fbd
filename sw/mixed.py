"""Mixed precision in the manner of QuantuneV2: local metrics, then the cheapest per-layer widths.

One float calibration pass gives every learned layer's weights (a convolution's as its
``(kh * kw * c_in, c_out)`` matrix) and input activations. For each learned layer (dense or
convolution; pooling layers take the next one's width, :func:`~systolix.sw.qmodel.quantize`)
and each candidate width ``b`` the weights and the input activations are quantized to ``b``
bits and compared with the float values (SQNR and MSE; :func:`layer_metrics`): ``layers x
candidates`` quantizations, no retraining. A layer at width ``b`` quantizes both its weights
and its input activations to ``b`` bits; its combined SQNR adds the two noise powers
(relative to their signals): ``-10 log10(10^(-SQNR_w/10) + 10^(-SQNR_a/10))``.

:func:`search` then meets one target at the lowest cost, the weight memory in bits
(``sum_l K_l N_l b_l``), and checks it against a budget:

- ``min_sqnr``: every layer takes the narrowest width whose combined SQNR reaches the target
  (``layers x candidates`` comparisons, no model evaluation).
- ``max_accuracy_drop``: greedy descent from the widest widths. Each step narrows the layer whose
  next width loses the fewest dB per weight bit saved, keeps the step if the quantized model
  still meets the target on the validation data and retires that layer otherwise; at most
  ``layers x candidates`` model evaluations.
"""

from dataclasses import dataclass

import numpy as np

from systolix.config import check_int

from .models import FloatModel, accuracy
from .qmodel import quantize
from .quant import activation_params, sqnr_db, symmetric_params

__all__ = ["LayerMetrics", "MixedPrecision", "layer_metrics", "combined_sqnr", "search"]


@dataclass(frozen=True)
class LayerMetrics:
    """Quantization error of one layer at each candidate width.

    ``weight_sqnr[i]`` (dB), ``weight_mse[i]``, ``activation_sqnr[i]`` and
    ``activation_mse[i]`` belong to ``widths[i]``; ``weight_count`` is ``K * N`` (a
    convolution's matrix with the zeros outside its groups: what the weight memory holds).
    """

    widths: tuple
    weight_sqnr: tuple
    weight_mse: tuple
    activation_sqnr: tuple
    activation_mse: tuple
    weight_count: int

    def combined_sqnr(self, index):
        """The combined SQNR (dB) at ``widths[index]``."""
        return combined_sqnr(self.weight_sqnr[index], self.activation_sqnr[index])


def combined_sqnr(weight_sqnr, activation_sqnr):
    """``-10 log10(10^(-w/10) + 10^(-a/10))``: the SQNR when both noises add."""
    return float(-10.0 * np.log10(10.0 ** (-weight_sqnr / 10.0)
                                  + 10.0 ** (-activation_sqnr / 10.0)))


def layer_metrics(model, calibration, widths=(2, 3, 4, 5, 6, 7, 8), per_channel=True,
                  pow2=False, weight_clipping="mse", activation_clipping="mse",
                  activation_scheme="affine"):
    """SQNR and MSE of every layer's weights and input activations at each width.

    Parameters
    ----------
    model : FloatModel
    calibration : array_like of float, shape (n, inputs)
    widths : sequence of int
        Candidate widths, each 2..8, in increasing order.
    per_channel, pow2, weight_clipping, activation_clipping, activation_scheme
        The quantizer options, as for :func:`~systolix.sw.qmodel.quantize`.

    Returns
    -------
    tuple of LayerMetrics
        One per learned layer (:attr:`~systolix.sw.models.FloatModel.learned`).
    """
    if not isinstance(model, FloatModel):
        raise ValueError(f"model must be a FloatModel, not {type(model).__name__}")
    widths = tuple(widths)
    for bits in widths:
        check_int("widths", bits, 2, 8)
    if not widths or list(widths) != sorted(set(widths)):
        raise ValueError(f"widths must increase, not {widths}")
    values = model.layer_inputs(calibration)
    metrics = []
    for index in model.learned:
        weight, inputs = model.gemm(index)[1], values[index]
        rows = []
        for bits in widths:
            weights_q = symmetric_params(weight, bits, per_channel, pow2,
                                         weight_clipping).fake_quantize(weight)
            inputs_q = activation_params(inputs, bits, activation_scheme, pow2,
                                         activation_clipping).fake_quantize(inputs)
            rows.append((sqnr_db(weight, weights_q), float(np.mean((weight - weights_q) ** 2)),
                         sqnr_db(inputs, inputs_q), float(np.mean((inputs - inputs_q) ** 2))))
        columns = tuple(zip(*rows))
        metrics.append(LayerMetrics(widths, *columns, weight.size))
    return tuple(metrics)


@dataclass(frozen=True)
class MixedPrecision:
    """The result of :func:`search`.

    Parameters
    ----------
    widths : tuple of int
        Per learned layer: weight and input activation bits.
    weight_memory_bits : int
        ``sum_l K_l N_l widths[l]``.
    layer_sqnr : tuple of float
        Combined SQNR (dB) of each layer at its width.
    accuracy, float_accuracy : float or None
        On the validation data, when given: the quantized model's and the float model's.
    evaluations : int
        Quantized models evaluated on the validation data.
    metrics : tuple of LayerMetrics
    """

    widths: tuple
    weight_memory_bits: int
    layer_sqnr: tuple
    accuracy: object
    float_accuracy: object
    evaluations: int
    metrics: tuple

    def table(self):
        """The chosen widths and the metrics, as Markdown."""
        lines = ["| layer | weights | bits | weight SQNR dB | weight MSE | activation SQNR dB "
                 "| activation MSE | combined dB |", "|---" * 8 + "|"]
        for index, (bits, metric) in enumerate(zip(self.widths, self.metrics)):
            i = metric.widths.index(bits)
            lines.append(f"| {index} | {metric.weight_count} | {bits} | "
                         f"{metric.weight_sqnr[i]:.1f} | {metric.weight_mse[i]:.3g} | "
                         f"{metric.activation_sqnr[i]:.1f} | {metric.activation_mse[i]:.3g} | "
                         f"{self.layer_sqnr[index]:.1f} |")
        lines.append(f"\nweight memory: {self.weight_memory_bits} bits")
        if self.accuracy is not None:
            lines.append(f"accuracy: {self.accuracy:.4f} (float {self.float_accuracy:.4f}), "
                         f"{self.evaluations} evaluations")
        return "\n".join(lines)


def search(model, calibration, min_sqnr=None, max_accuracy_drop=None, validation=None,
           budget=None, widths=(2, 3, 4, 5, 6, 7, 8), **options):
    """The cheapest per-layer widths that meet one target, within a weight memory budget.

    Parameters
    ----------
    model : FloatModel
    calibration : array_like of float, shape (n, inputs)
    min_sqnr : float, optional
        Target: the least combined SQNR (dB) of every layer.
    max_accuracy_drop : float, optional
        Target: the most the accuracy on ``validation`` may fall below the float model's, as a
        fraction (0.01 is one point).
    validation : tuple (x, labels), optional
        Needed by ``max_accuracy_drop``; with ``min_sqnr`` it only adds the accuracy to the
        result.
    budget : int, optional
        The most weight memory, in bits.
    widths : sequence of int
        Candidate widths, 2..8, increasing.
    **options
        Passed to :func:`~systolix.sw.qmodel.quantize` (and the quantizer options among them to
        :func:`layer_metrics`).

    Returns
    -------
    MixedPrecision

    Raises
    ------
    ValueError
        When the target cannot be met, or not within the budget.
    """
    if (min_sqnr is None) == (max_accuracy_drop is None):
        raise ValueError("give exactly one target: min_sqnr or max_accuracy_drop")
    if max_accuracy_drop is not None and validation is None:
        raise ValueError("max_accuracy_drop needs validation data")
    metric_options = {name: options[name] for name in (
        "per_channel", "pow2", "weight_clipping", "activation_clipping", "activation_scheme")
        if name in options}
    metrics = layer_metrics(model, calibration, widths, **metric_options)
    widths = metrics[0].widths
    evaluations = 0
    float_accuracy = reached = None

    def evaluate(positions):
        choice = tuple(widths[i] for i in positions)
        quantized = quantize(model, calibration, choice, choice, **options)
        return accuracy(quantized.predict(validation[0]), validation[1])

    def loss_per_bit(index):
        """dB lost per weight bit saved by narrowing layer ``index`` one step."""
        metric, i = metrics[index], positions[index]
        saved = metric.weight_count * (widths[i] - widths[i - 1])
        return (metric.combined_sqnr(i) - metric.combined_sqnr(i - 1)) / saved

    if validation is not None:
        float_accuracy = accuracy(model.predict(validation[0]), validation[1])
    if min_sqnr is not None:
        positions = []
        for index, metric in enumerate(metrics):
            meeting = [i for i in range(len(widths)) if metric.combined_sqnr(i) >= min_sqnr]
            if not meeting:
                raise ValueError(f"min_sqnr={min_sqnr} dB is out of reach for layer {index}: "
                                 f"it reaches {metric.combined_sqnr(len(widths) - 1):.1f} dB "
                                 f"at {widths[-1]} bits")
            positions.append(meeting[0])
        if validation is not None:
            reached = evaluate(positions)
            evaluations = 1
    else:
        positions = [len(widths) - 1] * len(metrics)
        reached = evaluate(positions)
        evaluations = 1
        if float_accuracy - reached > max_accuracy_drop:
            raise ValueError(f"max_accuracy_drop={max_accuracy_drop} is out of reach: at "
                             f"{widths[-1]} bits the accuracy is {reached:.4f}, float "
                             f"{float_accuracy:.4f}")
        active = {index for index in range(len(metrics)) if positions[index] > 0}
        while active:
            index = min(active, key=loss_per_bit)
            trial = list(positions)
            trial[index] -= 1
            trial_accuracy = evaluate(trial)
            evaluations += 1
            if float_accuracy - trial_accuracy <= max_accuracy_drop:
                positions, reached = trial, trial_accuracy
                if positions[index] == 0:
                    active.discard(index)
            else:
                active.discard(index)
    choice = tuple(widths[i] for i in positions)
    memory = sum(metric.weight_count * bits for metric, bits in zip(metrics, choice))
    if budget is not None and memory > budget:
        raise ValueError(f"the target needs {memory} bits of weight memory, over the budget of "
                         f"{budget}")
    layer_sqnr = tuple(metric.combined_sqnr(widths.index(bits))
                       for metric, bits in zip(metrics, choice))
    return MixedPrecision(choice, memory, layer_sqnr, reached, float_accuracy,
                          evaluations, metrics)
