"""WAGE (Wu et al., 2018): training with integer weights, activations, gradients and errors.

``bits = (W, A, G, E)``, for example 2-8-8-8. Every value is a code of WAGE's quantizer
``Q(x, k)`` (:func:`~systolix.sw.quant.wage_quantize`): a ``k``-bit narrow signed integer worth
``2^(1-k)``. Here they are kept as those integers:

- **weights**: a ``G``-bit master code ``m`` per weight (updates have ``G`` bits); the forward
  and backward GEMMs use ``w = clamp(round(m * 2^(W-G)))``, ``Q(m, W)`` (ternary for ``W = 2``).
  Initialised uniformly in ``+-max(sqrt(6 / inputs), 1.5 * 2^(1-W))``, WAGE's ``L``.
- **activations** (``A`` bits): ``clamp(round(acc * 2^(1-W) / alpha))``, one right shift by
  ``W - 1 + log2(alpha)`` with WAGE's layer constant ``alpha = max(2^round(log2(L / L_init)),
  1)``; ReLU between layers. Inputs: pixel ``p`` is ``p / 16``, the code ``p * 2^(A-5)``.
- **errors** (``E`` bits): the loss interface (:func:`~systolix.sw.train.output_error`) gives the
  output error codes; each propagated error ``E W^T`` is masked by the ReLU and clamp
  derivatives and shifted right until its largest magnitude fits ``E`` bits (WAGE's
  ``Q_E``: scaling by a power of two of its maximum).
- **gradients** (``G`` bits): ``g = X^T E`` is shifted so its largest magnitude lies in
  ``[eta, 2 eta)`` (``eta``, an integer learning rate) and stochastically rounded (WAGE's
  ``Q_G``, seeded); ``m = clamp(m - g)`` in ``G`` bits.

All of it is integer arithmetic (shifts, clamps, the GEMMs of
:mod:`systolix.sw.train`), except the loss interface.
"""

import math

import numpy as np

from systolix.config import check_int

from .train import (BATCH, backward, bit_length, encode_pixels, export_program, high_code,
                    layer_forward, mlp, normalizing_shift, output_error, passes,
                    pixel_quantizer, shift, stochastic_shift, symmetric_range, training_gemms)

__all__ = ["DEFAULT_BITS", "parse_bits", "WageMLP", "wage_rate"]

DEFAULT_BITS = (2, 8, 8, 8)
"""WAGE 2-8-8-8: ternary weights, 8-bit activations, gradients and errors."""

_NAMES = ("W", "A", "G", "E")
_LOGIT_BITS = 3
"""An output code of ``A`` bits is worth ``2^(LOGIT_BITS - A + 1)`` in the loss: logits up to
about +-8."""


def parse_bits(text):
    """``"2-8-8-8"`` to ``(2, 8, 8, 8)``: four widths W-A-G-E, each 2..8."""
    parts = str(text).split("-")
    if len(parts) != 4 or not all(part.isdigit() and 2 <= int(part) <= 8 for part in parts):
        raise ValueError(f"must be four widths W-A-G-E, each an integer in 2..8, such as "
                         f"2-8-8-8, not {text!r}")
    return tuple(int(part) for part in parts)


def wage_rate(epoch, epochs):
    """WAGE's integer learning rate ``eta``: 4, then 2 for the last half of the epochs, 1 for
    the last quarter."""
    return 4 if epoch < epochs // 2 else 2 if epoch < 3 * epochs // 4 else 1


