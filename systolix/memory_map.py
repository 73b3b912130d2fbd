"""The memory map: every word of the accelerator's memories (see docs/memory-map.md).

The packer (:func:`systolix.sw.pack.pack`) writes the memory images, the gateware
(:mod:`systolix.hw`), the golden and cycle models (:mod:`systolix.sim.golden`), the driver and
the testbenches read them, all through the layouts defined here and the one codec
(:mod:`systolix.codec`).

Three memories have an image (the weight memory's may be loaded at run time instead of baked
into the bitstream: :attr:`MemoryConfig.upload_weights`):

* the weight memory: every weight tile in the order the sequencer sends it to the array (per
  layer, per output tile, per K tile, ``rows`` words), a word one row of a tile
  (:func:`weights_layout`);
* the requantization memory: one :data:`REQUANT_LAYOUT` word per output channel, each layer's
  channels padded to whole output tiles;
* the program memory: a header (:data:`HEADER_LAYOUT`, :data:`CONFIG_LAYOUT`,
  :data:`TOTALS_LAYOUT`, :data:`BATCH_LAYOUT`) and one record of :data:`LAYER_LAYOUTS` words per
  layer.

Every layer runs as a windowed GEMM (:func:`layer_window`): a convolution over its window, a
dense layer over a window that covers its whole input map. Two activation buffers hold a batch
of maps, pixel by pixel, ``c_tiles`` words a pixel (:func:`pack_vectors`,
:func:`activation_word_layout`); the output memory holds the last layer's codes. The layouts
are versioned by :data:`FORMAT_VERSION`, stored in the first program word.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .codec import decode, encode
from .config import OVERFLOW_MODES, ArrayConfig, check_bool, check_choice, check_int
from .layer import (GELU_CLIP_MAX, GELU_CONSTANT_MAX, ROUNDING_MODES, AddLayer, GeluLayer,
                    IntegerLayer, LayerNormLayer, MatMulLayer, MaxPoolLayer, SoftmaxLayer,
                    Window)
from .numeric import BIAS_BITS, CODE_BITS, MULTIPLIER_BITS, SHIFT_BITS

__all__ = [
    "FORMAT_VERSION", "PROGRAM_WORD_BITS", "MAX_WORDS", "REQUANT_FIELDS", "REQUANT_LAYOUT",
    "HEADER_LAYOUT", "CONFIG_LAYOUT", "TOTALS_LAYOUT", "BATCH_LAYOUT", "LAYER_LAYOUTS",
    "HEADER_WORDS", "RECORD_WORDS", "MEMORY_WIDTHS", "MEMORY_DEPTHS", "code_shape",
    "weights_layout", "activation_word_layout", "output_layout", "config_fields",
    "LAYER_KINDS", "LAYERNORM_WORDS", "layernorm_words", "layernorm_constants",
    "feed_address_bits", "layer_window", "padded_rows", "MemoryConfig",
    "MemoryImages", "layer_records", "windowed", "engine_units", "packed_sources", "vector_words",
    "input_channels", "output_codes", "packed_layers",
    "save_images", "load_images", "pack_vectors", "unpack_vectors", "unpack_outputs",
    "memory_contents", "baked_memories", "weight_write_layout", "SPRAM_WORDS", "SPRAM_BITS",
    "SpramLayout", "spram_layout", "spram_blocks", "spram_weight_words",
]

FORMAT_VERSION = 7
"""Version of the memory map: the layouts below and the order of the words."""

PROGRAM_WORD_BITS = 32
"""Width of a program memory word."""

MAX_WORDS = 1 << 16
"""The most words any memory may have: addresses and counts are 16-bit program fields."""

_COUNT = unsigned(16)
_FLAG = unsigned(1)
_WIDTH = unsigned(4)          # a code width, 1..8
_CODE = signed(CODE_BITS + 1)  # an 8-bit signed or unsigned code
_STEP = signed(16)             # a signed difference of activation buffer addresses

REQUANT_FIELDS = ("bias", "multiplier", "shift")
"""The fields of a requantization word that hold a channel's constants."""

_REQUANT_CONSTANTS = BIAS_BITS + MULTIPLIER_BITS + SHIFT_BITS

REQUANT_LAYOUT = data.StructLayout({
    "bias": signed(BIAS_BITS),
    "multiplier": unsigned(MULTIPLIER_BITS),
    "shift": unsigned(SHIFT_BITS),
    "reserved": unsigned(-_REQUANT_CONSTANTS % 4),
})
"""One requantization word: the constants of one output channel, then ``reserved`` bits (0 in
the images) that round the word up to a whole number of hexadecimal digits (56 bits): every bit
column of a ``.hex`` line is then a bit of the memory, which is what ``icebram`` and ``ecpbram``
need to find each block RAM by its contents (docs/memory-map.md, version 3)."""

HEADER_LAYOUT = data.StructLayout({"version": _COUNT, "layers": _COUNT})
"""Program word 0: :data:`FORMAT_VERSION` and the number of layers."""

CONFIG_LAYOUT = data.StructLayout({
    "rows": unsigned(6),
    "cols": unsigned(6),
    "weight_bits": _WIDTH,
    "weight_signed": _FLAG,
    "activation_bits": _WIDTH,
    "activation_signed": _FLAG,
    "accumulator_bits": unsigned(6),
    "overflow": _FLAG,            # index in OVERFLOW_MODES: 0 wrap, 1 saturate
})
"""Program word 1: the array the images were packed for (its accumulator runs every layer)."""

TOTALS_LAYOUT = data.StructLayout({"weight_words": unsigned(PROGRAM_WORD_BITS)})
"""Program word 2: the words of the weight image, all of which every run sends to the array."""

