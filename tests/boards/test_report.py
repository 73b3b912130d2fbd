"""The design report: figures of a small array, its files, and ``systolix report``."""

import json
import re

import pytest

from systolix.boards.report import array_report, write_report
from systolix.cli import main
from systolix.config import ArrayConfig

CONFIG = ArrayConfig(rows=2, cols=2, weight_bits=2, activation_bits=2, accumulator_bits=16)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return array_report(CONFIG, cycles_per_inference=1000, tiles=2, vectors=8,
                        build_dir=tmp_path_factory.mktemp("report"))


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


def test_files(report, tmp_path):
    paths = write_report(report, tmp_path)
    assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(report))
    markdown = paths["markdown"].read_text()
    assert markdown.startswith("# SystolicArray 2x2-W2s-A2u-P16-wrap on ice40 up5k (sg48)")
    assert re.search(r"\| logic cells \| [\d,]+ \| \d+\.\d % of 5,280 \| [\d,]+ \|", markdown)
    assert "| energy per inference |" in markdown
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


def test_command(tmp_path, capsys):
    assert main(["report", "--rows", "1", "--cols", "2", "--weight-bits", "1",
                 "--activation-bits", "2", "--activation-signed", "--accumulator-bits", "8",
                 "--out", str(tmp_path)]) == 0
    output = capsys.readouterr().out
    assert output.startswith("SystolicArray 1x2-W1s-A2s-P8-wrap on up5k: ")
    assert (tmp_path / "report.md").exists() and (tmp_path / "report.png").exists()


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
