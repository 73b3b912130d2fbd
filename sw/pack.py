"""Packing an integer program into the accelerator's memory images (docs/memory-map.md).

:func:`pack` turns an :class:`~systolix.sw.program.IntegerProgram` and the
:class:`~systolix.config.ArrayConfig` of the array that runs it into
:class:`~systolix.memory_map.MemoryImages`: the words of the weight, requantization and program
memories as Python ints, in the layouts of :mod:`systolix.memory_map`, ready for
``amaranth.lib.memory.Memory(init=...)``; :func:`check_fit` says whether a program fits an array
and its memories; :func:`unpack` recovers the layers exactly.
"""

from typing import NamedTuple

import numpy as np

from systolix.codec import encode
from systolix.config import OVERFLOW_MODES, ArrayConfig, check_int, code_range
from systolix.layer import (AddLayer, GeluLayer, IntegerLayer, LayerNormLayer, MatMulLayer,
                            MaxPoolLayer, SoftmaxLayer)
from systolix.memory_map import (BATCH_LAYOUT, CONFIG_LAYOUT, FORMAT_VERSION, HEADER_LAYOUT,
                                 HEADER_WORDS, LAYER_LAYOUTS, LAYERNORM_WORDS, MAX_WORDS,
                                 PROGRAM_WORD_BITS, RECORD_WORDS, REQUANT_LAYOUT, TOTALS_LAYOUT,
                                 MemoryConfig, MemoryImages, config_fields, feed_address_bits,
                                 layer_window, layernorm_words, packed_layers, packed_sources,
                                 padded_rows, weights_layout)
from systolix.timing import vector_planes

from .a2q import min_accumulator_bits, signed_bits
from .program import IntegerProgram

__all__ = ["LayerTiles", "layer_tiles", "ideal_cycles", "check_fit", "pack", "unpack"]


class LayerTiles(NamedTuple):
    """How one layer is cut into array tiles.

    Attributes
    ----------
    k_tiles : int
        K tiles: ``kernel_height * kernel_width * c_tiles`` (each kernel position's
        ``c_tiles = ceil(channels / rows)`` words of a pixel); ``ceil(K / rows)`` for a dense
        layer on a vector.
    n_tiles : int
        ``ceil(outputs / cols)``: output tiles.
    weight_words : int
        ``k_tiles * n_tiles * rows``.
    requant_words : int
        ``n_tiles * cols``.
    positions : int
        Output positions of one input map (1 for a dense layer): the vectors each tile
        streams per input.
    """
    k_tiles: int
    n_tiles: int
    weight_words: int
    requant_words: int
    positions: int = 1


