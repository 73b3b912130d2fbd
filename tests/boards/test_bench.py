"""The accumulator-savings benchmark of issue 5 (four 8x8 arrays placed on an iCE40HX8K) and the
largest-array table's inferences a second."""

import pytest

from systolix.boards.bench import SAVINGS, accumulator_savings

pytestmark = pytest.mark.toolchain


@pytest.mark.slow
def test_accumulator_savings(tmp_path, capsys):
    """The narrow accumulator's engine is smaller, and where: the parts that carry ``P``-bit
    sums shrink, the array's cells (their partial sums in the bits their row reaches) do not
    grow with ``P``."""
    savings = accumulator_savings(build_root=tmp_path)
    out = capsys.readouterr().out
    assert "Accumulator savings: the inference engine of the 8x8 W4/A4 array" in out
    for overflow in ("wrap", "saturate"):
        narrow, wide, components = savings[overflow]
        assert narrow == sum(small for small, _ in components.values()) < wide == \
            sum(large for _, large in components.values())
        for part in ("accumulator", "queue", "issuer"):
            small, large = components[part]
            assert small < 0.8 * large, (overflow, part, small, large)
        small, large = components["array"]
        assert 0.85 * large < small <= large
        verdict = "met" if narrow / wide <= SAVINGS["target"] else "MISSED"
        assert f"{'engine':<28}{narrow:>8}{wide:>8}{narrow / wide:>7.2f}  (target <= " \
               f"{SAVINGS['target']}: {verdict})" in out


@pytest.mark.slow
def test_largest_array_prints_compute_and_uart_bound_rates(tmp_path, capsys, monkeypatch):
    """One shape of the largest-array table (a whole iCEBreaker build): its inferences a
    second at the board's clock and over its UART."""
    from systolix.boards import bench
    monkeypatch.setitem(bench.LARGEST, "shapes", ((4, 4),))
    [(config, result)] = bench.largest_array(build_root=tmp_path)
    out = capsys.readouterr().out
    assert "inf/s  UART inf/s  fits" in out
    row = next(line for line in out.splitlines() if line.startswith(config.name))
    assert row.endswith(f"{result['inferences_per_second']:>10,.0f}"
                        f"{result['uart_inferences_per_second']:>12,.0f}  yes")
    assert result["uart_inferences_per_second"] < result["inferences_per_second"]


@pytest.mark.slow
def test_serial_table_prints_density_at_each_width(tmp_path, capsys):
    """The bit-serial cells' table: a 2x2 array placed once; its MMAC/s per logic cell at 2-bit
    activations is twice that at 4 bits, and it is compared with a LUT cells' figure."""
    from dataclasses import replace

    from systolix.boards.bench import _BASE, REFERENCE, serial_table
    from systolix.boards.synth import synthesize
    from systolix.hw.array import SystolicArray

    config = replace(_BASE, rows=2, cols=2, pe="serial")
    result = synthesize(SystolicArray(config), name="array", build_dir=tmp_path)
    reference = REFERENCE["macs"] * REFERENCE["fmax_mhz"] / REFERENCE["logic_cells"]
    serial_table([(config, [result])], (1,), reference, {(2, 2): 1.0})
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(config.name)).split()
    a4, a2 = float(row[8]), float(row[11])
    assert a4 == pytest.approx(4 * result.fmax_mhz / 4 / result.logic_cells, abs=1e-3)
    assert a2 == pytest.approx(2 * a4, abs=2e-3)
    assert row[13] == f"{a2:.2f}x"          # against the LUT cells' 1.0 MMAC/s per cell