BATCH_LAYOUT = data.StructLayout({"max_batch": unsigned(PROGRAM_WORD_BITS)})
"""Program word 3: the most input vectors one run may take (:attr:`MemoryImages.max_batch`)."""

HEADER_WORDS = 4
"""Program words before the first layer record."""

LAYER_KINDS = ("gemm", "max_pool", "add", "gelu", "softmax", "layernorm", "matmul")
"""What a layer record runs (its ``kind`` field is the index): a dense or convolution layer on
the array (:class:`~systolix.layer.IntegerLayer`), a max pooling layer
(:class:`~systolix.layer.MaxPoolLayer`), an add layer (:class:`~systolix.layer.AddLayer`) or a
GELU layer (:class:`~systolix.layer.GeluLayer`), these three on the engine's post-op unit
(:class:`systolix.hw.postops.PostOps`), a softmax or a LayerNorm layer
(:class:`~systolix.layer.SoftmaxLayer`, :class:`~systolix.layer.LayerNormLayer`) on its row
unit (:class:`systolix.hw.rowops.RowOps`), or the product of two tensors of codes
(:class:`~systolix.layer.MatMulLayer`) on the array, its stationary operand from an activation
buffer (:class:`systolix.hw.stationary.StationaryFeeder`)."""

LAYERNORM_WORDS = 2
"""Requantization memory words of one channel of a LayerNorm layer (:func:`layernorm_words`)."""

LAYER_LAYOUTS = (
    data.StructLayout({"k_tiles": _COUNT, "n_tiles": _COUNT}),
    data.StructLayout({"weight_base": _COUNT, "requant_base": _COUNT}),
    data.StructLayout({
        "input_bits": _WIDTH, "input_signed": _FLAG,
        "weight_bits": _WIDTH, "weight_signed": _FLAG,
        "output_bits": _WIDTH, "output_signed": _FLAG,
        "input_buffer": _FLAG, "last": _FLAG,
        "windowed": _FLAG, "rounding": _FLAG, "transpose": _FLAG,
        "accumulator_bits": unsigned(6), "overflow": _FLAG,
    }),
    data.StructLayout({"output_zero_point": _CODE, "output_low": _CODE, "output_high": _CODE}),
    data.StructLayout({"outputs": _COUNT, "output_words": _COUNT}),
    data.StructLayout({"positions": _COUNT, "channels": _COUNT}),
    data.StructLayout({"height": _COUNT, "width": _COUNT}),
    data.StructLayout({"kernel_height": _COUNT, "kernel_width": _COUNT}),
    data.StructLayout({"stride_height": _COUNT, "stride_width": _COUNT}),
    data.StructLayout({"output_height": _COUNT, "output_width": _COUNT}),
    data.StructLayout({"pad_top": _COUNT, "pad_left": _COUNT}),
    data.StructLayout({"c_tiles": _COUNT, "x_step": _STEP}),
    data.StructLayout({"row_step": _STEP, "image_step": _STEP}),
    data.StructLayout({"tap_step": _STEP, "pad_code": _CODE}),
    data.StructLayout({"origin": _STEP, "image_words": _COUNT}),
    data.StructLayout({"x_back": _STEP, "y_back": _STEP}),
    data.StructLayout({"kind": unsigned(3), "output_buffer": _FLAG, "second_buffer": _FLAG,
                       "add_shift": unsigned(SHIFT_BITS), "zero_point_a": _CODE,
                       "zero_point_b": _CODE}),
    data.StructLayout({"input_base": _COUNT, "output_base": _COUNT}),
    data.StructLayout({"second_base": _COUNT, "window_row_step": _STEP}),
    data.StructLayout({"multiplier_a": unsigned(MULTIPLIER_BITS),
                       "multiplier_b": unsigned(MULTIPLIER_BITS)}),
    data.StructLayout({"pad_bottom": _COUNT, "pad_right": _COUNT}),
    data.StructLayout({"groups": _COUNT,
                       "gelu_clip": unsigned(GELU_CLIP_MAX.bit_length())}),
    data.StructLayout({"gelu_constant": unsigned(GELU_CONSTANT_MAX.bit_length()),
                       "fraction_bits": unsigned(4)}),
)
"""Program words ``4 + 23 l .. 4 + 23 l + 22``: the record of layer ``l`` (docs/memory-map.md).

The window of the layer (:func:`layer_window`: the input map ``height x width x channels``,
``c_tiles = ceil(channels / rows)`` words a pixel, ``image_words`` a map, the kernel, strides,
pads and ``pad_code``, the output map ``output_height x output_width``, ``positions`` of them,
of ``outputs`` channels), what the activation feeder adds to its address (``x_step`` to the
next output column, ``row_step`` from a row's last column to the next row's first,
``image_step`` from a map's last position to the next map's first, ``tap_step`` from a kernel
row's last K tile to the next row's first, ``origin`` the first address of a layer: see
:func:`layer_window`; ``x_back`` and ``y_back`` take the input pixel's column and row from the
last output column or row back to the first);
``windowed`` is 1 for a convolution or a max pooling layer (0 for a dense or an add layer),
``rounding`` the index in :data:`~systolix.layer.ROUNDING_MODES`; ``kind`` the index in
:data:`LAYER_KINDS`. Where the layer's tensors lie: its input in buffer ``input_buffer`` from
word ``input_base`` (``origin`` includes it), an add layer's second input in
``second_buffer`` from ``second_base``, its output in ``output_buffer`` from ``output_base``
(or, in the ``last`` layer, in the output memory from word 0); ``window_row_step`` is what a
max pooling window's address adds from its last column to its next row's first (the same
channel tile). An add layer's ``zero_point_a``, ``zero_point_b``, ``multiplier_a``,
``multiplier_b`` and ``add_shift`` are its zero points, multipliers and shift; a GELU layer's
input zero point, multiplier and shift are ``zero_point_a``, ``multiplier_a`` and
``add_shift``, its ``clip`` and ``constant`` ``gelu_clip`` and ``gelu_constant``; a softmax
layer's multiplier and shift are ``multiplier_a`` and ``add_shift``, its ``fraction_bits``
``fraction_bits``; a LayerNorm layer's shift is ``add_shift``, its per-channel multipliers and
biases are :data:`LAYERNORM_WORDS` requantization words a channel from ``requant_base``
(:func:`layernorm_words`; all 0 in other records). A matmul layer's record
(:class:`~systolix.layer.MatMulLayer`) has the window of one head of operand ``a``
(:func:`layer_window`), ``b`` in ``second_buffer`` from ``second_base`` (``transpose``: stored
``(cols, groups, inner)``), ``za`` and ``zb`` in ``zero_point_a`` and ``zero_point_b``, the
words of one input's ``b`` and output in ``multiplier_a`` and ``multiplier_b``, ``groups *
output_words`` in ``window_row_step``, and its own ``accumulator_bits`` and ``overflow`` (0 in
other records: they accumulate in the array's). The gateware reads every field but those of
words 20 and 21 but ``gelu_clip`` (an engine with matmul layers reads ``groups``),
``accumulator_bits`` and ``overflow``, which only :func:`packed_layers` needs (the sequencer
writes the last word of a record in the cycle that starts the layer; the post-op and row units
read ``gelu_constant`` and ``fraction_bits`` from the cycle after)."""