class WageMLP:
    """A network (the digits MLP by default) trained with WAGE.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the initial master weights.
    bits : tuple of int
        ``(W, A, G, E)``, each 2..8.
    epochs : int
        The length of the run (the learning rate schedule, :func:`wage_rate`).
    layers : tuple of Layer
        Default: the digits MLP (:func:`~systolix.sw.train.mlp`); also
        :func:`~systolix.sw.train.digits_cnn`. An average pool (a fixed layer) shifts by the log2
        of its area instead.
    """

    name = "WAGE"

    def __init__(self, rng, bits=DEFAULT_BITS, epochs=30, layers=None):
        for name, value in zip(_NAMES, bits):
            check_int(f"{name} bits", value, 2, 8)
        self.bits = tuple(bits)
        self.epochs = epochs
        self.layers = mlp() if layers is None else tuple(layers)
        w_bits, _, g_bits, _ = bits
        limit = 1.5 * 2.0 ** (1 - w_bits)     # WAGE's L_min = beta * sigma_W, beta = 1.5
        self.masters, self.amounts = [], []
        for layer in self.layers:
            if layer.fixed:
                self.masters.append(None)
                self.amounts.append(layer.pool_shift())
                continue
            he = math.sqrt(6.0 / layer.inputs)
            alpha = max(round(math.log2(limit / he)), 0)
            span = min(int(max(he, limit) * 2 ** (g_bits - 1)), high_code(g_bits))
            self.masters.append(rng.integers(-span, span, (layer.inputs, layer.outputs),
                                             endpoint=True))
            self.amounts.append(w_bits - 1 + alpha)

    # The integer network.

    def weights(self):
        """The forward weight codes ``Q(m, W)`` of every layer (an average pool's ones)."""
        w_bits, _, g_bits, _ = self.bits
        return [layer.fixed_weights() if layer.fixed else
                np.clip(shift(m, g_bits - w_bits), *symmetric_range(w_bits))
                for layer, m in zip(self.layers, self.masters)]

    def gemms(self, batch=BATCH):
        """The data-free GEMM shapes of a step (:func:`~systolix.sw.train.training_gemms`)."""
        w_bits, a_bits, _, e_bits = self.bits
        return training_gemms(self.layers, batch, symmetric_range(a_bits),
                              symmetric_range(w_bits), symmetric_range(e_bits))

    def encode(self, pixels):
        return encode_pixels(pixels, 5 - self.bits[1], self.bits[1])

    def forward(self, codes, trace=None):
        """The codes after every layer and the values before their clamps."""
        shapes = self.gemms(len(codes))
        high = high_code(self.bits[1])
        outs, values = [np.asarray(codes, dtype=np.int64)], []
        for index, (layer, w, amount) in enumerate(zip(self.layers, self.weights(),
                                                       self.amounts)):
            out, v = layer_forward(shapes[f"layer {index} forward X W"], layer, outs[-1], w,
                                   amount, high, trace)
            outs.append(out)
            values.append(v)
        return outs, values

    def predict(self, codes):
        return np.argmax(self.forward(codes)[0][-1], axis=1)

    def step(self, codes, labels, epoch, rng, trace=None):
        """One training step on a batch of input codes; ``trace`` collects every GEMM."""
        w_bits, a_bits, g_bits, e_bits = self.bits
        high = high_code(a_bits)
        outs, values = self.forward(codes, trace)
        errors, _ = output_error(outs[-1], _LOGIT_BITS - a_bits + 1, labels, e_bits)
        errors = np.where(passes(values[-1], False, high), errors, 0)
        eta = wage_rate(epoch, self.epochs)

        def quantize_error(index, propagated):
            return np.clip(shift(propagated, normalizing_shift(propagated, e_bits)),
                           *symmetric_range(e_bits))

        def update(index, gradient):
            largest = int(np.abs(gradient).max(initial=0))
            if largest:
                change = stochastic_shift(eta * gradient, bit_length(largest) - 1, rng)
                change = np.clip(change, *symmetric_range(g_bits))
                self.masters[index] = np.clip(self.masters[index] - change,
                                              *symmetric_range(g_bits))

        backward(self.layers, self.gemms(len(codes)), self.weights(), outs, values, errors,
                 high, quantize_error, update, trace)

    def export(self):
        """The trained network as an :class:`~systolix.sw.program.IntegerProgram`: the same
        codes as :meth:`forward` for every input."""
        w_bits, a_bits, _, _ = self.bits
        return export_program(self.layers, self.weights(), self.amounts, w_bits, a_bits,
                              pixel_quantizer(5 - a_bits, a_bits), 2.0 ** (1 - a_bits))
