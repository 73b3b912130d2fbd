"""Dynamic fixed point training: the overflow-rate rule, seeded and reproducible, exports at the
array's widths, and (slow) reaches its accuracy target."""

import numpy as np
import pytest

from systolix.sim.golden import run_program
from systolix.sw.dfp import DfpMLP, dfp_rate, next_exponent
from systolix.sw.models import digits_split
from systolix.sw.train import FloatMLP, mlp, train


def _trained(seed, epochs=2, mult_bits=10, update_bits=12):
    rng = np.random.default_rng(seed)
    model = DfpMLP(rng, mult_bits, update_bits, epochs)
    history = train(model, digits_split(0), epochs, rng, report=None)
    return model, history


def test_next_exponent_follows_the_overflow_rate():
    assert next_exponent(-5, 2, 9, 10000) == -4          # 2e-4 overflowed: coarser
    assert next_exponent(-5, 1, 1, 10000) == -6          # 1e-4 even one step finer: finer
    assert next_exponent(-5, 0, 2, 10000) == -5
    assert next_exponent(-5, 1, 2, 100) == -4


def test_same_seed_same_weights():
    first, history = _trained(5)
    again, _ = _trained(5)
    other, _ = _trained(6)
    assert all(np.array_equal(a, b) for a, b in zip(first.stored, again.stored))
    assert first.weight_exponents == again.weight_exponents
    assert first.activation_exponents == again.activation_exponents
    assert not all(np.array_equal(a, b) for a, b in zip(first.stored, other.stored))
    assert history.accuracy[-1] > 0.8


def test_codes_stay_in_their_widths():
    model, _ = _trained(0, epochs=1, mult_bits=6, update_bits=9)
    assert all(np.abs(u).max() <= 255 for u in model.stored)
    weights, _ = model.weights()
    assert all(np.abs(w).max() <= 31 for w in weights)
    codes = model.encode(digits_split(0).x_test)
    outs, _ = model.forward(codes)
    assert all(np.abs(out).max() <= 31 for out in outs)
    trace = []
    rng = np.random.default_rng(0)
    model.step(codes[:16], digits_split(0).y_test[:16], 0, rng, trace)
    assert len(trace) == 8 and all(np.array_equal(r, a @ b) for _, a, b, r in trace)


@pytest.mark.parametrize("mult_bits", [6, 8, 10])
def test_export_runs_the_trainers_forward_at_the_arrays_widths(mult_bits):
    model, history = _trained(1, epochs=1, mult_bits=mult_bits)
    program = model.export()
    bits = min(mult_bits, 8)
    assert all(layer.weight_bits == bits == layer.input_bits for layer in program.layers)
    data = digits_split(0)
    codes = program.encode_input(data.x_test)
    assert np.array_equal(codes, model.encode(data.x_test, bits))
    assert np.array_equal(run_program(program, codes), model.forward(codes, bits=bits)[0][-1])
    if mult_bits <= 8:      # the exported program is the trained network itself
        assert np.mean(model.predict(codes) == data.y_test) == history.accuracy[-1]


def test_widths_are_checked():
    with pytest.raises(ValueError, match="--mult-bits must be an integer in 4..13, not 3"):
        DfpMLP(np.random.default_rng(0), 3, 12)
    with pytest.raises(ValueError, match="--mult-bits 13: the layer 0 forward X W GEMM would "
                                         "need a 33-bit accumulator"):
        DfpMLP(np.random.default_rng(0), 13, 16, layers=mlp((256, 10)))
    with pytest.raises(ValueError, match="--update-bits .* must be an integer in 10..24, not 8"):
        DfpMLP(np.random.default_rng(0), 10, 8)


@pytest.mark.slow
def test_dfp_within_one_point_of_float():
    epochs = 30
    rng = np.random.default_rng(0)
    reference = train(FloatMLP(rng, lambda epoch: 2.0 ** -dfp_rate(epoch, epochs)),
                      digits_split(0), epochs, rng, report=None)
    _, history = _trained(0, epochs)
    assert history.accuracy[-1] >= reference.accuracy[-1] - 0.01
