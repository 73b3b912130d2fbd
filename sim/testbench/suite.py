"""What the test suite and ``make sim`` run through cocotb: the array configurations and
scenarios, and runs of the whole inference engine."""

import dataclasses
from pathlib import Path

import numpy as np

from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.hw.engine import InferenceEngine
from systolix.memory_map import save_images
from systolix.sim.runner import run_cocotb
from systolix.sim.testbench.scenarios import scenario
from systolix.sim.transport import design_folder

__all__ = ["ARRAY_CONFIGS", "DSP_ARRAY_CONFIGS", "DSP4_ARRAY_CONFIGS", "SERIAL_ARRAY_CONFIGS",
           "array_scenarios",
           "run_array_suite",
           "run_array_gemms", "run_engine"]


#: Configurations spanning the generator's ranges: 1x1 to 32 rows or columns, square and not,
#: 1- to 8-bit operands of either signedness, 2- to 32-bit accumulators, both overflow modes.
ARRAY_CONFIGS = (
    ArrayConfig(rows=1, cols=1, weight_bits=1, weight_signed=True, activation_bits=1,
                activation_signed=False, accumulator_bits=2, overflow="wrap"),
    ArrayConfig(rows=1, cols=1, weight_bits=8, weight_signed=True, activation_bits=8,
                activation_signed=True, accumulator_bits=32, overflow="saturate"),
    ArrayConfig(rows=2, cols=2, weight_bits=1, weight_signed=False, activation_bits=1,
                activation_signed=False, accumulator_bits=2, overflow="saturate"),
    ArrayConfig(rows=4, cols=4, weight_bits=4, weight_signed=True, activation_bits=4,
                activation_signed=False, accumulator_bits=16, overflow="wrap"),
    ArrayConfig(rows=4, cols=4, weight_bits=4, weight_signed=True, activation_bits=4,
                activation_signed=True, accumulator_bits=8, overflow="saturate"),
    ArrayConfig(rows=3, cols=5, weight_bits=2, weight_signed=True, activation_bits=3,
                activation_signed=False, accumulator_bits=6, overflow="saturate"),
    ArrayConfig(rows=5, cols=3, weight_bits=3, weight_signed=False, activation_bits=2,
                activation_signed=True, accumulator_bits=7, overflow="wrap"),
    ArrayConfig(rows=8, cols=8, weight_bits=4, weight_signed=True, activation_bits=4,
                activation_signed=False, accumulator_bits=16, overflow="wrap"),
    ArrayConfig(rows=8, cols=8, weight_bits=8, weight_signed=True, activation_bits=8,
                activation_signed=True, accumulator_bits=12, overflow="wrap"),
    ArrayConfig(rows=6, cols=10, weight_bits=8, weight_signed=True, activation_bits=8,
                activation_signed=False, accumulator_bits=14, overflow="saturate"),
    ArrayConfig(rows=32, cols=1, weight_bits=8, weight_signed=False, activation_bits=8,
                activation_signed=False, accumulator_bits=32, overflow="wrap"),
    ArrayConfig(rows=1, cols=32, weight_bits=2, weight_signed=True, activation_bits=2,
                activation_signed=False, accumulator_bits=4, overflow="saturate"),
)


#: Arrays of DSP cell pairs (``pe="dsp"``): either signedness of weights and activations, odd
#: and even column counts (an odd last column is a plain cell), both overflow modes, and the
#: 8x8 W4/A4 array of the default model. The first two run in the default test tier.
DSP_ARRAY_CONFIGS = tuple(ArrayConfig.from_name(name) for name in (
    "3x5-W2s-A3u-P6-saturate-dsp",
    "5x3-W3u-A2s-P7-wrap-dsp",
    "4x4-W4s-A4s-P8-saturate-dsp",
    "2x4-W4u-A4u-P9-wrap-dsp",
    "8x8-W4s-A4u-P12-wrap-dsp",
    "6x10-W8s-A8u-P14-saturate-dsp",
))


#: Arrays of four-product DSP cells (``pe="dsp4"``): either signedness, groups of four, three
#: (7 columns), two (6 columns), three and two (5 columns), both overflow modes, the 8x8 W4/A4
#: array. The first runs in the default test tier.
DSP4_ARRAY_CONFIGS = tuple(ArrayConfig.from_name(name) for name in (
    "4x4-W4s-A4u-P12-wrap-dsp4",
    "3x7-W4s-A4s-P9-saturate-dsp4",
    "5x6-W3u-A5s-P11-wrap-dsp4",
    "3x5-W4u-A4s-P10-saturate-dsp4",
    "8x8-W4s-A4u-P16-wrap-dsp4",
))


