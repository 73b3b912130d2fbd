"""Every GEMM of one whole training step on the simulated array (cocotb, Verilator), bit for bit
against the numpy trainer: the forward ``X W``, the error propagation ``E W^T`` (``W^T`` tiles)
and the weight gradient ``X^T E`` (``X^T`` vectors) of WAGE 2-8-8-8 and of dynamic fixed point
with 10-bit multiplications (each operand two digits of the array's 8-bit codes) and with
8-bit ones."""

import os

import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.sim.testbench.suite import run_array_gemms
from systolix.sw.dfp import DfpMLP
from systolix.sw.train import array_tiles, assemble
from systolix.sw.wage import WageMLP

SIMULATOR = os.environ.get("SIM", "verilator")

pytestmark = pytest.mark.cocotb


def _traced_step(model, inputs, batch, seed):
    """The GEMMs of one training step of ``model`` on a random batch of input codes."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 128, (batch, inputs))
    labels = rng.integers(0, model.sizes[-1], batch)
    trace = []
    model.step(codes, labels, 0, rng, trace)
    return trace


def _run_on_array(trace, rows, cols, build_root):
    """Run every traced GEMM on an rows x cols array with 8-bit signed codes and the widest
    declared accumulator; return the GEMM results the array gave."""
    width = max(shape.accumulator_bits for shape, *_ in trace)
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=8, weight_signed=True,
                         activation_bits=8, activation_signed=True, accumulator_bits=width,
                         overflow="wrap")
    layouts = [array_tiles(a, b, config) for _, a, b, _ in trace]
    gemms = [{"name": f"{shape.name}, part {index}", "weights": weights.tolist(),
              "activations": activations.tolist()}
             for (shape, *_), tiles in zip(trace, layouts)
             for index, (_, weights, activations) in enumerate(tiles.parts)]
    report = run_array_gemms(config, gemms, simulator=SIMULATOR, build_root=build_root)
    assert len(report["gemms"]) == len(gemms)
    for entry in report["gemms"]:
        assert entry["mismatches"] == 0 and entry["cycle_mismatches"] == 0, entry["name"]
    results = iter(entry["results"] for entry in report["gemms"])
    return [assemble(tiles, [next(results) for _ in tiles.parts], width) for tiles in layouts]


def _models(sizes):
    return [WageMLP(np.random.default_rng(1), (2, 8, 8, 8), sizes=sizes),
            DfpMLP(np.random.default_rng(2), 10, 12, sizes=sizes),
            DfpMLP(np.random.default_rng(3), 8, 12, sizes=sizes)]


@pytest.mark.parametrize("sizes, batch, rows, cols", [
    pytest.param((12, 8, 5), 4, 4, 4, id="mlp-12-8-5"),
    pytest.param((64, 64, 32, 10), 16, 8, 8, id="digits-mlp", marks=pytest.mark.slow),
])
def test_training_step_on_the_array(sizes, batch, rows, cols, tmp_path):
    traces = [_traced_step(model, sizes[0], batch, seed) for seed, model
              in enumerate(_models(sizes))]
    trace = [entry for entries in traces for entry in entries]
    # Every GEMM of the step: forward and weight gradient of every layer, the error of all but
    # the first, for each scheme.
    assert len(trace) == 3 * (3 * (len(sizes) - 1) - 1)
    results = _run_on_array(trace, rows, cols, tmp_path)
    for (shape, a, b, expected), result in zip(trace, results):
        assert np.array_equal(result, expected), shape.name
        # The declared width never wraps: the result is the exact product.
        assert np.array_equal(expected, a @ b), shape.name
    assert any(np.any(a < 0) for _, a, _, _ in trace)     # signed errors went through
    assert any(np.abs(b).max() > 127 for _, _, b, _ in trace)      # and 10-bit codes
