"""The design report: figures of a small array and of an engine running a model, the files,
and ``systolix report``."""

import json
import re

import numpy as np
import pytest

from systolix.boards.report import (POWER_VECTORS, array_report, engine_report,
                                    fitted_memories, write_report)
from systolix.cli import main
from systolix.config import ArrayConfig
from systolix.sim.golden.engine import engine_cycles
from systolix.sw.stimulus import random_program
from systolix.sw.pack import pack

CONFIG = ArrayConfig(rows=2, cols=2, weight_bits=2, activation_bits=2, accumulator_bits=16)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return array_report(CONFIG, cycles_per_inference=1000, tiles=2, vectors=8,
                        build_dir=tmp_path_factory.mktemp("report"))


@pytest.mark.toolchain
def test_figures(report):
    resources = report["resources"]
    assert report["config"]["rows"] == 2 and report["macs_per_cycle"] == 4
    assert resources["logic_cells"] > 0 and resources["brams"] == 2 and resources["dsps"] == 0
    assert report["capacity"]["logic_cells"] == 5280 and report["capacity"]["sprams"] == 4
    assert report["gops"] == pytest.approx(2 * 4 * report["fmax_mhz"] / 1000)
    assert report["cells_per_mac"] == pytest.approx(resources["logic_cells"] / 4)
    assert report["clock_mhz"] == report["fmax_mhz"]
    power = report["power"]
    assert power["calibrated"] and 0.05 < power["toggle_rate"] < 0.6
    assert power["total_mw"] == pytest.approx(power["static_mw"] + power["total_dynamic_mw"])
    assert power["dynamic_mw"]["logic"] > 0 and power["dynamic_mw"]["bram"] > 0
    inference = report["inference"]
    assert inference["latency_us"] == pytest.approx(1000 / report["fmax_mhz"])
    assert inference["energy_uj"] == pytest.approx(power["total_mw"] * inference["latency_us"]
                                                   / 1000)
    assert report["estimate"]["brams"] == 2


@pytest.mark.toolchain
def test_files(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(report))
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# SystolicArray 2x2-W2s-A2u-P16-wrap on ice40 up5k (sg48)")
    assert re.search(r"\| logic cells \| [\d,]+ \| \d+\.\d % of 5,280 \| [\d,]+ \|", markdown)
    assert "| energy per inference |" in markdown
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.toolchain
def test_command(tmp_path, capsys):
    assert main(["report", "--rows", "1", "--cols", "2", "--weight-bits", "1",
                 "--activation-bits", "2", "--activation-signed", "--accumulator-bits", "8",
                 "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert output.startswith("SystolicArray 1x2-W1s-A2s-P8-wrap on up5k: ")
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()


@pytest.mark.toolchain
def test_command_errors(tmp_path, capsys):
    assert main(["report", "--weight-bits", "0", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("systolix report: error: weight_bits must be an integer "
                                       "in 1..8, not 0\n")
    assert main(["report", "--rows", "2", "--cols", "2", "--weight-bits", "8",
                 "--activation-bits", "8", "--device", "lp384", "--package", "qn32",
                 "--out", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert re.fullmatch(r"systolix report: error: array does not fit the ice40 lp384 \(with its "
                        r"harness\): ICESTORM_LC \d+ used, 384 available \(\d+ over\)\n", error)


ENGINE_CONFIG = ArrayConfig(rows=2, cols=2, weight_bits=3, activation_bits=3, accumulator_bits=14)


def test_fitted_memories_hold_the_program_in_powers_of_two():
    program = random_program(np.random.default_rng(5), ENGINE_CONFIG, [40, 20, 6])
    memories = fitted_memories(program, ENGINE_CONFIG)
    # 20 x 10 tiles in layer 0 and 10 x 3 in layer 1, 2 weight words each: 460 weight words.
    assert (memories.weight_words, memories.requant_words, memories.program_words,
            memories.output_codes) == (512, 256, 256, 256)
    pack(program, ENGINE_CONFIG, memories)


@pytest.mark.toolchain
def test_engine_report(tmp_path):
    program = random_program(np.random.default_rng(5), ENGINE_CONFIG, [12, 6, 4])
    report = engine_report(ENGINE_CONFIG, program, requant_lanes=1, build_dir=tmp_path)
    images = pack(program, ENGINE_CONFIG, fitted_memories(program, ENGINE_CONFIG))
    cycles = engine_cycles(ENGINE_CONFIG, images, images.max_batch, 1).compute
    assert report["design"] == "InferenceEngine 2x2-W3s-A3u-P14-wrap"
    assert report["model"] == ["12x6 W3A3", "6x4 W3A3"] and report["batch"] == images.max_batch
    assert report["macs_per_cycle"] == 4 and report["resources"]["dsps"] >= 1
    assert report["inference"]["cycles"] == pytest.approx(cycles / images.max_batch)
    power = report["power"]
    assert POWER_VECTORS <= images.max_batch and 0.01 < power["toggle_rate"] < 0.6
    assert power["dynamic_mw"]["dsp"] > 0 and power["total_mw"] > power["static_mw"]
    markdown = write_report(report, tmp_path / "out")["markdown"].read_text()
    assert markdown.startswith("# InferenceEngine 2x2-W3s-A3u-P14-wrap on ice40 up5k")


def test_engine_command_refuses_cycles_per_inference(tmp_path, capsys):
    assert main(["report", "--engine", "--cycles-per-inference", "100",
                 "--out", str(tmp_path)]) == 2
    assert "--cycles-per-inference is for the array alone" in capsys.readouterr().err
    assert not (tmp_path / "report.json").exists()


def test_engine_workload_of_a_convolutional_model():
    """The power stimulus of a model whose first layer is a convolution: whole input maps, a
    pixel's codes a word (the bitstream report of the digits CNN)."""
    from systolix.boards.report import engine_workload, random_inputs
    from systolix.config import DEFAULT_CONFIG
    from systolix.hw.engine import InferenceEngine
    from systolix.memory_map import MemoryConfig
    from systolix.sw.default import default_program

    program = default_program(DEFAULT_CONFIG, "digits-cnn")[0]
    engine = InferenceEngine(DEFAULT_CONFIG, pack(program, DEFAULT_CONFIG, MemoryConfig()))
    codes = random_inputs(program, 2)
    assert codes.shape == (2, 64)
    assert callable(engine_workload(engine, codes))


def test_engine_workload_refuses_weights_loaded_at_run_time():
    """An engine whose weights the host loads holds none of its own: the power stimulus of
    such a board (the iCEBreaker) runs the engine with the weights held instead
    (boards.bitstream.model_power)."""
    from systolix.boards.report import engine_workload, random_inputs
    from systolix.boards.tops import BOARDS
    from systolix.hw.engine import InferenceEngine
    from systolix.sw.default import default_program

    board = BOARDS["icebreaker"]
    program = default_program(board.config)[0]
    engine = InferenceEngine(board.config, pack(program, board.config, board.memories))
    engine._MustUse__silence = True
    with pytest.raises(ValueError, match=r"^the engine's weights are loaded at run time: "):
        engine_workload(engine, random_inputs(program, 2))