RECORD_WORDS = len(LAYER_LAYOUTS)
"""Program words of one layer record."""

MEMORY_WIDTHS = (("weights", "weight_width"), ("requant", "requant_width"),
                 ("program", "program_width"))
"""The memories with an image, each with the :class:`MemoryImages` field of its word width."""

MEMORY_DEPTHS = {"weights": "weight_words", "requant": "requant_words",
                 "program": "program_words"}
"""The memories with an image, each with the :class:`MemoryConfig` field of its depth."""

SPRAM_WORDS = 16384
"""Words of one iCE40 UltraPlus single-port RAM (``SB_SPRAM256KA``, 256 Kbit)."""

SPRAM_BITS = 16
"""Bits of an ``SB_SPRAM256KA`` word."""


@dataclass(frozen=True)
class SpramLayout:
    """Where the words of a single-port memory lie in ``SB_SPRAM256KA`` blocks (16K x 16 bits
    each, with a write mask of one bit a nibble).

    ``groups`` groups of ``columns`` blocks side by side share an address; a row of a group
    (``columns * 16`` bits) holds ``fields`` words, each in ``field_bits`` bits (the word's
    width in whole nibbles), word ``f`` at bits ``f * field_bits``: a word is written alone by
    the nibbles of its field. Word ``a`` of the memory is in bank ``b = a // 16384``, row
    ``a mod 16384``, group ``b // fields``, field ``b mod fields``. With one field a row this is
    the plain arrangement of ``ceil(width / 16)`` blocks side by side times a bank each 16K
    words; several fields a row fill the blocks' bits that a word leaves: 3 words of 20 bits in
    64 (4 blocks hold 49,152 words of 20 bits, against 32,768 with a bank of 2 blocks each)."""

    width: int
    depth: int
    columns: int
    fields: int

    @property
    def field_bits(self):
        return 4 * _ceil_div(self.width, 4)

    @property
    def banks(self):
        return _ceil_div(self.depth, SPRAM_WORDS)

    @property
    def groups(self):
        return _ceil_div(self.banks, self.fields)

    @property
    def blocks(self):
        return self.columns * self.groups


def _spram_fields(width, columns):
    """Words of ``width`` bits, each in whole nibbles, in a row of ``columns`` blocks."""
    return columns * SPRAM_BITS // (4 * _ceil_div(width, 4))


def spram_layout(width, depth):
    """The :class:`SpramLayout` of a memory of ``depth`` words of ``width`` bits in the fewest
    ``SB_SPRAM256KA`` blocks (of those, the fewest side by side)."""
    check_int("width", width, 1, 1024)
    check_int("depth", depth, 1, MAX_WORDS)
    narrowest = _ceil_div(width, SPRAM_BITS)
    banks = _ceil_div(depth, SPRAM_WORDS)
    layouts = [SpramLayout(width, depth, columns, min(_spram_fields(width, columns), banks))
               for columns in range(narrowest, narrowest * banks + 1)]
    return min(layouts, key=lambda layout: (layout.blocks, layout.columns))


def spram_blocks(width, depth):
    """``SB_SPRAM256KA`` blocks of a memory of ``depth`` words of ``width`` bits
    (:func:`spram_layout`)."""
    return spram_layout(width, depth).blocks


def spram_weight_words(config, blocks):
    """The deepest weight memory of an array of ``config`` (whole banks of 16,384 words, at most
    :data:`MAX_WORDS`) whose :func:`spram_layout` takes at most ``blocks``
    ``SB_SPRAM256KA``s: 65,536 words of 16 bits (262,144 4-bit weights) for a 4-column array in
    the UP5K's 4 blocks, 49,152 of 20 bits (245,760) for 5 columns (three words a row of the
    four blocks)."""
    width = config.cols * config.weight_bits
    return max((depth for depth in range(SPRAM_WORDS, MAX_WORDS + 1, SPRAM_WORDS)
                if spram_layout(width, depth).blocks <= blocks), default=0)


def code_shape(bits, signed_codes):
    """The :class:`~amaranth.hdl.Shape` of a ``bits``-bit signed or unsigned code."""
    return signed(bits) if signed_codes else unsigned(bits)