def _ceil_div(a, b):
    return -(-a // b)


_ENGINE_LAYERS = (IntegerLayer, MaxPoolLayer, AddLayer, GeluLayer, SoftmaxLayer, LayerNormLayer,
                  MatMulLayer)


def _same_words(written, read, rows):
    """Whether maps ``written`` and ``read`` (``(height, width, channels)``) of the same number of
    codes are the same buffer words for an array of ``rows`` rows: both without padding codes
    (their channels whole words), so that reading one as the other is a reshape (the digits
    ViT's patch embedding, a vector, read as its token map by its first LayerNorm; the heads of
    attention read the token map of ``Q``, ``K`` and ``V``, ``tokens x heads * head_width``, as
    ``tokens x heads x head_width``)."""
    return (np.prod(written) == np.prod(read) and written[2] % rows == 0
            and read[2] % rows == 0)


def _windows(layers, sources, rows):
    """The record window fields (:func:`~systolix.memory_map.layer_window`, input base 0) of
    each layer; raise :class:`ValueError` with one line for a layer the engine does not run or
    that reads a map of another shape than its source writes (unless the two are the same
    buffer words, :func:`_same_words`: maps of whole words a pixel)."""
    shapes, windows = {}, []     # the (height, width, channels) of each tensor once known
    for index, (layer, entry) in enumerate(zip(layers, sources)):
        if not isinstance(layer, _ENGINE_LAYERS):
            raise ValueError(f"layer {index} is a {type(layer).__name__}; the engine runs "
                             f"dense, convolution, max pooling, add, GELU, softmax, LayerNorm "
                             f"and matmul layers")
        if isinstance(layer, IntegerLayer) and layer.window is None:
            reads = shapes.get(entry[0], (1, 1, layer.inputs))
        elif isinstance(layer, (AddLayer, GeluLayer, SoftmaxLayer, LayerNormLayer)):
            reads = tuple(layer.shape)
        elif isinstance(layer, MatMulLayer):
            reads = (layer.rows, layer.groups, layer.inner)
        else:
            window = layer.window
            reads = (window.height, window.width, window.channels)
        for position, source in enumerate(entry):
            if isinstance(layer, MatMulLayer) and position == 1:
                reads = ((layer.cols, layer.groups, layer.inner) if layer.transpose
                         else (layer.inner, layer.groups, layer.cols))
            shape = shapes.setdefault(source, reads)
            if shape != reads and not _same_words(shape, reads, rows):
                writer = "the input is" if source == -1 else f"layer {source} writes"
                raise ValueError(f"layer {index} reads a {'x'.join(map(str, reads))} map; "
                                 f"{writer} a {'x'.join(map(str, shape))} map")
        windows.append(layer_window(layer, shapes[entry[0]], rows))
        shapes[index] = tuple(layer.output_shape)
    return windows


def _tiles(layer, window, config):
    if isinstance(layer, LayerNormLayer):      # its per-channel constants
        return LayerTiles(0, 0, 0, LAYERNORM_WORDS * window["channels"], window["positions"])
    if isinstance(layer, MatMulLayer):
        # Per input and head, each of the rows vectors of a uses every tile.
        n_tiles = _ceil_div(layer.cols, config.cols)
        return LayerTiles(window["c_tiles"], n_tiles, 0, n_tiles * config.cols,
                          layer.rows * layer.groups)
    if not isinstance(layer, IntegerLayer):
        return LayerTiles(0, 0, 0, 0, window["positions"])
    outputs = layer.weights.shape[1]
    k_tiles = window["kernel_height"] * window["kernel_width"] * window["c_tiles"]
    n_tiles = _ceil_div(outputs, config.cols)
    return LayerTiles(k_tiles, n_tiles, k_tiles * n_tiles * config.rows, n_tiles * config.cols,
                      window["positions"])


def _tensor(index):
    """The name of tensor ``index`` (-1 the program's input, else a layer's output)."""
    return "the input" if index == -1 else f"layer {index}'s output"


def _placement(layers, windows, sources, rows):
    """Where each tensor lies in the activation buffers, in words per input: ``{tensor:
    (buffer, offset)}`` (tensor -1 is the program's input, ``l`` layer ``l``'s output; the last
    layer's goes to the output memory) and the words each tensor takes per input.

    The input lies in buffer 0 from word 0. Each layer's output goes, in the order the layers
    run, to the lowest offset at which it overlaps no tensor alive at the same time (from the
    layer that writes it to the last that reads it; a layer's inputs are alive while it runs),
    in the buffer other than its first input's unless the same buffer's offset ends lower: a
    chain alternates between the two buffers at offset 0, as ping-pong buffers."""
    count = len(windows)
    words = {-1: windows[min(index for index, entry in enumerate(sources) if -1 in entry)]
             ["image_words"] if any(-1 in entry for entry in sources) else 0}
    for index, (layer, window) in enumerate(zip(layers, windows)):
        height, width, channels = (layer.output_shape if isinstance(layer, MatMulLayer)
                                   else (window["positions"], 1,
                                         layer.outputs // window["positions"]))
        words[index] = height * width * _ceil_div(channels, rows)
    alive = {tensor: max([tensor] + [index for index, entry in enumerate(sources)
                                     if tensor in entry]) for tensor in range(-1, count)}
    place = {-1: (0, 0)}
    for index in range(count - 1):
        first = place[sources[index][0]][0]
        best = None
        for buffer in (1 - first, first):
            busy = sorted((place[t][1], place[t][1] + words[t]) for t in place
                          if place[t][0] == buffer and alive[t] >= index)
            offset = 0
            for start, end in busy:
                if start >= offset + words[index]:
                    break
                offset = max(offset, end)
            if best is None or offset + words[index] < best[1] + words[index]:
                best = (buffer, offset)
        place[index] = best
    return place, words


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
    windows = _windows(program.layers, program.sources, config.rows)
    return tuple(_tiles(layer, window, config)
                 for layer, window in zip(program.layers, windows))


def ideal_cycles(program, config):
    """Array cycles per input if every tile computed at full rate and never waited.

    The tiled multiply-accumulates of all layers (each layer padded to whole tiles) divided by
    the ``rows * cols`` the array does per cycle: ``sum(k_tiles * n_tiles * positions)``, each
    tile-vector taking as many cycles as its layer's input bit-planes with bit-serial cells
    (:func:`~systolix.timing.vector_planes`). Divided by the measured cycles per input, it is
    the array's utilisation.
    """
    def interval(layer):
        if config.pe != "serial" or not isinstance(layer, IntegerLayer):
            return 1
        return vector_planes(config, layer.input_bits, layer.input_signed)

    return sum(tiles.k_tiles * tiles.n_tiles * tiles.positions * interval(layer)
               for tiles, layer in zip(layer_tiles(program, config), program.layers))


def _describe(bits, signed):
    low, high = code_range(bits, signed)
    return f"{bits}-bit {'signed' if signed else 'unsigned'} ({low}..{high})"


def _check_codes(index, kind, codes, config):
    """Raise :class:`ValueError` unless the array takes layer ``index``'s ``codes`` (bits,
    signed) as its ``kind`` (``"weights"`` or ``"inputs"``)."""
    array_codes = ((config.weight_bits, config.weight_signed) if kind == "weights" else
                   (config.activation_bits, config.activation_signed))
    (low, high), (array_low, array_high) = code_range(*codes), code_range(*array_codes)
    if low < array_low or high > array_high:
        raise ValueError(f"layer {index} has {_describe(*codes)} {kind}; the array "
                         f"takes {_describe(*array_codes)} codes")


def _check_matmul(index, layer, last, config):
    """Raise :class:`ValueError` unless an array of ``config`` runs the
    :class:`~systolix.layer.MatMulLayer` ``layer`` (layer ``index``) bit-exactly.

    The stationary operand is loaded as ``b - zb`` on the array's weight path; the array adds
    ``sum a (b - zb)`` and, for a vector of ``za`` codes, ``za sum (b - zb)``: both, their
    difference and the golden model's raw ``sum a b`` must never overflow their accumulators,
    so that wrapping or saturating is never needed and all of them are exact."""
    if last:
        raise ValueError(f"layer {index} is a matmul layer; the engine's last layer must be "
                         f"another kind (its outputs go to the host)")
    if config.rows != config.cols:
        raise ValueError(f"layer {index} is a matmul layer; the engine runs them on square "
                         f"arrays only, not {config.rows}x{config.cols}")
    za, zb = layer.zero_points
    low, high = code_range(layer.input_bits, layer.input_signed)
    weight_low, weight_high = code_range(config.weight_bits, config.weight_signed)
    if low - zb < weight_low or high - zb > weight_high:
        raise ValueError(f"layer {index} (a matmul) loads its operand b as codes minus its zero "
                         f"point {zb}, {low - zb}..{high - zb}; the array takes "
                         f"{_describe(config.weight_bits, config.weight_signed)} weights")
    largest_a, largest_b = max(-low, high), max(zb - low, high - zb)
    for what, bound, bits in (
            ("sum a b (the golden model's raw product)", largest_a * max(-low, high),
             layer.accumulator_bits),
            ("sum a (b - zb)", largest_a * largest_b, config.accumulator_bits),
            ("sum (a - za)(b - zb)", max(za - low, high - za) * largest_b,
             config.accumulator_bits)):
        needs = signed_bits(-layer.inner * bound, layer.inner * bound)
        if needs > bits:
            raise ValueError(f"layer {index} (a matmul of {layer.inner} inner codes) may "
                             f"overflow: {what} needs {needs} accumulator bits, not {bits}")


def _check_layers(layers, sources, config):
    """Raise :class:`ValueError` if an array of ``config`` cannot run ``layers`` bit-exactly;
    return their window fields."""
    windows = _windows(layers, sources, config.rows)
    array = (config.accumulator_bits, config.overflow)
    for index, (layer, window) in enumerate(zip(layers, windows)):
        if isinstance(layer, MatMulLayer):
            _check_matmul(index, layer, index == len(layers) - 1, config)
        if not isinstance(layer, IntegerLayer):
            check_int(f"the channels of layer {index}", window["channels"], 1, MAX_WORDS - 1)
            _check_codes(index, "inputs", (layer.input_bits, layer.input_signed), config)
            continue
        inputs, outputs = layer.weights.shape
        check_int(f"the inputs of layer {index}", inputs, 1, MAX_WORDS - 1)
        check_int(f"the outputs of layer {index}", outputs, 1, MAX_WORDS - 1)
        _check_codes(index, "weights", (layer.weight_bits, layer.weight_signed), config)
        _check_codes(index, "inputs", (layer.input_bits, layer.input_signed), config)
        if (layer.accumulator_bits, layer.overflow) != array:
            raise ValueError(f"layer {index} accumulates in {layer.accumulator_bits} bits "
                             f"({layer.overflow}); the array in {config.accumulator_bits} bits "
                             f"({config.overflow})")
        needs = min_accumulator_bits(layer.weights, layer.input_bits, layer.input_signed)
        k_tiles = _tiles(layer, window, config).k_tiles
        if layer.overflow == "saturate" and k_tiles > 1 and needs > config.accumulator_bits:
            taps = window["kernel_height"] * window["kernel_width"]
            rows = f" or at least {window['channels']} rows" if taps == 1 else ""
            raise ValueError(f"layer {index} may overflow its {config.accumulator_bits}-bit "
                             f"accumulator (it needs {needs} bits) and its {inputs} inputs span "
                             f"{k_tiles} K tiles: saturation is bit-exact across K tiles only "
                             f"if it never happens; use overflow 'wrap', {needs} accumulator "
                             f"bits{rows}")
    return windows


def _check_fit(layers, sources, windows, config, memories):
    """Raise :class:`ValueError` naming every memory too small for ``layers``; return their
    tiles, the most inputs a run may take and where each tensor lies (:func:`_placement`, in
    words for that batch)."""
    tiles = [_tiles(layer, window, config) for layer, window in zip(layers, windows)]
    problems = []
    loaded = " (loaded at run time)" if memories.upload_weights else ""
    for kind, needs, have in (
            ("weight", [t.weight_words for t in tiles], memories.weight_words),
            ("requant", [t.requant_words for t in tiles], memories.requant_words)):
        if sum(needs) > have:
            per_layer = ", ".join(f"layer {index}: {words}" for index, words in enumerate(needs))
            problems.append(f"the model needs {sum(needs)} {kind} words ({per_layer}), the "
                            f"{kind} memory{loaded if kind == 'weight' else ''} has {have}: "
                            f"{sum(needs) - have} words short")
    program_words = HEADER_WORDS + RECORD_WORDS * len(layers)
    if program_words > memories.program_words:
        problems.append(f"the model needs {program_words} program words ({HEADER_WORDS} + "
                        f"{RECORD_WORDS} per layer, {len(layers)} layers), the memory "
                        f"has {memories.program_words}")
    place, words = _placement(layers, windows, sources, config.rows)
    extents = [max([0] + [offset + words[t] for t, (b, offset) in place.items() if b == buffer])
               for buffer in (0, 1)]
    fullest = extents.index(max(extents))
    if extents[fullest] > memories.activation_words:
        tensors = ", ".join(f"{_tensor(t)} at {offset}..{offset + words[t] - 1}"
                            for t, (b, offset) in sorted(place.items()) if b == fullest)
        problems.append(f"the model needs {extents[fullest]} activation words per input "
                        f"(buffer {fullest}: {tensors}), each buffer has "
                        f"{memories.activation_words}: "
                        f"{extents[fullest] - memories.activation_words} words short")
    # A matmul layer runs head by head and input by input: its rows + 1 vectors (the first
    # of za codes) take accumulator words per run, not per input.
    positions = [0 if isinstance(layer, MatMulLayer) else tile.positions
                 for layer, tile in zip(layers, tiles)]
    most = max(range(len(layers)), key=positions.__getitem__)
    if positions[most] > memories.batch:
        problems.append(f"the model needs {positions[most]} accumulator words per input "
                        f"(layer {most}'s output positions), the accumulator buffer has "
                        f"{memories.batch}")
    for index, layer in enumerate(layers):
        if isinstance(layer, MatMulLayer) and layer.rows + 1 > memories.batch:
            problems.append(f"the model needs {layer.rows + 1} accumulator words (layer "
                            f"{index}'s rows and its vector of zero points), the accumulator "
                            f"buffer has {memories.batch}")
    outputs = layers[-1].outputs
    if outputs > memories.output_codes:
        problems.append(f"the model needs {outputs} output codes per input (layer "
                        f"{len(layers) - 1}), the output memory has {memories.output_codes}")
    if problems:
        raise ValueError("; ".join(problems))
    max_batch = min(memories.batch // positions[most],
                    memories.activation_words // max(extents),
                    memories.output_codes // outputs)
    place = {tensor: (buffer, offset * max_batch) for tensor, (buffer, offset) in place.items()}
    windows = [layer_window(layer, (w["height"], w["width"], w["channels"]), config.rows,
                            place[entry[0]][1])
               for layer, w, entry in zip(layers, windows, sources)]
    _check_addresses(windows, memories, max_batch)
    return tiles, max_batch, place, windows


def _check_addresses(windows, memories, batch):
    """Raise :class:`ValueError` unless the activation feeder's counters and addresses for
    ``batch`` inputs fit its registers (:class:`~systolix.hw.loops.Bounds`' address and
    :func:`~systolix.memory_map.feed_address_bits`)."""
    limit = 1 << (feed_address_bits(memories) - 1)
    largest = max(memories.activation_words, memories.output_codes)
    for index, w in enumerate(windows):
        row_words = w["width"] * w["c_tiles"]
        highest = (w["origin"] + (batch - 1) * w["image_words"]
                   + (w["output_height"] - 1) * w["stride_height"] * row_words
                   + (w["output_width"] - 1) * w["x_step"]
                   + (w["kernel_height"] - 1) * row_words
                   + w["kernel_width"] * w["c_tiles"] - 1)
        if w["origin"] < -limit or highest >= limit:
            raise ValueError(f"layer {index}'s window reaches activation addresses "
                             f"{w['origin']}..{highest}; the feeder of {memories.activation_words} "
                             f"words reaches {-limit}..{limit - 1} (smaller padding or strides, "
                             f"or more activation words)")
        for name in ("kernel_height", "kernel_width", "stride_height", "stride_width"):
            if w[name] > largest:
                raise ValueError(f"layer {index}'s {name} is {w[name]}; the feeder counts to "
                                 f"{largest}, the larger of activation_words and output_codes")


def check_fit(program, config, memories):
    """Raise :class:`ValueError` unless ``program`` runs on ``config`` with ``memories``.

    The engine runs graphs of dense, convolution, max pooling, add, GELU, softmax and LayerNorm
    layers (a LayerNorm layer's per-channel constants take two requantization words a channel);
    the array must take every layer's weight and input codes (and every tensor kept in the
    activation buffers is of input codes) and accumulate as every layer does
    (``accumulator_bits`` and ``overflow``); the layers must have ``1..65535`` inputs and
    outputs; each memory must hold what the model needs (the message gives, for each memory too
    small, the words needed, per layer or tensor, the words the memory has and how many it is
    short). A weight memory
    loaded at run time (``memories.upload_weights``, the iCEBreaker's SPRAM) is checked the same
    way: its depth is what the board's SPRAM holds of the array's weight words.

    Returns
    -------
    tuple of LayerTiles
    """
    _check_types(program, config, memories)
    windows = _check_layers(program.layers, program.sources, config)
    return tuple(_check_fit(program.layers, program.sources, windows, config, memories)[0])


def _layer_record(layer, window, place, entry, index, last, rows):
    """The fields of layer ``index``'s record but its tiles and bases in the weight and
    requantization images."""
    output_buffer, output_base = (0, 0) if last else place[index]
    fields = {"second_buffer": 0, "second_base": 0, "zero_point_a": 0, "zero_point_b": 0,
              "multiplier_a": 0, "multiplier_b": 0, "add_shift": 0, "weight_bits": 0,
              "weight_signed": 0, "gelu_clip": 0, "gelu_constant": 0, "fraction_bits": 0,
              "transpose": 0, "accumulator_bits": 0, "overflow": 0}
    if isinstance(layer, IntegerLayer):
        channels = layer.weights.shape[1]
        fields.update(weight_bits=layer.weight_bits, weight_signed=layer.weight_signed)
    elif isinstance(layer, MatMulLayer):
        channels = layer.cols
        # Words of a head's output vector, of the map of b and of the output map (per input).
        output_words = _ceil_div(layer.cols, rows)
        b_lines = layer.cols if layer.transpose else layer.inner
        b_pixel = _ceil_div(layer.inner if layer.transpose else layer.cols, rows)
        fields.update(second_buffer=place[entry[1]][0], second_base=place[entry[1]][1],
                      zero_point_a=layer.zero_points[0], zero_point_b=layer.zero_points[1],
                      multiplier_a=b_lines * layer.groups * b_pixel,
                      multiplier_b=layer.rows * layer.groups * output_words,
                      window_row_step=layer.groups * output_words,
                      transpose=layer.transpose, accumulator_bits=layer.accumulator_bits,
                      overflow=OVERFLOW_MODES.index(layer.overflow))
    else:
        channels = window["channels"]
    if isinstance(layer, AddLayer):
        fields.update(second_buffer=place[entry[1]][0], second_base=place[entry[1]][1],
                      zero_point_a=layer.zero_points[0], zero_point_b=layer.zero_points[1],
                      multiplier_a=layer.multipliers[0], multiplier_b=layer.multipliers[1],
                      add_shift=layer.shift)
    if isinstance(layer, GeluLayer):
        fields.update(zero_point_a=layer.input_zero_point, multiplier_a=layer.multiplier,
                      add_shift=layer.shift, gelu_clip=layer.clip,
                      gelu_constant=layer.constant)
    if isinstance(layer, SoftmaxLayer):
        fields.update(multiplier_a=layer.multiplier, add_shift=layer.shift,
                      fraction_bits=layer.fraction_bits)
    if isinstance(layer, LayerNormLayer):
        fields.update(add_shift=layer.shift)
    if isinstance(layer, MaxPoolLayer):
        low, high = code_range(layer.bits, layer.signed)
        output = {"output_zero_point": 0, "output_low": low, "output_high": high}
    else:
        output = {name: getattr(layer, name) for name in ("output_zero_point", "output_low",
                                                         "output_high")}
    return {
        **window, **fields, **output,
        "input_bits": layer.input_bits, "input_signed": layer.input_signed,
        "output_bits": layer.output_bits, "output_signed": layer.output_signed,
        "input_buffer": place[entry[0]][0], "output_buffer": output_buffer,
        "output_base": output_base, "last": last,
        "outputs": channels, "output_words": 0 if last else _ceil_div(channels, rows),
    }


def _pack_layers(layers, sources, config, memories):
    """The :class:`MemoryImages` of ``layers`` (checked with :func:`_check_layers` and
    :func:`_check_fit`)."""
    windows = _check_layers(layers, sources, config)
    tiles, max_batch, place, windows = _check_fit(layers, sources, windows, config, memories)
    rows, cols = config.rows, config.cols
    beat = weights_layout(config)
    weights, requant = [], []
    program = [encode(HEADER_LAYOUT, {"version": FORMAT_VERSION, "layers": len(layers)}),
               encode(CONFIG_LAYOUT, config_fields(config)),
               encode(TOTALS_LAYOUT, {"weight_words": sum(t.weight_words for t in tiles)}),
               encode(BATCH_LAYOUT, {"max_batch": max_batch})]
    for index, (layer, window, tile) in enumerate(zip(layers, windows, tiles)):
        record = {**_layer_record(layer, window, place, sources[index], index,
                                  index == len(layers) - 1, rows),
                  "k_tiles": tile.k_tiles, "n_tiles": tile.n_tiles,
                  "weight_base": len(weights), "requant_base": len(requant)}
        program.extend(encode(layout, record, prefix=f"layer {index} ")
                       for layout in LAYER_LAYOUTS)
        if isinstance(layer, LayerNormLayer):
            requant.extend(layernorm_words(layer.multiplier, layer.bias))
        if isinstance(layer, MatMulLayer):
            requant.extend([encode(REQUANT_LAYOUT, {
                "bias": layer.bias, "multiplier": layer.multiplier, "shift": layer.shift,
                "reserved": 0})] * tile.requant_words)
        if not isinstance(layer, IntegerLayer):
            continue
        outputs = layer.weights.shape[1]
        matrix = np.zeros((tile.k_tiles * rows, tile.n_tiles * cols), dtype=np.int64)
        taps = window["kernel_height"] * window["kernel_width"]
        matrix[padded_rows(taps, window["channels"], rows), :outputs] = layer.weights
        matrix = matrix.tolist()
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
    return _pack_layers(program.layers, program.sources, config, memories)


def unpack(images, config):
    """The layers packed into ``images`` for an array of ``config``, exactly as they were.

    Parameters
    ----------
    images : MemoryImages
    config : ArrayConfig

    Returns
    -------
    tuple of IntegerLayer, MaxPoolLayer, AddLayer, GeluLayer, SoftmaxLayer and LayerNormLayer
        Equal, field by field, to the layers of the program given to :func:`pack` (the host
        quantizers of an :class:`IntegerProgram` are not in the images; its sources are
        :func:`~systolix.memory_map.packed_sources`).

    Raises
    ------
    ValueError
        If the images are of another memory map version, were packed for another array, or are
        not exactly what :func:`pack` makes of the layers they hold.
    """
    layers = packed_layers(images, config)
    if _pack_layers(layers, packed_sources(images), config, images.memories) != images:
        raise ValueError(f"the images are not in the layout of memory map version "
                         f"{FORMAT_VERSION}: repacking the layers they hold gives other words")
    return tuple(layers)
