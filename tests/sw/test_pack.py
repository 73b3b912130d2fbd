import dataclasses

import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.memory_map import weights_layout
from systolix.sim.golden.array import array_matmul, wrap
from systolix.sim.golden.program import requantize, run_program
from systolix.sw import IntegerLayer, digits_mlp, lower, quantize
from systolix.boards.memory_files import write_images
from systolix.memory_map import (FORMAT_VERSION, HEADER_WORDS, LAYER_KINDS, RECORD_WORDS,
                                 REQUANT_LAYOUT, MemoryConfig, MemoryImages, layer_records,
                                 layernorm_constants, layernorm_words, memory_contents,
                                 packed_sources, windowed)
from systolix.sw.pack import LayerTiles, check_fit, ideal_cycles, layer_tiles, pack, unpack
from systolix.layer import AddLayer, MaxPoolLayer, Window
from systolix.sim.golden.program import run_images as golden_run_images
from systolix.sw.program import IntegerProgram
from systolix.sw.quant import QuantParams
from systolix.sw.stimulus import (program_of, random_attention_program, random_conv_program,
                                   random_layer, random_program)

BIG = MemoryConfig(weight_words=65536, requant_words=65536, program_words=65536,
                   activation_words=65536)


def assert_same_layers(layers, originals):
    assert len(layers) == len(originals)
    for layer, original in zip(layers, originals):
        assert type(layer) is type(original)
        for name in (field.name for field in dataclasses.fields(original)):
            value, expected = getattr(layer, name), getattr(original, name)
            if isinstance(expected, np.ndarray):
                assert value.dtype == expected.dtype and value.shape == expected.shape, name
                np.testing.assert_array_equal(value, expected, err_msg=name)
            else:
                assert type(value) is type(expected) and value == expected, name


def ceil_div(a, b):
    return -(-a // b)


def expected_weight_words(program, config):
    """The beats the array takes, built with the array's own payload layout: per layer, per
    output tile, per K tile, one beat per tile row."""
    rows, cols = config.rows, config.cols
    layout = weights_layout(config)
    words = []
    for layer in program.layers:
        inputs, outputs = layer.weights.shape
        k_tiles, n_tiles = ceil_div(inputs, rows), ceil_div(outputs, cols)
        padded = np.zeros((k_tiles * rows, n_tiles * cols), dtype=np.int64)
        padded[:inputs, :outputs] = layer.weights
        for j in range(n_tiles):
            for t in range(k_tiles):
                tile = padded[t * rows:(t + 1) * rows, j * cols:(j + 1) * cols]
                words.extend(layout.const(row.tolist()).as_value().value for row in tile)
    return words


def expected_requant_words(program, config):
    words = []
    for layer in program.layers:
        for bias, multiplier, shift in zip(layer.bias, layer.multiplier, layer.shift):
            words.append((int(bias) & 0xFFFF_FFFF) | int(multiplier) << 32 | int(shift) << 48)
        words.extend([0] * (-len(layer.bias) % config.cols))
    return words


def run_images(images, program, config, codes):
    """The sequencer's schedule on the golden array: per layer, per output tile, per K tile,
    the tile read from the weight image; requantization constants from the requant image.
    ``program`` gives only the layer sizes and the per-layer scalars."""
    rows, cols = config.rows, config.cols
    layout = weights_layout(config)
    weight_address = requant_address = 0
    for layer in program.layers:
        inputs, outputs = layer.weights.shape
        k_tiles, n_tiles = ceil_div(inputs, rows), ceil_div(outputs, cols)
        x = np.zeros((len(codes), k_tiles * rows), dtype=np.int64)
        x[:, :inputs] = codes
        results = []
        for _ in range(n_tiles):
            acc = np.zeros((len(codes), cols), dtype=np.int64)
            for t in range(k_tiles):
                words = images.weights[weight_address:weight_address + rows]
                weight_address += rows
                tile = np.array([list(layout.from_bits(word)) for word in words])
                acc = wrap(acc + array_matmul(config, x[:, t * rows:(t + 1) * rows], tile),
                           config.accumulator_bits)
            constants = [REQUANT_LAYOUT.from_bits(word)
                         for word in images.requant[requant_address:requant_address + cols]]
            requant_address += cols
            results.append(requantize(acc, [c.bias for c in constants],
                                      [c.multiplier for c in constants],
                                      [c.shift for c in constants], layer.output_zero_point,
                                      layer.output_low, layer.output_high))
        codes = np.concatenate(results, axis=1)[:, :outputs]
    return codes


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("bits", range(1, 9))
def test_round_trip_every_width(bits, signed):
    rng = np.random.default_rng(bits * 2 + signed)
    for _ in range(3):
        config = ArrayConfig(rows=int(rng.integers(1, 6)), cols=int(rng.integers(1, 6)),
                             weight_bits=bits, weight_signed=signed, activation_bits=bits,
                             activation_signed=signed,
                             accumulator_bits=int(rng.integers(2, 33)),
                             overflow="wrap")
        sizes = rng.integers(1, 12, size=int(rng.integers(2, 5))).tolist()
        program = random_program(rng, config, sizes)
        images = pack(program, config)
        assert images.weight_width == config.cols * bits
        assert images.requant_width == 56 and images.program_width == 32
        assert list(images.weights) == expected_weight_words(program, config)
        assert list(images.requant) == expected_requant_words(program, config)
        assert images.program[0] == FORMAT_VERSION | (len(program.layers) << 16)
        assert len(images.program) == HEADER_WORDS + RECORD_WORDS * len(program.layers)
        assert images.program[2] == len(images.weights)
        assert images.program[3] == images.max_batch
        for memory, width in ((images.weights, images.weight_width),
                              (images.requant, images.requant_width),
                              (images.program, images.program_width)):
            assert all(type(word) is int and 0 <= word < 1 << width for word in memory)
        assert_same_layers(unpack(images, config), program.layers)


def test_narrower_codes_than_the_array():
    rng = np.random.default_rng(5)
    config = ArrayConfig(rows=3, cols=2, weight_bits=4, weight_signed=True, activation_bits=5,
                         activation_signed=False)
    narrow = ArrayConfig(rows=3, cols=2, weight_bits=3, weight_signed=False, activation_bits=2,
                         activation_signed=False)
    program = random_program(rng, narrow, [7, 5, 3])
    layers = [dataclasses.replace(layer, accumulator_bits=config.accumulator_bits)
              for layer in program.layers]
    program = program_of(layers)
    images = pack(program, config)
    assert list(images.weights) == expected_weight_words(program, config)
    assert_same_layers(unpack(images, config), program.layers)


@pytest.fixture(scope="module")
def digits():
    model, data = digits_mlp()
    uniform = lower(quantize(model, data.x_train, weight_bits=4, activation_bits=4,
                             accumulator_bits=16))
    mixed = lower(quantize(model, data.x_train, weight_bits=(3, 5, 8),
                           activation_bits=(6, 3, 4), accumulator_bits=24, method="a2q"))
    return uniform, mixed, data


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 5), (7, 2), (16, 4), (8, 8), (32, 32)])
def test_digits_mlp(digits, rows, cols):
    uniform, mixed, data = digits
    for program, config in (
            (uniform, ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                                  accumulator_bits=16)),
            (mixed, ArrayConfig(rows=rows, cols=cols, weight_bits=8, activation_bits=6,
                                accumulator_bits=24))):
        images = pack(program, config, BIG)
        assert list(images.weights) == expected_weight_words(program, config)
        assert list(images.requant) == expected_requant_words(program, config)
        assert_same_layers(unpack(images, config), program.layers)
        codes = program.encode_input(data.x_test[:40])
        np.testing.assert_array_equal(run_images(images, program, config, codes),
                                      run_program(program, codes))


