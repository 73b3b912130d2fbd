"""Benchmark figures of the quantization compiler, for ``make bench``.

:func:`run` times the compiler on the digits MLP and prints the accuracy table of the report.
"""

import time

from .lower import lower
from .mixed import search
from systolix.timing import best_time

from .models import digits_mlp
from .qmodel import quantize
from .report import program_accuracy, sweep

__all__ = ["run"]


def run(echo=print):
    """Time the compiler and measure accuracies; print them with ``echo`` and return them.

    Returns
    -------
    dict
        ``train_s`` (training the float MLP), ``quantize_lower_s`` (W4/A4, A2Q+ at P=12,
        quantize and lower), ``mixed_search_s`` (accuracy-drop target of one point),
        ``sweep_s``, ``float_accuracy``, ``a2q_plus_p12_accuracy`` (W4/A4) and ``sweep`` (the
        :class:`~systolix.sw.report.Sweep`).
    """
    start = time.perf_counter()
    model, data = digits_mlp()
    train = time.perf_counter() - start
    figures = {"train_s": train}

    def compile_program():
        return lower(quantize(model, data.x_train, 4, 4, 12, "a2q+"))

    figures["quantize_lower_s"] = best_time(compile_program)
    figures["mixed_search_s"] = best_time(lambda: search(
        model, data.x_train, max_accuracy_drop=0.01, validation=(data.x_train, data.y_train)))
    start = time.perf_counter()
    result = sweep(model, data)
    figures["sweep_s"] = time.perf_counter() - start
    figures["float_accuracy"] = result.float_accuracy
    figures["a2q_plus_p12_accuracy"] = program_accuracy(compile_program(), data.x_test,
                                                        data.y_test)
    figures["sweep"] = result
    echo(f"digits MLP: training {train:.2f} s, quantize + lower (W4/A4, A2Q+, P=12) "
         f"{figures['quantize_lower_s']:.3f} s, mixed-precision search "
         f"{figures['mixed_search_s']:.2f} s, accuracy sweep {figures['sweep_s']:.1f} s")
    echo(f"W4/A4 A2Q+ at P=12: {100 * figures['a2q_plus_p12_accuracy']:.1f} % "
         f"(float {100 * result.float_accuracy:.1f} %)")
    echo(result.markdown())
    return figures
