"""The ONNX importer (:mod:`systolix.sw.onnx_import`): programs that equal onnxruntime's
execution of the QCDQ file and qonnx's execution of the QONNX file, code for code, on random
inputs; scales folded exactly; accumulator widths checked; bad models refused in one line."""

from fractions import Fraction

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from systolix.sim.golden.program import run_program
from systolix.sw.integerize import (accumulator_widths, check_accumulators,
                                    requantization_error, report_json, report_text)
from systolix.sw.onnx_import import SUPPORTED_OPS, import_onnx
from systolix.sw.program import IntegerProgram

from .onnx_models import Net, pooled_residual_cnn, run_reference

STYLES = ("qcdq", "qonnx")
OUT8 = (2.0 ** -3, 0, 8, True)


def compare(net, tmp_path, n=48):
    """Import the net's model and compare with its reference execution; returns the import."""
    model = net.model()
    path = tmp_path / f"{net.style}.onnx"
    onnx.save(model, str(path))
    imported = import_onnx(path)
    codes, x = net.random_codes(n)
    y = run_reference(model, x)
    scale, zero_point = net.q[0], net.q[1]
    expected = np.rint(y / scale).astype(np.int64) + zero_point
    assert np.array_equal(y, ((expected - zero_point) * scale).astype(np.float32))
    got = imported.from_program(run_program(imported.program, imported.to_program(codes)))
    assert got.shape == expected.shape
    assert np.array_equal(got, expected), f"{np.sum(got != expected)} mismatches"
    return imported


@pytest.mark.parametrize("style", STYLES)
def test_mlp(style, tmp_path):
    net = Net(style, (64,), seed=1)
    net.dense(32)
    net.dense(16, gemm=True)
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    assert [info.kind for info in imported.layers] == ["dense"] * 3
    assert all(info.exact for info in imported.layers)
    assert all(layer.rounding == "half_even" for layer in imported.program.layers)


@pytest.mark.parametrize("style", STYLES)
def test_cnn_strides_padding_depthwise_pools(style, tmp_path):
    net = Net(style, (3, 9, 9), seed=2)
    net.conv(8, 3, stride=1, pad=1)
    net.conv(8, 3, stride=2, pad=1)
    net.conv(8, 3, stride=1, pad=1, groups=8)           # depthwise
    net.max_pool(2, 2, pad=1)
    net.conv(12, 1, groups=4, relu=False, out=(2.0 ** -3, 0, 5, True))
    net.average_pool(3, 1, (2.0 ** -3, 0, 5, True), pad=1)   # 1/9 in the requantization
    net.global_average_pool((2.0 ** -3, 0, 5, True))
    net.flatten()
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    kinds = [info.kind for info in imported.layers]
    assert kinds == ["conv", "conv", "conv", "maxpool", "conv", "avgpool", "avgpool", "dense"]
    depthwise = imported.program.layers[2]
    assert depthwise.window.groups == 8 and depthwise.window.pad_code == 0
    # 1/9: not a power of two, yet exact for every reachable accumulator value.
    assert imported.layers[5].exact and imported.layers[6].exact


@pytest.mark.parametrize("style", STYLES)
def test_residual_add_and_zero_points(style, tmp_path):
    net = Net(style, (4, 6, 6), bits=8, signed=False, scale=2.0 ** -4, zero_point=100, seed=3)
    net.conv(8, 3, pad=1, relu=False, out=(2.0 ** -2, 4, 4, False))   # zero point 4, padded
    skip, skip_q = net.x, net.q
    net.conv(8, 3, pad=1, relu=False, out=(2.0 ** -3, 6, 4, False))
    net.residual(skip, relu=True, out=(2.0 ** -2, 0, 4, False))
    net.flatten()
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    assert [info.kind for info in imported.layers] == ["conv", "conv", "add", "dense"]
    assert sorted(imported.program.sources[2]) == [0, 1]
    assert imported.program.layers[0].window.pad_code == 100
    assert skip_q[1] == 4


