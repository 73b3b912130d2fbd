"""The sweep: grids, cache keys, the local pool and a Dask LocalCluster, outputs, the command.

The builds are 1x1 arrays of 1- and 2-bit codes (seconds each).
"""

import json
import re
import shutil
from dataclasses import replace

import pytest

from systolix.boards.sweep import (BASE, SweepTarget, cache_key, grid, measure, run_sweep,
                                   sweep_rows, write_sweep)
from systolix.cli import main
from systolix.config import ArrayConfig

TINY = [ArrayConfig(rows=1, cols=1, weight_bits=b, activation_bits=b, accumulator_bits=8)
        for b in (1, 2)]


def test_default_grid_covers_widths_accumulators_and_shapes():
    configs = grid()
    assert len(configs) == len(set(configs)) == 31
    assert {config.weight_bits for config in configs} == set(range(1, 9))
    assert {config.accumulator_bits for config in configs} == {8, 12, 16, 20, 24, 32}
    assert {(config.rows, config.cols) for config in configs} >= {(2, 2), (4, 4), (8, 8), (4, 8)}
    assert len(grid("full")) == 960


def test_product_grid():
    configs = grid(shapes=[(2, 2), (4, 8)], widths=[2, 4], accumulator_bits=[12])
    assert len(configs) == 4
    assert configs[-1] == replace(BASE, rows=4, cols=8, weight_bits=4, activation_bits=4,
                                  accumulator_bits=12)


def test_cache_key_depends_on_config_and_target():
    key = cache_key(BASE, SweepTarget())
    assert key == cache_key(BASE, SweepTarget(device="up5k", package="sg48"))
    assert key != cache_key(replace(BASE, accumulator_bits=17), SweepTarget())
    assert key != cache_key(BASE, SweepTarget(seed=2))
    assert key != cache_key(BASE, SweepTarget(family="ecp5"))


@pytest.mark.toolchain
def test_local_pool_then_cache(tmp_path):
    records = run_sweep(TINY, jobs=2, build_root=tmp_path, progress=False)
    assert [record["name"] for record in records] == [config.name for config in TINY]
    assert all(record["fits"] and record["logic_cells"] > 0 and record["fmax_mhz"] > 0
               for record in records)
    assert len(list((tmp_path / "cache").glob("*.json"))) == 2
    # A rerun builds nothing: the results come from the cache.
    shutil.rmtree(tmp_path / "builds")
    assert run_sweep(TINY, build_root=tmp_path, progress=False) == records
    assert not (tmp_path / "builds").exists()


@pytest.mark.toolchain
def test_dask_local_cluster(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1,
                                  dashboard_address=None) as cluster:
        records = run_sweep(TINY, scheduler=cluster.scheduler_address, build_root=tmp_path,
                            progress=False)
    direct = [measure(config, SweepTarget(), tmp_path / "direct") for config in TINY]
    for record, expected in zip(records, direct):
        assert {key: value for key, value in record.items() if key != "seconds"} == \
            {key: value for key, value in expected.items() if key != "seconds"}


@pytest.mark.toolchain
def test_design_that_does_not_fit(tmp_path):
    config = ArrayConfig(rows=2, cols=2, weight_bits=8, activation_bits=8)
    record = measure(config, SweepTarget(device="lp384", package="qn32"), tmp_path)
    assert not record["fits"] and record["logic_cells"] is None and record["fmax_mhz"] is None
    assert "ICESTORM_LC" in record["overflow"] and record["luts"] > 384
    row, = sweep_rows([record])
    assert row["cells_per_mac"] is None and row["estimate_error"]["logic_cells"] is None
    assert row["estimate_error"]["luts"] is not None


@pytest.mark.toolchain
def test_outputs(tmp_path):
    rows = sweep_rows(run_sweep(TINY, build_root=tmp_path, progress=False))
    assert rows[0]["macs_per_cycle"] == 1
    assert rows[0]["gops"] == pytest.approx(2 * rows[0]["fmax_mhz"] / 1000)
    paths = write_sweep(rows, tmp_path / "out")
    assert json.loads(paths["json"].read_text())[1]["name"] == TINY[1].name
    markdown = paths["markdown"].read_text()
    assert "## Cost against width, 1x1 array, W = A, P = 8" in markdown
    assert f"| {TINY[0].name} |" in markdown
    assert paths["cells_per_mac"].read_bytes()[:4] == paths["fmax"].read_bytes()[:4] == b"\x89PNG"


@pytest.mark.toolchain
def test_command(tmp_path, capsys):
    assert main(["sweep", "--shapes", "1x1", "--widths", "1,2", "--accumulator-bits", "8",
                 "--build", str(tmp_path), "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert "2 designs (0 did not fit)" in capsys.readouterr().out
    assert (tmp_path / "out" / "sweep.md").exists()


@pytest.mark.parametrize("arguments, message", [
    (["--shapes", "8by8"], r"--shapes must be ROWSxCOLS\[,ROWSxCOLS\.\.\.\] such as 2x2,8x8, "
                           r"not '8by8'"),
    (["--widths", "4;8"], "--widths must be integers separated by commas such as 2,4,8, "
                          "not '4;8'"),
    (["--widths", "9"], "weight_bits must be an integer in 1..8, not 9"),
    (["--grid", "default", "--jobs", "0"], "jobs must be a positive integer, not 0"),
    (["--device", "85k"], "device must be one of 'lp384', .*, not '85k'"),
])
def test_bad_arguments(tmp_path, capsys, arguments, message):
    assert main(["sweep", *arguments, "--build", str(tmp_path), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert re.fullmatch(f"systolix sweep: error: {message}\n", error)