#: Arrays of bit-serial cells (``pe="serial"``, wrap-around only): either signedness, 1- to
#: 8-bit codes, square and not, and the 8x8 W4/A4 array of the density benchmark. Each vector
#: of the random scenarios has its own number of bit-planes. All in the slow test tier.
SERIAL_ARRAY_CONFIGS = tuple(ArrayConfig.from_name(name) for name in (
    "3x5-W2s-A3u-P6-wrap-serial",
    "4x4-W4s-A4s-P8-wrap-serial",
    "1x1-W1u-A1u-P2-wrap-serial",
    "5x3-W3u-A2s-P7-wrap-serial",
    "8x8-W4s-A4u-P16-wrap-serial",
    "6x10-W8s-A8u-P14-wrap-serial",
))


def array_scenarios(config, seed=0):
    """Scenarios for one configuration: random codes at full rate and with random stalls on
    every stream, every code at either end of its range, mixed extremes, and adversarial tiles
    (which overflow ``P`` bits wherever ``P`` is too narrow for the array)."""
    # Long enough for a tile to be loaded while the previous one computes, and a 1-vector tile.
    long = config.rows + 8
    return [
        scenario("random", seed=seed, tiles=(long, long, 5, long)),
        scenario("stalls", seed=seed + 1, tiles=(long, 1, 3, long), offer=0.6, ready=0.5),
        scenario("lowest", seed=seed + 2, tiles=(4, 4), data="lowest"),
        scenario("highest", seed=seed + 3, tiles=(4, 4), data="highest"),
        scenario("extreme", seed=seed + 4, tiles=(long, 2, long), data="extreme",
                 offer=0.8, ready=0.7),
        scenario("adversarial", seed=seed + 5, tiles=(6, 6), data="adversarial", offer=0.9),
    ]


def run_array_suite(config, *, simulator="verilator", build_root="build/sim", seed=0,
                    hardware_config=None):
    """Run :func:`array_scenarios` on the array through cocotb; return the report.

    ``hardware_config`` builds the hardware from another configuration than the one the
    reference models use (to show that the checks catch a wrong design).
    """
    hardware_config = hardware_config or config
    spec = {"config": dataclasses.asdict(config), "scenarios": array_scenarios(config, seed)}
    build_dir = Path(build_root) / hardware_config.name
    return run_cocotb(SystolicArray(hardware_config), "systolic_array",
                      "systolix.sim.testbench.array", spec, simulator=simulator,
                      build_dir=build_dir)


def run_array_gemms(config, gemms, *, simulator="verilator", build_root="build/sim/gemms",
                    seed=0, offer=0.8, ready=0.8):
    """Run integer GEMMs on an array of ``config`` through cocotb
    (:mod:`systolix.sim.testbench.gemm`); return the report.

    ``gemms`` is a list of ``{"name", "weights", "activations"}``: each GEMM's weight tiles
    (``(rows, cols)`` codes each) and the activation vectors of each tile (``(n, rows)``), as
    nested lists. Sources offer a beat with probability ``offer``, the sink is ready with
    probability ``ready`` (drawn from ``seed``). ``report["gemms"][g]["results"][t]`` holds the
    partial sums the array returned for tile ``t`` of GEMM ``g``.
    """
    spec = {"config": dataclasses.asdict(config), "gemms": gemms, "seed": seed,
            "offer": offer, "ready": ready}
    return run_cocotb(SystolicArray(config), "systolic_array", "systolix.sim.testbench.gemm",
                      spec, simulator=simulator, build_dir=Path(build_root) / config.name)


def run_engine(images, config, codes, batches, *, simulator="verilator",
               build_root="build/sim/engine", input_stall=0.0, output_stall=0.0, seed=0):
    """Run an :class:`InferenceEngine` of ``config`` with ``images`` (a packed model) in cocotb;
    return the report.

    The engine's memories hold the images, so each model has its own build (in a folder named
    after the configuration and a hash of the images; a later run of the same model reuses it).
    ``codes`` (input codes, one row per vector) are run in consecutive batches of the sizes
    ``batches``, with random stalls on the host streams; see
    :mod:`systolix.sim.testbench.engine` for the checks and the report.
    """
    if sum(batches) > len(codes) or not all(1 <= size <= images.max_batch for size in batches):
        raise ValueError(f"batches must be sizes in 1..{images.max_batch} (the engine's max "
                         f"batch) taking at most the {len(codes)} input vectors, not {batches}")
    build_dir = design_folder(build_root, config, images)
    build_dir.mkdir(parents=True, exist_ok=True)
    save_images(images, build_dir / "images.json")
    np.save(build_dir / "inputs.npy", np.asarray(codes, dtype=np.int64))
    spec = {"config": dataclasses.asdict(config),
            "images": str((build_dir / "images.json").resolve()),
            "inputs": str((build_dir / "inputs.npy").resolve()), "batches": list(batches),
            "input_stall": input_stall, "output_stall": output_stall, "seed": seed}
    return run_cocotb(InferenceEngine(config, images), "inference_engine",
                      "systolix.sim.testbench.engine", spec, simulator=simulator,
                      build_dir=build_dir)
