"""The Brevitas front end (:mod:`systolix.sw.brevitas_import`) against the Brevitas module's own
forward pass. Skipped unless torch and brevitas are installed (``pip install systolix[torch]``;
CI has neither)."""

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
qnn = pytest.importorskip("brevitas.nn")

from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint,  # noqa: E402
                            Int32Bias, Uint8ActPerTensorFixedPoint)
from brevitas.quant.scaled_int import Int8AccumulatorAwareZeroCenterWeightQuant  # noqa: E402

from systolix.sim.golden.program import run_program  # noqa: E402
from systolix.sw.brevitas_import import import_brevitas  # noqa: E402
from systolix.sw.integerize import check_accumulators, report_text  # noqa: E402

FIXED = dict(weight_quant=Int8WeightPerTensorFixedPoint, weight_bit_width=4)


def _act(bits=4, signed=False):
    quant = Int8ActPerTensorFixedPoint if signed else Uint8ActPerTensorFixedPoint
    return dict(act_quant=quant, bit_width=bits, return_quant_tensor=True)


def _codes(model, imported, x):
    """The Brevitas forward's output codes and the program's, for real inputs ``x``."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = model(x)
        y = y.value if hasattr(y, "value") else y
        codes = model[0].act_quant(x).int().numpy().astype(np.int64)
    program = imported.program
    expected = np.rint(y.numpy() / program.output.scale).astype(np.int64) \
        + program.output.zero_point
    got = imported.from_program(run_program(program, imported.to_program(codes)))
    return expected, got


def _fixed_point_cnn(bias=True):
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(**_act()),
        qnn.QuantConv2d(2, 6, 3, stride=2, padding=1, bias=False, **FIXED),
        qnn.QuantReLU(**_act()),
        qnn.QuantConv2d(6, 6, 3, padding=1, groups=6, bias=False, **FIXED),
        qnn.QuantReLU(**_act()),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        qnn.QuantLinear(24, 10, bias=bias, bias_quant=Int32Bias, **FIXED),
        qnn.QuantIdentity(**_act(8, True))).eval()
    if bias:
        with torch.no_grad():
            model[7].bias.uniform_(-1, 1)
    return model


def test_fixed_point_cnn_is_bit_exact():
    model = _fixed_point_cnn()
    x = torch.rand(128, 2, 8, 8)
    imported = import_brevitas(model, x[:1])
    assert [info.kind for info in imported.layers] == ["conv", "conv", "maxpool", "dense"]
    assert all(info.exact for info in imported.layers)
    expected, got = _codes(model, imported, x)
    assert np.array_equal(got, expected)


class _Residual(torch.nn.Module):
    """A residual block: conv -> ReLU quantizer (the skip), conv -> signed quantizer, the sum
    of both through a ReLU quantizer, then a dense layer."""

    def __init__(self):
        super().__init__()
        plain = dict(_act(), return_quant_tensor=False)
        self.input = qnn.QuantIdentity(**plain)
        self.conv1 = qnn.QuantConv2d(2, 4, 3, padding=1, bias=False, **FIXED)
        self.relu1 = qnn.QuantReLU(**plain)
        self.conv2 = qnn.QuantConv2d(4, 4, 3, padding=1, groups=2, bias=False, **FIXED)
        self.branch = qnn.QuantIdentity(**dict(_act(5, True), return_quant_tensor=False))
        self.relu2 = qnn.QuantReLU(**plain)
        self.dense = qnn.QuantLinear(4 * 6 * 6, 10, bias=False, **FIXED)
        self.output = qnn.QuantIdentity(**_act(8, True))

    def forward(self, x):
        skip = self.relu1(self.conv1(self.input(x)))
        y = self.relu2(self.branch(self.conv2(skip)) + skip)
        return self.output(self.dense(torch.flatten(y, 1)))


def test_residual_module_is_bit_exact():
    """A module with a residual add, traced with torch.fx: the add of a 5-bit signed branch
    and a 4-bit skip becomes an identity layer (the skip widened) and an add layer."""
    torch.manual_seed(3)
    model = _Residual().eval()
    x = torch.rand(128, 2, 6, 6)
    imported = import_brevitas(model, x[:1])
    assert [info.kind for info in imported.layers] == ["conv", "conv", "identity", "add",
                                                       "dense"]
    with torch.no_grad():
        y = model(x).value.numpy()
        codes = model.input.act_quant(x).int().numpy().astype(np.int64)
    program = imported.program
    expected = np.rint(y / program.output.scale).astype(np.int64)
    got = imported.from_program(run_program(program, imported.to_program(codes)))
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("kernel", (2, 3))
def test_trunc_average_pool(kernel):
    """Brevitas's quantized average pool: the window sums rounded at its output scale."""
    torch.manual_seed(2)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(**_act()),
        qnn.QuantConv2d(2, 4, 3, padding=1, bias=False, **FIXED),
        qnn.QuantReLU(**_act()),
        qnn.TruncAvgPool2d(kernel_size=kernel, stride=kernel, bit_width=4,
                           return_quant_tensor=True),
        torch.nn.Flatten(),
        qnn.QuantLinear(4 * (6 // kernel) ** 2, 10, bias=False, **FIXED),
        qnn.QuantIdentity(**_act(8, True))).eval()
    x = torch.rand(128, 2, 6, 6)
    imported = import_brevitas(model, x[:1])
    assert [info.kind for info in imported.layers] == ["conv", "avgpool", "dense"]
    expected, got = _codes(model, imported, x)
    assert np.array_equal(got, expected)


def test_a2q_plus_declared_and_true_widths():
    """A2Q+ weights trained for a 10-bit accumulator: the declared width is read from the
    quantizer, the true one from the integers; the program equals the forward pass."""
    torch.manual_seed(1)
    a2q = dict(weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant, weight_bit_width=4,
               weight_accumulator_bit_width=10)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(**_act()),
        qnn.QuantLinear(64, 32, bias=False, **a2q),
        qnn.QuantReLU(**_act()),
        qnn.QuantLinear(32, 10, bias=False, **a2q),
        qnn.QuantIdentity(**_act(8, True))).eval()
    x = torch.rand(256, 64)
    imported = check_accumulators(import_brevitas(model, x[:1]))
    assert [info.declared for info in imported.layers] == [10, 10]
    assert all(info.true_bits <= 10 for info in imported.layers)
    assert all(layer.accumulator_bits == 10 for layer in imported.program.layers)
    assert "approximate" in report_text(imported)      # per-channel float scales
    expected, got = _codes(model, imported, x)
    assert np.abs(got - expected).max() <= 1 and np.mean(got == expected) > 0.99


