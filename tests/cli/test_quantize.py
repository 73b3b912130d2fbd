import numpy as np

from systolix.cli import main
from systolix.sim.golden.program import run_program
from systolix.sw.models import digits_mlp
from systolix.sw.program import IntegerProgram
from systolix.sw.qmodel import QuantizedModel


def test_quantize_writes_model_and_program(tmp_path, capsys):
    assert main(["quantize", "--accumulator-bits", "12", "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "layer 0: dense 64x64, W4 A4u" in output and "integer program (a2q+, P = 12" in output
    model = QuantizedModel.load(tmp_path / "model.npz")
    program = IntegerProgram.load(tmp_path / "program.npz")
    assert model.method == "a2q+" and program.layers[0].accumulator_bits == 12
    _, data = digits_mlp()
    outputs = run_program(program, program.encode_input(data.x_test))
    np.testing.assert_array_equal(outputs, model.reference(data.x_test))


def test_mixed_precision_and_float_model_file(tmp_path, capsys):
    model, _ = digits_mlp()
    model.save(tmp_path / "float.npz")
    assert main(["quantize", "--float-model", str(tmp_path / "float.npz"), "--mixed-sqnr", "15",
                 "--method", "none", "--accumulator-bits", "32", "--out",
                 str(tmp_path / "out")]) == 0
    assert "weight memory:" in capsys.readouterr().out


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["quantize", "--weight-bits", "9", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("systolix quantize: error: weight_bits must be an integer "
                                       "in 2..8, not 9\n")
    assert main(["quantize", "--budget", "10", "--out", str(tmp_path)]) == 2
    assert "--budget needs a mixed-precision target" in capsys.readouterr().err
    assert main(["quantize", "--float-model", str(tmp_path / "missing.npz"),
                 "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == (f"systolix quantize: error: {tmp_path / 'missing.npz'}: "
                                       f"no such file\n")


def test_digits_cnn_workload(tmp_path, capsys):
    assert main(["quantize", "--workload", "digits-cnn", "--accumulator-bits", "12",
                 "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert "layer 0: conv 3x3/1 8x8x1 -> 8x8x16 (K=9, N=16), W4 A4u" in output
    assert "layer 2: GlobalAvgPool 4x4x32 -> 1x1x32, W2 A4u" in output
    program = IntegerProgram.load(tmp_path / "program.npz")
    assert [layer.window is None for layer in program.layers] == [False, False, False, True]
    from systolix.sw.models import digits_cnn
    _, data = digits_cnn()
    outputs = run_program(program, program.encode_input(data.x_test))
    model = QuantizedModel.load(tmp_path / "model.npz")
    np.testing.assert_array_equal(outputs.argmax(1), model.predict(data.x_test))
    assert main(["quantize", "--workload", "digits-cnn", "--seed", "3",
                 "--out", str(tmp_path / "other")]) == 2
    assert capsys.readouterr().err.startswith("systolix quantize: error: --seed: the digits-cnn "
                                              "workload is trained once")
