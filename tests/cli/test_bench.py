import pytest

from systolix.cli.bench import compiler_figures as run


@pytest.mark.slow
def test_bench_figures():
    lines = []
    figures = run(lines.append)
    assert figures["quantize_lower_s"] < 2.0
    assert figures["mixed_search_s"] < 5.0
    assert figures["a2q_plus_p12_accuracy"] >= figures["float_accuracy"] - 0.02
    assert any("### W4/A4" in line for line in lines)
