"""The digits vision transformer: its float model, the dequantize-first reference and the
integer-only program of operand reordering."""

import math

import numpy as np
import pytest

from systolix.layer import MatMulLayer
from systolix.sim.golden import run_layer, run_program
from systolix.sw.models import VisionTransformer, accuracy, digits_vit
from systolix.sw.program import IntegerProgram
from systolix.sim.golden.nonlinear import float_softmax
from systolix.sw.quant import QuantParams
from systolix.sw.vit import (calibrate, fake_quantized_forward, lower_vit, score_quantizer,
                             vit_accuracies)


@pytest.fixture(scope="module")
def program():
    model, data = digits_vit()
    return lower_vit(model, data.x_train, 4, 4)


def test_shipped_model():
    model, data = digits_vit()
    assert (model.tokens, model.width, model.heads, model.depth) == (16, 32, 2, 2)
    assert model.params["block0_fc1_weight"].shape == (32, 64)
    assert accuracy(model.predict(data.x_test), data.y_test) > 0.94


def test_save_load_and_checks(tmp_path):
    model, data = digits_vit()
    model.save(tmp_path / "vit.npz")
    loaded = VisionTransformer.load(tmp_path / "vit.npz")
    np.testing.assert_array_equal(loaded.forward(data.x_test[:8]), model.forward(data.x_test[:8]))
    params = dict(model.params)
    del params["block1_fc2_bias"]
    with pytest.raises(ValueError, match=r"block1_fc2_bias is missing"):
        VisionTransformer(params, 2)
    with pytest.raises(ValueError, match=r"heads must divide the width \(32\), not 3"):
        VisionTransformer(model.params, 3)
    with pytest.raises(ValueError, match=r"position must have shape \(16, 32\), not \(4, 32\)"):
        VisionTransformer({**model.params, "position": np.zeros((4, 32))}, 2)


def test_patches_are_2x2_blocks_in_row_major_order():
    model, _ = digits_vit()
    tokens = model.patches(np.arange(64)[None])[0]
    np.testing.assert_array_equal(tokens[0], [0, 1, 8, 9])
    np.testing.assert_array_equal(tokens[5], [18, 19, 26, 27])


def test_fake_quantized_forward_at_high_bits_is_the_float_model():
    model, data = digits_vit()
    quantizers = calibrate(model, data.x_train, 8)
    fake = fake_quantized_forward(model, data.x_test[:50], 8, quantizers)
    assert np.abs(fake - model.forward(data.x_test[:50])).max() < 0.5


def test_score_quantizer_keeps_the_largest_score_and_the_probabilities():
    """The scores' zero point puts the largest calibration score at the highest code, and
    ``F`` gives probabilities closer to the float softmax than the symmetric codes of the
    largest ``F`` at which every score fits."""
    scores = np.random.default_rng(0).normal(0.0, 2.0, (100, 2, 16, 16)) + 3.0
    units = scores * math.log2(math.e)
    params = score_quantizer(scores)
    assert params.quantize(units.max()) == 127 and params.zero_point != 0

    def error(quantizer):
        probabilities = float_softmax(quantizer.fake_quantize(units) / math.log2(math.e))
        return np.sum((probabilities - float_softmax(scores)) ** 2)

    fraction = math.floor(math.log2(127 / np.abs(units).max()))
    symmetric = QuantParams(8, True, 2.0 ** -fraction, 0, -128, 127)
    assert -math.log2(params.scale) > fraction
    assert error(params) < error(symmetric) / 2


def test_program_is_integer_only(program):
    kinds = [type(layer).__name__ for layer in program.layers]
    # Embedding; per block 14 layers; final LayerNorm and head.
    assert len(kinds) == 1 + 2 * 14 + 2
    assert kinds[:16] == ["IntegerLayer", "LayerNormLayer", "IntegerLayer", "IntegerLayer",
                          "IntegerLayer", "MatMulLayer", "SoftmaxLayer", "MatMulLayer",
                          "IntegerLayer", "AddLayer", "LayerNormLayer", "IntegerLayer",
                          "GeluLayer", "IntegerLayer", "AddLayer", "LayerNormLayer"]
    for layer in program.layers:
        for value in layer.__dict__.values():
            assert not isinstance(value, float)
            assert not (isinstance(value, np.ndarray) and value.dtype.kind == "f")
    scores, context = [layer for layer in program.layers if isinstance(layer, MatMulLayer)][:2]
    assert (scores.rows, scores.groups, scores.inner, scores.cols, scores.transpose) == \
        (16, 2, 16, 16, True)
    assert (context.rows, context.groups, context.inner, context.cols, context.transpose) == \
        (16, 2, 16, 16, False)
    assert scores.input_bits == 4 and context.zero_points[0] == 0


def test_matmul_layers_compute_the_dequantized_products(program):
    """Each MatMulLayer of the program: its output codes are the real product of its
    dequantized operands, requantized (within one code)."""
    model, data = digits_vit()
    codes = {-1: program.encode_input(data.x_test[:20])}
    for index, (layer, sources) in enumerate(zip(program.layers, program.sources)):
        codes[index] = run_layer(layer, *(codes[source] for source in sources))
        if not isinstance(layer, MatMulLayer):
            continue
        za, zb = layer.zero_points
        a = (codes[sources[0]] - za).reshape(20, layer.rows, layer.groups, layer.inner)
        b = codes[sources[1]] - zb
        product = (np.einsum("nigk,njgk->nigj", a, b.reshape(20, layer.cols, layer.groups,
                                                             layer.inner))
                   if layer.transpose else
                   np.einsum("nigk,nkgj->nigj", a, b.reshape(20, layer.inner, layer.groups,
                                                             layer.cols)))
        real = product * layer.multiplier / 2.0 ** layer.shift + layer.output_zero_point
        expected = np.clip(np.floor(real + 0.5), layer.output_low, layer.output_high)
        np.testing.assert_array_equal(codes[index], expected.reshape(20, -1))


def test_program_file_round_trip(program, tmp_path):
    _, data = digits_vit()
    program.save(tmp_path / "vit.npz")
    loaded = IntegerProgram.load(tmp_path / "vit.npz")
    codes = program.encode_input(data.x_test[:30])
    np.testing.assert_array_equal(run_program(loaded, codes), run_program(program, codes))


def test_w4a4_accuracies():
    model, data = digits_vit()
    result = vit_accuracies(model, data, 4, 4)
    print(f"\nW4/A4: float {100 * result['float']:.1f} %, dequantize-first "
          f"{100 * result['fake_quantized']:.1f} %, integer-only {100 * result['integer']:.1f} %")
    assert result["integer"] > 0.92
    assert abs(result["integer"] - result["fake_quantized"]) < 0.015