@pytest.mark.parametrize("style", STYLES)
def test_residual_add_of_different_widths(style, tmp_path):
    """A 4-bit branch added to an 8-bit skip: the branch is widened by an exact identity layer
    first (an add layer reads two tensors of the same codes)."""
    net = Net(style, (4, 5, 5), bits=8, scale=2.0 ** -5, seed=17)
    skip = net.x
    net.conv(4, 3, pad=1, relu=True, out=(2.0 ** -2, 0, 4, False))
    net.residual(skip, relu=True, out=(2.0 ** -3, 0, 8, False))
    net.flatten()
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    kinds = [info.kind for info in imported.layers]
    assert kinds == ["conv", "identity", "add", "dense"]
    assert imported.layers[1].exact


def test_qonnx_odd_zero_point_ties_are_reported(tmp_path):
    """QONNX rounds v / s + z: with an odd z its ties go the other way than QuantizeLinear's
    round(v / s) + z, which the program computes; the report says so, and the outputs differ
    by at most one code."""
    net = Net("qonnx", (4, 6, 6), seed=3)
    net.conv(8, 3, pad=1, relu=False, out=(2.0 ** -2, 3, 4, False))
    path = tmp_path / "z.onnx"
    onnx.save(net.model(), str(path))
    imported = import_onnx(path)
    assert not imported.layers[0].exact and "odd zero point" in report_text(imported)
    codes, x = net.random_codes(16)
    expected = np.rint(run_reference(net.model(), x) / 2.0 ** -2).astype(np.int64) + 3
    got = imported.from_program(run_program(imported.program, imported.to_program(codes)))
    assert 0 < np.sum(got != expected) and np.abs(got - expected).max() == 1


