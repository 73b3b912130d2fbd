"""The quantization report: digits test accuracy against accumulator width, as a table and a plot.

For each width ``b`` (weights and activations ``Wb/Ab``) and each accumulator width ``P`` the
digits MLP is quantized five ways and lowered to an integer program, which the bit-exact golden
model runs on the test split with a ``P``-bit wrap-around accumulator:

- **naive**: plain rounding, no constraint; sums that leave ``P`` bits wrap around.
- **A2Q** and **A2Q+ (projection)**: each channel's rounded weights projected onto the bound for
  ``P`` (:mod:`systolix.sw.a2q`), so nothing wraps.
- **A2Q+ (AXE-style)**: rounded row by row with error feedback within the bound
  (:mod:`systolix.sw.axe`).
- **A2Q+ (training)**: fine-tuned with A2Q+'s weights (:mod:`systolix.sw.finetune`), the mean of
  the runs of :data:`TRAINING_SEEDS` (the only row with randomness).

Alongside: the float model, and the plain integer model with an unlimited (32-bit) accumulator.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from systolix.files import atomic_write, png_figure
from systolix.sim.golden.program import run_program

from .a2q import min_accumulator_bits, min_feasible_accumulator_bits
from .finetune import EPOCHS, finetune
from .lower import lower
from .models import accuracy
from .qmodel import quantize

__all__ = ["METHOD_LABELS", "BREVITAS", "BREVITAS_BITS", "TRAINING_SEEDS", "program_accuracy",
           "Sweep", "sweep", "write_report"]

# The rows of the table: how the weights of each are quantized, and its label.
METHOD_LABELS = {"none": "naive (wrap)", "a2q": "A2Q", "a2q+": "A2Q+ (projection)",
                 "a2q+ axe": "A2Q+ (AXE-style)", "a2q+ training": "A2Q+ (training)"}

BREVITAS = {
    "A2Q+ training, Euclidean-projection init (5 seeds)": (0.823, 0.956, 0.967, 0.969, 0.967),
    "A2Q+ training, default init (2 seeds)": (0.410, 0.946, 0.971, 0.968, 0.963),
    "A2Q training, Euclidean-projection init (5 seeds)": (0.196, 0.825, 0.947, 0.957, 0.959)}
"""Brevitas' quantization-aware training of the same MLP on the same split, W4 weights and
unsigned 4-bit activations, test accuracy at ``P = 8..12`` (issue 17; its float model 96.8 %):
the figures the digits MLP's accumulator-aware methods are measured against."""

BREVITAS_BITS = (8, 9, 10, 11, 12)
"""The ``P`` of each figure of :data:`BREVITAS`."""

TRAINING_SEEDS = (0, 1)
"""The seeds of the fine-tuning runs whose mean is the training row."""


def program_accuracy(program, x, labels):
    """Accuracy of an integer program run by the golden model on real inputs ``x``."""
    outputs = run_program(program, program.encode_input(x))
    return accuracy(np.argmax(outputs, axis=1), labels)


@dataclass(frozen=True)
class Sweep:
    """Test accuracies of a sweep.

    Parameters
    ----------
    widths : tuple of int
        ``b`` of each ``Wb/Ab`` configuration.
    accumulator_bits : tuple of int
        The ``P`` of each column.
    float_accuracy : float
    unlimited : dict
        ``b`` to the accuracy of the plain integer program with a 32-bit accumulator.
    accuracy : dict
        ``(b, method)`` (``method`` a key of :data:`METHOD_LABELS`) to one accuracy per ``P``
        (``None`` where ``P`` admits no nonzero weight under that method, or is too narrow for
        a pooling layer's sums); the training row is the mean over :attr:`seeds`.
    seeds : tuple of int
        The fine-tuning seeds.
    """

    widths: tuple
    accumulator_bits: tuple
    float_accuracy: float
    unlimited: dict
    accuracy: dict
    seeds: tuple = TRAINING_SEEDS

    @property
    def methods(self):
        """The rows measured, in the order of :data:`METHOD_LABELS`."""
        return tuple(method for method in METHOD_LABELS
                     if (self.widths[0], method) in self.accuracy)

    def markdown(self):
        """One Markdown table per width, accuracies in percent."""
        header = "| method | " + " | ".join(f"P={p}" for p in self.accumulator_bits) + " |"
        rule = "|---" * (len(self.accumulator_bits) + 1) + "|"
        parts = [f"Float: {100 * self.float_accuracy:.1f} %."]
        for bits in self.widths:
            parts.append(f"\n### W{bits}/A{bits} (unlimited accumulator: "
                         f"{100 * self.unlimited[bits]:.1f} %)\n\n{header}\n{rule}")
            parts.append("| float | " + " | ".join(
                f"{100 * self.float_accuracy:.1f}" for _ in self.accumulator_bits) + " |")
            for method in self.methods:
                cells = ("-" if value is None else f"{100 * value:.1f}"
                         for value in self.accuracy[bits, method])
                parts.append(f"| {METHOD_LABELS[method]} | " + " | ".join(cells) + " |")
        return "\n".join(parts)

    def plot(self, path):
        """Write a PNG with one panel per width: accuracy against ``P``."""
        with png_figure(path, 1, len(self.widths), figsize=(4.5 * len(self.widths), 4),
                        sharey=True, squeeze=False) as (_, axes):
            for axis, bits in zip(axes[0], self.widths):
                for method in self.methods:
                    values = [np.nan if v is None else 100 * v
                              for v in self.accuracy[bits, method]]
                    axis.plot(self.accumulator_bits, values, marker="o",
                              label=METHOD_LABELS[method])
                axis.axhline(100 * self.float_accuracy, color="black", linestyle="--",
                             label="float")
                axis.axhline(100 * self.unlimited[bits], color="grey", linestyle=":",
                             label="integer, unlimited P")
                axis.set_title(f"W{bits}/A{bits}")
                axis.set_xlabel("accumulator bits P")
                axis.grid(alpha=0.3)
            axes[0][0].set_ylabel("digits test accuracy (%)")
            axes[0][0].legend(loc="lower right", fontsize="small")


