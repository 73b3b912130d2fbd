"""Packing an integer program into the accelerator's memory images (see docs/memory-map.md).

:func:`pack` turns an :class:`~systolix.sw.program.IntegerProgram` and the
:class:`~systolix.config.ArrayConfig` of the array that runs it into :class:`MemoryImages`: the
words of the weight, requantization and program memories as Python ints, ready for
``amaranth.lib.memory.Memory(init=...)``; :func:`write_images` writes them as ``.hex``
(``$readmemh``) and ``.bin`` files; :func:`unpack` recovers the layers exactly.

The weight memory holds every weight tile in the order the sequencer sends it to the array: per
layer, per output tile, per K tile, ``rows`` words, each word one beat of the array's ``weights``
stream (:func:`systolix.hw.array.weights_layout`). The requantization memory holds one word per
output channel, the program memory a header and six words per layer. Every word is described by
an :class:`amaranth.lib.data.Layout` defined here (:data:`REQUANT_LAYOUT`, :data:`HEADER_LAYOUT`,
:data:`CONFIG_LAYOUT`, :data:`LAYER_LAYOUTS`), which the gateware can use to view the words it
reads. The layouts are versioned by :data:`FORMAT_VERSION`, stored in the first program word.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from systolix.config import OVERFLOW_MODES, ArrayConfig, check_choice, check_int, code_range
from systolix.hw.array import weights_layout
from systolix.sim.golden.program import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS

from .a2q import min_accumulator_bits
from .io import atomic_write
from .program import IntegerLayer, IntegerProgram

__all__ = ["FORMAT_VERSION", "PROGRAM_WORD_BITS", "HEADER_WORDS", "MAX_WORDS", "REQUANT_LAYOUT",
           "REQUANT_FIELDS",
           "HEADER_LAYOUT", "CONFIG_LAYOUT", "TOTALS_LAYOUT", "BATCH_LAYOUT", "LAYER_LAYOUTS", "MemoryConfig", "MemoryImages",
           "LayerTiles", "layer_tiles", "ideal_cycles", "check_fit", "pack", "layer_records", "unpack",
           "pack_vectors", "unpack_outputs", "memory_contents",
           "write_hex", "write_images", "MEMORY_WIDTHS"]

FORMAT_VERSION = 3
"""Version of the memory map: the layouts below and the order of the words."""

PROGRAM_WORD_BITS = 32
"""Width of a program memory word."""

MAX_WORDS = 1 << 16
"""The most words any memory may have: addresses and counts are 16-bit program fields."""

_COUNT = unsigned(16)
_FLAG = unsigned(1)
_WIDTH = unsigned(4)          # a code width, 1..8
_CODE = signed(9)             # an 8-bit signed or unsigned code

REQUANT_FIELDS = ("bias", "multiplier", "shift")
"""The fields of a requantization word that hold a channel's constants."""

_REQUANT_CONSTANTS = BIAS_BITS + MULTIPLIER_BITS + MAX_SHIFT.bit_length()

REQUANT_LAYOUT = data.StructLayout({
    "bias": signed(BIAS_BITS),
    "multiplier": unsigned(MULTIPLIER_BITS),
    "shift": unsigned(MAX_SHIFT.bit_length()),
    "reserved": unsigned(-_REQUANT_CONSTANTS % 4),
})
"""One requantization word: the constants of one output channel, then ``reserved`` bits (0 in
the images) that round the word up to a whole number of hexadecimal digits (56 bits): every bit
column of a ``.hex`` line is then a bit of the memory, which is what ``icebram`` and ``ecpbram``
need to find each block RAM by its contents (docs/memory-map.md, version 3)."""

HEADER_LAYOUT = data.StructLayout({"version": _COUNT, "layers": _COUNT})
"""Program word 0: :data:`FORMAT_VERSION` and the number of layers."""

TOTALS_LAYOUT = data.StructLayout({"weight_words": unsigned(PROGRAM_WORD_BITS)})
"""Program word 2: the words of the weight image, all of which every run sends to the array."""

