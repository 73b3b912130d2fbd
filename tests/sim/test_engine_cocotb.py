"""End to end on the Verilog of the inference engine (cocotb, Verilator): real models on the
digits data, every output code bit-exact, every run's cycle count equal to the cycle model."""

import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sim.testbench.suite import run_engine
from systolix.sw import digits_mlp, lower, quantize
from systolix.sw.finetune import finetune
from systolix.sw.models import accuracy
from systolix.sw.pack import ideal_cycles, layer_tiles, pack
from systolix.layer import MatMulLayer
from systolix.sw.stimulus import random_attention_program, random_conv_program

pytestmark = pytest.mark.cocotb


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


def run_model(digits, config, images, batches, tmp_path, quantized=None, **options):
    """Run ``quantized`` (by default the digits MLP quantized with ``options``) on the engine
    of ``config``."""
    model, data = digits
    program = lower(quantize(model, data.x_train, **options) if quantized is None else quantized)
    codes = program.encode_input(data.x_test[:images])
    report = run_engine(pack(program, config), config, codes, batches, input_stall=0.3,
                        output_stall=0.3,
                        build_root=tmp_path)
    runs = report["runs"]
    assert [run["mismatches"] for run in runs] == [0] * len(runs)
    assert [run["cycle_mismatches"] for run in runs] == [0] * len(runs)
    outputs = np.concatenate([np.reshape(run["outputs"], (run["batch"], -1)) for run in runs])
    np.testing.assert_array_equal(outputs, run_program(program, codes))
    cycles = sum(run["cycles_measured"] for run in runs) / images
    return program, accuracy(outputs.argmax(1), data.y_test[:images]), cycles


def test_digits_w4a4_default_array(digits, tmp_path):
    """The default: W4/A4, A2Q+ for a 12-bit accumulator, 8x8 array, 200 test images."""
    config = ArrayConfig(rows=8, cols=8, weight_bits=4, activation_bits=4, accumulator_bits=12)
    program, hardware_accuracy, cycles = run_model(
        digits, config, 200, [128, 72], tmp_path, weight_bits=4, activation_bits=4,
        accumulator_bits=12, method="a2q+")
    assert hardware_accuracy > 0.9
    assert cycles <= 1.25 * ideal_cycles(program, config)


@pytest.mark.slow
@pytest.mark.parametrize("pe", ["dsp", "dsp4"])
def test_digits_w4a4_dsp_cells(digits, tmp_path, pe):
    """The default model on the 8x8 array of DSP cell pairs (``pe="dsp"``) and of four-product
    cells (``"dsp4"``, a cycle more of latency): the whole engine bit-exact and cycle-exact as
    with LUT cells."""
    config = ArrayConfig.from_name(f"8x8-W4s-A4u-P12-wrap-{pe}")
    _, hardware_accuracy, _ = run_model(
        digits, config, 100, [64, 36], tmp_path, weight_bits=4, activation_bits=4,
        accumulator_bits=12, method="a2q+")
    assert hardware_accuracy > 0.9


@pytest.mark.parametrize("bits, accumulator_bits, array", [
    (2, 10, (4, 4)),     # a 2-bit model on an array smaller than every layer in both dimensions
    pytest.param(8, 24, (8, 4), marks=pytest.mark.slow),     # an 8-bit model
])
def test_digits_widths(digits, tmp_path, bits, accumulator_bits, array):
    rows, cols = array
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=bits, activation_bits=bits,
                         accumulator_bits=accumulator_bits)
    _, hardware_accuracy, _ = run_model(
        digits, config, 100, [60, 40], tmp_path, weight_bits=bits, activation_bits=bits,
        accumulator_bits=accumulator_bits, method="a2q+")
    assert hardware_accuracy > 0.6


