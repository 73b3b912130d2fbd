"""The integer arithmetic of training: GEMMs with a declared accumulator width, power-of-two
rescaling, seeded stochastic rounding, and the layout of any integer GEMM on the array.

Every multiplication of a training step is an integer GEMM ``A @ B`` executed by the golden
model of the array (:func:`systolix.sim.golden.array.accumulate`) with an accumulator width
``P`` that is declared before any data is seen: :func:`accumulator_bits` computes it from the
operands' code ranges and the reduction length ``K`` alone, so no partial sum of any GEMM of any
step can leave the accumulator, whatever the data (:func:`gemm` checks the operands against the
declared ranges). The three GEMMs of a layer ``y = x @ W`` (of a convolution: ``X`` is its
patches, one row per output position):

=====================  ==========================  =================  ==================
GEMM                   ``A``                       ``B``              ``K``
=====================  ==========================  =================  ==================
forward                ``X`` (batch, inputs)       ``W``              inputs
error propagation      ``E`` (batch, outputs)      ``W^T``            outputs
weight gradient        ``X^T`` (inputs, batch)     ``E``              batch x positions
=====================  ==========================  =================  ==================

Rescaling by a power of two is a shift: :func:`systolix.sim.golden.program.round_shift`
(halves up, what the requantization unit does) or :func:`stochastic_shift` (unbiased: a seeded
uniform integer below ``2^shift`` is added before the shift). None of this uses floats; the one
place a training step does is the loss interface (:func:`output_error`). (The golden model
sums integer products with float64 BLAS where that is exact, below ``2^53``, and checks it:
an integer engine, not float arithmetic.)

On the array (:func:`array_tiles`): ``B`` is cut into ``rows x cols`` weight tiles and ``A``
into activation vectors of ``rows`` codes (both zero-padded; operands wider than the array's
codes split into digits); the array computes each tile's partial sums and :func:`assemble` adds
the tiles of one output block, in ``k`` order, and the digits' parts. No digit is larger in
magnitude than its operand, so the GEMM's declared ``P`` holds every part, nothing wraps and the
result is the GEMM bit for bit.

The rest of the module is what the schemes share: the networks (:data:`NETWORKS`: the digits
MLP and CNN as :class:`Layer` s), the forward and backward passes on codes, the loss interface,
the export to an :class:`~systolix.sw.program.IntegerProgram`, the float reference and the
training loop.
"""

import time
from dataclasses import dataclass

import numpy as np

from systolix.config import check_int, code_range
from systolix.layer import Window
from systolix.sim.golden.array import accumulate, array_matmul, wrap
from systolix.sim.golden.program import round_shift

__all__ = ["GemmShape", "accumulator_bits", "gemm", "shift", "stochastic_shift",
           "normalizing_shift", "bit_length", "split_codes", "GemmTiles", "array_tiles",
           "run_tiles", "assemble", "SIZES", "BATCH", "Layer", "mlp", "digits_cnn", "NETWORKS",
           "high_code", "symmetric_range", "layer_forward", "passes", "backward",
           "encode_pixels", "pixel_quantizer", "output_error", "export_program",
           "array_config_for", "training_gemms", "describe_gemms", "FloatMLP", "History",
           "train"]


@dataclass(frozen=True)
class GemmShape:
    """One GEMM of a training step, data-free: what it is, its operands' code ranges and ``K``.

    Attributes
    ----------
    name : str
        For example ``"layer 1 error E W^T"``.
    a_range, b_range : tuple of int
        ``(lowest, highest)`` code of ``A`` and of ``B``.
    k : int
        The reduction length.
    """

    name: str
    a_range: tuple
    b_range: tuple
    k: int

    @property
    def accumulator_bits(self):
        """The data-free accumulator width (:func:`accumulator_bits`)."""
        return accumulator_bits(self.a_range, self.b_range, self.k)


def accumulator_bits(a_range, b_range, k):
    """The smallest signed accumulator width ``P`` that holds every partial sum of ``A @ B``.

    Every product lies between the smallest and the largest product of the ends of the two
    code ranges, so every partial sum of ``k`` products lies in ``[k * smallest, k * largest]``
    (both reached, by the operands at those ends). Depends on the widths and ``K`` only.

    Parameters
    ----------
    a_range, b_range : tuple of int
        ``(lowest, highest)`` codes of the operands.
    k : int
        Reduction length, at least 1.

    Returns
    -------
    int
        ``P``, at least 2.
    """
    check_int("k", k, 1, 1 << 40)
    products = [a * b for a in a_range for b in b_range]
    low, high = k * min(min(products), 0), k * max(max(products), 0)
    bits = 2
    while not -(1 << (bits - 1)) <= low <= high <= (1 << (bits - 1)) - 1:
        bits += 1
    return bits