BATCH_LAYOUT = data.StructLayout({"max_batch": unsigned(PROGRAM_WORD_BITS)})
"""Program word 3: the most input vectors one run may take (:attr:`MemoryImages.max_batch`)."""

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

HEADER_WORDS = 4
"""Program words before the first layer record."""
MEMORY_WIDTHS = (("weights", "weight_width"), ("requant", "requant_width"),
                 ("program", "program_width"))
"""The memories with an image, each with the :class:`MemoryImages` field of its word width."""
_DEPTHS = {"weights": "weight_words", "requant": "requant_words", "program": "program_words"}


def _encode(layout, values):
    """The integer whose bits hold ``values[name]`` in each field ``name`` of ``layout``.

    Signed fields are two's complement; a value outside its field raises :class:`ValueError`.
    """
    word = 0
    for name, field in layout:
        value = check_int(str(name), int(values[name]), *code_range(field.width,
                                                                     field.shape.signed))
        word |= (value & ((1 << field.width) - 1)) << field.offset
    return word


def _decode(layout, word):
    """The values of the fields of ``layout`` in ``word``, as a dict (the inverse of
    :func:`_encode`)."""
    values = {}
    for name, field in layout:
        value = (word >> field.offset) & ((1 << field.width) - 1)
        if field.shape.signed and value >> (field.width - 1):
            value -= 1 << field.width
        values[name] = value
    return values


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


class LayerTiles(NamedTuple):
    """How one layer is cut into array tiles.

    Attributes
    ----------
    k_tiles : int
        ``ceil(inputs / rows)``: K tiles, also the words of one input vector in an activation
        buffer.
    n_tiles : int
        ``ceil(outputs / cols)``: output tiles.
    weight_words : int
        ``k_tiles * n_tiles * rows``.
    requant_words : int
        ``n_tiles * cols``.
    """
    k_tiles: int
    n_tiles: int
    weight_words: int
    requant_words: int