@pytest.mark.parametrize("method", ["axe", pytest.param("finetune", marks=pytest.mark.slow)])
def test_digits_narrow_accumulator(digits, tmp_path, method):
    """A 9-bit accumulator, W4/A4: AXE-style rounding (:mod:`systolix.sw.axe`) and A2Q+
    fine-tuning (:mod:`systolix.sw.finetune`, a few epochs). Their integers meet the data-free
    bound (tests/sw/test_axe.py, test_finetune.py); the engine, wrapping at 9 bits, computes
    them bit-exactly."""
    model, data = digits
    config = ArrayConfig(rows=8, cols=8, weight_bits=4, activation_bits=4, accumulator_bits=9)
    quantized = (quantize(model, data.x_train, 4, 4, 9, "a2q+", rounding="axe")
                 if method == "axe" else
                 finetune(model, data.x_train, data.y_train, 4, 4, 9, epochs=5))
    _, hardware_accuracy, _ = run_model(digits, config, 64, [40, 24], tmp_path, quantized)
    assert hardware_accuracy > 0.9


def test_digits_mixed_precision(digits, tmp_path):
    """Per-layer widths (weights 3, 5, 8 bits; inputs 6, 3, 4 bits) on a 5x3 array, whose odd
    shape requantizes one channel a cycle."""
    config = ArrayConfig(rows=5, cols=3, weight_bits=8, activation_bits=6, accumulator_bits=24)
    run_model(digits, config, 100, [60, 40], tmp_path, weight_bits=(3, 5, 8),
              activation_bits=(6, 3, 4), accumulator_bits=24, method="a2q")


@pytest.mark.parametrize("seed, rows, cols, overflow", [
    pytest.param(0, 4, 4, "wrap", marks=pytest.mark.slow), (1, 3, 2, "wrap"),
    (2, 2, 4, "saturate")])
