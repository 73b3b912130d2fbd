"""The memory map: every word of the accelerator's memories (see docs/memory-map.md).

The packer (:func:`systolix.sw.pack.pack`) writes the memory images, the gateware
(:mod:`systolix.hw`), the golden and cycle models (:mod:`systolix.sim.golden`), the driver and
the testbenches read them, all through the layouts defined here and the one codec
(:mod:`systolix.codec`).

Four memories have an image baked into the bitstream:

* the weight memory: every weight tile in the order the sequencer sends it to the array (per
  layer, per output tile, per K tile, ``rows`` words), a word one row of a tile
  (:func:`weights_layout`);
* the requantization memory: one :data:`REQUANT_LAYOUT` word per output channel, each layer's
  channels padded to whole output tiles;
* the program memory: a header (:data:`HEADER_LAYOUT`, :data:`CONFIG_LAYOUT`,
  :data:`TOTALS_LAYOUT`, :data:`BATCH_LAYOUT`) and one record of :data:`LAYER_LAYOUTS` words per
  layer.

Two activation buffers hold a batch of vectors, ``k_tiles`` words a vector
(:func:`activation_word_layout`); the output memory holds the last layer's codes. The layouts
are versioned by :data:`FORMAT_VERSION`, stored in the first program word.
"""

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from .codec import decode, encode
from .config import OVERFLOW_MODES, ArrayConfig, check_choice, check_int
from .layer import IntegerLayer
from .numeric import BIAS_BITS, CODE_BITS, MULTIPLIER_BITS, SHIFT_BITS

__all__ = [
    "FORMAT_VERSION", "PROGRAM_WORD_BITS", "MAX_WORDS", "REQUANT_FIELDS", "REQUANT_LAYOUT",
    "HEADER_LAYOUT", "CONFIG_LAYOUT", "TOTALS_LAYOUT", "BATCH_LAYOUT", "LAYER_LAYOUTS",
    "HEADER_WORDS", "RECORD_WORDS", "MEMORY_WIDTHS", "MEMORY_DEPTHS", "code_shape",
    "weights_layout", "activation_word_layout", "output_layout", "config_fields",
    "MemoryConfig", "MemoryImages", "layer_records", "packed_layers",
    "save_images", "load_images", "pack_vectors", "unpack_vectors", "unpack_outputs",
    "memory_contents",
]

FORMAT_VERSION = 3
"""Version of the memory map: the layouts below and the order of the words."""

PROGRAM_WORD_BITS = 32
"""Width of a program memory word."""

MAX_WORDS = 1 << 16
"""The most words any memory may have: addresses and counts are 16-bit program fields."""

_COUNT = unsigned(16)
_FLAG = unsigned(1)
_WIDTH = unsigned(4)          # a code width, 1..8
_CODE = signed(CODE_BITS + 1)  # an 8-bit signed or unsigned code

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

LAYER_LAYOUTS = (
    data.StructLayout({"inputs": _COUNT, "outputs": _COUNT}),
    data.StructLayout({"k_tiles": _COUNT, "n_tiles": _COUNT}),
    data.StructLayout({"weight_base": _COUNT, "requant_base": _COUNT}),
    data.StructLayout({
        "input_bits": _WIDTH, "input_signed": _FLAG,
        "weight_bits": _WIDTH, "weight_signed": _FLAG,
        "output_bits": _WIDTH, "output_signed": _FLAG,
        "input_buffer": _FLAG, "last": _FLAG,
    }),
    data.StructLayout({"output_zero_point": _CODE, "output_low": _CODE, "output_high": _CODE}),
    data.StructLayout({"output_words": _COUNT}),
)
"""Program words ``4 + 6 l .. 4 + 6 l + 5``: the record of layer ``l``."""

RECORD_WORDS = len(LAYER_LAYOUTS)
"""Program words of one layer record."""

MEMORY_WIDTHS = (("weights", "weight_width"), ("requant", "requant_width"),
                 ("program", "program_width"))
"""The memories with an image, each with the :class:`MemoryImages` field of its word width."""

MEMORY_DEPTHS = {"weights": "weight_words", "requant": "requant_words",
                 "program": "program_words"}
