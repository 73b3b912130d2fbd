"""Dynamic fixed point (Courbariaux, Bengio and David, 2014): training with low-precision
multiplications and higher-precision parameter updates.

Every group of values (each layer's weights, its output activations, its errors) is a tensor of
integer codes sharing one power-of-two exponent: the value of code ``q`` is ``q * 2^e``. The
multiplications use ``mult_bits``-bit codes (10 in the paper), the stored weights and their
updates ``update_bits``-bit codes (12). Each group's exponent follows its overflow rate: after
every step, if more than :data:`MAX_OVERFLOW_RATE` of the group's values did not fit its codes,
the exponent grows by one; if even at one exponent less no more than that rate would have
overflowed, it shrinks by one.

- **weights**: stored codes ``u`` (``update_bits``), exponent ``e_w``; the GEMMs use
  ``w = round(u * 2^(mult_bits - update_bits))``, exponent ``e_w + update_bits - mult_bits``.
  Initialised uniformly in ``+-sqrt(6 / inputs)``.
- **activations**: ``clamp(shift(acc, e_out - e_in - e_w'))``, ReLU between layers; inputs:
  pixel ``p`` is ``p / 16``, the code ``p * 2^(mult_bits - 6)`` (exponent ``2 - mult_bits``).
  The exponents of the outputs are calibrated on the first batch, then follow the rule.
- **errors**: the loss interface (:func:`~systolix.sw.train.output_error`) gives the output
  error codes (exponent ``1 - mult_bits``); propagated errors ``E W^T`` are masked by the ReLU
  and clamp derivatives and shifted to their group's exponent.
- **updates**: ``u -= SR(X^T E * 2^(e_x + e_e - e_w) * lr / batch)``, the learning rate a power
  of two, the shift stochastically rounded (seeded) and the update clamped to
  ``update_bits``.

The training forward runs at ``mult_bits``. The array takes at most 8-bit codes: an exported
program (:meth:`DfpMLP.export`) runs the same forward with ``min(mult_bits, 8)``-bit weights and
activations (each rounded from the trained ones by a shift, the exponents moved with them):
:meth:`DfpMLP.forward` with ``bits=8`` is what it computes.
"""

import math

import numpy as np

from systolix.config import check_int

from .train import (BATCH, backward, encode_pixels, export_program, gemm, high_code,
                    layer_forward, mlp, normalizing_shift, output_error, passes,
                    pixel_quantizer, shift, stochastic_shift, symmetric_range, training_gemms)

__all__ = ["MAX_OVERFLOW_RATE", "MULT_BITS", "UPDATE_BITS", "EXPORT_BITS", "DfpMLP",
           "dfp_rate", "next_exponent"]

MULT_BITS = (4, 13)
"""The allowed ``mult_bits``: with 13 the widest GEMM of a step of the digits MLP (the forward
of a 64-input layer) needs a 31-bit accumulator, with 14 it would need 33 and the array's has
at most 32."""

UPDATE_BITS = 24
"""The largest ``update_bits`` (at least ``mult_bits``)."""

EXPORT_BITS = 8
"""The widest code of the array: an exported program's weights and activations."""

MAX_OVERFLOW_RATE = (1, 10000)
"""The largest fraction of a group's values that may overflow (1e-4, the paper's)."""

_LEARNING_SHIFT = 3
"""The learning rate is ``2^-3`` (:func:`dfp_rate`)."""