def test_random_convolutions(tmp_path, seed, rows, cols, overflow):
    """Random convolution chains (kernels up to 3x3, strides 1 and 2, padding with each
    layer's pad code, groups, halves up and to even) and a dense layer on the last map, on
    arrays with rows != cols, wrapping and saturating: 0 mismatches, measured = modelled
    cycles, and the MAC utilisation (ideal / measured cycles) of each run."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=4,
                         activation_signed=bool(seed % 2),
                         accumulator_bits=32 if overflow == "saturate" else 12,
                         overflow=overflow)
    program = random_conv_program(rng, config, (6, 6, 3), [
        ("conv", 4, {"largest_stride": 1}), ("conv", 6, {"largest_stride": 2}),
        ("dense", 5)])
    images = pack(program, config)
    codes = rng.integers(*config.activation_range, (images.max_batch + 2, program.inputs),
                         endpoint=True)
    report = run_engine(images, config, codes, [images.max_batch, 2], input_stall=0.3,
                        output_stall=0.3, build_root=tmp_path)
    runs = report["runs"]
    assert [run["mismatches"] for run in runs] == [0] * len(runs)
    assert [run["cycle_mismatches"] for run in runs] == [0] * len(runs)
    outputs = np.concatenate([np.reshape(run["outputs"], (run["batch"], -1)) for run in runs])
    np.testing.assert_array_equal(outputs, run_program(program, codes))
    assert len(set(outputs.ravel().tolist())) > 1
    ideal = ideal_cycles(program, config) * images.max_batch
    assert 0 < ideal <= runs[0]["cycles_measured"]


GRAPHS = {
    # Overlapping, padded max pooling between convolutions; a residual add whose skip spans
    # two layers; max pooling as the last layer.
    "pool-residual-pool": [
        ("conv", 4, {"largest_stride": 1}),
        ("max_pool", {"largest_kernel": 3, "largest_stride": 2}),
        ("conv", 4, {"largest_kernel": 1, "largest_stride": 1}),
        ("conv", 4, {"largest_kernel": 1, "largest_stride": 1}), ("add", 1), ("max_pool", {})],
    # A max pooling first layer, an add of the program's input map, a dense layer on the sum.
    "pool-input-add-dense": [
        ("max_pool", {}), ("conv", 3, {"largest_kernel": 1, "largest_stride": 1}),
        ("add", 0), ("dense", 3)],
    # GELU layers (post-op kind gelu) after a convolution, on a residual's branch and last.
    "gelu": [
        ("conv", 4, {"largest_stride": 1}), ("gelu",),
        ("conv", 4, {"largest_kernel": 1, "largest_stride": 1}), ("gelu",), ("add", 1),
        ("gelu",)],
    # LayerNorm and softmax layers (row unit kinds layernorm and softmax) between dense layers
    # on each position's channels, LayerNorm last.
    "layernorm-softmax": [
        ("conv", 6, {"largest_kernel": 1, "largest_stride": 1}), ("layernorm",),
        ("conv", 9, {"largest_kernel": 1, "largest_stride": 1}), ("softmax",),
        ("conv", 5, {"largest_kernel": 1, "largest_stride": 1}), ("layernorm",)],
    # A residual add around a LayerNorm, softmax last.
    "softmax-last": [
        ("conv", 4, {"largest_stride": 1}), ("layernorm",), ("add", 0), ("softmax",)],
    # An add as the last layer.
    "residual-last": [
        ("conv", 3, {"largest_stride": 1}), ("conv", 3, {"largest_kernel": 1,
                                                        "largest_stride": 1}),
        ("add", 0)],
}


@pytest.mark.parametrize("graph, seed, rows, cols, bits", [
    ("pool-residual-pool", 0, 4, 2, 4),
    pytest.param("pool-input-add-dense", 1, 3, 2, 4, marks=pytest.mark.slow),
    pytest.param("residual-last", 2, 4, 4, 4, marks=pytest.mark.slow),
    pytest.param("pool-residual-pool", 3, 8, 4, 4, marks=pytest.mark.slow),
    ("gelu", 4, 4, 2, 4),
    pytest.param("gelu", 5, 3, 3, 4, marks=pytest.mark.slow),
    ("layernorm-softmax", 7, 4, 2, 8),
    pytest.param("layernorm-softmax", 6, 3, 3, 4, marks=pytest.mark.slow),
    pytest.param("softmax-last", 8, 8, 4, 8, marks=pytest.mark.slow),
])
def test_random_graphs(tmp_path, graph, seed, rows, cols, bits):
    """Random programs with max pooling (overlapping and padded windows), residual adds (a
    skip over two layers, the program's input), GELU layers and a max pooling, add or GELU
    last layer, on the post-op unit, softmax and LayerNorm layers (one a last layer) on the row
    unit, with ``bits``-bit activation codes: 0 mismatches and measured = modelled cycles."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=4, activation_bits=bits,
                         activation_signed=bool(seed % 2), accumulator_bits=16 + bits - 4)
    program = random_conv_program(rng, config, (5, 6, 3), GRAPHS[graph])
    images = pack(program, config)
    codes = rng.integers(*config.activation_range, (images.max_batch + 2, program.inputs),
                         endpoint=True)
    report = run_engine(images, config, codes, [images.max_batch, 2], input_stall=0.3,
                        output_stall=0.3, build_root=tmp_path)
    runs = report["runs"]
    assert [run["mismatches"] for run in runs] == [0] * len(runs)
    assert [run["cycle_mismatches"] for run in runs] == [0] * len(runs)
    outputs = np.concatenate([np.reshape(run["outputs"], (run["batch"], -1)) for run in runs])
    np.testing.assert_array_equal(outputs, run_program(program, codes[:len(outputs)]))
    assert len(set(outputs.ravel().tolist())) > 1


