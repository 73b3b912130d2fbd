"""``systolix sim --workload digits-cnn`` end to end: the digits CNN through the driver, the host
link with random stalls and the engine's Verilog under Verilator."""

import pytest

from systolix.cli import main


@pytest.mark.cocotb
def test_digits_cnn_on_the_simulated_accelerator(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)             # the Verilator build goes into tmp_path/build
    assert main(["sim", "--workload", "digits-cnn", "--images", "20", "--stall", "0.3"]) == 0
    output = capsys.readouterr().out
    assert "digits CNN conv3x3(16)-conv3x3/2(32)-GAP-dense10 (A2Q+)" in output
    assert "20 in 2 RUN frames of at most 16" in output
    assert "mismatches  0 codes, 0 cycle counts" in output
    for layer in (0, 1, 2):
        assert f"layer {layer} utilisation" in output
    assert "layer 3 utilisation" not in output               # the dense layer has no window
    assert output.rstrip().endswith("OK: 0 mismatches, 0 cycle mismatches")


def test_workload_and_model_exclude_each_other(capsys):
    assert main(["sim", "--workload", "digits-cnn", "--model", "program.npz"]) == 2
    assert "argument --model: not allowed with argument --workload" in capsys.readouterr().err