def test_tiles_and_ideal_cycles(digits):
    uniform = digits[0]
    config = ArrayConfig(rows=8, cols=8, accumulator_bits=16)
    assert layer_tiles(uniform, config) == (LayerTiles(8, 8, 512, 64), LayerTiles(8, 4, 256, 32),
                                            LayerTiles(4, 2, 64, 16))
    assert ideal_cycles(uniform, config) == 64 + 32 + 8
    assert ideal_cycles(uniform, dataclasses.replace(config, rows=32, cols=32)) == 4 + 2 + 1
    # Bit-serial cells: a tile-vector takes as many cycles as its layer's input bits.
    serial = dataclasses.replace(config, pe="serial")
    assert ideal_cycles(uniform, serial) == sum(
        cycles * layer.input_bits for cycles, layer in zip((64, 32, 8), uniform.layers))
    assert check_fit(uniform, config, MemoryConfig()) == layer_tiles(uniform, config)


def test_fixed_layout():
    """A tiny program, its words worked out by hand: the memory map must not drift."""
    config = ArrayConfig(rows=2, cols=2, weight_bits=4, weight_signed=True, activation_bits=4,
                         activation_signed=False, accumulator_bits=16, overflow="saturate")
    layer = IntegerLayer(weights=[[1, -2, 3], [-8, 7, 0], [5, 6, -1]], bias=[-1, 2, 3],
                         multiplier=[40000, 1, 65535], shift=[20, 0, 63], output_zero_point=-3,
                         output_low=-128, output_high=127, input_bits=4, input_signed=False,
                         weight_bits=4, weight_signed=True, output_bits=8, output_signed=True,
                         accumulator_bits=16, overflow="saturate")
    images = pack(program_of([layer]), config)
    # Output tile 0 (columns 0, 1), K tiles 0 and 1; then output tile 1 (column 2, padded).
    assert images.weights == (0xE1, 0x78, 0x65, 0x00, 0x03, 0x00, 0x0F, 0x00)
    assert images.requant == (0x0014_9C40_FFFF_FFFF, 0x0000_0001_0000_0002,
                              0x003F_FFFF_0000_0003, 0)
    assert images.program == (
        0x0001_0007,                                   # version 7, 1 layer
        2 | 2 << 6 | 4 << 12 | 1 << 16 | 4 << 17 | 0 << 21 | 16 << 22 | 1 << 28,
        8,                                             # weight words
        128,                                           # max batch: MemoryConfig().batch
        2 | 2 << 16,                                   # 2 K tiles, 2 output tiles
        0,                                             # weight and requant bases
        4 | 0 << 4 | 4 << 5 | 1 << 9 | 8 << 10 | 1 << 14 | 0 << 15 | 1 << 16 | 0 << 17
        | 0 << 18,                                     # dense, halves up
        (-3 & 0x1FF) | (-128 & 0x1FF) << 9 | 127 << 18,
        3,                                             # 3 outputs; none to the buffers
        1 | 3 << 16,                                   # 1 position of 3 input channels
        1 | 1 << 16,                                   # the input map: 1 x 1
        1 | 1 << 16,                                   # the kernel covers it
        1 | 1 << 16,                                   # strides
        1 | 1 << 16,                                   # the output map: 1 x 1
        0,                                             # pad top, left
        2 | 2 << 16,                                   # 2 words a pixel; x step
        2 | 2 << 16,                                   # row and map steps
        1 | 0 << 16,                                   # K tile row step; pad code 0
        0 | 2 << 16,                                   # origin; 2 words a map
        0,                                             # x and y back: one output position
        0,                                             # a GEMM; output buffer 0
        0,                                             # input and output bases
        0 | 2 << 16,                                   # (no second input); window row step
        0,                                             # (no add multipliers)
        0,                                             # pad bottom, right
        1,                                             # groups; (no GELU clip)
        0)                                             # (no GELU constant)