@pytest.mark.parametrize("config, bits, images", [
    ("4x4-W4s-A4u-P16-wrap-serial", (4, 2, 2), 24),
    pytest.param("6x10-W4s-A5s-P14-wrap-serial", (4, 2, 3), 160, marks=pytest.mark.slow),
])
def test_digits_bit_serial_cells(digits, tmp_path, config, bits, images):
    """Bit-serial cells (``pe="serial"``) with the digits MLP's layers at 4, 2 and 2 (or 3)
    input bits (unsigned codes: one plane more on the array of signed ones): bit-exact and
    cycle-exact, and the 2-bit layers make it faster than at 4 bits (cycle model, checked
    against the hardware by the run)."""
    config = ArrayConfig.from_name(config)
    options = dict(weight_bits=4, accumulator_bits=config.accumulator_bits, method="a2q")
    program, hardware_accuracy, cycles = run_model(
        digits, config, images, [images // 2, images - images // 2], tmp_path,
        activation_bits=bits, **options)
    assert hardware_accuracy > 0.8
    model, data = digits
    wide = lower(quantize(model, data.x_train, activation_bits=4, **options))
    assert cycles < engine_cycles(config, pack(wide, config), images // 2).compute \
        / (images // 2)


# (All slow: a Verilator build each, over a minute on one busy core; the Amaranth simulator
# runs the same graphs in tests/hw/test_engine.py::test_matmul_layers.)
@pytest.mark.slow
@pytest.mark.parametrize("seed, size, tokens, heads, channels, head_width, weight_bits", [
    (0, 4, 5, 2, 3, 6, 5),
    (1, 4, 6, 3, 5, 4, 4),
    (2, 8, 9, 2, 8, 10, 5),
])
def test_random_matmul_graphs(tmp_path, seed, size, tokens, heads, channels, head_width,
                              weight_bits):
    """Attention's two products on the array (``Q K^T`` with ``K`` transposed from its buffer,
    ``S V``; several K and output tiles, 1 to 3 heads, batches of several inputs) in random
    graphs: 0 mismatches and measured = modelled cycles."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(rows=size, cols=size, weight_bits=weight_bits, activation_bits=4,
                         accumulator_bits=16)
    program = random_attention_program(rng, config, tokens, heads, channels, head_width)
    images = pack(program, config)
    codes = rng.integers(*config.activation_range, (min(images.max_batch, 4) + 2,
                                                    program.inputs), endpoint=True)
    report = run_engine(images, config, codes, [min(images.max_batch, 4), 2], input_stall=0.3,
                        output_stall=0.3, build_root=tmp_path)
    runs = report["runs"]
    assert [run["mismatches"] for run in runs] == [0] * len(runs)
    assert [run["cycle_mismatches"] for run in runs] == [0] * len(runs)
    outputs = np.concatenate([np.reshape(run["outputs"], (run["batch"], -1)) for run in runs])
    np.testing.assert_array_equal(outputs, run_program(program, codes[:len(outputs)]))
    assert len(set(outputs.ravel().tolist())) > 1


@pytest.mark.slow
def test_vit_attention(tmp_path):
    """The digits ViT's first attention as lowered (projections, ``Q K^T``, a stand-in for
    the softmax, ``S V``, output projection) on a 16x16 W5s/A8s array on the LayerNorm codes
    of test images: 0 mismatches, measured = modelled cycles, and the products' share of the
    cycles printed."""
    from systolix.sim.golden.program import run_layers
    from systolix.sw.models import digits_vit
    from systolix.sw.stimulus import vit_attention_program
    from systolix.sw.vit import lower_vit

    model, data = digits_vit()
    vit = lower_vit(model, data.x_train[:200], 4, 4)
    config = ArrayConfig(rows=16, cols=16, weight_bits=5, activation_bits=8,
                         activation_signed=True, accumulator_bits=16)
    program = vit_attention_program(vit, 0, config)
    scores = next(index for index, layer in enumerate(vit.layers)
                  if isinstance(layer, MatMulLayer))
    norm = vit.sources[vit.sources[scores][0]][0]
    codes = run_layers(vit.layers[:norm + 1], vit.encode_input(data.x_test[:6]),
                       vit.sources[:norm + 1])
    images = pack(program, config)
    report = run_engine(images, config, codes, [4, 2], input_stall=0.3, output_stall=0.3,
                        build_root=tmp_path)
    runs = report["runs"]
    assert [run["mismatches"] for run in runs] == [0] * len(runs)
    assert [run["cycle_mismatches"] for run in runs] == [0] * len(runs)
    outputs = np.concatenate([np.reshape(run["outputs"], (run["batch"], -1)) for run in runs])
    np.testing.assert_array_equal(outputs, run_program(program, codes))
    cycles = engine_cycles(config, images, 4).layers
    tiles = layer_tiles(program, config)
    for index, name in ((3, "Q K^T"), (5, "S V")):
        ideal = tiles[index].k_tiles * tiles[index].n_tiles * tiles[index].positions
        print(f"ViT attention on 16x16, {name}: {cycles[index] / 4:.1f} cycles an image, "
              f"ideal {ideal}: array utilisation {100 * ideal * 4 / cycles[index]:.0f} %")