def _ceil_div(a, b):
    return -(-a // b)


def _tiles(layer, config):
    inputs, outputs = layer.weights.shape
    k_tiles, n_tiles = _ceil_div(inputs, config.rows), _ceil_div(outputs, config.cols)
    return LayerTiles(k_tiles, n_tiles, k_tiles * n_tiles * config.rows, n_tiles * config.cols)


def _check_type(name, value, kind):
    if not isinstance(value, kind):
        raise TypeError(f"{name} must be {kind.__name__}, not {type(value).__name__}")


def _check_types(program, config, memories=MemoryConfig()):
    _check_type("program", program, IntegerProgram)
    _check_type("config", config, ArrayConfig)
    _check_type("memories", memories, MemoryConfig)


def layer_tiles(program, config):
    """The :class:`LayerTiles` of every layer of ``program`` on an array of ``config``."""
    _check_types(program, config)
    return tuple(_tiles(layer, config) for layer in program.layers)


def ideal_cycles(program, config):
    """Array cycles per input vector if every tile computed at full rate and never waited.

    The tiled multiply-accumulates of all layers (each layer padded to whole tiles) divided by
    the ``rows * cols`` the array does per cycle: ``sum(k_tiles * n_tiles)``. Divided by the
    measured cycles per vector, it is the array's utilisation.
    """
    return sum(tiles.k_tiles * tiles.n_tiles for tiles in layer_tiles(program, config))


def _describe(bits, signed):
    low, high = code_range(bits, signed)
    return f"{bits}-bit {'signed' if signed else 'unsigned'} ({low}..{high})"


def _check_layers(layers, config):
    """Raise :class:`ValueError` if an array of ``config`` cannot run ``layers`` bit-exactly."""
    array = (config.accumulator_bits, config.overflow)
    for index, layer in enumerate(layers):
        inputs, outputs = layer.weights.shape
        check_int(f"the inputs of layer {index}", inputs, 1, MAX_WORDS - 1)
        check_int(f"the outputs of layer {index}", outputs, 1, MAX_WORDS - 1)
        for kind, codes, array_codes in (
                ("weights", (layer.weight_bits, layer.weight_signed),
                 (config.weight_bits, config.weight_signed)),
                ("inputs", (layer.input_bits, layer.input_signed),
                 (config.activation_bits, config.activation_signed))):
            (low, high), (array_low, array_high) = code_range(*codes), code_range(*array_codes)
            if low < array_low or high > array_high:
                raise ValueError(f"layer {index} has {_describe(*codes)} {kind}; the array "
                                 f"takes {_describe(*array_codes)} codes")
        if (layer.accumulator_bits, layer.overflow) != array:
            raise ValueError(f"layer {index} accumulates in {layer.accumulator_bits} bits "
                             f"({layer.overflow}); the array in {config.accumulator_bits} bits "
                             f"({config.overflow})")
        needs = min_accumulator_bits(layer.weights, layer.input_bits, layer.input_signed)
        if layer.overflow == "saturate" and inputs > config.rows and needs > config.accumulator_bits:
            raise ValueError(f"layer {index} may overflow its {config.accumulator_bits}-bit "
                             f"accumulator (it needs {needs} bits) and its {inputs} inputs span "
                             f"{_ceil_div(inputs, config.rows)} K tiles: saturation is bit-exact "
                             f"across K tiles only if it never happens; use overflow 'wrap', "
                             f"{needs} accumulator bits or at least {inputs} rows")


def _check_fit(layers, config, memories):
    """Raise :class:`ValueError` naming every memory too small for ``layers``."""
    tiles = [_tiles(layer, config) for layer in layers]
    problems = []
    for kind, needs, have in (
            ("weight", [t.weight_words for t in tiles], memories.weight_words),
            ("requant", [t.requant_words for t in tiles], memories.requant_words)):
        if sum(needs) > have:
            per_layer = ", ".join(f"layer {index}: {words}" for index, words in enumerate(needs))
            problems.append(f"the model needs {sum(needs)} {kind} words ({per_layer}), the "
                            f"memory has {have}")
    program_words = HEADER_WORDS + len(LAYER_LAYOUTS) * len(layers)
    if program_words > memories.program_words:
        problems.append(f"the model needs {program_words} program words ({HEADER_WORDS} + "
                        f"{len(LAYER_LAYOUTS)} per layer, {len(layers)} layers), the memory "
                        f"has {memories.program_words}")
    widest = max(range(len(layers)), key=lambda index: tiles[index].k_tiles)
    if tiles[widest].k_tiles > memories.activation_words:
        problems.append(f"the model needs {tiles[widest].k_tiles} activation words per vector "
                        f"(layer {widest}: {layers[widest].weights.shape[0]} inputs), each "
                        f"buffer has {memories.activation_words}")
    outputs = layers[-1].weights.shape[1]
    if outputs > memories.output_codes:
        problems.append(f"the model needs {outputs} output codes per vector (layer "
                        f"{len(layers) - 1}), the output memory has {memories.output_codes}")
    if problems:
        raise ValueError("; ".join(problems))
    return tiles


def _max_batch(layers, tiles, memories):
    """The most vectors one run of ``layers`` may take (see :attr:`MemoryImages.max_batch`)."""
    return min(memories.batch,
               memories.activation_words // max(tile.k_tiles for tile in tiles),
               memories.output_codes // layers[-1].weights.shape[1])


def check_fit(program, config, memories):
    """Raise :class:`ValueError` unless ``program`` runs on ``config`` with ``memories``.

    The array must take every layer's weight and input codes and accumulate as every layer does
    (``accumulator_bits`` and ``overflow``); the layers must have ``1..65535`` inputs and
    outputs; each memory must hold what the model needs (the message gives, for each memory too
    small, the words needed, per layer, and the words the memory has).

    Returns
    -------
    tuple of LayerTiles
    """
    _check_types(program, config, memories)
    _check_layers(program.layers, config)
    return tuple(_check_fit(program.layers, config, memories))


def _padded(array, shape):
    """``array`` (a matrix of int) in the top left corner of a zero matrix of ``shape``."""
    rows = [list(row) + [0] * (shape[1] - len(row)) for row in array.tolist()]
    return rows + [[0] * shape[1] for _ in range(shape[0] - len(rows))]


def _config_fields(config):
    """The fields of :data:`CONFIG_LAYOUT` for ``config``."""
    fields = {name: int(getattr(config, name)) for name, _ in CONFIG_LAYOUT if name != "overflow"}
    return {**fields, "overflow": OVERFLOW_MODES.index(config.overflow)}


def _pack_layers(layers, config, memories):
    """The :class:`MemoryImages` of ``layers`` (checked with :func:`_check_layers` and
    :func:`_check_fit`)."""
    _check_layers(layers, config)
    tiles = _check_fit(layers, config, memories)
    rows, cols = config.rows, config.cols
    beat = weights_layout(config)
    weights, requant = [], []
    max_batch = _max_batch(layers, tiles, memories)
    program = [_encode(HEADER_LAYOUT, {"version": FORMAT_VERSION, "layers": len(layers)}),
               _encode(CONFIG_LAYOUT, _config_fields(config)),
               _encode(TOTALS_LAYOUT, {"weight_words": sum(t.weight_words for t in tiles)}),
               _encode(BATCH_LAYOUT, {"max_batch": max_batch})]
    for index, (layer, tile) in enumerate(zip(layers, tiles)):
        last = index == len(layers) - 1
        inputs, outputs = layer.weights.shape
        record = {
            "inputs": inputs, "outputs": outputs,
            "k_tiles": tile.k_tiles, "n_tiles": tile.n_tiles,
            "weight_base": len(weights), "requant_base": len(requant),
            "input_bits": layer.input_bits, "input_signed": layer.input_signed,
            "weight_bits": layer.weight_bits, "weight_signed": layer.weight_signed,
            "output_bits": layer.output_bits, "output_signed": layer.output_signed,
            "input_buffer": index % 2, "last": last,
            "output_zero_point": layer.output_zero_point, "output_low": layer.output_low,
            "output_high": layer.output_high,
            "output_words": 0 if last else _ceil_div(outputs, rows),
        }
        program.extend(_encode(layout, record) for layout in LAYER_LAYOUTS)
        matrix = _padded(layer.weights, (tile.k_tiles * rows, tile.n_tiles * cols))
        for n_tile in range(tile.n_tiles):
            for k in range(tile.k_tiles * rows):
                weights.append(_encode(beat, matrix[k][n_tile * cols:(n_tile + 1) * cols]))
        constants = zip(layer.bias.tolist(), layer.multiplier.tolist(), layer.shift.tolist())
        requant.extend(_encode(REQUANT_LAYOUT, {"bias": bias, "multiplier": multiplier,
                                                "shift": shift, "reserved": 0})
                       for bias, multiplier, shift in constants)
        requant.extend([0] * (tile.requant_words - outputs))
    return MemoryImages(weights=tuple(weights), requant=tuple(requant), program=tuple(program),
                        weight_width=beat.size, requant_width=REQUANT_LAYOUT.size,
                        program_width=PROGRAM_WORD_BITS, memories=memories,
                        version=FORMAT_VERSION, max_batch=max_batch)


def pack(program, config, memories=MemoryConfig()):
    """The memory images of ``program`` for an array of ``config``.

    Parameters
    ----------
    program : IntegerProgram
    config : ArrayConfig
    memories : MemoryConfig

    Returns
    -------
    MemoryImages

    Raises
    ------
    ValueError
        If the array cannot run the program or a memory is too small (:func:`check_fit`).
    """
    _check_types(program, config, memories)
    return _pack_layers(program.layers, config, memories)


def _unpack_layer(images, config, record):
    """The :class:`IntegerLayer` described by the program ``record`` (decoded fields)."""
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
    columns = []  # columns[n_tile][k]: row k of output tile n_tile, cols codes
    for n_tile in range(record["n_tiles"]):
        words = images.weights[base + n_tile * padded_inputs:base + (n_tile + 1) * padded_inputs]
        columns.append([list(_decode(beat, word).values()) for word in words[:inputs]])
    weights = [[code for tile in columns for code in tile[k]][:outputs] for k in range(inputs)]
    base = record["requant_base"]
    constants = [_decode(REQUANT_LAYOUT, word) for word in images.requant[base:base + outputs]]
    return IntegerLayer(
        weights=weights,
        **{name: [constant[name] for constant in constants] for name in REQUANT_FIELDS},
        **{name: record[name] for name in ("output_zero_point", "output_low", "output_high",
                                           "input_bits", "weight_bits", "output_bits")},
        **{name: bool(record[name]) for name in ("input_signed", "weight_signed",
                                                 "output_signed")},
        accumulator_bits=config.accumulator_bits, overflow=config.overflow)


def layer_records(images):
    """The fields of every layer record in the program image of ``images``, as dicts."""
    _check_type("images", images, MemoryImages)
    layers = _decode(HEADER_LAYOUT, images.program[0])["layers"]
    records = []
    for start in range(HEADER_WORDS, HEADER_WORDS + len(LAYER_LAYOUTS) * layers,
                       len(LAYER_LAYOUTS)):
        record = {}
        for layout, word in zip(LAYER_LAYOUTS, images.program[start:start + len(LAYER_LAYOUTS)]):
            record.update(_decode(layout, word))
        records.append(record)
    return records


def unpack(images, config):
    """The layers packed into ``images`` for an array of ``config``, exactly as they were.

    Parameters
    ----------
    images : MemoryImages
    config : ArrayConfig

    Returns
    -------
    tuple of IntegerLayer
        Equal, field by field, to the layers of the program given to :func:`pack` (the host
        quantizers of an :class:`IntegerProgram` are not in the images).

    Raises
    ------
    ValueError
        If the images are of another memory map version, were packed for another array, or are
        not exactly what :func:`pack` makes of the layers they hold.
    """
    _check_type("images", images, MemoryImages)
    _check_type("config", config, ArrayConfig)
    header = _decode(HEADER_LAYOUT, images.program[0]) if images.program else {}
    if images.version != FORMAT_VERSION or header.get("version") != FORMAT_VERSION:
        raise ValueError(f"the images are not memory map version {FORMAT_VERSION} (they say "
                         f"{images.version} and {header.get('version')}); this systolix reads "
                         f"version {FORMAT_VERSION}")
    packed_for = _decode(CONFIG_LAYOUT, images.program[1]) if len(images.program) > 1 else {}
    expected = _config_fields(config)
    if packed_for != expected:
        differences = ", ".join(f"{name} {packed_for.get(name)} (not {value})"
                                for name, value in expected.items()
                                if packed_for.get(name) != value)
        raise ValueError(f"the images were packed for another array than {config.name}: "
                         f"{differences}")
    records = [images.program[start:start + len(LAYER_LAYOUTS)]
               for start in range(HEADER_WORDS, len(images.program), len(LAYER_LAYOUTS))]
    if not records or len(records) != header["layers"] or len(records[-1]) != len(
            LAYER_LAYOUTS):
        raise ValueError(f"the program image has {len(images.program)} words, not the "
                         f"{HEADER_WORDS + len(LAYER_LAYOUTS) * header['layers']} of "
                         f"{header['layers']} layers")
    layers = [_unpack_layer(images, config, record) for record in layer_records(images)]
    if _pack_layers(layers, config, images.memories) != images:
        raise ValueError(f"the images are not in the layout of memory map version "
                         f"{FORMAT_VERSION}: repacking the layers they hold gives other words")
    return tuple(layers)


def pack_vectors(codes, config, vector_words):
    """The activation buffer words of input vectors (see docs/memory-map.md).

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
        ``n * vector_words`` words: word ``t`` of vector ``i`` holds codes
        ``t * rows .. t * rows + rows - 1`` at bits ``[r * A, (r + 1) * A)``, two's complement,
        codes past ``K`` zero.
    """
    _check_type("config", config, ArrayConfig)
    rows, bits = config.rows, config.activation_bits
    codes = [[int(code) for code in vector] for vector in codes]
    low, high = config.activation_range
    width = max((len(vector) for vector in codes), default=0)
    if width > vector_words * rows or any(len(vector) != width for vector in codes):
        raise ValueError(f"input vectors must all have the same length, at most "
                         f"{vector_words * rows} codes, not {sorted({len(v) for v in codes})}")
    if any(not low <= code <= high for vector in codes for code in vector):
        raise ValueError(f"input codes must lie in {low}..{high}")
    beat = data.ArrayLayout(unsigned(bits) if low >= 0 else signed(bits), rows)
    return [_encode(beat, (vector + [0] * (vector_words * rows - width))[t * rows:(t + 1) * rows])
            for vector in codes for t in range(vector_words)]


def unpack_outputs(raw, bits, signed_codes):
    """Output codes from their raw ``bits``-bit patterns (as the engine sends them: the code's
    bits, zero-extended), as a list of int."""
    half = 1 << (bits - 1)
    mask = (1 << bits) - 1
    return [((int(word) & mask) ^ half) - half if signed_codes else int(word) & mask
            for word in raw]


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
    _check_type("images", images, MemoryImages)
    check_choice("memory", name, tuple(_DEPTHS))
    words, width = getattr(images, name), getattr(images, dict(MEMORY_WIDTHS)[name])
    depth = getattr(images.memories, _DEPTHS[name])
    if filler is None:
        return tuple(words) + (0,) * (depth - len(words))
    rng = np.random.default_rng([check_int("filler", filler, 0, 2**32 - 1),
                                 tuple(_DEPTHS).index(name), width, depth])
    size = _ceil_div(width, 8)
    mask = (1 << width) - 1
    raw = rng.bytes(size * depth)
    return tuple(words) + tuple(int.from_bytes(raw[size * index:size * (index + 1)], "little")
                                & mask for index in range(len(words), depth))


def _hex_lines(words, width):
    digits = _ceil_div(width, 4)
    return "".join(f"{word:0{digits}x}\n" for word in words).encode("ascii")


def _bin_bytes(words, width):
    size = _ceil_div(width, 8)
    return b"".join(word.to_bytes(size, "little") for word in words)


def write_hex(path, words, width):
    """Write ``words`` to ``path`` atomically, one a line in lower-case hexadecimal zero-padded
    to ``width`` bits (``$readmemh``, ``icebram``, ``ecpbram``)."""
    content = _hex_lines(words, width)
    atomic_write(Path(path), lambda file: file.write(content))
    return Path(path)


def write_images(images, folder):
    """Write each memory image as ``<name>.hex`` and ``<name>.bin`` in ``folder``.

    ``<name>`` is ``weights``, ``requant`` or ``program``. A ``.hex`` file has one word a line,
    in lower-case hexadecimal zero-padded to the word width (``$readmemh``); a ``.bin`` file is
    the words one after the other, each little-endian in ``ceil(width / 8)`` bytes. Each file
    is written atomically (a temporary file renamed onto it); ``folder`` is created if needed.

    Returns
    -------
    tuple of pathlib.Path
        The files written.
    """
    _check_type("images", images, MemoryImages)
    paths = []
    for name, width in MEMORY_WIDTHS:
        words, width = getattr(images, name), getattr(images, width)
        for suffix, encode in ((".hex", _hex_lines), (".bin", _bin_bytes)):
            path = Path(folder) / f"{name}{suffix}"
            content = encode(words, width)
            atomic_write(path, lambda file: file.write(content))
            paths.append(path)
    return tuple(paths)