def weights_layout(config):
    """A weight memory word, one beat of the array's ``weights`` stream: one row of a weight
    tile, ``cols`` codes, code ``c`` at bits ``[c * W, (c + 1) * W)``."""
    return data.ArrayLayout(code_shape(config.weight_bits, config.weight_signed), config.cols)


def activation_word_layout(config):
    """An activation buffer word: ``rows`` codes of ``activation_bits`` each, code ``r`` at bits
    ``[r * A, (r + 1) * A)``; also the payload of the engine's ``inputs`` stream."""
    return data.ArrayLayout(code_shape(config.activation_bits, config.activation_signed),
                            config.rows)


def output_layout():
    """A beat of the engine's ``outputs`` stream: a code (its bits, zero-extended to
    :data:`~systolix.numeric.CODE_BITS`) and ``last``, set on the final code of a run."""
    return data.StructLayout({"code": unsigned(CODE_BITS), "last": 1})


def config_fields(config):
    """The fields of :data:`CONFIG_LAYOUT` for ``config``."""
    fields = {name: int(getattr(config, name)) for name, _ in CONFIG_LAYOUT if name != "overflow"}
    return {**fields, "overflow": OVERFLOW_MODES.index(config.overflow)}


def feed_address_bits(memories):
    """Bits of the activation feeder's signed address registers for ``memories``: addresses
    from ``-2 * activation_words`` to ``2 * activation_words - 1`` (a window's taps reach before
    and after its map by its padding); :func:`systolix.sw.pack.check_fit` keeps every layer's
    addresses within them."""
    return memories.activation_words.bit_length() + 2


