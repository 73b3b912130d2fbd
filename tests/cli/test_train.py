"""``systolix train``: trains, prints the GEMMs' accumulator widths and seconds per epoch, exports
a program the golden model runs as the trainer does, writes the report."""

import numpy as np
import pytest

from systolix.cli import main
from systolix.sim.golden.program import run_program
from systolix.sw.models import digits_split
from systolix.sw.program import IntegerProgram


@pytest.mark.parametrize("argv, layer_bits", [
    (["--scheme", "wage", "--bits", "3-8-8-8"], (3, 8)),
    (["--scheme", "dfp", "--mult-bits", "8", "--update-bits", "12"], (8, 8))])
def test_train_exports_a_program(argv, layer_bits, tmp_path, capsys):
    assert main(["train", *argv, "--epochs", "2", "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "layer 1 error E W^T: A -127..127" in captured.out
    assert "P = " in captured.out and "bits (data-free)" in captured.out
    assert "s per epoch" in captured.out and "epoch 2/2: test accuracy" in captured.out
    assert "epoch 2/2 [##############################] 89/89" in captured.err
    program = IntegerProgram.load(tmp_path / "out" / "program.npz")
    assert {(layer.weight_bits, layer.input_bits) for layer in program.layers} == {layer_bits}
    data = digits_split(0)
    outputs = run_program(program, program.encode_input(data.x_test))
    accuracy = 100 * np.mean(outputs.argmax(axis=1) == data.y_test)
    assert f"{accuracy:.1f} % (exported program on the golden model)" in captured.out
    assert f"CONFIG=8x8-W{layer_bits[0]}s-A8s-P" in captured.out


def test_report_compares_float_wage_and_dfp(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--scheme", "dfp", "--epochs", "1", "--report", "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for row in ("| DFP | mult 10, update 12 (exported at 8) |", "| float | float64 |",
                "| WAGE | W-A-G-E 2-8-8-8 |"):
        assert row in report
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Trained again into its own output: replaced.
    assert main(["train", "--scheme", "wage", "--epochs", "1", "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == \
        ["program.npz"]


def test_train_the_cnn(tmp_path, capsys):
    """--model cnn: convolutions as GEMMs of their patches; the exported program has their
    windows and the golden model gives the trainer's codes (the command checks it)."""
    out = tmp_path / "out"
    assert main(["train", "--scheme", "dfp", "--mult-bits", "8", "--model", "cnn",
                 "--epochs", "1", "--out", str(out)]) == 0
    captured = capsys.readouterr().out
    assert "digits CNN" in captured and "layer 0 gradient X^T E: A -127..127, B -127..127, " \
        "K = 1024" in captured
    program = IntegerProgram.load(out / "program.npz")
    assert [layer.window is not None for layer in program.layers] == [True, True, True, False]


@pytest.mark.slow
@pytest.mark.cocotb
@pytest.mark.parametrize("argv", [["--scheme", "wage"], ["--scheme", "dfp"],
                                  ["--scheme", "wage", "--model", "cnn"]])
def test_trained_programs_run_on_the_simulated_accelerator(argv, tmp_path, monkeypatch, capsys):
    """What the issue asks from a fresh clone: train, export, simulate (the accelerator on
    Verilator, through the host link: every output code against the golden model)."""
    monkeypatch.chdir(tmp_path)             # the Verilator build goes into tmp_path/build
    out = tmp_path / "out"
    assert main(["train", *argv, "--epochs", "2", "--out", str(out)]) == 0
    config = capsys.readouterr().out.split("CONFIG=")[1].split()[0]
    assert main(["sim", "--model", str(out / "program.npz"), "--config", config,
                 "--images", "16"]) == 0
    assert "OK: 0 mismatches, 0 cycle mismatches" in capsys.readouterr().out