def test_files_read_back(tmp_path):
    rng = np.random.default_rng(1)
    config = ArrayConfig(rows=3, cols=5, weight_bits=3, weight_signed=True)
    images = pack(random_program(rng, config, [10, 7, 4]), config)
    paths = write_images(images, tmp_path / "images")
    assert sorted(path.name for path in paths) == sorted(
        f"{name}.{suffix}" for name in ("weights", "requant", "program")
        for suffix in ("hex", "bin"))
    assert sorted((tmp_path / "images").iterdir()) == sorted(paths)  # no temporary files left
    for name, width in (("weights", 15), ("requant", 56), ("program", 32)):
        words = getattr(images, name)
        lines = (tmp_path / "images" / f"{name}.hex").read_text().splitlines()
        assert all(len(line) == ceil_div(width, 4) for line in lines)
        assert [int(line, 16) for line in lines] == list(words)
        size = ceil_div(width, 8)
        raw = (tmp_path / "images" / f"{name}.bin").read_bytes()
        assert len(raw) == size * len(words)
        assert [int.from_bytes(raw[i:i + size], "little")
                for i in range(0, len(raw), size)] == list(words)


@pytest.fixture
def small():
    rng = np.random.default_rng(2)
    config = ArrayConfig(rows=4, cols=4)
    return random_program(rng, config, [9, 6, 3]), config


@pytest.mark.parametrize("changes, message", [
    (dict(weight_words=0), r"^weight_words must be an integer in 1..65536, not 0$"),
    (dict(requant_words=65537), r"^requant_words must be an integer in 1..65536, not 65537$"),
    (dict(program_words=1.5), r"^program_words must be an integer in 1..65536, not 1.5$"),
    (dict(activation_words=True), r"^activation_words must be an integer in 1..65536, not True$"),
])
def test_bad_memory_config(changes, message):
    with pytest.raises(ValueError, match=message):
        MemoryConfig(**changes)


def test_bad_arguments(small):
    program, config = small
    with pytest.raises(TypeError, match=r"^program must be IntegerProgram, not tuple$"):
        pack(program.layers, config)
    with pytest.raises(TypeError, match=r"^config must be ArrayConfig, not str$"):
        pack(program, "4x4")
    with pytest.raises(TypeError, match=r"^memories must be MemoryConfig, not int$"):
        pack(program, config, 4096)
    with pytest.raises(TypeError, match=r"^images must be MemoryImages, not dict$"):
        unpack({}, config)


@pytest.mark.parametrize("changes, message", [
    (dict(weight_bits=5), r"^layer 0 has 5-bit signed \(-16..15\) weights; the array takes "
                          r"4-bit signed \(-8..7\) codes$"),
    (dict(weight_bits=4, weight_signed=False), r"^layer 0 has 4-bit unsigned \(0..15\) weights"),
    (dict(input_bits=4, input_signed=True), r"^layer 0 has 4-bit signed \(-8..7\) inputs; the "
                                            r"array takes 4-bit unsigned \(0..15\) codes$"),
    (dict(accumulator_bits=15), r"^layer 0 accumulates in 15 bits \(wrap\); the array in 16 "
                                r"bits \(wrap\)$"),
    (dict(overflow="saturate"), r"^layer 0 accumulates in 16 bits \(saturate\); the array in "
                                r"16 bits \(wrap\)$"),
])
def test_layers_the_array_cannot_run(small, changes, message):
    program, config = small
    layer = dataclasses.replace(program.layers[0], weights=np.zeros((9, 6), dtype=np.int64),
                                **changes)
    with pytest.raises(ValueError, match=message):
        pack(program_of([layer, program.layers[1]]), config)


