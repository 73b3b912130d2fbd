"""The quantization report: digits test accuracy against accumulator width, as a table and a plot.

For each width ``b`` (weights and activations ``Wb/Ab``) and each accumulator width ``P`` the
digits MLP is quantized three ways and lowered to an integer program, which the bit-exact golden
model runs on the test split with a ``P``-bit wrap-around accumulator:

- **naive**: plain rounding, no constraint; sums that leave ``P`` bits wrap around.
- **A2Q** and **A2Q+**: the weights meet the bound for ``P``, so nothing wraps.

Alongside: the float model, and the plain integer model with an unlimited (32-bit) accumulator.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from systolix.sim.golden.program import run_program

from .a2q import min_accumulator_bits, min_feasible_accumulator_bits
from systolix.files import atomic_write, png_figure
from .lower import lower
from .models import accuracy
from .qmodel import quantize

__all__ = ["METHOD_LABELS", "program_accuracy", "Sweep", "sweep", "write_report"]

# Quantization method of each row of the table, and its label.
METHOD_LABELS = {"none": "naive (wrap)", "a2q": "A2Q", "a2q+": "A2Q+"}


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
        ``(b, method)`` to one accuracy per ``P`` (``None`` where ``P`` admits no nonzero
        weight under that method, or is too narrow for a pooling layer's sums).
    """

    widths: tuple
    accumulator_bits: tuple
    float_accuracy: float
    unlimited: dict
    accuracy: dict

    def markdown(self):
        """One Markdown table per width, accuracies in percent."""
        header = "| method | " + " | ".join(f"P={p}" for p in self.accumulator_bits) + " |"
        rule = "|---" * (len(self.accumulator_bits) + 1) + "|"
        parts = [f"Float: {100 * self.float_accuracy:.1f} %."]
        for bits in self.widths:
            parts.append(f"\n### W{bits}/A{bits} (unlimited accumulator: "
                         f"{100 * self.unlimited[bits]:.1f} %)\n\n{header}\n{rule}")
            for method, label in METHOD_LABELS.items():
                cells = ("-" if value is None else f"{100 * value:.1f}"
                         for value in self.accuracy[bits, method])
                parts.append(f"| {label} | " + " | ".join(cells) + " |")
        return "\n".join(parts)

    def plot(self, path):
        """Write a PNG with one panel per width: accuracy against ``P``."""
        with png_figure(path, 1, len(self.widths), figsize=(4.5 * len(self.widths), 4),
                        sharey=True, squeeze=False) as (_, axes):
            for axis, bits in zip(axes[0], self.widths):
                for method, label in METHOD_LABELS.items():
                    values = [np.nan if v is None else 100 * v
                              for v in self.accuracy[bits, method]]
                    axis.plot(self.accumulator_bits, values, marker="o", label=label)
                axis.axhline(100 * self.float_accuracy, color="black", linestyle="--",
                             label="float")
                axis.axhline(100 * self.unlimited[bits], color="grey", linestyle=":",
                             label="integer, unlimited P")
                axis.set_title(f"W{bits}/A{bits}")
                axis.set_xlabel("accumulator bits P")
                axis.grid(alpha=0.3)
            axes[0][0].set_ylabel("digits test accuracy (%)")
            axes[0][0].legend(loc="lower right", fontsize="small")


def sweep(model, data, widths=(4, 2, 8), accumulator_bits=range(8, 21), overflow="wrap"):
    """Accuracy of naive, A2Q and A2Q+ integer programs for every width and ``P``.

    Parameters
    ----------
    model : FloatModel
    data : DigitsSplit
        Calibration on ``x_train``, accuracy on ``x_test``.
    widths : sequence of int
        Weight and activation bits of each configuration, 2..8.
    accumulator_bits : sequence of int
        The accumulator widths ``P``, 2..32.
    overflow : str
        What the naive programs' accumulators do: ``"wrap"`` or ``"saturate"``.

    Returns
    -------
    Sweep
    """
    widths, accumulator_bits = tuple(widths), tuple(accumulator_bits)
    float_accuracy = accuracy(model.predict(data.x_test), data.y_test)
    unlimited, accuracies = {}, {}
    for bits in widths:
        plain = quantize(model, data.x_train, bits, bits)
        unlimited[bits] = program_accuracy(lower(plain), data.x_test, data.y_test)
        for method in METHOD_LABELS:
            # A2Q and A2Q+: the least P with room for a nonzero weight in every learned layer
            # and for the sums of every average pooling layer (whose weights they do not
            # constrain); max pooling adds nothing.
            least = 2 if method == "none" else max(
                min_feasible_accumulator_bits(method, layer.input.bits, layer.input.signed)
                if index in model.learned else
                min_accumulator_bits(layer.weight_codes, layer.input.bits, layer.input.signed)
                for index, layer in enumerate(plain.layers)
                if model.gemm(index)[1] is not None)
            row = []
            for width in accumulator_bits:
                if width < least:
                    row.append(None)
                    continue
                quantized = quantize(model, data.x_train, bits, bits, width, method, overflow)
                row.append(program_accuracy(lower(quantized), data.x_test, data.y_test))
            accuracies[bits, method] = tuple(row)
    return Sweep(widths, accumulator_bits, float_accuracy, unlimited, accuracies)


def write_report(folder, result, mixed=None):
    """Write ``report.md`` and ``accuracy.png`` for a :class:`Sweep` into ``folder``.

    ``mixed``, a :class:`~systolix.sw.mixed.MixedPrecision`, adds its table. Returns the paths.
    """
    folder = Path(folder)
    text = ["# Quantization report: digits MLP", "",
            "Test accuracy (%) of the integer program run bit-exactly by the golden model, "
            "against the accumulator width P. Naive: plain rounding, sums wrap around at P "
            "bits. A2Q, A2Q+: weights constrained so that no partial sum can leave P bits; "
            "'-': P admits no nonzero weight.", "", result.markdown(), "",
            "![accuracy against accumulator width](accuracy.png)", ""]
    if mixed is not None:
        text += ["## Mixed precision", "", mixed.table(), ""]
    markdown, plot = folder / "report.md", folder / "accuracy.png"
    result.plot(plot)
    atomic_write(markdown, lambda file: file.write("\n".join(text).encode()))
    return markdown, plot