@pytest.mark.slow
def test_qonnx_export_of_a2q_plus_breaks_its_bound(tmp_path):
    """Brevitas 0.13.4's QONNX export of zero-centred A2Q+ weights writes other integers than
    the module uses: imported from the export, the layers need more than the 10 bits they were
    trained for (and are refused at P = 10); read directly, they fit."""
    pytest.importorskip("onnxoptimizer")
    from brevitas.export import export_qonnx

    from systolix.sw.onnx_import import import_onnx

    torch.manual_seed(1)
    a2q = dict(weight_quant=Int8AccumulatorAwareZeroCenterWeightQuant, weight_bit_width=4,
               weight_accumulator_bit_width=10)
    model = torch.nn.Sequential(
        qnn.QuantIdentity(**_act()),
        qnn.QuantLinear(64, 32, bias=False, **a2q),
        qnn.QuantReLU(**_act()),
        qnn.QuantLinear(32, 10, bias=False, **a2q),
        qnn.QuantIdentity(**_act(8, True))).eval()
    sample = torch.rand(1, 64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_qonnx(model, sample, export_path=str(tmp_path / "a2q.onnx"))
    exported = import_onnx(tmp_path / "a2q.onnx")
    direct = import_brevitas(model, sample)
    assert all(info.true_bits <= 10 for info in direct.layers)
    assert any(info.true_bits > 10 for info in exported.layers)
    with pytest.raises(ValueError, match="needs an accumulator of 1[1-9] bits"):
        check_accumulators(exported, 10)


@pytest.mark.slow
@pytest.mark.parametrize("style", ("qonnx", "qcdq"))
def test_export_of_a_fixed_point_cnn_imports_bit_exact(style, tmp_path):
    """The same CNN exported by Brevitas to QONNX (Quant on activations, weights and the int32
    biases; Conv, Relu, MaxPool, Reshape, Gemm) or to QCDQ (QuantizeLinear / Clip /
    DequantizeLinear; without the bias, which Brevitas's QCDQ export refuses) and read by the
    ONNX importer: equal to the module's forward pass."""
    pytest.importorskip("onnxoptimizer")
    from brevitas.export import export_onnx_qcdq, export_qonnx

    from systolix.sw.onnx_import import import_onnx

    model = _fixed_point_cnn(bias=style == "qonnx")
    x = torch.rand(128, 2, 8, 8)
    export = export_qonnx if style == "qonnx" else export_onnx_qcdq
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(model, x[:1], export_path=str(tmp_path / "cnn.onnx"))
    imported = import_onnx(tmp_path / "cnn.onnx")
    assert [info.kind for info in imported.layers] == ["conv", "conv", "maxpool", "dense"]
    expected, got = _codes(model, imported, x)
    assert np.array_equal(got, expected)
