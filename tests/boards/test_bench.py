"""The accumulator-savings benchmark of issue 5 (four 8x8 arrays placed on an iCE40HX8K)."""

import pytest

from systolix.boards.bench import SAVINGS, accumulator_savings

pytestmark = pytest.mark.toolchain


@pytest.mark.slow
def test_accumulator_savings(tmp_path, capsys):
    savings = accumulator_savings(build_root=tmp_path)
    assert "Accumulator savings: 8x8 W4/A4 array, P=14 against P=32" in capsys.readouterr().out
    narrow, wide, ratio, measure = savings["wrap"]
    assert measure == "logic cells" and ratio == pytest.approx(narrow / wide)
    # Wrapping partial sums are narrowed by synthesis whatever P is; saturating ones are not.
    assert savings["saturate"][2] < ratio
    assert savings["saturate"][2] <= SAVINGS["target"]
