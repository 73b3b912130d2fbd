"""WAGE training: integer codes throughout, seeded and reproducible, exports to the program the
hardware runs, and (slow) reaches its accuracy target."""

import numpy as np
import pytest

from systolix.sim.golden import run_program
from systolix.sw.models import digits_split
from systolix.sw.quant import wage_quantize
from systolix.sw.train import FloatMLP, mlp, train
from systolix.sw.wage import WageMLP, parse_bits
from systolix.sw.dfp import dfp_rate


def _trained(seed, epochs=2, bits=(2, 8, 8, 8)):
    rng = np.random.default_rng(seed)
    model = WageMLP(rng, bits, epochs)
    history = train(model, digits_split(0), epochs, rng, report=None)
    return model, history


def test_same_seed_same_weights():
    first, history = _trained(3)
    again, _ = _trained(3)
    other, _ = _trained(4)
    assert all(np.array_equal(a, b) for a, b in zip(first.masters, again.masters))
    assert not all(np.array_equal(a, b) for a, b in zip(first.masters, other.masters))
    assert history.accuracy[-1] > 0.6        # it learns in two epochs


def test_weights_are_wage_quantized_master_codes():
    model, _ = _trained(0, epochs=1)
    for master, weights in zip(model.masters, model.weights()):
        assert master.dtype == np.int64 and np.abs(master).max() <= 127
        assert set(np.unique(weights)) <= {-1, 0, 1}
        # Q(m / 128, 2) of WAGE's quantizer, as codes of 2^-1.
        expected = wage_quantize(master / 128.0, 2) * 2
        assert np.array_equal(weights, expected.astype(np.int64))


def test_every_gemm_is_declared_and_exact():
    model = WageMLP(np.random.default_rng(0), (2, 8, 8, 8), layers=mlp((20, 12, 6)))
    rng = np.random.default_rng(1)
    trace = []
    model.step(rng.integers(0, 128, (16, 20)), rng.integers(0, 6, 16), 0, rng, trace)
    assert [shape.name for shape, *_ in trace] == [
        "layer 0 forward X W", "layer 1 forward X W", "layer 1 gradient X^T E",
        "layer 1 error E W^T", "layer 0 gradient X^T E"]
    for shape, a, b, result in trace:
        assert shape == model.gemms()[shape.name]
        assert np.array_equal(result, a @ b)
        assert np.abs(result).max() < 1 << (shape.accumulator_bits - 1)


@pytest.mark.parametrize("bits", [(2, 8, 8, 8), (3, 6, 8, 6), (8, 8, 8, 8)])
def test_export_runs_the_trainers_forward(bits):
    model, _ = _trained(1, epochs=1, bits=bits)
    program = model.export()
    data = digits_split(0)
    codes = program.encode_input(data.x_test)
    assert np.array_equal(codes, model.encode(data.x_test))
    assert np.array_equal(run_program(program, codes), model.forward(codes)[0][-1])
    assert all(layer.weight_bits == bits[0] and layer.input_bits == bits[1]
               for layer in program.layers)


def test_parse_bits():
    assert parse_bits("2-8-8-8") == (2, 8, 8, 8)
    for bad in ("2-8-8", "2-8-8-9", "1-8-8-8", "a-b-c-d", "2-8-8-8-8"):
        with pytest.raises(ValueError, match="must be four widths W-A-G-E"):
            parse_bits(bad)


@pytest.mark.slow
def test_wage_within_three_points_of_float():
    epochs = 30
    rng = np.random.default_rng(0)
    reference = train(FloatMLP(rng, lambda epoch: 2.0 ** -dfp_rate(epoch, epochs)),
                      digits_split(0), epochs, rng, report=None)
    _, history = _trained(0, epochs)
    assert history.accuracy[-1] >= reference.accuracy[-1] - 0.03