def _ceil_div(a, b):
    return -(-a // b)


def layernorm_words(multiplier, bias):
    """The requantization memory words of a LayerNorm layer's per-channel constants,
    :data:`LAYERNORM_WORDS` a channel in the layout of :data:`REQUANT_LAYOUT`: channel ``c``'s
    word ``2 c`` holds its (signed 17-bit) ``multiplier`` in ``bias``, word ``2 c + 1`` its
    (signed 48-bit) ``bias`` ``B``, ``B >> 16`` in ``bias`` and ``B & 0xFFFF`` in
    ``multiplier``; every other field is 0."""
    words = []
    for m, b in zip(np.asarray(multiplier).tolist(), np.asarray(bias).tolist()):
        words.append(encode(REQUANT_LAYOUT, {"bias": m, "multiplier": 0, "shift": 0,
                                             "reserved": 0}))
        words.append(encode(REQUANT_LAYOUT, {"bias": b >> MULTIPLIER_BITS,
                                             "multiplier": b & ((1 << MULTIPLIER_BITS) - 1),
                                             "shift": 0, "reserved": 0}))
    return words


def layernorm_constants(words):
    """``(multiplier, bias)``, int64 arrays, of the requantization ``words`` that
    :func:`layernorm_words` made."""
    fields = [decode(REQUANT_LAYOUT, word) for word in words]
    if any(field["shift"] or field["reserved"] for field in fields) or any(
            field["multiplier"] for field in fields[::LAYERNORM_WORDS]):
        raise ValueError("the requantization words of a LayerNorm layer hold other fields "
                         "than its multipliers and biases")
    multiplier = [field["bias"] for field in fields[::LAYERNORM_WORDS]]
    bias = [(field["bias"] << MULTIPLIER_BITS) + field["multiplier"]
            for field in fields[1::LAYERNORM_WORDS]]
    return np.array(multiplier, dtype=np.int64), np.array(bias, dtype=np.int64)


def layer_window(layer, shape, rows, input_base=0):
    """The window fields of a layer's record (:data:`LAYER_LAYOUTS`) for an array of ``rows``
    rows.

    Parameters
    ----------
    layer : IntegerLayer, MaxPoolLayer, AddLayer, GeluLayer, SoftmaxLayer, LayerNormLayer or
        MatMulLayer
    shape : tuple of int
        ``(height, width, channels)`` of the layer's input map: its source's ``output_shape``
        (``(1, 1, K)`` for the program's input). A convolution and a max pooling layer take
        their window's; a dense layer runs as a window that covers the whole map (kernel
        ``height x width``, no padding, one output position), its weight rows already in the
        map's ``(y, x, c)`` order; an add, GELU, softmax or LayerNorm layer as a 1x1 window on
        its shape; a matmul layer (operand ``a``, ``(rows, groups, inner)``) as a 1x1 window of
        one column (one head) with one row of padding on top (``pad_code`` ``za``): ``rows + 1``
        output positions, the first a word of ``za`` codes.
    input_base : int, optional
        The buffer word where the layer's input map starts (``origin`` includes it).

    Returns
    -------
    dict
        Every window field of the record, ``windowed``, ``rounding`` and ``kind`` included. The
        address of K tile ``(ky, kx, ct)`` of output ``(oy, ox)`` of input ``b`` is ``origin +
        b * image_words + oy * stride_height * width * c_tiles + ox * x_step + (ky * width + kx)
        * c_tiles + ct``; the steps are its differences between consecutive vectors and K
        tiles.
    """
    if isinstance(layer, (AddLayer, GeluLayer, SoftmaxLayer, LayerNormLayer)):
        window = Window(*layer.shape, 1, 1)
    elif isinstance(layer, MatMulLayer):
        window = None
    else:
        window = layer.window
    if isinstance(layer, MatMulLayer):
        # Operand a's vectors of one head: a 1x1 window down column g of the (rows, groups,
        # inner) map, one row of padding on top: the first vector of every tile is za codes.
        fields = {"height": layer.rows, "width": layer.groups, "channels": layer.inner,
                  "kernel_height": 1, "kernel_width": 1, "stride_height": 1,
                  "stride_width": 1, "pad_top": 1, "pad_left": 0, "pad_bottom": 0,
                  "pad_right": 0, "groups": layer.groups, "pad_code": layer.zero_points[0],
                  "output_height": layer.rows + 1, "output_width": 1}
    elif window is None:
        height, width, channels = shape
        fields = {"height": height, "width": width, "channels": channels,
                  "kernel_height": height, "kernel_width": width, "stride_height": 1,
                  "stride_width": 1, "pad_top": 0, "pad_left": 0, "pad_bottom": 0,
                  "pad_right": 0, "groups": 1, "pad_code": 0, "output_height": 1,
                  "output_width": 1}
    else:
        fields = {name: getattr(window, name) for name in (
            "height", "width", "channels", "kernel_height", "kernel_width", "stride_height",
            "stride_width", "pad_top", "pad_left", "pad_bottom", "pad_right", "groups",
            "pad_code", "output_height", "output_width")}
    kind = {IntegerLayer: 0, MaxPoolLayer: 1, AddLayer: 2, GeluLayer: 3, SoftmaxLayer: 4,
            LayerNormLayer: 5, MatMulLayer: LAYER_KINDS.index("matmul")}[type(layer)]
    c_tiles = _ceil_div(fields["channels"], rows)
    row_words = fields["width"] * c_tiles
    image_words = fields["height"] * row_words
    x_step = fields["stride_width"] * c_tiles                  # to the next output column
    y_step = fields["stride_height"] * row_words               # to the next output row
    row_end = (fields["output_width"] - 1) * x_step            # a row's last column
    image_end = (fields["output_height"] - 1) * y_step + row_end
    return {**fields, "windowed": int(kind == 1 or kind == 0 and window is not None),
            "kind": kind, "rounding": ROUNDING_MODES.index(getattr(layer, "rounding",
                                                                   "half_up")),
            "positions": fields["output_height"] * fields["output_width"],
            "c_tiles": c_tiles, "image_words": image_words, "x_step": x_step,
            "row_step": y_step - row_end, "image_step": image_words - image_end,
            "tap_step": row_words - fields["kernel_width"] * c_tiles + 1,
            "window_row_step": row_words - (fields["kernel_width"] - 1) * c_tiles,
            "x_back": -(fields["output_width"] - 1) * fields["stride_width"],
            "y_back": -(fields["output_height"] - 1) * fields["stride_height"],
            "input_base": input_base,
            "origin": input_base - (fields["pad_top"] * fields["width"]
                                    + fields["pad_left"]) * c_tiles}


def padded_rows(taps, channels, rows):
    """Where each weight row of a layer goes in its tiled weight matrix: row ``tap * channels +
    c`` (``tap = ky * kernel_width + kx``) to row ``tap * c_tiles * rows + c``, each kernel
    position padded to whole K tiles (``c_tiles = ceil(channels / rows)``) with zero rows."""
    c_tiles = _ceil_div(channels, rows)
    return (np.arange(taps)[:, None] * c_tiles * rows + np.arange(channels)[None, :]).reshape(-1)


@dataclass(frozen=True)
class MemoryConfig:
    """Depths, in words, of the accelerator's memories.

    Parameters
    ----------
    weight_words : int
        Weight memory; a word is one beat of the array's ``weights`` stream
        (``cols * weight_bits`` bits).
    requant_words : int
        Requantization memory; a word holds one output channel's constants.
    program_words : int
        Program memory, :data:`PROGRAM_WORD_BITS` bits a word.
    activation_words : int
        Each of the two activation buffers; a word is one beat of the array's ``activations``
        stream (``rows * activation_bits`` bits). Limits the batch:
        ``activation_words // vector words``.
    batch : int
        The most input vectors of one run: the depth of the accumulator buffer and of the queue
        of finished sums before the requantization unit (``cols * P`` bits a word each).
    output_codes : int
        The output memory, one code of the last layer (8 bits) a word. Limits the batch:
        ``output_codes // outputs``.
    upload_weights : bool
        The weight memory is written at run time by the host (LOAD frames, docs/protocol.md),
        not initialised by the bitstream: a single-port memory (the iCE40 UltraPlus's SPRAM,
        which a bitstream cannot initialise) that the engine reads while it runs and the host
        link writes while it is idle. ``False``: the image is baked into block RAM.

    Each depth is an integer in ``1..``:data:`MAX_WORDS`.
    """

    weight_words: int = 4096
    requant_words: int = 1024
    program_words: int = 256
    activation_words: int = 1024
    batch: int = 128
    output_codes: int = 2048
    upload_weights: bool = False

    def __post_init__(self):
        for name in ("weight_words", "requant_words", "program_words", "activation_words",
                     "batch", "output_codes"):
            check_int(name, getattr(self, name), 1, MAX_WORDS)
        check_bool("upload_weights", self.upload_weights)


@dataclass(frozen=True)
class MemoryImages:
    """The initial contents of the accelerator's memories.

    Attributes
    ----------
    weights, requant, program : tuple of int
        The words of each memory from address 0; the rest of each memory is zero.
    weight_width, requant_width, program_width : int
        Bits in a word of each memory.
    memories : MemoryConfig
        The depths the images were checked against.
    version : int
        :data:`FORMAT_VERSION` of the memory map.
    max_batch : int
        The most input vectors one run may take: ``memories.batch``, or fewer if the activation
        buffers or the output memory hold fewer vectors of this model.
    """

    weights: tuple
    requant: tuple
    program: tuple
    weight_width: int
    requant_width: int
    program_width: int
    memories: MemoryConfig
    version: int
    max_batch: int


def save_images(images, path):
    """Write ``images`` to ``path`` as a JSON object of the :class:`MemoryImages` fields."""
    _check_images(images)
    Path(path).write_text(json.dumps(asdict(images)))


def load_images(path):
    """The :class:`MemoryImages` that :func:`save_images` wrote to ``path``."""
    fields = json.loads(Path(path).read_text())
    fields.update({name: tuple(fields[name]) for name, _ in MEMORY_WIDTHS},
                  memories=MemoryConfig(**fields["memories"]))
    return MemoryImages(**fields)


def _check_images(images):
    if not isinstance(images, MemoryImages):
        raise TypeError(f"images must be MemoryImages, not {type(images).__name__}")


def layer_records(images):
    """The fields of every layer record in the program image of ``images``, as dicts."""
    _check_images(images)
    layers = decode(HEADER_LAYOUT, images.program[0])["layers"]
    records = []
    for start in range(HEADER_WORDS, HEADER_WORDS + RECORD_WORDS * layers, RECORD_WORDS):
        record = {}
        for layout, word in zip(LAYER_LAYOUTS, images.program[start:start + RECORD_WORDS]):
            record.update(decode(layout, word))
        records.append(record)
    return records


def vector_words(images):
    """Activation buffer words of one input map of the program in ``images``: the first
    layer's ``image_words``."""
    return layer_records(images)[0]["image_words"]


def windowed(images):
    """Whether the program in ``images`` needs an engine built with windows: it has a
    convolution (a layer record with ``windowed`` set), a max pooling, add, GELU, softmax or
    LayerNorm layer, or a tensor that does not start at word 0 of its buffer (a graph that is
    not a chain)."""
    return any(record["windowed"] or record["kind"] or record["input_base"]
               or record["output_base"] for record in layer_records(images))


def engine_units(images):
    """The optional units of the engine that runs the program in ``images``, as
    :class:`systolix.hw.engine.InferenceEngine` builds them: ``{"gelu": bool, "matmul": bool,
    "softmax_length": int, "layernorm_channels": int}``, whether its post-op unit has GELU
    lanes, whether it runs matmul layers (the stationary feeder) and the rows of its row unit's
    softmax and LayerNorm units (the program's longest; 0 for none)."""
    records = layer_records(images)

    def longest(kind):
        return max([record["channels"] for record in records
                    if record["kind"] == LAYER_KINDS.index(kind)], default=0)

    def has(kind):
        return any(record["kind"] == LAYER_KINDS.index(kind) for record in records)

    return {"gelu": has("gelu"), "matmul": has("matmul"), "softmax_length": longest("softmax"),
            "layernorm_channels": longest("layernorm")}


def packed_sources(images):
    """``sources`` of the program in ``images`` (as :class:`~systolix.sw.program.IntegerProgram`
    has them): each layer reads the latest earlier layer whose output region (buffer and base)
    is its input's (and an add layer's second input's), or -1, the program's input in buffer 0
    from word 0. The packer never places a tensor over one that is still to be read, so this
    is the graph it packed."""
    records, sources = layer_records(images), []

    def producer(index, buffer, base):
        for earlier in range(index - 1, -1, -1):
            record = records[earlier]
            if not record["last"] and (record["output_buffer"], record["output_base"]) == (
                    buffer, base):
                return earlier
        if (buffer, base) != (0, 0):
            raise ValueError(f"layer {index} reads buffer {buffer} from word {base}, which no "
                             f"earlier layer writes")
        return -1

    for index, record in enumerate(records):
        entry = [producer(index, record["input_buffer"], record["input_base"])]
        if LAYER_KINDS[record["kind"]] in ("add", "matmul"):
            entry.append(producer(index, record["second_buffer"], record["second_base"]))
        sources.append(tuple(entry))
    return tuple(sources)


def input_channels(images):
    """Codes of one pixel of the program's input map (``c_tiles`` words each in the buffer)."""
    return layer_records(images)[0]["channels"]


def output_codes(images):
    """Codes of one output of the program: the last layer's ``positions * outputs``."""
    last = layer_records(images)[-1]
    return last["positions"] * last["outputs"]


_WINDOW_FIELDS = ("height", "width", "channels", "kernel_height", "kernel_width",
                  "stride_height", "stride_width", "pad_top", "pad_left", "pad_bottom",
                  "pad_right", "groups", "pad_code")


def _packed_layer(images, config, record):
    """The layer described by the program ``record`` (decoded fields): an
    :class:`~systolix.layer.IntegerLayer`, :class:`~systolix.layer.MaxPoolLayer`,
    :class:`~systolix.layer.AddLayer`, :class:`~systolix.layer.GeluLayer`,
    :class:`~systolix.layer.SoftmaxLayer`, :class:`~systolix.layer.LayerNormLayer` or
    :class:`~systolix.layer.MatMulLayer`."""
    if record["kind"] >= len(LAYER_KINDS):
        raise ValueError(f"the program has a layer of kind {record['kind']}; this systolix "
                         f"knows kinds 0..{len(LAYER_KINDS) - 1}")
    kind = LAYER_KINDS[record["kind"]]
    if kind == "max_pool":
        return MaxPoolLayer(Window(**{name: record[name] for name in _WINDOW_FIELDS}),
                            bits=record["input_bits"], signed=bool(record["input_signed"]))
    elementwise = {
        "shape": (record["height"], record["width"], record["channels"]),
        **{name: record[name] for name in ("output_zero_point", "output_low", "output_high",
                                           "input_bits", "output_bits")},
        "input_signed": bool(record["input_signed"]),
        "output_signed": bool(record["output_signed"]),
        "rounding": ROUNDING_MODES[record["rounding"]]}
    if kind == "add":
        return AddLayer(zero_points=(record["zero_point_a"], record["zero_point_b"]),
                        multipliers=(record["multiplier_a"], record["multiplier_b"]),
                        shift=record["add_shift"], **elementwise)
    if kind == "matmul":
        return _packed_matmul(images, record)
    if kind == "gelu":
        return GeluLayer(input_zero_point=record["zero_point_a"], clip=record["gelu_clip"],
                         constant=record["gelu_constant"], multiplier=record["multiplier_a"],
                         shift=record["add_shift"], **elementwise)
    if kind == "softmax":
        return SoftmaxLayer(fraction_bits=record["fraction_bits"],
                            multiplier=record["multiplier_a"], shift=record["add_shift"],
                            **elementwise)
    if kind == "layernorm":
        base, channels = record["requant_base"], record["channels"]
        words = images.requant[base:base + LAYERNORM_WORDS * channels]
        if len(words) != LAYERNORM_WORDS * channels:
            raise ValueError(f"the program points past the end of the requant image (a "
                             f"LayerNorm layer at requant word {base})")
        multiplier, bias = layernorm_constants(words)
        return LayerNormLayer(multiplier=multiplier, bias=bias, shift=record["add_shift"],
                              **elementwise)
    beat = weights_layout(config)
    taps = record["kernel_height"] * record["kernel_width"]
    channels, outputs = record["channels"], record["outputs"]
    c_tiles = _ceil_div(channels, config.rows)
    if (record["k_tiles"] != taps * c_tiles or record["c_tiles"] != c_tiles or outputs == 0
            or record["n_tiles"] * config.cols < outputs):
        raise ValueError(f"the program's {record['k_tiles']} x {record['n_tiles']} tiles do not "
                         f"match a layer of {taps} kernel positions of {channels} channels and "
                         f"{outputs} outputs")
    padded_inputs = record["k_tiles"] * config.rows
    if (record["weight_base"] + record["n_tiles"] * padded_inputs > len(images.weights)
            or record["requant_base"] + outputs > len(images.requant)):
        raise ValueError(f"the program points past the end of the weight or requant image "
                         f"(layer at weight word {record['weight_base']}, requant word "
                         f"{record['requant_base']})")
    base = record["weight_base"]
    tiles = []  # tiles[n_tile][k]: row k of output tile n_tile, cols codes
    for n_tile in range(record["n_tiles"]):
        words = images.weights[base + n_tile * padded_inputs:base + (n_tile + 1) * padded_inputs]
        tiles.append([decode(beat, word) for word in words])
    padded = np.array([[code for tile in tiles for code in tile[k]][:outputs]
                       for k in range(padded_inputs)], dtype=np.int64)
    weights = padded[padded_rows(taps, channels, config.rows)]
    window = None
    if record["windowed"]:
        window = Window(**{name: record[name] for name in _WINDOW_FIELDS})
    base = record["requant_base"]
    constants = [decode(REQUANT_LAYOUT, word) for word in images.requant[base:base + outputs]]
    return IntegerLayer(
        weights=weights,
        **{name: np.array([constant[name] for constant in constants], dtype=np.int64)
           for name in REQUANT_FIELDS},
        **{name: record[name] for name in ("output_zero_point", "output_low", "output_high",
                                           "input_bits", "weight_bits", "output_bits")},
        **{name: bool(record[name]) for name in ("input_signed", "weight_signed",
                                                 "output_signed")},
        accumulator_bits=config.accumulator_bits, overflow=config.overflow, window=window,
        rounding=ROUNDING_MODES[record["rounding"]])


def _packed_matmul(images, record):
    """The :class:`~systolix.layer.MatMulLayer` of a ``matmul`` ``record``: its sizes from the
    window of operand ``a``, its constants from its first requantization word."""
    base = record["requant_base"]
    if base >= len(images.requant):
        raise ValueError(f"the program points past the end of the requant image (layer at "
                         f"requant word {base})")
    constants = decode(REQUANT_LAYOUT, images.requant[base])
    return MatMulLayer(
        rows=record["height"], groups=record["width"], inner=record["channels"],
        cols=record["outputs"], transpose=bool(record["transpose"]),
        zero_points=(record["zero_point_a"], record["zero_point_b"]),
        **{name: constants[name] for name in REQUANT_FIELDS},
        **{name: record[name] for name in ("output_zero_point", "output_low", "output_high",
                                           "input_bits", "output_bits", "accumulator_bits")},
        input_signed=bool(record["input_signed"]), output_signed=bool(record["output_signed"]),
        overflow=OVERFLOW_MODES[record["overflow"]], rounding=ROUNDING_MODES[record["rounding"]])


def packed_layers(images, config):
    """Every layer the images of an array of ``config`` hold (:class:`~systolix.layer.IntegerLayer`,
    :class:`~systolix.layer.MaxPoolLayer`, :class:`~systolix.layer.AddLayer`,
    :class:`~systolix.layer.GeluLayer`, :class:`~systolix.layer.SoftmaxLayer` and
    :class:`~systolix.layer.LayerNormLayer` records; their graph is :func:`packed_sources`).

    Raises
    ------
    ValueError
        If the images are of another memory map version, were packed for another array, or
        their program does not describe layers within the other images.
    """
    _check_images(images)
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {type(config).__name__}")
    header = decode(HEADER_LAYOUT, images.program[0]) if images.program else {}
    if images.version != FORMAT_VERSION or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"the images are not memory map version {FORMAT_VERSION} (they say "
                         f"{images.version} and {header.get('version')}); this systolix reads "
                         f"version {FORMAT_VERSION}")
    packed_for = decode(CONFIG_LAYOUT, images.program[1]) if len(images.program) > 1 else {}
    expected = config_fields(config)
    if packed_for != expected:
        differences = ", ".join(f"{name} {packed_for.get(name)} (not {value})"
                                for name, value in expected.items()
                                if packed_for.get(name) != value)
        raise ValueError(f"the images were packed for another array than {config.name}: "
                         f"{differences}")
    words = len(images.program) - HEADER_WORDS
    if header["layers"] == 0 or words != RECORD_WORDS * header["layers"]:
        raise ValueError(f"the program image has {len(images.program)} words, not the "
                         f"{HEADER_WORDS + RECORD_WORDS * header['layers']} of "
                         f"{header['layers']} layers")
    return tuple(_packed_layer(images, config, record) for record in layer_records(images))