def _check_operand(name, codes, code_range_):
    low, high = code_range_
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(f"{name} codes must lie in {low}..{high}, the range its accumulator "
                         f"width was declared for, not {codes.min()}..{codes.max()}")


def gemm(shape, a, b, trace=None):
    """``A @ B`` on the golden array with the accumulator width declared by ``shape``.

    Parameters
    ----------
    shape : GemmShape
    a : numpy.ndarray of int64, shape (n, K)
    b : numpy.ndarray of int64, shape (K, m)
    trace : list, optional
        ``(shape, a, b, result)`` is appended: what a test runs on the simulated array.

    Returns
    -------
    numpy.ndarray of int64, shape (n, m)
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape[1] != shape.k:
        raise ValueError(f"{shape.name}: K is {a.shape[1]}, declared {shape.k}")
    _check_operand(f"{shape.name}: A", a, shape.a_range)
    _check_operand(f"{shape.name}: B", b, shape.b_range)
    result = accumulate(a, b, shape.accumulator_bits, "wrap")
    if trace is not None:
        trace.append((shape, a, b, result))
    return result


def shift(values, amount):
    """``values * 2^-amount`` rounded half up (a right shift) or exact (a left shift for a
    negative ``amount``)."""
    values = np.asarray(values, dtype=np.int64)
    if amount <= 0:
        return values << -amount
    return round_shift(values, amount)


def stochastic_shift(values, amount, rng):
    """``values * 2^-amount`` rounded stochastically: ``floor((v + u) / 2^amount)`` with ``u``
    uniform in ``0..2^amount - 1`` from ``rng`` (a :class:`numpy.random.Generator`), so that
    the expected result is exactly ``v / 2^amount``; exact for ``amount <= 0``. The same
    generator state gives the same result."""
    values = np.asarray(values, dtype=np.int64)
    if amount <= 0:
        return values << -amount
    return (values + rng.integers(0, 1 << amount, size=values.shape)) >> amount


def bit_length(value):
    """Bits of the magnitude of the integer ``value`` (0 for 0)."""
    return int(abs(int(value))).bit_length()


def normalizing_shift(values, bits):
    """The smallest right shift ``s >= 0`` after which the largest magnitude of ``values`` fits
    ``bits``-bit signed codes (``|v| >> s < 2^(bits-1)``)."""
    largest = int(np.abs(np.asarray(values, dtype=np.int64)).max(initial=0))
    return max(0, largest.bit_length() - (bits - 1))


def split_codes(codes, bits, signed):
    """Integer ``codes`` as digits that ``bits``-bit codes hold: ``codes = sum_i digits[i] *
    2^(i * step)``.

    With signed codes the low digits have ``step = bits - 1`` bits (``0..2^(bits-1) - 1``) and
    the top digit keeps the sign (an arithmetic shift); with unsigned codes ``step = bits`` and
    ``codes`` must not be negative. Codes that fit already are one digit.

    Returns
    -------
    digits : list of numpy.ndarray of int64
    step : int
    """
    codes = np.asarray(codes, dtype=np.int64)
    low, high = code_range(bits, signed)
    if not signed and codes.size and codes.min() < 0:
        raise ValueError(f"negative codes ({codes.min()}) do not split into unsigned "
                         f"{bits}-bit digits")
    step = bits - 1 if signed else bits
    digits, rest = [], codes
    while rest.size and (rest.min() < low or rest.max() > high):
        digits.append(rest & ((1 << step) - 1))
        rest = rest >> step
    digits.append(rest)
    return digits, step


@dataclass(frozen=True)
class GemmTiles:
    """One integer GEMM ``A @ B`` laid out for an array: the weight tiles and activation vectors
    of each part (one part, unless an operand had to be split into digits).

    Attributes
    ----------
    parts : tuple of (int, numpy.ndarray, numpy.ndarray)
        ``(shift, weights, activations)``: the part ``A_i @ B_j`` of digit ``i`` of ``A`` and
        digit ``j`` of ``B`` counts ``2^shift`` times. ``weights`` has shape ``(tiles, rows,
        cols)``: ``B_j[k0:k0+rows, n0:n0+cols]`` zero-padded, tile ``(kt, nt)`` is number ``nt *
        k_tiles + kt`` (all K tiles of an output block in ``k`` order); ``activations``
        ``(tiles, n, rows)``: the vectors sent with each tile, ``A_i[:, k0:k0+rows]``
        zero-padded.
    shape : tuple of int
        ``(n, K, m)``.
    """

    parts: tuple
    shape: tuple

    @property
    def k_tiles(self):
        rows = self.parts[0][1].shape[1]
        return -(-self.shape[1] // rows)


def _tiles(a, b, rows, cols):
    n, k = a.shape
    m = b.shape[1]
    k_tiles, n_tiles = -(-k // rows), -(-m // cols)
    padded_b = np.zeros((k_tiles * rows, n_tiles * cols), dtype=np.int64)
    padded_b[:k, :m] = b
    padded_a = np.zeros((n, k_tiles * rows), dtype=np.int64)
    padded_a[:, :k] = a
    weights = np.array([padded_b[kt * rows:(kt + 1) * rows, nt * cols:(nt + 1) * cols]
                        for nt in range(n_tiles) for kt in range(k_tiles)])
    activations = np.array([padded_a[:, kt * rows:(kt + 1) * rows]
                            for nt in range(n_tiles) for kt in range(k_tiles)])
    return weights, activations


def array_tiles(a, b, config):
    """Weight tiles and activation vectors of the integer GEMM ``A @ B`` for an array of
    ``config``.

    ``B`` goes to the array's weights, ``A`` to its activations: for the error propagation
    ``E W^T`` the tiles hold ``W^T``, for the weight gradient ``X^T E`` the vectors are the rows
    of ``X^T``. An operand wider than the array's codes is split into digits
    (:func:`split_codes`), and the GEMM into one part per pair of digits, each an exact GEMM of
    codes the array takes (a 10-bit operand on an 8-bit array: two digits).

    Returns
    -------
    GemmTiles
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"A and B must be matrices with A.shape[1] == B.shape[0], not "
                         f"{a.shape} and {b.shape}")
    a_digits, a_step = split_codes(a, config.activation_bits, config.activation_signed)
    b_digits, b_step = split_codes(b, config.weight_bits, config.weight_signed)
    parts = tuple((i * a_step + j * b_step, *_tiles(a_digit, b_digit, config.rows, config.cols))
                  for i, a_digit in enumerate(a_digits) for j, b_digit in enumerate(b_digits))
    return GemmTiles(parts, (a.shape[0], a.shape[1], b.shape[1]))