def test_too_many_inputs():
    config = ArrayConfig(rows=32, cols=1)
    rng = np.random.default_rng(3)
    layer = random_layer(rng, 65536, 1, config, 8, True)
    with pytest.raises(ValueError, match=r"^the inputs of layer 0 must be an integer in "
                                         r"1..65535, not 65536$"):
        pack(program_of([layer]), config, BIG)


@pytest.mark.parametrize("memory, message", [
    ("weight_words", r"^the model needs 832 weight words \(layer 0: 512, layer 1: 256, "
                     r"layer 2: 64\), the weight memory has 831: 1 words short$"),
    ("requant_words", r"^the model needs 112 requant words \(layer 0: 64, layer 1: 32, "
                      r"layer 2: 16\), the requant memory has 111: 1 words short$"),
    ("program_words", r"^the model needs 73 program words \(4 \+ 23 per layer, 3 layers\), the "
                      r"memory has 72$"),
    ("activation_words", r"^the model needs 8 activation words per input \(buffer 0: the input "
                         r"at 0\.\.7, layer 1's output at 0\.\.3\), each buffer has 7: 1 words "
                         r"short$"),
])
def test_memories_too_small(digits, memory, message):
    program = digits[0]
    config = ArrayConfig(rows=8, cols=8, accumulator_bits=16)
    needed = {"weight_words": 832, "requant_words": 112, "program_words": 73,
              "activation_words": 8}
    pack(program, config, MemoryConfig(**needed))
    with pytest.raises(ValueError, match=message):
        pack(program, config, MemoryConfig(**{**needed, memory: needed[memory] - 1}))


def test_every_memory_too_small_is_named(digits):
    config = ArrayConfig(rows=8, cols=8, accumulator_bits=16)
    with pytest.raises(ValueError, match=r"^the model needs 832 weight words .*, the weight "
                                         r"memory has 1: 831 words short; the model needs 112 "
                                         r"requant words .*; the model "
                                         r"needs 73 program words .*; the model needs 8 "
                                         r"activation words per input .*, each buffer has 1: 7 "
                                         r"words short$"):
        check_fit(digits[0], config, MemoryConfig(1, 1, 1, 1))


def test_unpack_refuses_other_images(small):
    program, config = small
    images = pack(program, config)
    with pytest.raises(ValueError, match=r"^the images were packed for another array than "
                                         r"4x8-W4s-A4u-P16-wrap: cols 4 \(not 8\)$"):
        unpack(images, dataclasses.replace(config, cols=8))
    with pytest.raises(ValueError, match=r"^the images are not memory map version 7 \(they say "
                                         r"4 and 7\); this systolix reads version 7$"):
        unpack(dataclasses.replace(images, version=4), config)
    with pytest.raises(ValueError, match=r"^the program image has 49 words, not the 50 of 2 "
                                         r"layers$"):
        unpack(dataclasses.replace(images, program=images.program[:-1]), config)
    with pytest.raises(ValueError, match=r"^the program points past the end of the weight or "
                                         r"requant image \(layer at weight word 24, requant "
                                         r"word 8\)$"):
        unpack(dataclasses.replace(images, weights=images.weights[:-1]), config)
    program_words = list(images.program)
    program_words[HEADER_WORDS] = 1 | 2 << 16  # layer 0: 1 K tile of 4 rows for 9 inputs
    with pytest.raises(ValueError, match=r"^the program's 1 x 2 tiles do not match a layer of 1 "
                                         r"kernel positions of 9 channels and 6 outputs$"):
        unpack(dataclasses.replace(images, program=tuple(program_words)), config)
    # A nonzero padding code (column 7 of layer 0's second output tile) is not a packing.
    weights = list(images.weights)
    weights[3 * 4] |= 1 << 12
    with pytest.raises(ValueError, match=r"^the images are not in the layout of memory map "
                                         r"version 7: repacking the layers they hold gives "
                                         r"other words$"):
        unpack(dataclasses.replace(images, weights=tuple(weights)), config)


def test_images_are_frozen(small):
    images = pack(*small)
    assert isinstance(images, MemoryImages)
    with pytest.raises(dataclasses.FrozenInstanceError):
        images.weights = ()


