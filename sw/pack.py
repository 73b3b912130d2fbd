"""Packing an integer program into the accelerator's memory images (docs/memory-map.md).

:func:`pack` turns an :class:`~systolix.sw.program.IntegerProgram` and the
:class:`~systolix.config.ArrayConfig` of the array that runs it into
:class:`~systolix.memory_map.MemoryImages`: the words of the weight, requantization and program
memories as Python ints, in the layouts of :mod:`systolix.memory_map`, ready for
``amaranth.lib.memory.Memory(init=...)``; :func:`check_fit` says whether a program fits an array
and its memories; :func:`unpack` recovers the layers exactly.
"""

from typing import NamedTuple

from systolix.codec import encode
from systolix.config import ArrayConfig, check_int, code_range
from systolix.memory_map import (BATCH_LAYOUT, CONFIG_LAYOUT, FORMAT_VERSION, HEADER_LAYOUT,
                                 HEADER_WORDS, LAYER_LAYOUTS, MAX_WORDS, PROGRAM_WORD_BITS,
                                 RECORD_WORDS, REQUANT_LAYOUT, TOTALS_LAYOUT, MemoryConfig,
                                 MemoryImages, config_fields, packed_layers, weights_layout)

from .a2q import min_accumulator_bits
from .program import IntegerProgram

__all__ = ["LayerTiles", "layer_tiles", "ideal_cycles", "check_fit", "pack", "unpack"]


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
    program_words = HEADER_WORDS + RECORD_WORDS * len(layers)
    if program_words > memories.program_words:
        problems.append(f"the model needs {program_words} program words ({HEADER_WORDS} + "
                        f"{RECORD_WORDS} per layer, {len(layers)} layers), the memory "
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


def _pack_layers(layers, config, memories):
    """The :class:`MemoryImages` of ``layers`` (checked with :func:`_check_layers` and
    :func:`_check_fit`)."""
    _check_layers(layers, config)
    tiles = _check_fit(layers, config, memories)
    rows, cols = config.rows, config.cols
    beat = weights_layout(config)
    weights, requant = [], []
    max_batch = _max_batch(layers, tiles, memories)
    program = [encode(HEADER_LAYOUT, {"version": FORMAT_VERSION, "layers": len(layers)}),
               encode(CONFIG_LAYOUT, config_fields(config)),
               encode(TOTALS_LAYOUT, {"weight_words": sum(t.weight_words for t in tiles)}),
               encode(BATCH_LAYOUT, {"max_batch": max_batch})]
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
        program.extend(encode(layout, record) for layout in LAYER_LAYOUTS)
        matrix = _padded(layer.weights, (tile.k_tiles * rows, tile.n_tiles * cols))
        for n_tile in range(tile.n_tiles):
            for k in range(tile.k_tiles * rows):
                weights.append(encode(beat, matrix[k][n_tile * cols:(n_tile + 1) * cols]))
        constants = zip(layer.bias.tolist(), layer.multiplier.tolist(), layer.shift.tolist())
        requant.extend(encode(REQUANT_LAYOUT, {"bias": bias, "multiplier": multiplier,
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
    layers = packed_layers(images, config)
    if _pack_layers(layers, config, images.memories) != images:
        raise ValueError(f"the images are not in the layout of memory map version "
                         f"{FORMAT_VERSION}: repacking the layers they hold gives other words")
    return tuple(layers)
