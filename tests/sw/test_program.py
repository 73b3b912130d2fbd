import json

import numpy as np
import pytest

from systolix.sim.golden import run_program
from systolix.sw.io import save_arrays
from systolix.sw.program import AddLayer, IntegerLayer, IntegerProgram, MaxPoolLayer, Window
from systolix.sw.quant import QuantParams


def layer(**changes):
    fields = dict(weights=np.array([[1, -2], [3, 4]]), bias=np.array([5, -6]),
                  multiplier=np.array([40000, 50000]), shift=np.array([20, 21]),
                  output_zero_point=0, output_low=0, output_high=15, input_bits=4,
                  input_signed=False, weight_bits=4, weight_signed=True, output_bits=4,
                  output_signed=False, accumulator_bits=12, overflow="wrap")
    fields.update(changes)
    return IntegerLayer(**fields)


def program(*layers, sources=None):
    return IntegerProgram(layers, QuantParams(4, False, 0.5, 0, 0, 15),
                          QuantParams(4, False, 0.25, 0, 0, 15), sources)


def test_arrays_are_int64_and_read_only():
    record = layer(shift=[7, 7], weights=[[1, 2], [3, 4]], bias=np.array([5, -6], np.int8))
    np.testing.assert_array_equal(record.shift, [7, 7])
    for name in ("weights", "bias", "multiplier", "shift"):
        assert getattr(record, name).dtype == np.int64
        assert not getattr(record, name).flags.writeable


@pytest.mark.parametrize("changes, message", [
    (dict(shift=7), r"^shift must have shape \(2,\), one per output channel of weights "
                    r"\(2, 2\), not \(\)$"),
    (dict(bias=np.array([5])), r"^bias must have shape \(2,\), one per output channel"),
    (dict(weights=[[1.0, 2.0], [3.0, 4.0]]), r"^weights must be integers, not float64 values$"),
    (dict(multiplier=np.array([40000.7, 1.0])), r"^multiplier must be integers, not float64"),
    (dict(bias=np.array([True, False])), r"^bias must be integers, not bool values$"),
    (dict(bias=np.array([2 ** 64 - 1, 0], np.uint64)),
     r"^bias must lie in the int64 range, not up to 18446744073709551615$"),
    (dict(input_signed=1), r"^input_signed must be True or False, not 1$"),
    (dict(weights=np.zeros((0, 2), np.int64)), r"^weights must be a matrix \(K, N\) of at least"),
])
def test_layers_are_strict(changes, message):
    """No broadcasting, no casting, no truncation, no wrapping (issue 12)."""
    with pytest.raises(ValueError, match=message):
        layer(**changes)


@pytest.mark.parametrize("changes, message", [
    (dict(weights=np.array([[8, 0]])), r"weights must lie in -8..7, not 0..8"),
    (dict(bias=np.array([2 ** 31, 0])), r"bias must lie in -2147483648..2147483647"),
    (dict(multiplier=np.array([-1, 0])), r"multiplier must lie in 0..65535, not -1..0"),
    (dict(shift=np.array([64, 0])), r"shift must lie in 0..63, not 0..64"),
    (dict(weight_bits=9), r"weight_bits must be an integer in 1..8, not 9"),
    (dict(accumulator_bits=1), r"accumulator_bits must be an integer in 2..32, not 1"),
    (dict(overflow="clip"), r"overflow must be one of 'wrap', 'saturate', not 'clip'"),
    (dict(output_low=16), r"output_low must be an integer in 0..15, not 16"),
    (dict(output_low=5, output_high=4), r"output_high must be an integer in 5..15, not 4"),
    (dict(output_zero_point=1.5), r"output_zero_point must be an integer in 0..15, not 1.5"),
    (dict(weights=np.zeros(3, dtype=np.int64)),
     r"weights must be a matrix \(K, N\) of at least one row and column, not of shape "
     r"\(3,\)"),
])
def test_bad_layers(changes, message):
    with pytest.raises(ValueError, match=message):
        layer(**changes)


