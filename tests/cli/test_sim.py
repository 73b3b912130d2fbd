"""``systolix sim --workload digits-cnn`` end to end: the digits CNN through the driver, the host
link with random stalls and the engine's Verilog under Verilator."""

import re
from dataclasses import replace

import numpy as np
import pytest

from systolix.boards.tops import BOARDS
from systolix.cli import main
from systolix.config import code_range
from systolix.sim.golden.program import run_images, run_program
from systolix.sw.pack import pack
from systolix.sw.stimulus import random_conv_program


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


@pytest.mark.slow
@pytest.mark.cocotb
def test_digits_vit_on_the_simulated_accelerator(tmp_path, monkeypatch, capsys):
    """``make sim WORKLOAD=digits-vit``: the whole integer-only ViT (attention's products,
    softmax, LayerNorm, GELU) on its 16x16 engine through the driver and the host link: 0
    mismatches, measured = modelled cycles, the four accuracies and the attention products'
    MAC utilisation."""
    monkeypatch.chdir(tmp_path)
    assert main(["sim", "--workload", "digits-vit", "--images", "20", "--stall", "0.3"]) == 0
    output = capsys.readouterr().out
    assert "on the 16x16-W5s-A8s-P16-wrap accelerator" in output
    assert "20 in 2 RUN frames of at most 16" in output
    assert "mismatches  0 codes, 0 cycle counts" in output
    assert re.search(r"accuracy +float [\d.]+ %, dequantize-first [\d.]+ %, golden [\d.]+ %, "
                     r"hardware [\d.]+ %", output)
    for layer, product in ((5, "Q K\\^T"), (7, "S V"), (19, "Q K\\^T"), (21, "S V")):
        assert re.search(rf"layer {layer} utilisation +\d+ % \({product}: 2 heads", output)
    assert output.rstrip().endswith("OK: 0 mismatches, 0 cycle mismatches")


def test_workload_and_model_exclude_each_other(capsys):
    assert main(["sim", "--workload", "digits-cnn", "--model", "program.npz"]) == 2
    assert "argument --model: not allowed with argument --workload" in capsys.readouterr().err


@pytest.mark.cocotb
def test_board_with_weights_in_spram_uploads_them(tmp_path, monkeypatch, capsys):
    """``--board icebreaker``: its weight memory is SPRAM, which the bitstream does not
    initialise; the driver uploads a model of 4,320 4-bit weights over the link before it runs
    it through the Verilog of the iCEBreaker's accelerator."""
    monkeypatch.chdir(tmp_path)
    board = BOARDS["icebreaker"]
    program = random_conv_program(np.random.default_rng(7), board.config, (1, 1, 96),
                                  [("dense", 40), ("dense", 12)])
    program.save(tmp_path / "model.npz")
    # The weights matter: with zero weights the model computes other codes.
    images = pack(program, board.config, board.memories)
    codes = np.random.default_rng(0).integers(*code_range(4, False), (5, 96), endpoint=True)
    zeros = replace(images, weights=(0,) * len(images.weights))
    assert (run_images(zeros, board.config, codes) != run_program(program, codes)).any()
    assert main(["sim", "--board", "icebreaker", "--model", "model.npz", "--images", "5",
                 "--stall", "0.1"]) == 0
    output = capsys.readouterr().out
    assert "on the icebreaker's 8x5-W4s-A4u-P12-wrap accelerator" in output
    assert (f"weights  {len(images.weights):,} words uploaded in 1 LOAD frame (the weight memory "
            "is loaded at run time)") in output
    assert "host link  3 frames" in output                  # STATUS, LOAD, RUN
    assert "mismatches  0 codes, 0 cycle counts" in output
    assert output.rstrip().endswith("OK: 0 mismatches, 0 cycle mismatches")


def test_board_and_config_exclude_each_other(capsys):
    assert main(["sim", "--board", "icebreaker", "--config", "2x2-W4s-A4u-P12-wrap"]) == 2
    assert "argument --config: not allowed with argument --board" in capsys.readouterr().err


@pytest.mark.cocotb
@pytest.mark.slow
def test_imported_pool_and_residual_model(tmp_path, monkeypatch, capsys):
    """An ONNX (QCDQ) CNN with an overlapping, padded max pool and a residual add, imported and
    run through ``systolix sim --model``: the post-op unit on the engine's Verilog, 0 mismatches
    and measured = modelled cycles."""
    import onnx

    from ..sw.onnx_models import pooled_residual_cnn

    monkeypatch.chdir(tmp_path)
    onnx.save(pooled_residual_cnn("qcdq").model(), "model.onnx")
    assert main(["import", "model.onnx", "--accumulator-bits", "16", "--widen",
                 "--out", "imported"]) == 0
    assert main(["sim", "--model", "imported/program.npz", "--config", "8x8-W4s-A4u-P16-wrap",
                 "--images", "12", "--stall", "0.3"]) == 0
    output = capsys.readouterr().out
    assert "bits per layer  W4A4, maxpool A4, W4A4, W4A4, W4A4, add A4, W4A4" in output
    assert "mismatches  0 codes, 0 cycle counts" in output
    measured, modelled = output.split("cycles per inference  ")[1].split(" measured, ")
    assert float(measured) == float(modelled.split(" modelled")[0])
    assert output.rstrip().endswith("OK: 0 mismatches, 0 cycle mismatches")
