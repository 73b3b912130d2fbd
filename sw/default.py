"""The workloads: the array of ``make sim`` and the embedded digits models quantized for an
array's accumulator.

Not a command-line module: the simulator's CLI (``systolix sim``), the board builds
(``systolix bitstream``, :mod:`systolix.boards`) and the tests take the workloads from here.
"""

from systolix.config import DEFAULT_CONFIG
from systolix.memory_map import MemoryConfig

from .lower import lower
from .models import accuracy, digits_cnn, digits_mlp
from .qmodel import quantize

__all__ = ["WORKLOADS", "WORKLOAD_OPTIONS", "WORKLOAD_MEMORIES", "GOLDEN_WORKLOADS",
           "workload_model", "default_program", "golden_only"]

WORKLOADS = {
    "digits-mlp": "digits MLP 64-64-32-10",
    "digits-cnn": "digits CNN conv3x3(16)-conv3x3/2(32)-GAP-dense10",
}
"""The embedded workloads, by name, and their descriptions."""

WORKLOAD_OPTIONS = {
    "digits-mlp": {},
    # The quantizers of its W4/A4 fine-tuning: weights scaled to their largest magnitude,
    # activations to their calibrated range (the learned ReLU bounds).
    "digits-cnn": {"weight_clipping": "max", "activation_clipping": "max"},
}
"""The options of :func:`~systolix.sw.qmodel.quantize` each workload is quantized with."""

WORKLOAD_MEMORIES = {
    "digits-mlp": MemoryConfig(),
    # An 8x8 map is 64 output positions an image, and the first convolution's output 2 words a
    # pixel: 16 images a run fill 1024 accumulator vectors and 2048 activation words (the
    # default depths hold 2 images). 8192 weight words hold it on arrays down to 4x4.
    "digits-cnn": MemoryConfig(weight_words=8192, activation_words=2048, batch=1024),
}
"""The memory depths each workload is simulated with (``systolix sim``)."""


GOLDEN_WORKLOADS = {
    "digits-vit": "digits ViT: 16 patches of 2x2, width 32, 2 heads, 2 pre-LN blocks "
                  "(integer-only golden model: systolix.sw.vit)",
}
"""The embedded workloads the golden model runs but the engine does not yet (attention:
products of two activations, softmax, LayerNorm), by name."""


def golden_only(workload, option="--workload"):
    """Raise :class:`ValueError` (one line naming ``option``) if ``workload`` is one of
    :data:`GOLDEN_WORKLOADS`, which no accelerator runs yet."""
    if workload in GOLDEN_WORKLOADS:
        raise ValueError(f"{option} {workload}: the engine does not run attention yet "
                         f"(products of two activations, softmax, LayerNorm); allowed: "
                         f"{', '.join(WORKLOADS)} (the integer-only golden model of {workload} "
                         f"runs in systolix bench)")


def workload_model(workload="digits-mlp"):
    """The float model of a workload of :data:`WORKLOADS` and its digits split."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, not {workload!r}")
    return digits_mlp() if workload == "digits-mlp" else digits_cnn()


def default_program(config=DEFAULT_CONFIG, workload="digits-mlp"):
    """An embedded model (by default the digits MLP), W/A of ``config``, A2Q+ for the
    accumulator of ``config``, with the workload's :data:`WORKLOAD_OPTIONS`; returns
    ``(program, data, float accuracy)``."""
    golden_only(workload, "workload")
    model, data = workload_model(workload)
    quantized = quantize(model, data.x_train, config.weight_bits, config.activation_bits,
                         accumulator_bits=config.accumulator_bits, method="a2q+",
                         overflow=config.overflow, **WORKLOAD_OPTIONS[workload])
    return lower(quantized), data, accuracy(model.predict(data.x_test), data.y_test)
