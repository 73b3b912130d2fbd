import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.sim.golden import accumulate, array_matmul, wrap


def reference(x, w, bits, overflow):
    """Plain Python integers, one addition at a time, in the hardware's order."""
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    out = np.zeros((len(x), len(w[0])), dtype=np.int64)
    for i, row in enumerate(x):
        for c in range(len(w[0])):
            total = 0
            for k, value in enumerate(row):
                total += int(value) * int(w[k][c])
                if overflow == "saturate":
                    total = min(max(total, low), high)
                else:
                    total = ((total - low) % (1 << bits)) + low
            out[i, c] = total
    return out


@pytest.mark.parametrize("bits", [2, 5, 12, 16, 32])
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_accumulate_matches_step_by_step_reference(bits, overflow):
    rng = np.random.default_rng(bits)
    x = rng.integers(-128, 128, size=(9, 23))
    w = rng.integers(-128, 128, size=(23, 7))
    assert np.array_equal(accumulate(x, w, bits, overflow), reference(x, w, bits, overflow))


def test_saturation_depends_on_order():
    # 100 + 100 - 100 with P=8: saturates at 127 on the way, ends at 27, not at 100.
    w = [[100], [100], [-100]]
    assert accumulate([[1, 1, 1]], w, 8, "saturate")[0, 0] == 27
    assert accumulate([[1, 1, 1]], w, 8, "wrap")[0, 0] == 100


def test_large_sums_beyond_float_exactness_stay_exact():
    x = np.full((2, 3), 2 ** 40)
    w = np.full((3, 1), 2 ** 20)
    assert accumulate(x, w, 32, "wrap")[0, 0] == wrap(3 * 2 ** 60, 32)


def test_wrap_is_twos_complement():
    assert list(wrap([127, 128, -129, 255, 256], 8)) == [127, -128, 127, -1, 0]


def test_array_matmul_checks_shapes_and_ranges():
    config = ArrayConfig(rows=2, cols=3, weight_bits=4, activation_bits=4)
    with pytest.raises(ValueError, match=r"^x must have shape \(n, 2\), not \(1, 3\)$"):
        array_matmul(config, np.zeros((1, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^w must have shape \(2, 3\), not \(3, 2\)$"):
        array_matmul(config, np.zeros((1, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"^x codes must lie in 0\.\.15, not -1\.\.0$"):
        array_matmul(config, [[-1, 0]], np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^w codes must lie in -8\.\.7, not 0\.\.8$"):
        array_matmul(config, [[1, 0]], [[8, 0, 0], [0, 0, 0]])


def test_accumulate_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"^accumulator_bits must be an integer in 2\.\.32, not 1$"):
        accumulate([[1]], [[1]], 1)
    with pytest.raises(ValueError, match=r"^overflow must be one of 'wrap', 'saturate', not 'x'$"):
        accumulate([[1]], [[1]], 8, "x")