def dfp_rate(epoch, epochs):
    """The learning rate's right shift: ``lr = 2^-3``, ``2^-4`` for the last half of the epochs,
    ``2^-5`` for the last quarter (the float reference uses the same values)."""
    return _LEARNING_SHIFT + (epoch >= epochs // 2) + (epoch >= 3 * epochs // 4)


def next_exponent(exponent, overflows, would_overflow, count):
    """The rule of the scaling factors: ``exponent + 1`` if more than
    :data:`MAX_OVERFLOW_RATE` of ``count`` values overflowed, ``exponent - 1`` if no more than
    that rate would have overflowed at ``exponent - 1`` (``would_overflow`` of them), otherwise
    ``exponent``; integer comparisons only."""
    numerator, denominator = MAX_OVERFLOW_RATE
    if overflows * denominator > count * numerator:
        return exponent + 1
    if would_overflow * denominator <= count * numerator:
        return exponent - 1
    return exponent


def _overflows(values, bits):
    """How many of the integer ``values`` lie outside ``bits``-bit narrow signed codes."""
    return int(np.count_nonzero(np.abs(values) > high_code(bits)))


class DfpMLP:
    """A network (the digits MLP by default) trained in dynamic fixed point.

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the initial weights.
    mult_bits : int
        Width of the multiplications' operands, 4..13 (:data:`MULT_BITS`).
    update_bits : int
        Width of the stored weights and their updates, ``mult_bits..24``.
    epochs : int
        The length of the run (the learning rate schedule, :func:`dfp_rate`).
    layers : tuple of Layer
        Default: the digits MLP (:func:`~systolix.sw.train.mlp`); also
        :func:`~systolix.sw.train.digits_cnn`. An average pool (a fixed layer) has weight codes
        1 worth ``2^-log2(area)``.
    """

    name = "DFP"

    def __init__(self, rng, mult_bits=10, update_bits=12, epochs=30, layers=None):
        check_int("--mult-bits", mult_bits, *MULT_BITS)
        check_int(f"--update-bits (at least --mult-bits {mult_bits})", update_bits, mult_bits,
                  UPDATE_BITS)
        self.mult_bits, self.update_bits = mult_bits, update_bits
        self.epochs = epochs
        self.layers = mlp() if layers is None else tuple(layers)
        self.stored, self.weight_exponents = [], []
        for layer in self.layers:
            if layer.fixed:
                self.stored.append(None)
                self.weight_exponents.append(-layer.pool_shift())
                continue
            limit = math.sqrt(6.0 / layer.inputs)
            exponent = math.ceil(math.log2(limit)) - (update_bits - 2)
            span = int(limit * 2.0 ** -exponent)
            self.stored.append(rng.integers(-span, span, (layer.inputs, layer.outputs),
                                            endpoint=True))
            self.weight_exponents.append(exponent)
        widest = max(self.gemms().values(), key=lambda shape: shape.accumulator_bits)
        if widest.accumulator_bits > 32:
            raise ValueError(f"--mult-bits {mult_bits}: the {widest.name} GEMM would need a "
                             f"{widest.accumulator_bits}-bit accumulator; the array's has at "
                             f"most 32")
        # Exponents of each layer's input (the first is the pixels', the last the output's)
        # and of the error at each layer's input (the last: the output error's).
        count = len(self.layers)
        self.activation_exponents = [2 - mult_bits] + [None] * count
        self.error_exponents = [None] * count + [1 - mult_bits]

    def weights(self, bits=None):
        """The weight codes of the GEMMs at ``bits`` (default ``mult_bits``) and their
        exponents."""
        bits = self.mult_bits if bits is None else bits
        drop = self.update_bits - bits
        codes, exponents = [], []
        for layer, stored, exponent in zip(self.layers, self.stored, self.weight_exponents):
            if layer.fixed:
                codes.append(layer.fixed_weights())
                exponents.append(exponent)
            else:
                codes.append(np.clip(shift(stored, drop), *symmetric_range(bits)))
                exponents.append(exponent + drop)
        return codes, exponents

    def gemms(self, batch=BATCH, bits=None):
        """The data-free GEMM shapes of a step at ``bits``."""
        codes = symmetric_range(self.mult_bits if bits is None else bits)
        return training_gemms(self.layers, batch, codes, codes, codes)

    def encode(self, pixels, bits=None):
        bits = self.mult_bits if bits is None else bits
        return encode_pixels(pixels, 6 - bits, bits)

    def _amounts(self, bits):
        """The right shift of every layer's accumulator at ``bits``."""
        _, exponents = self.weights(bits)
        return [after - before - weight for before, after, weight
                in zip(self.activation_exponents, self.activation_exponents[1:], exponents)]

    def forward(self, codes, trace=None, bits=None):
        """The codes after every layer and the values before their clamps, at ``bits``
        (default ``mult_bits``; codes from :meth:`encode` at the same ``bits``)."""
        bits = self.mult_bits if bits is None else bits
        if self.activation_exponents[-1] is None:
            self._calibrate(codes)
        shapes = self.gemms(len(codes), bits)
        weights, _ = self.weights(bits)
        outs, values = [np.asarray(codes, dtype=np.int64)], []
        for index, (layer, w, amount) in enumerate(zip(self.layers, weights,
                                                       self._amounts(bits))):
            out, v = layer_forward(shapes[f"layer {index} forward X W"], layer, outs[-1], w,
                                   amount, high_code(bits), trace)
            outs.append(out)
            values.append(v)
        return outs, values

    def _calibrate(self, codes):
        """Output exponents from a first batch: each the smallest at which nothing overflows."""
        weights, exponents = self.weights()
        shapes = self.gemms(len(codes))
        a = np.asarray(codes, dtype=np.int64)
        for index, (layer, w, exponent) in enumerate(zip(self.layers, weights, exponents)):
            x = a if layer.window is None else layer.window.patches(a)
            acc = gemm(shapes[f"layer {index} forward X W"], x, w).reshape(len(a), -1)
            amount = normalizing_shift(acc, self.mult_bits)
            self.activation_exponents[index + 1] = \
                self.activation_exponents[index] + exponent + amount
            a = shift(acc, amount)
            a = np.maximum(a, 0) if layer.relu else a

    def predict(self, codes, bits=None):
        return np.argmax(self.forward(codes, bits=bits)[0][-1], axis=1)

    def step(self, codes, labels, epoch, rng, trace=None):
        """One training step on a batch of input codes; ``trace`` collects every GEMM."""
        bits, high = self.mult_bits, high_code(self.mult_bits)
        batch = len(codes)
        if batch & (batch - 1):
            raise ValueError(f"the batch must be a power of two (1 / batch is a shift), not "
                             f"{batch}")
        outs, values = self.forward(codes, trace)
        weights, exponents = self.weights()
        # The output activations' exponents follow their overflow rates.
        for index, (layer, v) in enumerate(zip(self.layers, values)):
            counted = np.maximum(v, 0) if layer.relu else v
            self.activation_exponents[index + 1] = next_exponent(
                self.activation_exponents[index + 1], _overflows(counted, bits),
                _overflows(2 * counted, bits), v.size)
        errors, _ = output_error(outs[-1], self.activation_exponents[-1], labels, bits)
        errors = np.where(passes(values[-1], False, high), errors, 0)
        learning = dfp_rate(epoch, self.epochs) + batch.bit_length() - 1

        def quantize_error(index, propagated):
            exponent = self.error_exponents[index + 1] + exponents[index]
            if self.error_exponents[index] is None:
                self.error_exponents[index] = exponent + normalizing_shift(propagated, bits)
            amount = self.error_exponents[index] - exponent
            scaled = shift(propagated, amount)
            self.error_exponents[index] = next_exponent(
                self.error_exponents[index], _overflows(scaled, bits),
                _overflows(shift(propagated, amount - 1), bits), scaled.size)
            return np.clip(scaled, -high, high)

        def update(index, gradient):
            self._update(index, gradient, self.activation_exponents[index]
                         + self.error_exponents[index + 1] - learning, rng)

        backward(self.layers, self.gemms(batch), weights, outs, values, errors, high,
                 quantize_error, update, trace)

    def _update(self, index, gradient, exponent, rng):
        """``u -= SR(gradient * 2^(exponent - e_w))`` in ``update_bits``, then the weights'
        exponent follows their overflow rate."""
        stored_range = symmetric_range(self.update_bits)
        update = np.clip(stochastic_shift(gradient, self.weight_exponents[index] - exponent,
                                          rng), *stored_range)
        stored = self.stored[index] - update
        exponent = next_exponent(self.weight_exponents[index],
                                 _overflows(stored, self.update_bits),
                                 _overflows(2 * stored, self.update_bits), stored.size)
        stored = stochastic_shift(stored, exponent - self.weight_exponents[index], rng)
        self.stored[index] = np.clip(stored, *stored_range)
        self.weight_exponents[index] = exponent

    def export_bits(self):
        """The code width of an exported program: ``min(mult_bits, 8)``."""
        return min(self.mult_bits, EXPORT_BITS)

    def export(self):
        """The trained network as an :class:`~systolix.sw.program.IntegerProgram` at
        :meth:`export_bits`: the codes of :meth:`forward` at those bits."""
        bits = self.export_bits()
        weights, _ = self.weights(bits)
        moved = self.mult_bits - bits
        return export_program(self.layers, weights, self._amounts(bits), bits, bits,
                              pixel_quantizer(6 - bits, bits),
                              2.0 ** (self.activation_exponents[-1] + moved))
