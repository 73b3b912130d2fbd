import numpy as np
import pytest

from systolix.sw.models import digits_mlp
from systolix.sw.report import BREVITAS, METHOD_LABELS, sweep, write_report


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


@pytest.fixture(scope="module")
def four_bit(digits):
    # A few epochs of fine-tuning: the rows and the mean of two seeds, not the accuracy.
    return sweep(*digits, widths=(4,), accumulator_bits=(5, 8, 9, 10, 12), epochs=2)


def test_a2q_plus_beats_a2q_and_naive_wrap_around(four_bit):
    a2q, plus, naive = (np.array([np.nan if v is None else v for v in four_bit.accuracy[4, m]])
                        for m in ("a2q", "a2q+", "none"))
    # P = 5 admits no nonzero weight under A2Q (4-bit inputs need P >= 6).
    assert four_bit.accuracy[4, "a2q"][0] is None and four_bit.accuracy[4, "a2q+"][0] is not None
    assert np.all(plus[1:] >= a2q[1:])
    # Far above naive wrap-around at small P.
    assert np.all(plus[1:3] > naive[1:3] + 0.3)
    # Within two points of float at P = 12.
    assert plus[-1] >= four_bit.float_accuracy - 0.02
    # AXE-style rounding: far above the projection where the bound binds hardest.
    axe = np.array(four_bit.accuracy[4, "a2q+ axe"][1:])
    assert np.all(axe[:2] > plus[1:3] + 0.04) and np.all(axe >= 0.94)
    assert len(four_bit.accuracy[4, "a2q+ training"]) == 5 and four_bit.seeds == (0, 1)
    assert four_bit.unlimited[4] >= four_bit.float_accuracy - 0.03


def test_report_files(four_bit, tmp_path):
    markdown, plot = write_report(tmp_path / "out", four_bit)
    text = markdown.read_text()
    assert "### W4/A4" in text and "| P=5 | P=8 |" in text and "| float | 97.5 |" in text
    for label in METHOD_LABELS.values():
        assert f"| {label} |" in text
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["accuracy.png", "report.md"]


@pytest.mark.slow
def test_full_sweep(digits):
    result = sweep(*digits)
    for bits in result.widths:
        plus, a2q = result.accuracy[bits, "a2q+"], result.accuracy[bits, "a2q"]
        # Where both are close to float, they differ by a test image or two either way.
        assert all(a is None or p >= a - 0.01 for p, a in zip(plus, a2q))
        assert sum(p for p in plus if p is not None) > sum(a for a in a2q if a is not None)
    # W4/A4, P = 8..12: fine-tuning at or above the best of Brevitas' trainings, the best
    # post-training method within a point of it from P = 9.
    brevitas = [max(column) for column in zip(*BREVITAS.values())]
    training = result.accuracy[4, "a2q+ training"][:5]
    assert all(t >= b for t, b in zip(training, brevitas))
    best = [max(a, p) for a, p in zip(result.accuracy[4, "a2q+ axe"][1:5],
                                      result.accuracy[4, "a2q+"][1:5])]
    assert all(value >= b - 0.01 for value, b in zip(best, brevitas[1:]))


def test_sweep_of_the_cnn_leaves_out_widths_too_narrow_for_its_pooling():
    from systolix.sw.models import digits_cnn
    from systolix.sw.report import sweep
    model, data = digits_cnn()
    result = sweep(model, data, widths=(4,), accumulator_bits=(8, 9),
                   methods=("none", "a2q", "a2q+", "a2q+ axe"))
    # Global average pooling adds 16 codes of 4 bits: 9 bits, which A2Q and A2Q+ never widen.
    assert result.accuracy[4, "a2q+"][0] is None and result.accuracy[4, "a2q"][0] is None
    assert result.accuracy[4, "a2q+ axe"][1] > 0.5
    assert result.accuracy[4, "a2q+"][1] > 0.2 and result.accuracy[4, "none"][0] is not None