def _check_config(config):
    if not isinstance(config, ArrayConfig):
        raise TypeError(f"config must be an ArrayConfig, not {type(config).__name__}")


def pack_vectors(codes, config, vector_words, channels=None):
    """The activation buffer words of input maps.

    Parameters
    ----------
    codes : array_like of int, shape (n, K)
        Input codes of the first layer (maps NHWC-flattened), in the array's activation code
        range.
    config : ArrayConfig
    vector_words : int
        Words a map occupies (:func:`vector_words`): ``pixels * ceil(channels / rows)``.
    channels : int, optional
        Codes of a pixel (:func:`input_channels`); by default ``K``, one pixel.

    Returns
    -------
    list of int
        ``n * vector_words`` words of :func:`activation_word_layout`: word ``p * c_tiles + t``
        of map ``i`` holds codes ``t * rows .. t * rows + rows - 1`` of its pixel ``p``, codes
        past ``channels`` zero.
    """
    _check_config(config)
    rows = config.rows
    codes = [[int(code) for code in vector] for vector in codes]
    low, high = config.activation_range
    width = max((len(vector) for vector in codes), default=0)
    channels = width if channels is None else channels
    pixels = width // channels if channels else 0
    c_tiles = _ceil_div(channels, rows)
    if (pixels * channels != width or pixels * c_tiles != vector_words
            or any(len(vector) != width for vector in codes)):
        raise ValueError(f"input vectors must all have the same length, whole pixels of "
                         f"{channels} codes filling {vector_words} words of {rows} codes, not "
                         f"{sorted({len(v) for v in codes})}")
    if any(not low <= code <= high for vector in codes for code in vector):
        raise ValueError(f"input codes must lie in {low}..{high}")
    beat = activation_word_layout(config)
    padding = [0] * (c_tiles * rows - channels)
    return [encode(beat, (vector[p * channels:(p + 1) * channels] + padding)[t * rows:(t + 1) * rows])
            for vector in codes for p in range(pixels) for t in range(c_tiles)]