def test_saturation_across_k_tiles_only_without_overflow():
    """Saturating after each K tile equals saturating after each addition only if no partial
    sum ever leaves the accumulator; a layer split into K tiles that might overflow is refused."""
    rng = np.random.default_rng(7)
    risky = ArrayConfig(rows=4, cols=4, accumulator_bits=8, overflow="saturate")
    program = random_program(rng, risky, [9, 3])
    with pytest.raises(ValueError, match=r"^layer 0 may overflow its 8-bit accumulator \(it needs "
                                         r"\d+ bits\) and its 9 inputs span 3 K tiles: saturation "
                                         r"is bit-exact across K tiles only if it never happens; "
                                         r"use overflow 'wrap', \d+ accumulator bits or at least 9 "
                                         r"rows$"):
        pack(program, risky)
    pack(program, dataclasses.replace(risky, rows=9))       # one K tile: clamped in the array
    wrapping = program_of([dataclasses.replace(layer, overflow="wrap") for layer in program.layers])
    pack(wrapping, dataclasses.replace(risky, overflow="wrap"))


def test_max_batch():
    rng = np.random.default_rng(8)
    config = ArrayConfig(rows=2, cols=2)
    program = random_program(rng, config, [7, 5, 3])   # 4 words a vector at most, 3 outputs
    assert pack(program, config).max_batch == 128
    for memories, batch in ((MemoryConfig(batch=5), 5), (MemoryConfig(activation_words=41), 10),
                            (MemoryConfig(output_codes=20), 6)):
        images = pack(program, config, memories)
        assert images.max_batch == batch and images.program[3] == batch


def test_memory_contents_pads_with_zeros_or_a_filler():
    rng = np.random.default_rng(5)
    config = ArrayConfig(rows=2, cols=3, weight_bits=5, activation_bits=3, accumulator_bits=16)
    memories = MemoryConfig(weight_words=128, requant_words=64, program_words=64)
    first = pack(random_program(rng, config, [7, 5, 4]), config, memories)
    second = pack(random_program(rng, config, [7, 5, 4]), config, memories)
    zeros = memory_contents(first, "weights")
    assert zeros == first.weights + (0,) * (128 - len(first.weights))
    for name, width in (("weights", first.weight_width), ("requant", first.requant_width),
                        ("program", first.program_width)):
        filled, other = memory_contents(first, name, 3), memory_contents(second, name, 3)
        used = len(getattr(first, name))
        assert filled[:used] == getattr(first, name) and filled[used:] == other[used:]
        assert len(set(filled[used:])) > 0.9 * len(filled[used:])
        assert all(0 <= word < 1 << width for word in filled)
        assert memory_contents(first, name, 4)[used:] != filled[used:]
    with pytest.raises(ValueError, match="^memory must be one of 'weights', 'requant', "
                                         "'program', not 'output'$"):
        memory_contents(first, "output")


def test_requant_words_are_whole_hex_digits_with_reserved_bits_zero(small):
    """Since version 3: a requantization word is 56 bits, the constants in bits 0..53 and two reserved
    bits, 0 in the images and pseudo-random in the filler, so that every bit column of the
    memory's hex file varies (what icebram and ecpbram need to tell block RAMs apart)."""
    program, config = small
    assert FORMAT_VERSION == 7
    assert [(name, field.offset, field.width) for name, field in REQUANT_LAYOUT] == [
        ("bias", 0, 32), ("multiplier", 32, 16), ("shift", 48, 6), ("reserved", 54, 2)]
    assert REQUANT_LAYOUT.size % 4 == 0
    memories = MemoryConfig(requant_words=256)
    images = pack(program, config, memories)
    assert all(word >> 54 == 0 for word in images.requant)
    filled = memory_contents(images, "requant", 7)[len(images.requant):]
    assert {word >> 54 for word in filled} == {0, 1, 2, 3}
    # A reserved bit set in an image is not a packing of any program.
    words = list(images.requant)
    words[0] |= 1 << 55
    with pytest.raises(ValueError, match=r"^the images are not in the layout of memory map "
                                         r"version 7: repacking the layers they hold gives "
                                         r"other words$"):
        unpack(dataclasses.replace(images, requant=tuple(words)), config)


