"""``systolix sim`` and ``systolix bench``: the simulations and the speed figures."""

import dataclasses
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from systolix.boards import bench as boards_bench
from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.sim.golden import accumulate
from systolix.sim.runner import SIMULATORS, run_cocotb, simulator_environment
from systolix.sim.testbench.scenarios import scenario
from systolix.sim.testbench.suite import ARRAY_CONFIGS, run_array_suite
from systolix.sw import bench as sw_bench
from systolix.timing import best_time

__all__ = ["register", "format_table"]


def format_table(header, rows):
    """Render rows of values as an aligned text table."""
    cells = [list(map(str, header))] + [[str(value) for value in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(value.rjust(width) for value, width in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _suite_row(config, report):
    scenarios = report["scenarios"]
    seconds = sum(s["seconds"] for s in scenarios)
    latency = [(s["latency_measured"], s["latency_modelled"]) for s in scenarios
               if s["name"] == "random"][0]
    return [
        config.name,
        sum(s["vectors"] for s in scenarios),
        sum(s["overflows"] for s in scenarios),
        sum(s["mismatches"] for s in scenarios),
        sum(s["cycle_mismatches"] for s in scenarios),
        f"{latency[0]:g} / {latency[1]:g}",
        f"{sum(s['cycles'] for s in scenarios) / seconds:,.0f}",
    ]


def _run_suite(config, simulator):
    return run_array_suite(config, simulator=simulator)


def run_sim(args):
    simulator_environment(args.simulator)
    print(f"systolix sim: {len(ARRAY_CONFIGS)} array configurations on {args.simulator}, "
          f"{args.jobs} at a time; every result is checked bit-exactly against the golden model "
          f"and every stream transfer against the cycle model", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        reports = list(pool.map(_run_suite, ARRAY_CONFIGS, [args.simulator] * len(ARRAY_CONFIGS)))
    rows = [_suite_row(config, report) for config, report in zip(ARRAY_CONFIGS, reports)]
    print(format_table(["config", "vectors", "overflows", "mismatches", "cycle mismatches",
                        "latency measured / modelled", "sim cycles/s"], rows))
    failed = sum(row[3] + row[4] for row in rows)
    print(f"{'FAIL' if failed else 'OK'}: {sum(row[1] for row in rows)} vectors, "
          f"{failed} mismatches, {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def golden_speed(n=1024, k=1024, cols=1024, seed=0):
    """MAC/s of the golden model and of a float64 numpy matmul of the same shape."""
    rng = np.random.default_rng(seed)
    config = ArrayConfig(weight_bits=8, activation_bits=8, accumulator_bits=32)
    x = rng.integers(*config.activation_range, size=(n, k), endpoint=True)
    w = rng.integers(*config.weight_range, size=(k, cols), endpoint=True)
    xf, wf = x.astype(np.float64), w.astype(np.float64)
    macs = n * k * cols
    results = {}
    for overflow in ("wrap", "saturate"):
        seconds = best_time(lambda: accumulate(x, w, config.accumulator_bits, overflow))
        results[f"golden ({overflow})"] = macs / seconds
    results["numpy float64"] = macs / best_time(lambda: xf @ wf)
    return results


def cocotb_speed(simulator, config=ArrayConfig(), vectors=20000):
    """Simulated cycles per second of the array testbench on one long stall-free scenario."""
    spec = {"config": dataclasses.asdict(config),
            "scenarios": [scenario("throughput", tiles=(vectors,))]}
    report = run_cocotb(SystolicArray(config), "systolic_array", "systolix.sim.testbench.array",
                        spec, simulator=simulator, build_dir=f"build/bench/{config.name}")
    entry = report["scenarios"][0]
    return entry["cycles"] / entry["seconds"], entry["mismatches"]


def run_bench(args):
    speeds = golden_speed()
    reference = speeds["numpy float64"]
    print("Golden model, 1024x1024 @ 1024x1024 (8-bit codes, P=32):")
    print(format_table(["model", "MAC/s", "ratio to numpy float64"],
                       [[name, f"{value:.3g}", f"{value / reference:.2f}"]
                        for name, value in speeds.items()]))
    print()
    rows = []
    for simulator in SIMULATORS:
        try:
            simulator_environment(simulator)
        except ValueError as error:
            rows.append([simulator, "-", "-", f"not run: {error}"])
            continue
        cycles_per_second, mismatches = cocotb_speed(simulator)
        rows.append([simulator, ArrayConfig().name, f"{cycles_per_second:,.0f}", mismatches])
    print("cocotb testbench speed, 20,000 vectors:")
    print(format_table(["simulator", "config", "cycles/s", "mismatches"], rows))
    print()
    boards_bench.run()
    print()
    sw_bench.run()
    return 0


def register(subparsers):
    jobs = min(2, os.cpu_count() or 1)
    sim = subparsers.add_parser("sim", help="run the array testbenches and print their table")
    sim.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    sim.add_argument("--jobs", type=int, default=jobs, help="simulations run in parallel")
    sim.set_defaults(run=run_sim)
    bench = subparsers.add_parser("bench", help="print speed and size figures")
    bench.set_defaults(run=run_bench)
