import numpy as np
import pytest

from systolix.sim.golden.program import run_program
from systolix.sw.finetune import _weight_gradients, _weights, finetune
from systolix.sw.lower import lower
from systolix.sw.models import digits_cnn, digits_mlp
from systolix.sw.report import BREVITAS, BREVITAS_BITS, TRAINING_SEEDS, program_accuracy

from .bound import assert_within_bound


@pytest.fixture(scope="module")
def digits():
    return digits_mlp()


@pytest.fixture(scope="module")
def tuned(digits):
    model, data = digits
    return finetune(model, data.x_train, data.y_train, 4, 4, 9, epochs=8, seed=1)


def test_program_meets_the_bound_and_runs_bit_exactly(digits, tuned):
    _, data = digits
    program = lower(tuned)
    assert_within_bound(program)
    assert tuned.method == "a2q+" and program.layers[0].accumulator_bits == 9
    np.testing.assert_array_equal(run_program(program, program.encode_input(data.x_test)),
                                  tuned.reference(data.x_test))
    assert program_accuracy(program, data.x_test, data.y_test) >= 0.93


def test_seeded(digits, tuned):
    model, data = digits
    again = finetune(model, data.x_train, data.y_train, 4, 4, 9, epochs=8, seed=1)
    for a, b in zip(tuned.layers, again.layers):
        np.testing.assert_array_equal(a.weight_codes, b.weight_codes)
    other = finetune(model, data.x_train, data.y_train, 4, 4, 9, epochs=8, seed=2)
    assert any(np.any(a.weight_codes != b.weight_codes)
               for a, b in zip(tuned.layers, other.layers))


def test_gradients_of_the_weight_parameterisation():
    """Straight through the rounding, the gradients of v and r are those of the unrounded
    weights s * z, z = min(r, limit) (v - mean v) / ||v - mean v||_1 (finite differences)."""
    rng = np.random.default_rng(0)
    v, r, log_s = rng.normal(size=(6, 3)), np.array([3.0, 9.0, 5.0]), rng.normal(size=3)
    upstream = rng.normal(size=(6, 3))
    limit, high = 6.0, 100

    def loss(v, r):
        _, _, (s, _, _, u, _, gain, _, _) = _weights(v, r, log_s, limit, high)
        return np.sum(upstream * s * gain * u)

    _, _, cache = _weights(v, r, log_s, limit, high)
    grad_v, grad_r, _ = _weight_gradients(upstream, cache)
    step = 1e-6
    for index in np.ndindex(v.shape):
        moved = v.copy()
        moved[index] += step
        assert abs((loss(moved, r) - loss(v, r)) / step - grad_v[index]) < 1e-4
    for channel in range(3):
        moved = r.copy()
        moved[channel] += step
        # Channel 1 is capped (r above the limit): no gradient.
        assert abs((loss(v, moved) - loss(v, r)) / step - grad_r[channel]) < 1e-4
    assert grad_r[1] == 0


def test_refusals(digits):
    model, data = digits
    with pytest.raises(ValueError, match="fine-tuning takes dense layers only; layer 0 is a "
                                         "Conv2d"):
        finetune(digits_cnn()[0], data.x_train, data.y_train, epochs=1)
    with pytest.raises(ValueError, match="power-of-two scales"):
        finetune(model, data.x_train, data.y_train, epochs=1, pow2=True)
    with pytest.raises(ValueError, match="distillation must be a number in 0..1, not 2"):
        finetune(model, data.x_train, data.y_train, epochs=1, distillation=2)
    with pytest.raises(ValueError, match="needs unsigned inputs"):
        finetune(model, data.x_train - 8, data.y_train, epochs=1,
                 activation_scheme="symmetric")


@pytest.mark.slow
def test_targets_at_w4a4(digits):
    """At or above the best of Brevitas' trainings at every P from 8 to 12, as the mean of two
    seeds (the whole table: tests/sw/test_report.py::test_full_sweep)."""
    model, data = digits
    for bits, *figures in zip(BREVITAS_BITS, *BREVITAS.values()):
        reached = np.mean([program_accuracy(lower(finetune(
            model, data.x_train, data.y_train, 4, 4, bits, seed=seed)), data.x_test,
            data.y_test) for seed in TRAINING_SEEDS])
        assert reached >= max(figures), (bits, reached)


@pytest.mark.parametrize("bits, accumulator_bits", [(4, 8), (4, 12), (8, 11), (2, 8)])
def test_bound_at_every_width(digits, bits, accumulator_bits):
    model, data = digits
    assert_within_bound(lower(finetune(model, data.x_train, data.y_train, bits, bits,
                                       accumulator_bits, epochs=1)))