@pytest.mark.parametrize("seed", range(4))
def test_convolutions_round_trip(seed):
    """Random convolution chains and a dense layer on their map: unpack gives the layers back
    (windows, groups, pad codes, rounding), and the images compute what the program does."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)),
                         weight_bits=4, activation_bits=4, accumulator_bits=20)
    program = random_conv_program(rng, config, (5, 4, 3), [("conv", 4), ("conv", 2),
                                                            ("dense", 3)])
    images = pack(program, config)
    assert_same_layers(unpack(images, config), program.layers)
    codes = rng.integers(0, 16, (3, program.inputs))
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))
    tiles = layer_tiles(program, config)
    for layer, tile in zip(program.layers, tiles):
        window = layer.window
        taps = 1 if window is None else window.kernel_height * window.kernel_width
        channels = layer.inputs if window is None else window.channels
        if window is None and len(tiles) > 1:    # a dense layer reads the map before it
            height, width, channels = program.layers[-2].output_shape
            taps = height * width
        assert tile.k_tiles == taps * ceil_div(channels, config.rows)
        assert tile.positions == (1 if window is None else window.positions)
    assert ideal_cycles(program, config) == sum(t.k_tiles * t.n_tiles * t.positions
                                                for t in tiles)


GRAPHS = [
    # Overlapping, padded pooling (3x3, stride 2, pad 1); a residual add over two layers.
    [("conv", 4, {"largest_stride": 1}),
     ("max_pool", {"largest_kernel": 3, "largest_stride": 2}),
     ("conv", 4, {"largest_stride": 1, "largest_kernel": 1}),
     ("conv", 4, {"largest_stride": 1, "largest_kernel": 1}), ("add", 1)],
    # An add of the program's input; max pooling as the last layer.
    [("conv", 3, {"largest_stride": 1, "largest_kernel": 1}), ("add", -1), ("max_pool", {})],
]


@pytest.mark.parametrize("seed", range(6))
def test_graphs_round_trip(seed):
    """Max pooling, add layers and skips pack and unpack exactly (their sources from where
    their tensors lie), and the images compute what the program does."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=int(rng.integers(1, 5)), cols=int(rng.integers(1, 5)),
                         weight_bits=4, activation_bits=4, activation_signed=bool(seed % 2),
                         accumulator_bits=20)
    program = random_conv_program(rng, config, (5, 4, 3), GRAPHS[seed % 2])
    images = pack(program, config)
    assert_same_layers(unpack(images, config), program.layers)
    assert packed_sources(images) == program.sources
    codes = rng.integers(*config.activation_range, (images.max_batch, program.inputs),
                         endpoint=True)
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))
    assert windowed(images)
    assert [tiles.k_tiles for tiles, layer in zip(layer_tiles(program, config), program.layers)
            if not isinstance(layer, IntegerLayer)] == [0, 0]


@pytest.mark.parametrize("signed", [False, True])
def test_gelu_round_trip(signed):
    """A GELU layer between convolutions and on a residual's skip packs and unpacks exactly
    (its constants in the record, no weight or requant words) and the images compute what the
    program does."""
    rng = np.random.default_rng(7 + signed)
    config = ArrayConfig(rows=3, cols=2, weight_bits=4, activation_bits=4,
                         activation_signed=signed, accumulator_bits=20)
    program = random_conv_program(rng, config, (3, 4, 5), [
        ("conv", 4, {"largest_stride": 1}), ("gelu",), ("conv", 4, {"largest_kernel": 1}),
        ("gelu",), ("conv", 3, {"largest_kernel": 1})])
    images = pack(program, config)
    assert_same_layers(unpack(images, config), program.layers)
    assert [r["kind"] for r in layer_records(images)] == [0, 3, 0, 3, 0]
    assert [(t.k_tiles, t.weight_words) for t in layer_tiles(program, config)][1:4:2] == \
        [(0, 0), (0, 0)]
    codes = rng.integers(*config.activation_range, (images.max_batch, program.inputs),
                         endpoint=True)
    outputs = golden_run_images(images, config, codes)
    np.testing.assert_array_equal(outputs, run_program(program, codes))
    assert len(set(outputs.ravel().tolist())) > 1


@pytest.mark.parametrize("bits, signed", [(4, False), (8, True)])
def test_softmax_layernorm_round_trip(bits, signed):
    """Softmax and LayerNorm layers between convolutions and last pack and unpack exactly
    (softmax's constants in the record; LayerNorm's shift in the record, its multipliers and
    biases two requantization words a channel) and the images compute what the program
    does."""
    rng = np.random.default_rng(11 + bits)
    config = ArrayConfig(rows=4, cols=2, weight_bits=4, activation_bits=bits,
                         activation_signed=signed, accumulator_bits=20)
    program = random_conv_program(rng, config, (2, 3, 5), [
        ("conv", 6, {"largest_stride": 1}), ("layernorm",), ("conv", 5, {"largest_kernel": 1}),
        ("softmax",), ("conv", 3, {"largest_kernel": 1}), ("layernorm",)])
    images = pack(program, config)
    assert_same_layers(unpack(images, config), program.layers)
    records = layer_records(images)
    assert [r["kind"] for r in records] == [0, 5, 0, 4, 0, 5]
    tiles = layer_tiles(program, config)
    assert [(t.k_tiles, t.weight_words, t.requant_words) for t in tiles[1::2]] == [
        (0, 0, 12), (0, 0, 0), (0, 0, 6)]
    assert records[3]["fraction_bits"] == program.layers[3].fraction_bits
    assert records[2]["requant_base"] == records[1]["requant_base"] + 12
    codes = rng.integers(*config.activation_range, (images.max_batch, program.inputs),
                         endpoint=True)
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))


def test_layernorm_words():
    """A LayerNorm channel's two requantization words, worked out by hand: the multiplier in
    the first word's bias, the 48-bit bias split into the second word's bias (high 32 bits)
    and multiplier (low 16)."""
    words = layernorm_words([-3, 65535], [-(1 << 40) + 5, (1 << 47) - 1])
    assert words == [0xFFFF_FFFD,                     # -3
                     0x0005 << 32 | 0xFF00_0000,      # -2^40 + 5 = -2^24 * 2^16 + 5
                     0xFFFF,                          # 65535
                     0xFFFF << 32 | 0x7FFF_FFFF]      # 2^47 - 1 = (2^31 - 1) * 2^16 + 0xFFFF
    multiplier, bias = layernorm_constants(words)
    assert multiplier.tolist() == [-3, 65535] and bias.tolist() == [-(1 << 40) + 5,
                                                                    (1 << 47) - 1]