@pytest.mark.parametrize("version", (1, 2))
def test_qonnx_trunc_average_pool(version, tmp_path):
    """Brevitas's quantized average pool in QONNX: AveragePool, Mul by the window, Trunc
    (FLOOR) of the sum; the Trunc's input width is the layer's declared accumulator width."""
    net = Net("qonnx", (3, 8, 8), seed=13, qonnx_opset=version)
    net.truncated_pool(2, 4)
    net.conv(4, 3, pad=1, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    pool = imported.layers[0]
    assert pool.kind == "avgpool" and pool.declared == 6 and pool.exact
    assert imported.program.layers[0].rounding == "half_up"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("style", STYLES)
def test_random_cnns(style, seed, tmp_path):
    """Random layers: kernel, stride, padding, groups, Relu or Clip (odd bounds), signed or
    unsigned codes with (even) zero points, a pool; code for code against the reference."""
    rng = np.random.default_rng(100 + seed)
    channels = int(rng.choice([2, 4]))
    bits, signed = int(rng.integers(2, 9)), bool(rng.integers(2))
    net = Net(style, (channels, 7, 7), bits=bits, signed=signed,
              zero_point=0 if signed else 2 * int(rng.integers(0, 1 << (bits - 1))), seed=seed)
    for _ in range(2):
        groups = int(rng.choice([1, net.current_channels()]))
        kernel = int(rng.choice([1, 2, 3]))
        relu = [False, True, (-0.3, 1.1)][rng.integers(3)]
        signed = relu is False and bool(rng.integers(2))
        bits = int(rng.integers(3, 9))
        zero_point = 0 if signed else 2 * int(rng.integers(0, 1 << (bits - 2)))
        net.conv(groups * int(rng.integers(1, 3)), kernel, stride=int(rng.integers(1, 3)),
                 pad=int(rng.integers(0, kernel)), groups=groups, bits=int(rng.integers(2, 9)),
                 relu=relu, out=(2.0 ** -int(rng.integers(1, 5)), zero_point, bits, signed))
    if rng.integers(2):
        net.max_pool(2, 1, pad=1)
    else:
        net.average_pool(2, 1, (net.q[0], net.q[1], net.q[2], net.q[3]))
    net.flatten()
    net.dense(5, relu=False, out=OUT8)
    compare(net, tmp_path, n=32)


def test_qcdq_float_weights_through_quantize_linear(tmp_path):
    net = Net("qcdq", (2, 5, 5), seed=4)
    net.conv(6, 3, pad=1, bits=3, float_qcdq=True)
    net.flatten()
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    assert imported.program.layers[0].weight_bits == 3
    assert np.abs(imported.program.layers[0].weights).max() <= 3


def test_flatten_permutes_rows_to_nhwc(tmp_path):
    """A dense layer after a conv reads the NHWC map: its rows are the ONNX (NCHW) rows
    permuted."""
    net = Net("qcdq", (2, 3, 4), seed=5)
    net.flatten()
    net.dense(5, relu=False, out=OUT8)
    imported = compare(net, tmp_path)
    weights = imported.program.layers[0].weights
    initializer = next(init for init in net.model().graph.initializer
                       if init.name.startswith("w"))
    nchw = onnx.numpy_helper.to_array(initializer).astype(np.int64)
    assert np.array_equal(weights, nchw.reshape(2, 3, 4, 5).transpose(1, 2, 0, 3)
                          .reshape(24, 5))


@pytest.mark.parametrize("style", STYLES)
def test_reshape_to_features(style, tmp_path):
    net = Net(style, (2, 4, 4), seed=14)
    net.conv(3, 3, stride=2, pad=1)
    net.x = net.node("Reshape", [net.x, net.const(np.array([-1, 12], np.int64))])
    net.now = [12]
    net.dense(6, relu=False, out=OUT8)
    compare(net, tmp_path)


def test_qonnx_bipolar_weights(tmp_path):
    net = Net("qonnx", (16,), seed=15)
    signs = np.where(net.rng.random((16, 8)) < 0.5, -1.0, 1.0).astype(np.float32)
    weights = net.node("BipolarQuant", [net.const(signs * 0.3, "w"),
                                        net.const(np.float32(2.0 ** -2))],
                       domain="qonnx.custom_op.general")
    net.x = net.node("MatMul", [net.x, weights])
    net.quantize(*OUT8)
    imported = compare(net, tmp_path)
    layer = imported.program.layers[0]
    assert (layer.weight_bits, layer.weight_signed) == (2, True)
    assert np.array_equal(layer.weights, signs.astype(np.int64))


def test_qonnx_binarized_network(tmp_path):
    """Binary weights and binary activations (BipolarQuant of a sum: +1 where it is at least 0),
    as in FINN's binarized networks; the sign layers compute clamp(2 t + 1, -1, 1)."""
    net = Net("qonnx", (32,), seed=18)
    for outputs in (16, 16):
        signs = np.where(net.rng.random((net.current_features(), outputs)) < 0.5, -1.0, 1.0)
        weights = net.node("BipolarQuant", [net.const(signs.astype(np.float32), "w"),
                                            net.const(np.float32(1.0))],
                           domain="qonnx.custom_op.general")
        net.x = net.node("MatMul", [net.x, weights])
        net.x = net.node("BipolarQuant", [net.x, net.const(np.float32(1.0))],
                         domain="qonnx.custom_op.general")
        net.now, net.q = [outputs], (1.0, 0, 2, True, -1, 1)
    net.dense(10, relu=False, out=OUT8)
    imported = compare(net, tmp_path, n=128)
    sign = imported.program.layers[1]
    assert (sign.output_bits, sign.output_signed, sign.output_low, sign.output_high) == \
        (2, True, -1, 1)
    assert imported.program.layers[2].input_bits == 2


def test_non_power_of_two_scales_are_reported(tmp_path):
    net = Net("qcdq", (16,), scale=0.1, seed=6)
    net.dense(8, out=(0.37, 0, 4, False))
    path = tmp_path / "m.onnx"
    onnx.save(net.model(), str(path))
    imported = import_onnx(path)
    info = imported.layers[0]
    assert not info.exact and 0 < info.error_codes < 0.01
    assert "approximate" in report_text(imported)
    codes, x = net.random_codes(256)
    expected = np.rint(run_reference(net.model(), x) / 0.37).astype(np.int64)
    got = imported.from_program(run_program(imported.program, imported.to_program(codes)))
    assert np.abs(got - expected).max() <= 1


def test_even_denominator_is_approximate(tmp_path):
    """A global pool of 3x3 into half the resolution: 1/18 has ties that a 16-bit multiplier
    rounds otherwise; the report says so."""
    net = Net("qcdq", (4, 3, 3), bits=5, signed=True, seed=11)
    net.global_average_pool((2.0 ** -2, 0, 4, True))
    path = tmp_path / "g.onnx"
    onnx.save(net.model(), str(path))
    info = import_onnx(path).layers[0]
    assert info.kind == "avgpool" and not info.exact and info.error_codes > 0


def test_requantization_error():
    assert requantization_error([Fraction(1, 8)], [1 << 15], [18], [10 ** 6]) == (True, 0.0)
    # 1/9 is not a 16-bit fixed-point number, but no reachable value is near a tie.
    exact, error = requantization_error([Fraction(1, 9)], [58254], [19], [200])
    assert exact and 0 < error < 1 / 18
    exact, _ = requantization_error([Fraction(1, 9)], [58254], [19], [10 ** 6])
    assert not exact
    # An even denominator has ties: only an exact multiplier rounds them the same.
    assert not requantization_error([Fraction(1, 6)], [43691], [18], [3])[0]


def test_accumulator_widths_use_the_input_range():
    weights = np.array([[3, -2], [5, -7]])
    # Inputs 0..15: channel 0 reaches 0..120 (8 bits), channel 1 -135..0 (9 bits).
    assert accumulator_widths(weights, 0, 15).tolist() == [8, 9]
    # Inputs 4..7 (a clamped range): 0..56 and -63..0.
    assert accumulator_widths(weights, 4, 7).tolist() == [7, 7]


def _mlp_file(tmp_path, style="qcdq"):
    net = Net(style, (64,), seed=7)
    net.dense(32)
    net.dense(10, relu=False, out=OUT8)
    path = tmp_path / f"{style}.onnx"
    onnx.save(net.model(), str(path))
    return path


def test_requested_width_refused_or_widened(tmp_path):
    imported = import_onnx(_mlp_file(tmp_path))
    true = [info.true_bits for info in imported.layers]
    fits = check_accumulators(imported, max(true))
    assert [layer.accumulator_bits for layer in fits.program.layers] == [max(true)] * 2
    small = min(true) - 1
    worst = imported.layers[0]
    with pytest.raises(ValueError, match=rf"layer 0 .*channel {worst.worst_channel} needs an "
                                         rf"accumulator of {worst.true_bits} bits.*"
                                         rf"--accumulator-bits is {small}"):
        check_accumulators(imported, small)
    widened = check_accumulators(imported, small, widen=True)
    assert [layer.accumulator_bits for layer in widened.program.layers] == true
    assert all(info.widened for info in widened.layers)
    assert "WIDENED" in report_text(widened, small)
    assert '"widened": true' in report_json(widened, small)
    # Widened to the true width, the program never overflows: it equals the 32-bit one.
    codes = np.random.default_rng(0).integers(0, 15, size=(64, 64), endpoint=True)
    assert np.array_equal(run_program(widened.program, codes),
                          run_program(imported.program, codes))


def test_declared_width_is_checked(tmp_path):
    path = _mlp_file(tmp_path)
    model = onnx.load(str(path))
    helper.set_model_props(model, {"accumulator_bits": "9"})
    onnx.save(model, str(path))
    imported = import_onnx(path)
    assert all(info.declared == 9 for info in imported.layers)
    with pytest.raises(ValueError, match="but its declared width is 9"):
        check_accumulators(imported)
    assert "declared width too small" in report_text(check_accumulators(imported, widen=True))


def test_program_saves_and_loads(tmp_path):
    imported = check_accumulators(import_onnx(_mlp_file(tmp_path, "qonnx")), 16)
    imported.program.save(tmp_path / "program.npz")
    loaded = IntegerProgram.load(tmp_path / "program.npz")
    codes = np.random.default_rng(1).integers(0, 15, size=(8, 64), endpoint=True)
    assert np.array_equal(run_program(loaded, codes), run_program(imported.program, codes))


def _graph_file(tmp_path, nodes, inputs, initializers=(), opsets=(("", 13),)):
    output = helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [output],
                                                list(initializers)),
                              opset_imports=[helper.make_opsetid(*o) for o in opsets])
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    return path


