"""Every GEMM of one whole training step on the simulated array (cocotb, Verilator), bit for bit
against the numpy trainer: the forward ``X W``, the error propagation ``E W^T`` (``W^T`` tiles)
and the weight gradient ``X^T E`` (``X^T`` vectors) of WAGE 2-8-8-8 and of dynamic fixed point
with 10-bit multiplications (each operand two digits of the array's 8-bit codes) and with
8-bit ones, for an MLP and a CNN (convolutions as GEMMs of their patches)."""

import os

import numpy as np
import pytest

from systolix.config import ArrayConfig
from systolix.sim.testbench.suite import run_array_gemms
from systolix.sw.dfp import DfpMLP
from systolix.layer import Window
from systolix.sw.train import Layer, array_tiles, assemble, digits_cnn, mlp
from systolix.sw.wage import WageMLP

SIMULATOR = os.environ.get("SIM", "verilator")

pytestmark = pytest.mark.cocotb


def _traced_step(model, batch, seed):
    """The GEMMs of one training step of ``model`` on a random batch of input codes."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 128, (batch, model.layers[0].map_inputs))
    labels = rng.integers(0, model.layers[-1].outputs, batch)
    trace = []
    model.step(codes, labels, 0, rng, trace)
    # Every GEMM of the step, once.
    assert [shape.name for shape, *_ in trace] == sorted(model.gemms(batch), key=_order)
    return trace


def _order(name):
    """The order of a step's GEMMs: the forwards, then per layer, last first, the gradient and
    the error."""
    layer = int(name.split()[1])
    return (0, layer) if "forward" in name else (1, -layer, "error" in name)


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


def _models(layers):
    return [WageMLP(np.random.default_rng(1), (2, 8, 8, 8), layers=layers),
            DfpMLP(np.random.default_rng(2), 10, 12, layers=layers),
            DfpMLP(np.random.default_rng(3), 8, 12, layers=layers)]


def _small_cnn():
    """A CNN small enough for CI: conv 3x3 1->3 padding 1 on 4x4, conv 3x3 stride 2 3->4
    padding 1, average pool 2x2, dense 4->3."""
    conv1 = Window(4, 4, 1, 3, 3, pad_top=1, pad_left=1, pad_bottom=1, pad_right=1)
    conv2 = Window(4, 4, 3, 3, 3, 2, 2, 1, 1, 1, 1)
    pool = Window(2, 2, 4, 2, 2, groups=4)
    return (Layer(conv1.patch, 3, conv1), Layer(conv2.patch, 4, conv2),
            Layer(pool.patch, 4, pool, relu=False, fixed=True), Layer(4, 3, relu=False))


@pytest.mark.parametrize("layers, batch, rows, cols", [
    pytest.param(mlp((12, 8, 5)), 4, 4, 4, id="mlp-12-8-5"),
    pytest.param(_small_cnn(), 2, 4, 4, id="cnn-4x4"),
    pytest.param(mlp(), 16, 8, 8, id="digits-mlp", marks=pytest.mark.slow),
    pytest.param(digits_cnn(), 16, 8, 8, id="digits-cnn", marks=pytest.mark.slow),
])
def test_training_step_on_the_array(layers, batch, rows, cols, tmp_path):
    trace = [entry for seed, model in enumerate(_models(layers))
             for entry in _traced_step(model, batch, seed)]
    results = _run_on_array(trace, rows, cols, tmp_path)
    for (shape, a, b, expected), result in zip(trace, results):
        assert np.array_equal(result, expected), shape.name
        # The declared width never wraps: the result is the exact product.
        assert np.array_equal(expected, a @ b), shape.name
    assert any(np.any(a < 0) for _, a, _, _ in trace)     # signed errors went through
    assert any(np.abs(b).max() > 127 for _, _, b, _ in trace)      # and 10-bit codes
