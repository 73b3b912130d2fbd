"""The workloads: the array of ``make sim`` and the embedded digits models quantized for an
array's accumulator.

Not a command-line module: the simulator's CLI (``systolix sim``), the board builds
(``systolix bitstream``, :mod:`systolix.boards`) and the tests take the workloads from here.
"""

from systolix.config import DEFAULT_CONFIG, ArrayConfig
from systolix.memory_map import MemoryConfig

from .lower import lower
from .models import accuracy, digits_cnn, digits_mlp, digits_vit
from .qmodel import quantize
from .vit import dequantize_first_accuracy, lower_vit

__all__ = ["WORKLOADS", "WORKLOAD_OPTIONS", "WORKLOAD_MEMORIES", "WORKLOAD_CONFIGS",
           "VIT_WORKLOADS", "VIT_BITS", "workload_model", "default_program",
           "reference_accuracy"]

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
    # 96 activation words per image and buffer on 16 rows (the residual stream, the queries,
    # keys and values of one block alive at once, 32 words each), 32 rows an image in the
    # softmax layers (16 tokens, 2 heads; the matmul layers run head by head, 17 vectors a
    # pass): 16 images a run. The embedding's 2048 weight words (64 x 512, a block of columns
    # per token) and 1,536 others; 31 layer records; the LayerNorm layers' constants (two words
    # a channel) with the requantization words.
    "digits-vit": MemoryConfig(weight_words=4096, requant_words=2048, program_words=1024,
                               activation_words=2048, batch=512),
}
"""The memory depths each workload is simulated with (``systolix sim``)."""

WORKLOAD_CONFIGS = {
    # 16x16: the ViT's width (32) is two K tiles, a head (16 codes) one, the 16 tokens one N
    # tile of K^T and of V (a matmul needs a square array). W5s: a matmul's stationary operand
    # is b - zb, unsigned 4-bit activation codes less their zero point (-15..15), on the
    # array's signed weight path; the weights are W4s. A8s: the buffers hold the signed 8-bit
    # codes between the products (residual stream, scores, the MLP's hidden layer) and the
    # 4-bit unsigned operands. P16: no product of the W4/A4 program can overflow it (the head,
    # 512 inputs, needs 15 bits; the matmuls 13; lower_vit refuses a narrower one).
    "digits-vit": ArrayConfig(rows=16, cols=16, weight_bits=5, weight_signed=True,
                              activation_bits=8, activation_signed=True, accumulator_bits=16),
}
"""The array each workload is simulated on by default (``systolix sim`` without ``--config``
or ``--board``); :data:`~systolix.config.DEFAULT_CONFIG` for the others."""

VIT_BITS = (4, 4)
"""The digits ViT's weight and activation bits (its program's product operands; the codes
between the products are 8-bit)."""


VIT_WORKLOADS = {
    "digits-vit": "digits ViT: 16 patches of 2x2, width 32, 2 heads, 2 pre-LN blocks "
                  "(integer-only: systolix.sw.vit)",
}
"""The embedded vision transformers, by name: lowered integer-only (attention's products of
two activations among their layers), simulated on their :data:`WORKLOAD_CONFIGS` array."""


def workload_model(workload="digits-mlp"):
    """The float model of a workload of :data:`WORKLOADS` and its digits split."""
    if workload not in WORKLOADS:
        raise ValueError(f"workload must be one of {', '.join(WORKLOADS)}, not {workload!r}")
    return digits_mlp() if workload == "digits-mlp" else digits_cnn()


def default_program(config=DEFAULT_CONFIG, workload="digits-mlp"):
    """An embedded model (by default the digits MLP), W/A of ``config``, A2Q+ for the
    accumulator of ``config``, with the workload's :data:`WORKLOAD_OPTIONS`; the digits ViT
    integer-only (:func:`~systolix.sw.vit.lower_vit`) at :data:`VIT_BITS`, accumulating as
    ``config`` does; returns ``(program, data, float accuracy)``."""
    if workload in VIT_WORKLOADS:
        model, data = digits_vit()
        program = lower_vit(model, data.x_train, *VIT_BITS,
                            accumulator_bits=config.accumulator_bits, overflow=config.overflow)
        return program, data, accuracy(model.predict(data.x_test), data.y_test)
    model, data = workload_model(workload)
    quantized = quantize(model, data.x_train, config.weight_bits, config.activation_bits,
                         accumulator_bits=config.accumulator_bits, method="a2q+",
                         overflow=config.overflow, **WORKLOAD_OPTIONS[workload])
    return lower(quantized), data, accuracy(model.predict(data.x_test), data.y_test)


def reference_accuracy(workload):
    """The test accuracy of a workload's "dequantize before every matmul" model at its bits
    (:func:`~systolix.sw.vit.dequantize_first_accuracy`: the digits ViT at
    :data:`VIT_BITS`), ``None`` for a workload without one."""
    if workload not in VIT_WORKLOADS:
        return None
    model, data = digits_vit()
    return dequantize_first_accuracy(model, data, *VIT_BITS)
