
import numpy as np
import pytest

from systolix.sw.mixed import combined_sqnr, layer_metrics, search
from systolix.sw.models import digits_mlp


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


def test_metrics_improve_with_width(digits):
    model, data = digits
    metrics = layer_metrics(model, data.x_train, (2, 4, 8))
    assert len(metrics) == 3
    for metric in metrics:
        assert metric.widths == (2, 4, 8)
        assert list(metric.weight_sqnr) == sorted(metric.weight_sqnr)
        assert list(metric.activation_sqnr) == sorted(metric.activation_sqnr)
        assert list(metric.weight_mse) == sorted(metric.weight_mse, reverse=True)
        assert metric.combined_sqnr(2) < min(metric.weight_sqnr[2], metric.activation_sqnr[2])
    assert [metric.weight_count for metric in metrics] == [4096, 2048, 320]


def test_combined_sqnr_adds_noise_powers():
    assert combined_sqnr(20.0, 20.0) == pytest.approx(20.0 - 10 * np.log10(2))
    assert combined_sqnr(20.0, float("inf")) == pytest.approx(20.0)


def test_sqnr_target_takes_the_narrowest_widths(digits):
    model, data = digits
    result = search(model, data.x_train, min_sqnr=18.0)
    for bits, metric in zip(result.widths, result.metrics):
        index = metric.widths.index(bits)
        assert metric.combined_sqnr(index) >= 18.0
        assert index == 0 or metric.combined_sqnr(index - 1) < 18.0
    assert result.weight_memory_bits == sum(m.weight_count * b
                                            for m, b in zip(result.metrics, result.widths))
    assert result.evaluations == 0 and result.accuracy is None
    assert "| 0 | 4096 |" in result.table()


def test_accuracy_target_is_met_without_retraining(digits):
    model, data = digits
    result = search(model, data.x_train, max_accuracy_drop=0.01,
                    validation=(data.x_train, data.y_train))
    assert result.float_accuracy - result.accuracy <= 0.01
    assert result.evaluations <= 3 * 7
    assert result.weight_memory_bits < 8 * (4096 + 2048 + 320)
    assert "accuracy:" in result.table()


@pytest.mark.parametrize("kwargs, message", [
    (dict(), r"give exactly one target: min_sqnr or max_accuracy_drop"),
    (dict(min_sqnr=10, max_accuracy_drop=0.1), r"give exactly one target"),
    (dict(max_accuracy_drop=0.1), r"max_accuracy_drop needs validation data"),
    (dict(min_sqnr=90), r"min_sqnr=90 dB is out of reach for layer 0: it reaches .* dB at 8 bits"),
    (dict(min_sqnr=10, budget=1000), r"the target needs \d+ bits of weight memory, over the "
                                     r"budget of 1000"),
    (dict(min_sqnr=10, widths=(4, 2)), r"widths must increase, not \(4, 2\)"),
    (dict(min_sqnr=10, widths=(1, 2)), r"widths must be an integer in 2..8, not 1"),
])
def test_bad_targets(digits, kwargs, message):
    model, data = digits
    with pytest.raises(ValueError, match=message):
        search(model, data.x_train, **kwargs)


def test_cnn_search_is_per_learned_layer():
    from systolix.sw.models import digits_cnn
    model, data = digits_cnn()
    metrics = layer_metrics(model, data.x_train, (2, 4, 8))
    assert [metric.weight_count for metric in metrics] == [9 * 16, 144 * 32, 32 * 10]
    result = search(model, data.x_train, min_sqnr=15.0, validation=(data.x_test, data.y_test),
                    widths=(3, 4, 5, 6, 8))
    assert len(result.widths) == 3
    assert result.weight_memory_bits == sum(metric.weight_count * bits
                                            for metric, bits in zip(metrics, result.widths))
    for metric, bits, sqnr in zip(result.metrics, result.widths, result.layer_sqnr):
        i = metric.widths.index(bits)
        assert sqnr >= 15.0 and (i == 0 or metric.combined_sqnr(i - 1) < 15.0)
    assert result.accuracy > 0.8