"""The memories with an image, each with the :class:`MemoryConfig` field of its depth."""


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

    Each is an integer in ``1..``:data:`MAX_WORDS`.
    """

    weight_words: int = 4096
    requant_words: int = 1024
    program_words: int = 256
    activation_words: int = 1024
    batch: int = 128
    output_codes: int = 2048

    def __post_init__(self):
        for name in ("weight_words", "requant_words", "program_words", "activation_words",
                     "batch", "output_codes"):
            check_int(name, getattr(self, name), 1, MAX_WORDS)


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


def _packed_layer(images, config, record):
    """The :class:`~systolix.layer.IntegerLayer` described by the program ``record`` (decoded
    fields)."""
    beat = weights_layout(config)
    inputs, outputs = record["inputs"], record["outputs"]
    padded_inputs = record["k_tiles"] * config.rows
    if padded_inputs < inputs or record["n_tiles"] * config.cols < outputs:
        raise ValueError(f"the program's {record['k_tiles']} x {record['n_tiles']} tiles do not "
                         f"cover a layer of {inputs} inputs and {outputs} outputs")
    if (record["weight_base"] + record["n_tiles"] * padded_inputs > len(images.weights)
            or record["requant_base"] + outputs > len(images.requant)):
        raise ValueError(f"the program points past the end of the weight or requant image "
                         f"(layer at weight word {record['weight_base']}, requant word "
                         f"{record['requant_base']})")
    base = record["weight_base"]
    tiles = []  # tiles[n_tile][k]: row k of output tile n_tile, cols codes
    for n_tile in range(record["n_tiles"]):
        words = images.weights[base + n_tile * padded_inputs:base + (n_tile + 1) * padded_inputs]
        tiles.append([decode(beat, word) for word in words[:inputs]])
    weights = np.array([[code for tile in tiles for code in tile[k]][:outputs]
                        for k in range(inputs)], dtype=np.int64).reshape(inputs, outputs)
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
        accumulator_bits=config.accumulator_bits, overflow=config.overflow)


def packed_layers(images, config):
    """Every layer the images of an array of ``config`` hold, as
    :class:`~systolix.layer.IntegerLayer`\\ s.

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


def pack_vectors(codes, config, vector_words):
    """The activation buffer words of input vectors.

    Parameters
    ----------
    codes : array_like of int, shape (n, K)
        Input codes of the first layer, in the array's activation code range.
    config : ArrayConfig
    vector_words : int
        Words a vector occupies, ``ceil(K / rows)`` (layer 0's ``k_tiles``).

    Returns
    -------
    list of int
        ``n * vector_words`` words of :func:`activation_word_layout`: word ``t`` of vector ``i``
        holds codes ``t * rows .. t * rows + rows - 1``, codes past ``K`` zero.
    """
    _check_config(config)
    rows = config.rows
    codes = [[int(code) for code in vector] for vector in codes]
    low, high = config.activation_range
    width = max((len(vector) for vector in codes), default=0)
    if width > vector_words * rows or any(len(vector) != width for vector in codes):
        raise ValueError(f"input vectors must all have the same length, at most "
                         f"{vector_words * rows} codes, not {sorted({len(v) for v in codes})}")
    if any(not low <= code <= high for vector in codes for code in vector):
        raise ValueError(f"input codes must lie in {low}..{high}")
    beat = activation_word_layout(config)
    return [encode(beat, (vector + [0] * (vector_words * rows - width))[t * rows:(t + 1) * rows])
            for vector in codes for t in range(vector_words)]


def unpack_vectors(words, config, vector_words):
    """The input vectors held by activation buffer ``words`` (the inverse of
    :func:`pack_vectors`, codes past ``K`` included): an int64 matrix of
    ``len(words) // vector_words`` rows and ``vector_words * rows`` columns."""
    _check_config(config)
    beat = activation_word_layout(config)
    codes = [code for word in words for code in decode(beat, word)]
    return np.array(codes, dtype=np.int64).reshape(-1, vector_words * config.rows)


def unpack_outputs(raw, bits, signed_codes):
    """Output codes from their raw ``bits``-bit patterns (as the engine sends them: the code's
    bits, zero-extended), as a list of int."""
    code = data.ArrayLayout(code_shape(bits, signed_codes), 1)
    return [decode(code, int(word) & ((1 << bits) - 1))[0] for word in raw]


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
