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


def test_import_figures():
    """The import benchmark's model has at least 100k weights and its row is printed (the
    5 s target is the benchmark's, not a timed test)."""
    from systolix.cli.bench import import_figures
    lines = []
    figures = import_figures(lines.append)
    assert figures["weights"] >= 100_000 and figures["import_s"] > 0
    assert "QCDQ MLP 256-256-128-64-10" in lines[0] and "107,136" in lines[0]


@pytest.mark.slow
def test_cnn_figures():
    from systolix.cli.bench import cnn_figures
    lines = []
    figures = cnn_figures(lines.append)
    assert figures["minimal_bits"] is not None
    assert figures["float_accuracy"] - figures["accuracy"][figures["minimal_bits"]] <= 0.01
    assert figures["minimal_bits"] <= figures["plain_bits"]
    assert any("A2Q+ at its minimal P" in line for line in lines)
    assert sorted(figures["utilisation"]) == [0, 1, 2]        # two convolutions and the pool
    assert all(0 < value <= 1 for value in figures["utilisation"].values())


def test_training_figures():
    """The training benchmark's rows are printed (its accuracy targets are the benchmark's and
    the slow tests', tests/sw/test_wage.py and test_dfp.py)."""
    from systolix.cli.bench import training_figures
    lines = []
    figures = training_figures(lines.append, epochs=1, seeds=(0,))
    assert set(figures) == {"float", "wage", "dfp"}
    assert all(0 < accuracy <= 1 and seconds > 0 for accuracy, seconds in figures.values())
    assert "| " not in lines[1] and "wage" in lines[1] and "<= 3 points" in lines[1]
    cnn = []
    training_figures(cnn.append, epochs=1, seeds=(0,), network="cnn")
    assert "digits CNN" in cnn[0] and "points" not in cnn[1].splitlines()[3]   # no target


def test_vit_figures():
    """The ViT benchmark prints its accuracy row and the nonlinearities' errors (its targets
    are the benchmark's, docs/vit.md)."""
    from systolix.cli.bench import vit_figures

    lines = []
    figures = vit_figures(lines.append, settings=((4, 4),))
    text = "\n".join(lines)
    assert "W4/A4" in text and "GELU, scale 0.1" in text and "softmax, F=3" in text
    result = figures[4, 4]
    assert set(result) == {"float", "fake_quantized", "integer"}
    assert all(0.9 < value <= 1 for value in result.values())


def test_vit_engine_figures():
    """The ViT's cycles an image on its engine and the utilisation of its four attention
    matmuls are printed (from the exact cycle model)."""
    from systolix.cli.bench import vit_engine_figures

    lines = []
    figures = vit_engine_figures(lines.append, batch=2)
    assert sorted(figures["utilisation"]) == [5, 7, 19, 21]
    assert all(0 < value <= 1 for value in figures["utilisation"].values())
    assert figures["cycles"] > figures["ideal"] > 0
    assert "cycles an image" in lines[0] and "Q K^T" in lines[1] and "softmax(.) V" in lines[1]


def test_accumulator_aware_figures():
    """The rows against Brevitas are printed (the accuracy targets are the benchmark's and the
    slow test's, tests/sw/test_report.py::test_full_sweep; the time target the benchmark's)."""
    from systolix.cli.bench import accumulator_aware_figures
    lines = []
    figures = accumulator_aware_figures(lines.append, seeds=(0,), epochs=1)
    assert sorted(figures["training"]) == [8, 9, 10, 11, 12]
    assert figures["brevitas"][10] == 0.971 and figures["ptq_s"]["axe"] > 0
    assert "Brevitas best %" in lines[1] and "AXE-style" in lines[2]
    assert all(figures["axe"][bits] >= figures["projection"][bits] - 0.01 for bits in (8, 9, 10))