def _quantized(model, data, bits, width, method, overflow, seed, epochs):
    """The quantized model of one cell of the sweep (``method`` a key of
    :data:`METHOD_LABELS`)."""
    if method == "a2q+ training":
        return finetune(model, data.x_train, data.y_train, bits, bits, width, epochs, seed,
                        overflow)
    constraint, _, rounding = method.partition(" ")
    return quantize(model, data.x_train, bits, bits, width, constraint, overflow,
                    rounding=rounding or "nearest")


def sweep(model, data, widths=(4, 2, 8), accumulator_bits=range(8, 21), overflow="wrap",
          methods=None, seeds=TRAINING_SEEDS, epochs=EPOCHS):
    """Accuracy of every method's integer program for every width and ``P``.

    Parameters
    ----------
    model : FloatModel
    data : DigitsSplit
        Calibration and fine-tuning on ``x_train``, accuracy on ``x_test``.
    widths : sequence of int
        Weight and activation bits of each configuration, 2..8.
    accumulator_bits : sequence of int
        The accumulator widths ``P``, 2..32.
    overflow : str
        What the accumulators do: ``"wrap"`` or ``"saturate"`` (it matters to the naive
        programs only).
    methods : sequence of str, optional
        Keys of :data:`METHOD_LABELS`; by default all of them.
    seeds : sequence of int
        Fine-tuning seeds: the training row is the mean of their accuracies.
    epochs : int
        Fine-tuning epochs.

    Returns
    -------
    Sweep
    """
    widths, accumulator_bits, seeds = tuple(widths), tuple(accumulator_bits), tuple(seeds)
    if methods is None:
        methods = list(METHOD_LABELS)
    float_accuracy = accuracy(model.predict(data.x_test), data.y_test)
    unlimited, accuracies = {}, {}
    for bits in widths:
        plain = quantize(model, data.x_train, bits, bits)
        unlimited[bits] = program_accuracy(lower(plain), data.x_test, data.y_test)
        for method in methods:
            constraint = method.split(" ")[0]
            # A2Q and A2Q+: the least P with room for a nonzero weight in every learned layer
            # and for the sums of every average pooling layer (whose weights they do not
            # constrain); max pooling adds nothing.
            least = 2 if constraint == "none" else max(
                min_feasible_accumulator_bits(constraint, layer.input.bits, layer.input.signed)
                if index in model.learned else
                min_accumulator_bits(layer.weight_codes, layer.input.bits, layer.input.signed)
                for index, layer in enumerate(plain.layers)
                if model.gemm(index)[1] is not None)
            row = []
            for width in accumulator_bits:
                if width < least:
                    row.append(None)
                    continue
                runs = seeds if method == "a2q+ training" else seeds[:1]
                row.append(float(np.mean([program_accuracy(
                    lower(_quantized(model, data, bits, width, method, overflow, seed, epochs)),
                    data.x_test, data.y_test) for seed in runs])))
            accuracies[bits, method] = tuple(row)
    return Sweep(widths, accumulator_bits, float_accuracy, unlimited, accuracies, seeds)


def write_report(folder, result, mixed=None):
    """Write ``report.md`` and ``accuracy.png`` for a :class:`Sweep` into ``folder``.

    ``mixed``, a :class:`~systolix.sw.mixed.MixedPrecision`, adds its table. Returns the paths.
    """
    folder = Path(folder)
    text = ["# Quantization report: digits MLP", "",
            "Test accuracy (%) of the integer program run bit-exactly by the golden model, "
            "against the accumulator width P. Naive: plain rounding, sums wrap around at P "
            "bits. A2Q, A2Q+: weights constrained so that no partial sum can leave P bits "
            "(projection: each channel projected onto the bound; AXE-style: rounded input by "
            "input with error feedback; training: A2Q+ fine-tuning, the mean of "
            f"{len(result.seeds)} seeds); '-': P admits no nonzero weight.", "",
            result.markdown(), "",
            "![accuracy against accumulator width](accuracy.png)", ""]
    if mixed is not None:
        text += ["## Mixed precision", "", mixed.table(), ""]
    markdown, plot = folder / "report.md", folder / "accuracy.png"
    result.plot(plot)
    atomic_write(markdown, lambda file: file.write("\n".join(text).encode()))
    return markdown, plot