def test_unsupported_op(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    path = _graph_file(tmp_path, [helper.make_node("Softmax", ["x"], ["y"], name="soft")], [x])
    with pytest.raises(ValueError) as error:
        import_onnx(path)
    message = str(error.value)
    assert "node 'soft': op type Softmax is not supported; supported: Quant" in message
    assert all(op in message for op in SUPPORTED_OPS) and "\n" not in message


def test_malformed_file(tmp_path):
    path = tmp_path / "junk.onnx"
    path.write_bytes(b"\x08\x07this is not a protobuf \xff\xff\xff")
    with pytest.raises(ValueError, match=r"junk.onnx: is not an ONNX model"):
        import_onnx(path)


def test_float_weights(tmp_path):
    net = Net("qcdq", (8,), seed=8)
    weights = net.const(np.ones((8, 4), np.float32), "w")
    net.x = net.node("MatMul", [net.x, weights])
    net.quantize(*OUT8)
    path = tmp_path / "f.onnx"
    onnx.save(net.model(), str(path))
    with pytest.raises(ValueError, match=r"its weight 'w\d+' is a float tensor of shape "
                                         r"\[8, 4\] with no quantizer"):
        import_onnx(path)


def test_missing_input_shape(tmp_path):
    net = Net("qcdq", (8,), seed=9)
    net.dense(4, out=OUT8)
    model = net.model()
    model.graph.input[0].type.tensor_type.ClearField("shape")
    path = tmp_path / "s.onnx"
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match="graph input 'x' has no shape"):
        import_onnx(path)
    model.graph.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                ["N", "F"]))
    onnx.save(model, str(path))
    with pytest.raises(ValueError, match=r"has no size for dimension 1 \('F'\)"):
        import_onnx(path)