@pytest.mark.parametrize("rows", [2, 4, 3])
def test_vector_read_as_a_map(rows):
    """A dense layer's vector read by a LayerNorm layer as a map of 2 positions of 4 channels
    (the ViT's patch embedding): the same buffer words where a position is whole words (2 and
    4 rows), refused otherwise (3 rows)."""
    rng = np.random.default_rng(rows)
    config = ArrayConfig(rows=rows, cols=2, weight_bits=4, activation_bits=8,
                         activation_signed=True, accumulator_bits=20)
    program = random_conv_program(rng, config, (1, 1, 5), [("dense", 8), ("dense", 3)])
    norm = random_conv_program(rng, config, (2, 1, 4), [("layernorm",), ("dense", 2)]).layers[0]
    program = program_of([program.layers[0], norm, program.layers[1]])
    if 4 % rows:
        with pytest.raises(ValueError, match=r"^layer 1 reads a 2x1x4 map; layer 0 writes a "
                                             r"1x1x8 map$"):
            pack(program, config)
        return
    images = pack(program, config)
    codes = rng.integers(*config.activation_range, (images.max_batch, program.inputs),
                         endpoint=True)
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))


def test_placement_of_a_skip():
    """The skip tensor of a residual add survives the two layers between: the add reads it
    from where layer 1 wrote it, and no tensor written while it is alive overlaps it; a chain
    stays in ping-pong buffers at word 0 and runs on an engine without windows."""
    config = ArrayConfig(rows=2, cols=2, accumulator_bits=20)
    rng = np.random.default_rng(1)
    program = random_conv_program(rng, config, (4, 4, 2), GRAPHS[0])
    images = pack(program, config)
    records = layer_records(images)
    regions = [(r["input_buffer"], r["input_base"], r["output_buffer"], r["output_base"])
               for r in records]
    skip = images.max_batch * records[1]["positions"] * records[1]["output_words"]
    # Layer 1 (the pooled map) in buffer 0 from word 0; layer 2 into buffer 1; layer 3 beside
    # the skip in buffer 0; the add reads both.
    assert regions[:4] == [(0, 0, 1, 0), (1, 0, 0, 0), (0, 0, 1, 0), (1, 0, 0, skip)]
    assert (records[4]["input_buffer"], records[4]["input_base"], records[4]["second_buffer"],
            records[4]["second_base"]) == (0, skip, 0, 0)
    chain = random_conv_program(rng, config, (4, 4, 2), [("conv", 2), ("conv", 3),
                                                         ("dense", 2)])
    chained = pack(chain, config)
    assert [(r["input_buffer"], r["input_base"], r["output_buffer"], r["output_base"])
            for r in layer_records(chained)] == [(0, 0, 1, 0), (1, 0, 0, 0), (0, 0, 0, 0)]
    flat = pack(random_program(rng, config, [5, 4, 3]), config)
    assert not windowed(flat)


def test_graph_refusals():
    config = ArrayConfig(rows=2, cols=2)
    rng = np.random.default_rng(3)
    conv = random_conv_program(rng, config, (4, 4, 2), [("conv", 2, {"largest_stride": 1}),
                                                         ("dense", 2)])
    layer = conv.layers[0]
    codes = QuantParams(4, False, 1.0, 0, 0, 15)
    height, width, channels = layer.output_shape
    # (A map of whole words may be read as another of the same codes: here they differ.)
    pool = MaxPoolLayer(Window(height * width * channels, 1, 1, 1, 1, pad_code=0),
                        bits=4, signed=False)
    with pytest.raises(ValueError, match=rf"^layer 1 reads a {height * width * channels}x1x1 "
                                         rf"map; layer 0 writes a {height}x{width}x{channels} "
                                         r"map$"):
        pack(IntegerProgram([layer, pool], conv.input, codes), config)
    wide = AddLayer(layer.output_shape, (0, 0), (1, 1), 0, 0, -8, 7, 4, True, 4, True)
    signed_config = dataclasses.replace(config, activation_bits=3, activation_signed=True)
    with pytest.raises(ValueError, match=r"^layer 0 has 4-bit signed \(-8..7\) inputs; the "
                                         r"array takes 3-bit signed \(-4..3\) codes$"):
        check_fit(program_of([wide], ((-1, -1),)), signed_config, MemoryConfig())
    # The skip of a residual needs room beside the layers between: one input's maps.
    program = random_conv_program(rng, config, (4, 4, 2), GRAPHS[0])
    with pytest.raises(ValueError, match=r"^the model needs (\d+) activation words per input "
                                         r"\(buffer 0: the input at 0\.\.15, layer 1's output "
                                         r"at 0\.\.(\d+), layer 3's output at \d+\.\.\d+\), "
                                         r"each buffer has 1: \d+ words short$") as refused:
        check_fit(program, config, MemoryConfig(activation_words=1))
    needed = int(refused.value.args[0].split()[3])
    check_fit(program, config, MemoryConfig(activation_words=needed))
    with pytest.raises(ValueError, match=rf"activation words per input .*, each buffer has "
                                         rf"{needed - 1}: 1 words short$"):
        check_fit(program, config, MemoryConfig(activation_words=needed - 1))


