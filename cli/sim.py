"""``systolix sim`` and ``systolix sim-arrays``: a model on the simulated accelerator, and the
array testbenches."""

import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from systolix.config import DEFAULT_CONFIG, ArrayConfig, code_range
from systolix.memory_map import MemoryConfig
from systolix.sim.golden import run_program
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.runner import SIMULATORS, simulator_environment
from systolix.sim.testbench.suite import (ARRAY_CONFIGS, DSP4_ARRAY_CONFIGS,
                                          DSP_ARRAY_CONFIGS, SERIAL_ARRAY_CONFIGS,
                                          run_array_suite)
from systolix.sim.transport import SimulationTransport
from systolix.sw.default import (VIT_WORKLOADS, WORKLOAD_CONFIGS, WORKLOAD_MEMORIES, WORKLOADS,
                                 default_program, reference_accuracy)
from systolix.sw.driver import Device
from systolix.sw.models import accuracy
from systolix.sw.pack import ideal_cycles, layer_tiles, pack
from systolix.sw.program import (AddLayer, GeluLayer, IntegerLayer, IntegerProgram,
                                 LayerNormLayer, MatMulLayer, MaxPoolLayer, SoftmaxLayer)

from systolix.boards.tops import board as board_named

from .options import add_model_source, integer, print_verdict, probability
from .table import format_table

__all__ = ["register", "array_utilisation", "window_utilisation", "test_codes"]


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