def unpack_vectors(words, config, vector_words, channels=None):
    """The input maps held by activation buffer ``words`` (the inverse of
    :func:`pack_vectors`): an int64 matrix of ``len(words) // vector_words`` rows of
    ``pixels * channels`` codes (by default ``channels`` is a pixel's whole ``c_tiles * rows``
    codes, the padding included)."""
    _check_config(config)
    beat = activation_word_layout(config)
    codes = np.array([code for word in words for code in decode(beat, word)], dtype=np.int64)
    if channels is None:
        return codes.reshape(-1, vector_words * config.rows)
    c_tiles = _ceil_div(channels, config.rows)
    pixels = codes.reshape(-1, c_tiles * config.rows)[:, :channels]
    return pixels.reshape(-1, vector_words // c_tiles * channels)


def unpack_outputs(raw, bits, signed_codes):
    """Output codes from their raw ``bits``-bit patterns (as the engine sends them: the code's
    bits, zero-extended), as a list of int."""
    code = data.ArrayLayout(code_shape(bits, signed_codes), 1)
    return [decode(code, int(word) & ((1 << bits) - 1))[0] for word in raw]


def baked_memories(memories):
    """The names of the memories of :data:`MEMORY_WIDTHS` whose image the bitstream holds
    (block RAM initial contents, what a bitstream patcher rewrites): all three, or without
    ``"weights"`` when ``memories`` (a :class:`MemoryConfig`) has ``upload_weights``."""
    return tuple(name for name, _ in MEMORY_WIDTHS
                 if not (name == "weights" and memories.upload_weights))


def weight_write_layout(width):
    """A write of one weight memory word of ``width`` bits (``MemoryImages.weight_width``,
    with ``upload_weights``): its ``addr`` (16 bits) and ``data``, the payload of the stream
    from the host link into the engine."""
    return data.StructLayout({"addr": unsigned(16), "data": unsigned(width)})


def memory_contents(images, name, filler=None):
    """Every word of the memory ``name`` (``"weights"``, ``"requant"`` or ``"program"``): the
    image, then zeros, or with ``filler`` (an integer seed) pseudo-random words, to the memory's
    depth.

    The accelerator reads only the words its program refers to, so the filler changes nothing it
    computes; it makes every block RAM of a bitstream hold different contents, which is what
    lets a bitstream patcher (``icebram``, ``ecpbram``) find each one by its contents. The filler
    depends only on ``filler``, the memory and its shape, so two models of the same shape get the
    same filler.
    """
    _check_images(images)
    check_choice("memory", name, tuple(MEMORY_DEPTHS))
    words, width = getattr(images, name), getattr(images, dict(MEMORY_WIDTHS)[name])
    depth = getattr(images.memories, MEMORY_DEPTHS[name])
    if filler is None:
        return tuple(words) + (0,) * (depth - len(words))
    rng = np.random.default_rng([check_int("filler", filler, 0, 2**32 - 1),
                                 tuple(MEMORY_DEPTHS).index(name), width, depth])
    size = -(-width // 8)
    mask = (1 << width) - 1
    raw = rng.bytes(size * depth)
    return tuple(words) + tuple(int.from_bytes(raw[size * index:size * (index + 1)], "little")
                                & mask for index in range(len(words), depth))