def test_unquantized_output_refused(tmp_path):
    net = Net("qonnx", (8,), seed=10)
    weights, _, _ = net.weights((8, 4), 4, 1)
    net.x = net.node("MatMul", [net.x, weights])
    path = tmp_path / "o.onnx"
    onnx.save(net.model(), str(path))
    with pytest.raises(ValueError, match="is not quantized"):
        import_onnx(path)


def test_imported_cnn_packs_for_the_accelerator(tmp_path):
    """An imported chain of convolutions, a global pool and a dense layer packs into the memory
    images of an 8x8 W4/A4 array at its true widths, and the packed model (what the accelerator
    built from the images computes) equals the program."""
    from systolix.config import ArrayConfig
    from systolix.sim.golden.program import run_images
    from systolix.sw.pack import pack

    net = Net("qonnx", (1, 8, 8), scale=1.0, seed=16)
    net.conv(4, 3, pad=1, out=(2.0 ** -1, 0, 4, False))
    net.conv(8, 3, stride=2, pad=1, out=(2.0 ** -1, 0, 4, False))
    net.conv(8, 3, pad=1, groups=8, out=(2.0 ** -1, 0, 4, False))
    net.global_average_pool((2.0 ** -1, 0, 4, False))
    net.flatten()
    net.dense(10, relu=False, out=(2.0 ** -2, 0, 4, True))
    imported = compare(net, tmp_path)
    widest = max(info.true_bits for info in imported.layers)
    program = check_accumulators(imported, widest).program
    config = ArrayConfig(rows=8, cols=8, weight_bits=4, activation_bits=4,
                         accumulator_bits=widest)
    codes, _ = net.random_codes(16)
    flat = imported.to_program(codes)
    assert np.array_equal(run_images(pack(program, config), config, flat),
                          run_program(program, flat))