def run_tiles(tiles, config):
    """What an array of ``config`` returns for each tile of each part: a list of ``(tiles, n,
    cols)`` partial sums (the golden model of the array,
    :func:`~systolix.sim.golden.array.array_matmul`)."""
    return [np.array([array_matmul(config, x, w) for x, w in zip(activations, weights)])
            for _, weights, activations in tiles.parts]


def assemble(tiles, results, accumulator_bits_):
    """``A @ B`` from the array's per-tile ``results`` (for each part, ``(tiles, n, cols)``):
    the K tiles of each output block added in ``k`` order in a ``P``-bit wrapping accumulator,
    then the parts shifted and added (exact integers)."""
    n, _, m = tiles.shape
    k_tiles = tiles.k_tiles
    total = np.zeros((n, m), dtype=np.int64)
    for (amount, _, _), part in zip(tiles.parts, results):
        part = np.asarray(part, dtype=np.int64)
        blocks = [wrap(part[nt * k_tiles:(nt + 1) * k_tiles].sum(axis=0), accumulator_bits_)
                  for nt in range(len(part) // k_tiles)]
        total += np.concatenate(blocks, axis=1)[:, :m] << amount
    return total


# ---------------------------------------------------------------------------------------------
# The network, the loss interface and the training loop, shared by the schemes.

SIZES = (64, 64, 32, 10)
"""Layer widths of the digits MLP that the schemes train (those of
:func:`~systolix.sw.models.digits_mlp`): dense layers without bias, ReLU between them."""

BATCH = 16
"""Images per training step (a power of two: ``1 / BATCH`` is a shift); the last incomplete
batch of an epoch is left out (the shuffle differs every epoch)."""


@dataclass(frozen=True)
class Layer:
    """One layer of a network the schemes train: ``y = patches(x) @ W`` without bias.

    Attributes
    ----------
    inputs : int
        ``K``: the rows of the weight matrix (a convolution's patch).
    outputs : int
        Output channels.
    window : Window or None
        ``None`` for a dense layer; a convolution's :class:`~systolix.layer.Window` (pad code
        0: the zero point of every code here).
    relu : bool
        ReLU after the layer (folded into the lower clamp).
    fixed : bool
        Weights not trained: an average pool, a depthwise convolution of ones whose shift
        divides by the kernel area (a power of two).
    """

    inputs: int
    outputs: int
    window: Window = None
    relu: bool = True
    fixed: bool = False

    @property
    def positions(self):
        """Output positions of one input (1 for a dense layer)."""
        return 1 if self.window is None else self.window.positions

    @property
    def map_inputs(self):
        """Codes of one input vector (the whole map of a convolution)."""
        return self.inputs if self.window is None else self.window.inputs

    def fixed_weights(self):
        """The weights of an average pool: ones within each channel's group."""
        return self.window.group_mask(self.outputs).astype(np.int64)

    def pool_shift(self):
        """``log2`` of an average pool's kernel area."""
        area = self.window.kernel_height * self.window.kernel_width
        if area & (area - 1):
            raise ValueError(f"an average pool needs a power-of-two area, not {area}")
        return area.bit_length() - 1

    def _index(self):
        """The input position + 1 of every patch entry (0: padding), ``(positions, K)``."""
        return self.window.patches(np.arange(1, self.window.inputs + 1)[None, :])

    def gather(self, x):
        """The patches of ``x`` (``(n, map_inputs)``, any dtype; for integer codes the same as
        :meth:`~systolix.layer.Window.patches`), shape ``(n * positions, K)``."""
        if self.window is None:
            return x
        padded = np.concatenate([np.zeros((len(x), 1), dtype=x.dtype), x], axis=1)
        return padded[:, self._index()].reshape(-1, self.inputs)

    def scatter(self, patches, n):
        """The adjoint of :meth:`gather` (col2im): each patch entry added back onto its input
        position, padding dropped; ``(n, map_inputs)``. Additions only."""
        if self.window is None:
            return patches
        w = self.window
        taps = patches.reshape(n, w.output_height, w.output_width, w.kernel_height,
                               w.kernel_width, w.channels)
        padded = np.zeros((n, w.height + w.pad_top + w.pad_bottom,
                           w.width + w.pad_left + w.pad_right, w.channels), dtype=patches.dtype)
        rows, cols = w.stride_height * w.output_height, w.stride_width * w.output_width
        for ky in range(w.kernel_height):
            for kx in range(w.kernel_width):
                padded[:, ky:ky + rows:w.stride_height, kx:kx + cols:w.stride_width] += \
                    taps[:, :, :, ky, kx]
        return padded[:, w.pad_top:w.pad_top + w.height,
                      w.pad_left:w.pad_left + w.width].reshape(n, -1)


def mlp(sizes=SIZES):
    """The layers of an MLP of ``sizes`` (ReLU between the dense layers)."""
    return tuple(Layer(inputs, outputs, relu=index < len(sizes) - 2)
                 for index, (inputs, outputs) in enumerate(zip(sizes, sizes[1:])))


def digits_cnn():
    """The layers of the digits CNN (:func:`systolix.sw.models.digits_cnn`'s architecture): conv
    3x3 1->16 padding 1, conv 3x3 stride 2 16->32 padding 1 (ReLU after each), global average
    pool (4x4), dense 32->10."""
    conv1 = Window(8, 8, 1, 3, 3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    conv2 = Window(8, 8, 16, 3, 3, 2, 2, 1, 1, 1, 1)
    pool = Window(4, 4, 32, 4, 4, groups=32)
    return (Layer(conv1.patch, 16, conv1), Layer(conv2.patch, 32, conv2),
            Layer(pool.patch, 32, pool, relu=False, fixed=True), Layer(32, 10, relu=False))


NETWORKS = {"mlp": mlp, "cnn": digits_cnn}
"""The networks the schemes train: ``mlp`` (64-64-32-10) and ``cnn``."""


def high_code(bits):
    """The largest code of the narrow signed range ``-(2^(bits-1)-1) .. 2^(bits-1)-1``."""
    return (1 << (bits - 1)) - 1


def symmetric_range(bits):
    """``(-high, high)`` of :func:`high_code`."""
    return -high_code(bits), high_code(bits)


def layer_forward(gemm_shape, layer, codes, w, amount, high, trace=None):
    """One layer on codes: ``v = shift(patches(codes) @ w, amount)``, ``out = clamp(v, 0 if
    relu else -high, high)`` (what an :class:`~systolix.layer.IntegerLayer` with multiplier
    ``2^-amount`` computes; a convolution's patches are those of
    :meth:`~systolix.layer.Window.patches`). Returns ``(out, v)``, both ``(n, positions *
    outputs)`` (NHWC)."""
    codes = np.asarray(codes, dtype=np.int64)
    patches = codes if layer.window is None else layer.window.patches(codes)
    v = shift(gemm(gemm_shape, patches, w, trace), amount).reshape(len(codes), -1)
    return np.clip(v, 0 if layer.relu else -high, high), v


def passes(v, relu, high):
    """Where the gradient passes the clamp of :func:`layer_forward` (straight through where the
    value was not clamped; ReLU passes only positive values)."""
    return (v >= (1 if relu else -high)) & (v <= high)


def backward(layers, shapes, weights, outs, values, errors, high, quantize_error, update,
             trace=None):
    """The backward pass the integer schemes share, from the error codes of the last layer's
    output (already masked by its clamp).

    For each layer, last first: the weight gradient ``gemm(patches(X)^T, E)`` (unless the
    weights are fixed), the error propagation ``gemm(E, W^T)`` scattered back onto the input map
    (:meth:`Layer.scatter`; not for the first layer) and masked where the previous layer's
    clamp or ReLU passed nothing (:func:`passes`); ``quantize_error(index, propagated)`` turns
    it into the error codes of layer ``index``'s input, ``update(index, gradient)`` applies the
    gradient.
    """
    n = len(outs[0])
    for index in reversed(range(len(layers))):
        layer = layers[index]
        flat = errors.reshape(-1, layer.outputs)
        if not layer.fixed:
            x = outs[index] if layer.window is None else layer.window.patches(outs[index])
            gradient = gemm(shapes[f"layer {index} gradient X^T E"], x.T, flat, trace)
        if index:
            propagated = gemm(shapes[f"layer {index} error E W^T"], flat, weights[index].T,
                              trace)
            propagated = layer.scatter(propagated, n)
            propagated = np.where(passes(values[index - 1], layers[index - 1].relu, high),
                                  propagated, 0)
            errors = quantize_error(index, propagated)
        if not layer.fixed:
            update(index, gradient)


def encode_pixels(pixels, amount, bits):
    """Input codes of digits images (integer pixel values 0..16): ``clamp(shift(p, amount))``
    with ``bits``-bit narrow signed codes; :func:`pixel_quantizer` is the same as a
    :class:`~systolix.sw.quant.QuantParams`."""
    pixels = np.asarray(pixels)
    integers = np.asarray(np.rint(pixels), dtype=np.int64)
    if not np.array_equal(integers, pixels):
        raise ValueError("pixel values must be integers (the digits images are 0..16)")
    return np.clip(shift(integers, amount), *symmetric_range(bits))


def pixel_quantizer(amount, bits):
    """The input quantizer of an exported program: pixel ``p`` to the code
    :func:`encode_pixels` gives (scale ``2^amount`` pixels, round half up, clamp)."""
    from .quant import QuantParams

    return QuantParams(bits, True, 2.0 ** amount, 0, *symmetric_range(bits))


def output_error(codes, exponent, labels, bits):
    """The loss interface, the one place floats enter a training step.

    The output codes become logits ``codes * 2^exponent`` (float64); the loss is the softmax
    cross-entropy with the labels; its gradient with respect to the logits, ``softmax - onehot``
    (in ``[-1, 1]``), becomes ``bits``-bit error codes ``clamp(floor(g * 2^(bits-1) + 1/2))``,
    so that an error code is worth ``2^-(bits-1)``. Everything after this is integer.

    Returns
    -------
    errors : numpy.ndarray of int64, shape codes.shape
    loss : float
        The mean cross-entropy (for the record only).
    """
    logits = np.asarray(codes, dtype=np.float64) * 2.0 ** exponent
    logits = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(len(labels))
    loss = float(-np.mean(np.log(np.maximum(probabilities[rows, labels], 1e-300))))
    gradient = probabilities
    gradient[rows, labels] -= 1.0
    errors = np.floor(gradient * 2.0 ** (bits - 1) + 0.5).astype(np.int64)
    return np.clip(errors, *symmetric_range(bits)), loss


def export_program(layers, weights, amounts, weight_bits, activation_bits, input_quantizer,
                   output_scale):
    """An :class:`~systolix.sw.program.IntegerProgram` of trained integer ``layers``.

    Layer ``l`` computes :func:`layer_forward` with ``weights[l]`` and ``amounts[l]``: no bias,
    the power-of-two multiplier ``2^-amounts[l]`` as ``(M0, shift)``
    (:func:`~systolix.sw.quant.fixed_point_multiplier`, exact for a power of two), ReLU folded
    into the lower clamp, a convolution's window. Every layer gets the accumulator width of the
    widest forward GEMM (data-free, :func:`accumulator_bits`), so one array runs them all.
    """
    from .program import IntegerLayer, IntegerProgram
    from .quant import QuantParams, fixed_point_multiplier

    high = high_code(activation_bits)
    width = max(accumulator_bits(symmetric_range(activation_bits),
                                 symmetric_range(weight_bits), layer.inputs) for layer in layers)
    program = []
    for layer, w, amount in zip(layers, weights, amounts):
        multiplier, right = fixed_point_multiplier(np.full(layer.outputs, 2.0 ** -amount))
        program.append(IntegerLayer(
            weights=w, bias=np.zeros(layer.outputs, dtype=np.int64), multiplier=multiplier,
            shift=right, output_zero_point=0, output_low=0 if layer.relu else -high,
            output_high=high, input_bits=activation_bits, input_signed=True,
            weight_bits=weight_bits, weight_signed=True, output_bits=activation_bits,
            output_signed=True, accumulator_bits=width, overflow="wrap", window=layer.window))
    output = QuantParams(activation_bits, True, float(output_scale), 0,
                         *symmetric_range(activation_bits))
    return IntegerProgram(tuple(program), input_quantizer, output)


def array_config_for(program, rows=8, cols=8):
    """The array that runs an exported ``program``: its weight and input codes, its accumulator
    width, wrapping."""
    from systolix.config import ArrayConfig

    first = program.layers[0]
    return ArrayConfig(rows=rows, cols=cols, weight_bits=first.weight_bits, weight_signed=True,
                       activation_bits=first.input_bits, activation_signed=True,
                       accumulator_bits=first.accumulator_bits, overflow="wrap")


def training_gemms(layers, batch, activation_range, weight_range, error_range):
    """The data-free :class:`GemmShape` of every GEMM of one training step of ``layers``: per
    layer the forward ``X W`` (``K`` = its inputs, a convolution's patch), the error propagation
    ``E W^T`` (``K`` = its outputs; not for the first layer: no error goes to the input) and the
    weight gradient ``X^T E`` (``K`` = the batch times the output positions; not for fixed
    weights)."""
    shapes = []
    for index, layer in enumerate(layers):
        shapes.append(GemmShape(f"layer {index} forward X W", activation_range, weight_range,
                                layer.inputs))
        if index:
            shapes.append(GemmShape(f"layer {index} error E W^T", error_range, weight_range,
                                    layer.outputs))
        if not layer.fixed:
            shapes.append(GemmShape(f"layer {index} gradient X^T E", activation_range,
                                    error_range, batch * layer.positions))
    return {shape.name: shape for shape in shapes}


def describe_gemms(shapes):
    """One line per GEMM: operand codes, ``K`` and the data-free accumulator width."""
    def codes(low_high):
        return f"{low_high[0]}..{low_high[1]}"

    return [f"{shape.name}: A {codes(shape.a_range)}, B {codes(shape.b_range)}, K = "
            f"{shape.k}: P = {shape.accumulator_bits} bits (data-free)"
            for shape in shapes.values()]


class FloatMLP:
    """The float reference: the same network (``layers``, no bias), initialisation range, loss,
    batches and plain SGD as the integer schemes, in float64 (inputs ``p / 16``).

    Parameters
    ----------
    rng : numpy.random.Generator
        Draws the initial weights (uniform in ``+-sqrt(6 / K)``).
    learning_rate : callable
        ``learning_rate(epoch)``, a float.
    layers : tuple of Layer
        Default: the digits MLP (:func:`mlp`).
    """

    name = "float"

    def __init__(self, rng, learning_rate, layers=None):
        self.learning_rate = learning_rate
        self.layers = mlp() if layers is None else tuple(layers)
        self.weights = [layer.fixed_weights() / 2.0 ** layer.pool_shift() if layer.fixed else
                        rng.uniform(-1, 1, (layer.inputs, layer.outputs))
                        * np.sqrt(6.0 / layer.inputs) for layer in self.layers]

    def encode(self, pixels):
        return np.asarray(pixels, dtype=np.float64) / 16.0

    def _forward(self, x):
        values = [x]
        for layer, w in zip(self.layers, self.weights):
            y = (layer.gather(values[-1]) @ w).reshape(len(x), -1)
            values.append(np.maximum(y, 0.0) if layer.relu else y)
        return values

    def predict(self, x):
        return np.argmax(self._forward(x)[-1], axis=1)

    def step(self, x, labels, epoch, rng):
        values = self._forward(x)
        logits = values[-1] - values[-1].max(axis=1, keepdims=True)
        error = np.exp(logits)
        error /= error.sum(axis=1, keepdims=True)
        error[np.arange(len(labels)), labels] -= 1.0
        error /= len(labels)
        rate = self.learning_rate(epoch)
        for index in reversed(range(len(self.layers))):
            layer = self.layers[index]
            error = error.reshape(-1, layer.outputs)
            gradient = layer.gather(values[index]).T @ error
            if index:
                error = layer.scatter(error @ self.weights[index].T, len(x))
                if self.layers[index - 1].relu:
                    error = error * (values[index] > 0)
            if not layer.fixed:
                self.weights[index] -= rate * gradient


@dataclass
class History:
    """Test accuracy and seconds of every epoch of one training run."""

    name: str
    accuracy: list
    seconds: list


def _bar(name, epoch, epochs, done, steps):
    width = 30
    filled = width * done // steps
    return (f"{name} epoch {epoch + 1}/{epochs} [{'#' * filled}{'.' * (width - filled)}] "
            f"{done}/{steps}")


def train(model, data, epochs, rng, progress=None, report=print):
    """Train ``model`` (a scheme: :class:`FloatMLP`, :class:`~systolix.sw.wage.WageMLP`,
    :class:`~systolix.sw.dfp.DfpMLP`, on any of :data:`NETWORKS`) on the digits training images
    for ``epochs`` epochs.

    ``rng`` shuffles the images every epoch and draws the stochastic rounding: the same
    generator state gives the same weights. ``progress`` (a text stream, such as
    ``sys.stderr``) gets a progress bar per epoch (redrawn as the epoch goes on a terminal,
    written once at its end otherwise); ``report`` a line per epoch with the test accuracy and
    the seconds it took.

    Returns
    -------
    History
    """
    x_train, x_test = model.encode(data.x_train), model.encode(data.x_test)
    steps = len(x_train) // BATCH
    live = progress is not None and progress.isatty()
    history = History(model.name, [], [])
    for epoch in range(epochs):
        started = time.perf_counter()
        order = rng.permutation(len(x_train))
        for step in range(steps):
            chosen = order[step * BATCH:(step + 1) * BATCH]
            model.step(x_train[chosen], data.y_train[chosen], epoch, rng)
            if live and (step + 1) % max(1, steps // 30) == 0:
                progress.write("\r" + _bar(model.name, epoch, epochs, step + 1, steps))
                progress.flush()
        seconds = time.perf_counter() - started
        if progress is not None:
            progress.write(("\r" if live else "") + _bar(model.name, epoch, epochs, steps, steps)
                           + "\n")
            progress.flush()
        history.seconds.append(seconds)
        history.accuracy.append(float(np.mean(model.predict(x_test) == data.y_test)))
        if report is not None:
            report(f"{model.name} epoch {epoch + 1}/{epochs}: test accuracy "
                   f"{100 * history.accuracy[-1]:.1f} %, {seconds:.2f} s")
    return history