def test_bad_programs():
    with pytest.raises(ValueError, match=r"layer 1 has 3 inputs but layer 0 has 2 outputs"):
        program(layer(), layer(weights=np.zeros((3, 2), dtype=int)))
    with pytest.raises(ValueError, match=r"the output codes of layer 0 must be the input codes "
                                         r"of layer 1"):
        program(layer(), layer(input_bits=5))
    with pytest.raises(ValueError, match=r"at least one layer"):
        program()


def test_save_load(tmp_path):
    original = program(layer(), layer(overflow="saturate", accumulator_bits=20))
    original.save(tmp_path / "program.npz")
    loaded = IntegerProgram.load(tmp_path / "program.npz")
    assert loaded.input == original.input and loaded.output == original.output
    for a, b in zip(original.layers, loaded.layers):
        for name in ("weights", "bias", "multiplier", "shift"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert (a.accumulator_bits, a.overflow, a.output_high) == (
            b.accumulator_bits, b.overflow, b.output_high)


def graph():
    """A residual block on a 4x4 map of 2 channels: conv, max pool, conv, add."""
    conv = Window(4, 4, 2, 3, 3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    weights = np.random.default_rng(0).integers(-8, 8, (conv.patch, 2))
    first = layer(weights=weights, window=conv, rounding="half_even")
    pool = MaxPoolLayer(Window(4, 4, 2, 2, 2, stride_height=2, stride_width=2, groups=2), 4,
                        False)
    depthwise = Window(2, 2, 2, 1, 1, groups=2, pad_code=0)
    second = layer(weights=np.array([[3, 0], [0, -2]]), window=depthwise)
    add = AddLayer((2, 2, 2), (0, 0), (1, 2), 1, 0, 0, 15, 4, False, 4, False)
    return program(first, pool, second, add, sources=[(-1,), (0,), (1,), (1, 2)])


def test_graph_save_load(tmp_path):
    original = graph()
    assert (original.inputs, original.outputs) == (32, 8)
    original.save(tmp_path / "graph.npz")
    loaded = IntegerProgram.load(tmp_path / "graph.npz")
    assert loaded.sources == ((-1,), (0,), (1,), (1, 2))
    assert [type(layer) for layer in loaded.layers] == [type(layer)
                                                         for layer in original.layers]
    assert loaded.layers[0].window == original.layers[0].window
    assert loaded.layers[0].rounding == "half_even" and loaded.layers[3] == original.layers[3]
    codes = np.random.default_rng(1).integers(0, 16, (5, 32))
    np.testing.assert_array_equal(run_program(loaded, codes), run_program(original, codes))


def test_bad_graphs():
    first, pool, second, add = graph().layers
    with pytest.raises(ValueError, match=r"sources\[3\] must list 2 earlier layer\(s\) "
                                         r"\(-1..2\), not \[1, 3\]"):
        program(first, pool, second, add, sources=[(-1,), (0,), (1,), (1, 3)])
    with pytest.raises(ValueError, match=r"layer 3 has 8 inputs but layer 0 has 32 outputs"):
        program(first, pool, second, add, sources=[(-1,), (0,), (1,), (0, 2)])
    with pytest.raises(ValueError, match=r"sources must list the inputs of each of the 2"):
        program(first, pool, sources=[(-1,)])


def test_version_1_files_are_refused(tmp_path):
    save_arrays(tmp_path / "old.npz", "systolix.IntegerProgram", 1, {"layers": []}, {})
    with pytest.raises(ValueError, match=r"old.npz: is systolix.IntegerProgram version 1; this "
                                         r"systolix reads version 2"):
        IntegerProgram.load(tmp_path / "old.npz")


def test_encode_decode():
    record = program(layer())
    np.testing.assert_array_equal(record.encode_input([[0.0, 0.3, 100.0]]), [[0, 1, 15]])
    np.testing.assert_array_equal(record.decode_output([[4]]), [[1.0]])


@pytest.mark.parametrize("quantizer, message", [
    (QuantParams(4, False, -0.5, 0, 0, 15), r"^input.scale must be a finite number above 0, "
                                            r"not -0.5$"),
    (QuantParams(4, False, float("nan"), 0, 0, 15), r"^input.scale must be a finite number"),
    (QuantParams(4, False, np.array([0.5, 0.5]), 0, 0, 15), r"^input.scale must be a finite"),
    (QuantParams(4, False, 0.5, 16, 0, 15), r"^input.zero_point must be an integer in 0..15 "),
    (QuantParams(4, False, 0.5, 0, 9, 3), r"^input.high must be an integer in 9..15, not 3$"),
])
def test_quantizers_are_checked(quantizer, message):
    with pytest.raises(ValueError, match=message):
        IntegerProgram((layer(),), quantizer, QuantParams(4, False, 0.25, 0, 0, 15))


def transformer_program():
    """LayerNorm -> Q K^T (both operands its output) -> softmax -> (.) V -> GELU: every
    transformer layer kind in one graph."""
    from systolix.sw.program import GeluLayer, LayerNormLayer, MatMulLayer, SoftmaxLayer

    wide = dict(output_zero_point=0, output_low=-128, output_high=127, output_bits=8,
                output_signed=True)
    narrow = dict(output_zero_point=0, output_low=0, output_high=15, output_bits=4,
                  output_signed=False)
    layers = (
        LayerNormLayer((1, 5, 6), np.arange(-3, 3) << 10, np.arange(6) << 20, 30, input_bits=8,
                       input_signed=True, **narrow),
        MatMulLayer(5, 2, 3, 5, True, (7, 8), 0, 3, 2, input_bits=4, input_signed=False,
                    accumulator_bits=12, overflow="wrap", **wide),
        SoftmaxLayer((5, 2, 5), 4, 15, 30, input_bits=8, input_signed=True, **narrow),
        MatMulLayer(5, 2, 5, 3, False, (0, 8), -5, 1, 4, input_bits=4, input_signed=False,
                    accumulator_bits=12, overflow="saturate", rounding="half_even", **wide),
        GeluLayer((1, 5, 6), -2, 25, 693, 40000, 20, input_bits=8, input_signed=True,
                  **narrow))
    return IntegerProgram(layers, QuantParams(8, True, 0.5, 0, -128, 127),
                          QuantParams(4, False, 0.25, 0, 0, 15),
                          ((-1,), (0, 0), (1,), (2, 0), (3,)))


def test_transformer_layers_save_and_load(tmp_path):
    record = transformer_program()
    assert (record.inputs, record.outputs) == (30, 30)
    record.save(tmp_path / "vit.npz")
    loaded = IntegerProgram.load(tmp_path / "vit.npz")
    assert loaded.sources == record.sources
    for saved, read in zip(record.layers, loaded.layers):
        assert type(saved) is type(read)
        for name, value in saved.__dict__.items():
            np.testing.assert_array_equal(getattr(read, name), value)
    codes = np.random.default_rng(0).integers(-128, 128, size=(4, 30))
    np.testing.assert_array_equal(run_program(loaded, codes), run_program(record, codes))


def test_matmul_operands_must_connect():
    record = transformer_program()
    with pytest.raises(ValueError, match=r"layer 3 has 50 inputs but layer 0 has 30 outputs"):
        IntegerProgram(record.layers, record.input, record.output,
                       ((-1,), (0, 0), (1,), (0, 0), (3,)))
    with pytest.raises(ValueError, match=r"sources\[1\] must list 2 earlier layer\(s\)"):
        IntegerProgram(record.layers, record.input, record.output,
                       ((-1,), (0,), (1,), (2, 0), (3,)))



@pytest.mark.parametrize("edit, message", [
    (lambda entry: entry.update(bits="4"), r"header field layers\[1\]\.bits"),
    (lambda entry: entry["window"].update(stride_height=0), r"header field layers\[1\]\.window"),
    (lambda entry: entry.update(bits=9), r"layer 1: "),
])
def test_layer_errors_name_the_file_once(tmp_path, edit, message):
    graph().save(tmp_path / "graph.npz")
    with np.load(tmp_path / "graph.npz") as stored:
        arrays = {name: stored[name] for name in stored.files if name != "header"}
        header = json.loads(str(stored["header"]))
    edit(header["layers"][1])
    save_arrays(tmp_path / "bad.npz", header.pop("format"), header.pop("version"), header,
                arrays)
    with pytest.raises(ValueError, match=message) as error:
        IntegerProgram.load(tmp_path / "bad.npz")
    assert str(error.value).count("bad.npz") == 1