@pytest.mark.parametrize("style", STYLES)
def test_imported_pool_and_residual_pack_for_the_accelerator(style, tmp_path):
    """An imported CNN with an overlapping, padded max pool and a residual add over two
    convolutions packs as a graph (the add reads its skip where layer 2 left it) and the packed
    model equals the program and the source."""
    from systolix.config import ArrayConfig
    from systolix.memory_map import packed_sources
    from systolix.sim.golden.program import run_images
    from systolix.sw.pack import pack

    net = pooled_residual_cnn(style)
    imported = compare(net, tmp_path)
    assert [info.kind for info in imported.layers] == ["conv", "maxpool", "conv", "conv",
                                                       "conv", "add", "dense"]
    program = check_accumulators(imported, 16, widen=True).program
    config = ArrayConfig(rows=8, cols=8, weight_bits=4, activation_bits=4, accumulator_bits=16)
    images = pack(program, config)
    assert packed_sources(images) == program.sources
    assert sorted(program.sources[5]) == [2, 4]
    codes, _ = net.random_codes(8)
    flat = imported.to_program(codes)
    assert np.array_equal(run_images(images, config, flat), run_program(program, flat))


def test_onnxruntime_quantize_static_model(tmp_path):
    """A float CNN quantized by onnxruntime's own quantize_static (QDQ, uint8 activations,
    per-channel int8 weights, int32 biases at float32(s_x * s_w), Relu fused into the
    quantizers): the scales are not powers of two, so the report says the requantization is
    approximate, and the program is within one code of onnxruntime's float execution."""
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    rng = np.random.default_rng(0)
    shapes = {"w1": (8, 1, 3, 3), "b1": (8,), "w2": (8, 8, 3, 3), "b2": (8,), "w3": (10, 8),
              "b3": (10,)}
    initializers = [onnx.numpy_helper.from_array(
        (rng.normal(size=shape) * 0.2).astype(np.float32), name)
        for name, shape in shapes.items()]
    node = helper.make_node
    nodes = [node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1] * 4), node("Relu", ["c1"], ["r1"]),
             node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, strides=[2, 2]),
             node("Relu", ["c2"], ["r2"]),
             node("MaxPool", ["r2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
             node("GlobalAveragePool", ["p"], ["g"]), node("Flatten", ["g"], ["f"]),
             node("Gemm", ["f", "w3", "b3"], ["y"], transB=1)]
    graph = helper.make_graph(
        nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 10])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "float.onnx"))
    calibration = rng.random((32, 1, 1, 8, 8)).astype(np.float32)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"x": batch} for batch in calibration])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "q.onnx"), Reader(),
                    quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    imported = import_onnx(tmp_path / "q.onnx")
    assert [info.kind for info in imported.layers] == ["conv", "conv", "maxpool", "avgpool",
                                                       "dense"]
    assert "bias rounded to whole accumulator units" in report_text(imported)
    program = imported.program
    codes = rng.integers(0, 255, size=(256, 1, 8, 8), endpoint=True)
    x = ((codes - program.input.zero_point) * program.input.scale).astype(np.float32)
    # Unoptimized: the QDQ graph as its operators define it, in float. Optimized, onnxruntime
    # fuses it into integer kernels whose u8 x s8 products saturate in pairs on x86 CPUs
    # without VNNI (up to 17 codes off on an AVX2-only EPYC): the CPU's, not the model's.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(tmp_path / "q.onnx"), options,
                                           providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    expected = np.rint(y / np.float32(program.output.scale)).astype(np.int64) \
        + program.output.zero_point
    got = imported.from_program(run_program(program, imported.to_program(codes)))
    assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.99