def test_transformer_layers():
    """Every layer kind of a transformer runs on the engine: the graph packs and unpacks on a
    3x3 array, whose words hold whole pixels of the maps its heads read as other shapes; on a
    2x2 array those maps' words differ, which is refused in one line."""
    from .test_program import transformer_program

    program = transformer_program()
    config = ArrayConfig(rows=3, cols=3, weight_bits=4, activation_bits=8,
                         activation_signed=True, accumulator_bits=16)
    images = pack(program, config)
    assert [type(layer) for layer in unpack(images, config)] == [
        type(layer) for layer in program.layers]
    codes = np.random.default_rng(0).integers(-128, 128, (3, program.inputs))
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))
    with pytest.raises(ValueError, match=r"^layer 1 reads a 5x2x3 map; layer 0 writes a 1x5x6 "
                                         r"map$"):
        check_fit(program, dataclasses.replace(config, rows=2, cols=2), MemoryConfig())


def test_matmul_layers():
    """Matmul layers (attention's Q K^T and S V) pack and unpack exactly; the records say
    where the second operand lies and the requantization words repeat the layer's constants
    for every channel of its output tiles."""
    rng = np.random.default_rng(3)
    config = ArrayConfig(rows=4, cols=4, weight_bits=5, activation_bits=4, accumulator_bits=16)
    program = random_attention_program(rng, config, 5, 2, 3, 6)
    images = pack(program, config)
    unpacked = unpack(images, config)
    assert (unpacked[2], unpacked[4]) == (program.layers[2], program.layers[4])
    assert packed_sources(images) == program.sources
    records = layer_records(images)
    for index in (2, 4):
        record, layer = records[index], program.layers[index]
        assert (record["kind"], record["transpose"]) == (LAYER_KINDS.index("matmul"),
                                                         layer.transpose)
        assert (record["k_tiles"], record["n_tiles"], record["positions"]) == (
            -(-layer.inner // 4), -(-layer.cols // 4), layer.rows + 1)
        assert (record["pad_top"], record["pad_code"]) == (1, layer.zero_points[0])
        words = images.requant[record["requant_base"]:][:record["n_tiles"] * 4]
        assert len(set(words)) == 1
    codes = rng.integers(0, 16, (3, program.inputs))
    np.testing.assert_array_equal(golden_run_images(images, config, codes),
                                  run_program(program, codes))


def test_matmul_refusals():
    """What the engine cannot run of a matmul layer is refused in one line."""
    rng = np.random.default_rng(4)
    config = ArrayConfig(rows=4, cols=4, weight_bits=5, activation_bits=4, accumulator_bits=16)
    program = random_attention_program(rng, config, 5, 2, 3, 6)
    narrow = dataclasses.replace(config, weight_bits=4)
    attention = random_attention_program(rng, narrow, 5, 2, 3, 6)
    assert attention.layers[2].zero_points[1] == 8      # b - 8 fits 4-bit signed weights
    check_fit(attention, narrow, MemoryConfig())
    with pytest.raises(ValueError, match=r"^layer 2 \(a matmul\) loads its operand b as codes "
                                         r"minus its zero point 9, -9\.\.6; the array takes "
                                         r"4-bit signed \(-8\.\.7\) weights$"):
        check_fit(dataclasses.replace(attention, layers=attention.layers[:2] + (
            dataclasses.replace(attention.layers[2], zero_points=(3, 9)),)
            + attention.layers[3:]), narrow, MemoryConfig())
    small = dataclasses.replace(config, accumulator_bits=10)
    layers = tuple(dataclasses.replace(layer, accumulator_bits=10)
                   if isinstance(layer, IntegerLayer) else layer for layer in program.layers)
    with pytest.raises(ValueError, match=r"^layer 2 \(a matmul of 6 inner codes\) may overflow: "
                                         r"sum a \(b - zb\) needs 12 accumulator bits, not 10$"):
        check_fit(dataclasses.replace(program, layers=layers), small, MemoryConfig())
    with pytest.raises(ValueError, match=r"^layer 2 is a matmul layer; the engine runs them on "
                                         r"square arrays only, not 4x5$"):
        check_fit(program, dataclasses.replace(config, cols=5), MemoryConfig())
    with pytest.raises(ValueError, match=r"^layer 2 is a matmul layer; the engine's last layer "
                                         r"must be another kind"):
        check_fit(program_of(program.layers[:3], program.sources[:3]), config, MemoryConfig())
