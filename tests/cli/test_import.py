"""``systolix import``: a QONNX and a QCDQ file (made with onnx.helper) into ``program.npz``
and a report; programs equal to onnxruntime / qonnx code for code; a layer whose integers need
more than ``--accumulator-bits`` refused with the width it needs, or widened with ``--widen``."""

import json

import numpy as np
import onnx
import pytest

from systolix.cli import main
from systolix.sim.golden.program import run_program
from systolix.sw.program import IntegerProgram

from ..sw.onnx_models import Net, run_reference


def _cnn(style):
    net = Net(style, (2, 8, 8), seed=12)
    net.conv(6, 3, stride=2, pad=1)
    net.max_pool(2, 2)
    net.flatten()
    net.dense(10, relu=False, out=(2.0 ** -3, 0, 8, True))
    return net


@pytest.mark.parametrize("style", ("qcdq", "qonnx"))
def test_import_matches_the_source(style, tmp_path, capsys):
    net = _cnn(style)
    onnx.save(net.model(), str(tmp_path / "m.onnx"))
    out = tmp_path / "out"
    assert main(["import", str(tmp_path / "m.onnx"), "--accumulator-bits", "16",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "declared P true P   P" in printed and "wrote" in printed
    program = IntegerProgram.load(out / "program.npz")
    report = json.loads((out / "report.json").read_text())
    assert [layer["kind"] for layer in report["layers"]] == ["conv", "maxpool", "dense"]
    assert all(layer.accumulator_bits == 16 for layer in program.layers
               if hasattr(layer, "accumulator_bits"))
    assert (out / "report.txt").read_text() in printed
    codes, x = net.random_codes(32)
    expected = np.rint(run_reference(net.model(), x) / 2.0 ** -3).astype(np.int64)
    nhwc = codes.transpose(0, 2, 3, 1).reshape(len(codes), -1)
    assert np.array_equal(run_program(program, nhwc), expected)


def test_refused_then_widened(tmp_path, capsys):
    onnx.save(_cnn("qcdq").model(), str(tmp_path / "m.onnx"))
    out = tmp_path / "out"
    assert main(["import", str(tmp_path / "m.onnx"), "--accumulator-bits", "8",
                 "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("systolix import: error: ") and error.count("\n") == 1
    assert "layer 0 ('conv" in error and "needs an accumulator of" in error
    assert not out.exists()
    assert main(["import", str(tmp_path / "m.onnx"), "--accumulator-bits", "8", "--widen",
                 "--out", str(out)]) == 0
    assert "WIDENED" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    widened = [layer for layer in report["layers"] if layer["widened"]]
    assert widened and all(layer["accumulator_bits"] == layer["true_bits"] > 8
                           for layer in widened)
    program = IntegerProgram.load(out / "program.npz")
    assert program.layers[0].accumulator_bits == report["layers"][0]["true_bits"]