def run_sim_arrays(args):
    simulator_environment(args.simulator)
    configs = ARRAY_CONFIGS + DSP_ARRAY_CONFIGS + DSP4_ARRAY_CONFIGS + SERIAL_ARRAY_CONFIGS
    print(f"systolix sim: {len(configs)} array configurations on {args.simulator}, "
          f"{args.jobs} at a time; every result is checked bit-exactly against the golden model "
          f"and every stream transfer against the cycle model", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        reports = list(pool.map(_run_suite, configs, [args.simulator] * len(configs)))
    rows = [_suite_row(config, report) for config, report in zip(configs, reports)]
    print(format_table(["config", "vectors", "overflows", "mismatches", "cycle mismatches",
                        "latency measured / modelled", "sim cycles/s"], rows))
    failed = sum(row[3] + row[4] for row in rows)
    print(f"{'FAIL' if failed else 'OK'}: {sum(row[1] for row in rows)} vectors, "
          f"{failed} mismatches, {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def _describe_layers(program):
    kinds = {MaxPoolLayer: "maxpool ", AddLayer: "add ", GeluLayer: "gelu ",
             SoftmaxLayer: "softmax ", LayerNormLayer: "layernorm ", MatMulLayer: "matmul "}
    return ", ".join(f"{kinds[type(layer)]}A{layer.input_bits}" if type(layer) in kinds
                     else f"W{layer.weight_bits}A{layer.input_bits}" for layer in program.layers)


def array_utilisation(program, config, layer_cycles, images, select):
    """The MAC utilisation of each layer of ``program`` on an array of ``config`` for which
    ``select(layer)`` is true: ``(index, ideal, cycles)``, ``ideal`` the cycles of its tiles at
    full rate (every K and N tile of every output position of ``images`` inputs), ``cycles``
    the layer's cycles summed over ``layer_cycles`` (one tuple per run, as
    :attr:`~systolix.sim.golden.engine.EngineCycles.layers`)."""
    return [(index, tiles.k_tiles * tiles.n_tiles * tiles.positions * images,
             sum(cycles[index] for cycles in layer_cycles))
            for index, (layer, tiles) in enumerate(zip(program.layers,
                                                       layer_tiles(program, config)))
            if select(layer)]


def window_utilisation(program, config, layer_cycles, images):
    """:func:`array_utilisation` of the array layers with a window (convolution or average
    pooling)."""
    return array_utilisation(program, config, layer_cycles, images,
                             lambda layer: isinstance(layer, IntegerLayer)
                             and layer.window is not None)


def _window_rows(program, config, layer_cycles, images):
    """Per convolution or pooling layer: its MAC utilisation, ideal over measured cycles."""
    rows = []
    for index, ideal, measured in window_utilisation(program, config, layer_cycles, images):
        layer = program.layers[index]
        window = layer.window
        rows.append([f"layer {index} utilisation",
                     f"{100 * ideal / measured:.0f} % ({window.kernel_height}x"
                     f"{window.kernel_width}/{window.stride_height} window, "
                     f"{window.positions} position{'s' if window.positions > 1 else ''}, "
                     f"K={layer.weights.shape[0]}, "
                     f"N={layer.weights.shape[1]}: {ideal / images:.0f} ideal, "
                     f"{measured / images:.1f} measured cycles an image)"])
    return rows


def _matmul_rows(program, config, layer_cycles, images):
    """Per matmul layer (attention's products): its MAC utilisation, ideal over measured
    cycles."""
    rows = []
    for index, ideal, measured in array_utilisation(
            program, config, layer_cycles, images,
            lambda layer: isinstance(layer, MatMulLayer)):
        layer = program.layers[index]
        product = "Q K^T" if layer.transpose else "S V"
        rows.append([f"layer {index} utilisation",
                     f"{100 * ideal / measured:.0f} % ({product}: {layer.groups} heads of "
                     f"{layer.rows} x {layer.inner} by {layer.inner} x {layer.cols}: "
                     f"{ideal / images:.0f} ideal, {measured / images:.1f} measured cycles an "
                     f"image)"])
    return rows


def test_codes(program, data, images=None):
    """The input codes a model runs on and their labels: the digits test set (``data``) when
    ``program`` takes a digits image and gives 10 scores, else 128 random input codes (seeded)
    and no labels (``None``); the first ``images`` of them when given."""
    if program.inputs == data.x_test.shape[1] and program.outputs == 10:
        codes, labels = program.encode_input(data.x_test), data.y_test
    else:
        first = program.layers[0]
        low, high = code_range(first.input_bits, first.input_signed)
        codes = np.random.default_rng(0).integers(low, high, (images or 128, program.inputs),
                                                  endpoint=True)
        labels = None
    if images:
        codes = codes[:images]
        labels = None if labels is None else labels[:images]
    return codes, labels


def run_sim(args):
    """``systolix sim``: a model on the simulated accelerator, end to end through the driver."""
    workload = args.workload or "digits-mlp"
    board = board_named(args.board) if args.board else None
    config = board.config if board else (ArrayConfig.from_name(args.config) if args.config
                                         else WORKLOAD_CONFIGS.get(workload, DEFAULT_CONFIG))
    loaded = None if args.model is None else IntegerProgram.load(args.model)
    simulator_environment(args.simulator)
    try:
        default, data, float_accuracy = default_program(config, workload)
    except ValueError as error:
        option = f"--board {args.board}" if board else f"--config {config.name}"
        raise ValueError(f"{option}: cannot quantize --workload {workload} for it: "
                         f"{error}") from None
    if loaded is None:
        program = default
        name = (f"{WORKLOADS[workload]} (A2Q+)" if workload in WORKLOADS
                else VIT_WORKLOADS[workload])
        memories = WORKLOAD_MEMORIES[workload]
        reference = reference_accuracy(workload)
    else:
        program, name, float_accuracy, reference = loaded, str(args.model), None, None
        memories = MemoryConfig()
    memories = board.memories if board else memories
    accelerator = f"the {board.name}'s {config.name}" if board else f"the {config.name}"
    codes, labels = test_codes(program, data, args.images)
    try:
        images = pack(program, config, memories)
    except ValueError as error:
        option = f"--model {args.model}" if loaded is not None else f"--workload {workload}"
        raise ValueError(f"{option}: does not fit {accelerator} accelerator: {error}") \
            from None
    upload = "uploads the weights in LOAD frames, then " if memories.upload_weights else ""
    print(f"systolix sim: {name} on {accelerator} accelerator ({args.simulator}), "
          f"{len(codes)} images; the driver {upload}sends RUN frames through the host link with "
          f"random stalls; outputs checked bit-exactly against sim.golden, cycles against the "
          f"cycle model", flush=True)
    started = time.perf_counter()
    with SimulationTransport(config, images, simulator=args.simulator, stall=args.stall) \
            as transport:
        device = Device(transport, program, config, memories)
        result = device.run(codes)
    wall = time.perf_counter() - started
    report = transport.report
    batches = [min(device.max_batch, len(codes) - start)
               for start in range(0, len(codes), device.max_batch)]
    model_cycles = [engine_cycles(config, images, batch) for batch in batches]
    layer_cycles = [cycles.layers for cycles in model_cycles]
    modelled = [cycles.compute for cycles in model_cycles]
    golden = run_program(program, codes)
    mismatches = int(np.count_nonzero(result.outputs != golden))
    cycle_mismatches = sum(a != b for a, b in zip(result.cycles, modelled))
    ideal = ideal_cycles(program, config)
    measured = sum(result.cycles) / len(codes)
    rows = [
        ["model", name],
        ["array", config.name],
        ["bits per layer", _describe_layers(program)],
        ["accumulator width", f"{config.accumulator_bits} bits ({config.overflow})"],
        ["images", f"{len(codes)} in {len(batches)} RUN frames of at most {device.max_batch}"],
        ["mismatches", f"{mismatches} codes, {cycle_mismatches} cycle counts"],
    ]
    if memories.upload_weights:
        frames = f"{device.load_frames} LOAD frame{'s' if device.load_frames > 1 else ''}"
        rows.insert(4, ["weights", f"{len(images.weights):,} words uploaded in {frames} (the "
                                   f"weight memory is loaded at run time)"])
    if labels is not None:
        accuracies = [f"float {100 * float_accuracy:.1f} %" if float_accuracy else None,
                      f"dequantize-first {100 * reference:.1f} %" if reference else None,
                      f"golden {100 * accuracy(golden.argmax(1), labels):.1f} %",
                      f"hardware {100 * accuracy(result.outputs.argmax(1), labels):.1f} %"]
        rows.append(["accuracy", ", ".join(a for a in accuracies if a)])
    rows += [
        ["cycles per inference", f"{measured:.1f} measured, {sum(modelled) / len(codes):.1f} "
                                 f"modelled, {ideal} ideal ({measured / ideal:.2f}x ideal)"],
        ["MAC utilisation", f"{100 * ideal / measured:.0f} % of {config.rows * config.cols} "
                            + ("bit-serial cells (a MAC in as many cycles as its layer's "
                               "input bits)" if config.pe == "serial" else "MACs a cycle")],
        *sorted(_window_rows(program, config, layer_cycles, len(codes))
                + _matmul_rows(program, config, layer_cycles, len(codes)),
                key=lambda row: int(row[0].split()[1])),
        ["host link", f"{report['frames']} frames, {report['cycles']:,} cycles in all "
                      f"({report['cycles'] / len(codes):.0f} a vector, bytes included)"],
        ["wall time", f"{wall:.0f} s ({report['build_seconds']:.0f} s Verilog and simulator "
                      f"build, {report['run_seconds']:.0f} s simulation)"],
    ]
    return print_verdict(rows, mismatches, cycle_mismatches)


def register(subparsers):
    jobs = min(2, os.cpu_count() or 1)
    sim = subparsers.add_parser("sim", help="run a model on the simulated accelerator")
    sim.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    add_model_source(sim, "the array", tuple(WORKLOADS) + tuple(VIT_WORKLOADS))
    array = sim.add_mutually_exclusive_group()
    array.add_argument("--config", help="the array, for example 8x8-W4s-A4u-P12-wrap "
                       f"(default: {DEFAULT_CONFIG.name}; "
                       + "; ".join(f"{config.name} for {workload}"
                                   for workload, config in WORKLOAD_CONFIGS.items()) + ")")
    array.add_argument("--board", help="the array and memories of this board's accelerator, "
                       "for example icebreaker (weights in SPRAM: uploaded before the runs)")
    sim.add_argument("--images", type=integer(1),
                     help="run only the first IMAGES test images (1 or more)")
    sim.add_argument("--stall", type=probability, default=0.2,
                     help="probability of a host stall on each stream and cycle, 0 <= p < 1 "
                          "(default 0.2)")
    sim.set_defaults(run=run_sim)
    arrays = subparsers.add_parser("sim-arrays", help="run the array testbenches and print "
                                   "their table")
    arrays.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    arrays.add_argument("--jobs", type=integer(1), default=jobs,
                        help="simulations run in parallel (1 or more)")
    arrays.set_defaults(run=run_sim_arrays)
