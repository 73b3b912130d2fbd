"""``systolix bench`` (``make bench``): speed and size figures, each a ratio measured in the same
run as its reference.

The golden model's MAC/s against a float64 numpy matmul, the cocotb testbench's simulated cycles
per second, the board figures of :func:`systolix.boards.bench.run`, the compiler's timings
and accuracies (:func:`compiler_figures`), the digits CNN's (:func:`cnn_figures`) and the digits
ViT's (:func:`vit_figures`: integer-only against float and dequantize-first;
:func:`vit_engine_figures`: its cycles on the engine).
"""

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from systolix.boards import bench as boards_bench
from systolix.config import DEFAULT_CONFIG, ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.layer import MatMulLayer
from systolix.sim.golden import accumulate
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.runner import SIMULATORS, run_cocotb, simulator_environment
from systolix.sim.testbench.scenarios import scenario
from systolix.sw.a2q import min_accumulator_bits, min_feasible_accumulator_bits
from systolix.sw.default import (WORKLOAD_CONFIGS, WORKLOAD_MEMORIES, WORKLOAD_OPTIONS,
                                 default_program)
from systolix.sw.finetune import finetune
from systolix.sw.lower import lower
from systolix.sw.mixed import search
from systolix.sim.golden.nonlinear import error_table
from systolix.sw.models import accuracy, digits_cnn, digits_mlp, digits_split, digits_vit
from systolix.sw.pack import ideal_cycles, pack
from systolix.sw.qmodel import quantize
from systolix.sw.report import BREVITAS, BREVITAS_BITS, TRAINING_SEEDS, program_accuracy, sweep
from systolix.sw.vit import vit_accuracies

from .sim import array_utilisation, window_utilisation
from .table import format_table
from .train import DESCRIPTIONS, train_schemes

__all__ = ["best_time", "golden_speed", "cocotb_speed", "compiler_figures",
           "accumulator_aware_figures", "cnn_figures", "qcdq_mlp", "import_figures",
           "training_figures", "vit_figures", "vit_engine_figures", "register"]


def best_time(function, repeats=3):
    """The shortest of ``repeats`` wall-clock times of ``function()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)




def compiler_figures(echo=print):
    """Time the compiler and measure accuracies; print them with ``echo`` and return them.

    Returns
    -------
    dict
        ``train_s`` (training the float MLP), ``quantize_lower_s`` (W4/A4, A2Q+ at P=12,
        quantize and lower), ``mixed_search_s`` (accuracy-drop target of one point),
        ``sweep_s``, ``float_accuracy``, ``a2q_plus_p12_accuracy`` (W4/A4) and ``sweep`` (the
        :class:`~systolix.sw.report.Sweep`).
    """
    start = time.perf_counter()
    model, data = digits_mlp()
    train = time.perf_counter() - start
    figures = {"train_s": train}

    def compile_program():
        return lower(quantize(model, data.x_train, 4, 4, 12, "a2q+"))

    figures["quantize_lower_s"] = best_time(compile_program)
    figures["mixed_search_s"] = best_time(lambda: search(
        model, data.x_train, max_accuracy_drop=0.01, validation=(data.x_train, data.y_train)))
    start = time.perf_counter()
    result = sweep(model, data)
    figures["sweep_s"] = time.perf_counter() - start
    figures["float_accuracy"] = result.float_accuracy
    figures["a2q_plus_p12_accuracy"] = program_accuracy(compile_program(), data.x_test,
                                                        data.y_test)
    figures["sweep"] = result
    echo(f"digits MLP: training {train:.2f} s, quantize + lower (W4/A4, A2Q+, P=12) "
         f"{figures['quantize_lower_s']:.3f} s, mixed-precision search "
         f"{figures['mixed_search_s']:.2f} s, accuracy sweep {figures['sweep_s']:.1f} s")
    echo(f"W4/A4 A2Q+ at P=12: {100 * figures['a2q_plus_p12_accuracy']:.1f} % "
         f"(float {100 * result.float_accuracy:.1f} %)")
    echo(result.markdown())
    return figures


def accumulator_aware_figures(echo=print, seeds=TRAINING_SEEDS, epochs=None):
    """The digits MLP at W4/A4 and ``P = 8..12`` against Brevitas' trainings (issue 17,
    :data:`~systolix.sw.report.BREVITAS`): A2Q+ fine-tuning (the mean of ``seeds``) against the
    best Brevitas figure at every ``P`` (target: at or above), the best post-training method
    (projection or AXE-style rounding) against it from ``P = 9`` (target: within 1 point), and
    the post-training quantization time of each (target: under 10 s); printed with ``echo``.

    Returns
    -------
    dict
        ``brevitas``, ``training``, ``projection``, ``axe`` (``P`` to accuracy), ``best_ptq``
        (``P`` to ``(method, accuracy)``), ``ptq_s`` (method to seconds), ``training_s`` (seconds
        of one fine-tuning run).
    """
    model, data = digits_mlp()
    options = {} if epochs is None else {"epochs": epochs}
    figures = {"brevitas": {}, "training": {}, "projection": {}, "axe": {}, "best_ptq": {},
               "ptq_s": {}}
    for rounding, name in (("nearest", "projection"), ("axe", "axe")):
        figures["ptq_s"][name] = best_time(lambda: lower(quantize(
            model, data.x_train, 4, 4, 9, "a2q+", rounding=rounding)))
    training_s = []

    def tuned(bits, seed):
        start = time.perf_counter()
        quantized = finetune(model, data.x_train, data.y_train, 4, 4, bits, seed=seed, **options)
        training_s.append(time.perf_counter() - start)
        return quantized

    for index, bits in enumerate(BREVITAS_BITS):
        figures["brevitas"][bits] = max(row[index] for row in BREVITAS.values())
        for rounding, name in (("nearest", "projection"), ("axe", "axe")):
            figures[name][bits] = program_accuracy(lower(quantize(
                model, data.x_train, 4, 4, bits, "a2q+", rounding=rounding)), data.x_test,
                data.y_test)
        figures["best_ptq"][bits] = max((figures[name][bits], name)
                                        for name in ("projection", "axe"))[::-1]
        figures["training"][bits] = float(np.mean([program_accuracy(
            lower(tuned(bits, seed)), data.x_test, data.y_test) for seed in seeds]))
    figures["training_s"] = float(np.mean(training_s))

    def percent(value):
        return f"{100 * value:.1f}"

    rows = []
    for bits in BREVITAS_BITS:
        best, training = figures["brevitas"][bits], figures["training"][bits]
        method, ptq = figures["best_ptq"][bits]
        ptq_gap = 100 * (ptq - best)
        rows.append([bits, percent(best), percent(training), f"{100 * (training - best):+.1f}",
                     "met" if training >= best else "MISSED",
                     f"{percent(ptq)} ({method})", f"{ptq_gap:+.1f}",
                     "-" if bits < 9 else "met" if ptq_gap >= -1 else "MISSED"])
    echo(f"Digits MLP, W4/A4, A2Q+ against Brevitas' best training (training: mean of seeds "
         f"{', '.join(map(str, seeds))}, {figures['training_s']:.1f} s a run):")
    echo(format_table(["P", "Brevitas best %", "training %", "gap", ">= Brevitas",
                       "best post-training %", "gap", "within 1 point (P >= 9)"], rows))
    echo(f"post-training quantization + lowering of the MLP (W4/A4, P = 9): projection "
         f"{figures['ptq_s']['projection']:.3f} s, AXE-style {figures['ptq_s']['axe']:.3f} s "
         f"(target: < 10 s)")
    return figures


def qcdq_mlp(path, sizes=(256, 256, 128, 64, 10), seed=0):
    """Write a QCDQ MLP of ``sizes`` to ``path``: 4-bit unsigned activations, 4-bit weights
    stored as int8 with power-of-two per-channel scales, int32 biases, ReLU; returns its number
    of weights (107,136 for the default sizes)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, constants, x = [], {}, "x"

    def const(name, value):
        constants[name] = np.asarray(value)
        return name

    def quantize(x, index, scale):
        names = [const(f"s{index}", np.float32(scale)), const(f"z{index}", np.uint8(0))]
        nodes.append(helper.make_node("QuantizeLinear", [x, *names], [f"q{index}"]))
        nodes.append(helper.make_node("Clip", [f"q{index}", const("lo", np.uint8(0)),
                                               const("hi", np.uint8(15))], [f"c{index}"]))
        nodes.append(helper.make_node("DequantizeLinear", [f"c{index}", *names], [f"d{index}"]))
        return f"d{index}"

    x = quantize(x, 0, 2.0 ** -3)
    for index, (inputs, outputs) in enumerate(zip(sizes, sizes[1:]), start=1):
        scales = 2.0 ** -rng.integers(4, 7, size=outputs)
        weights = const(f"w{index}", rng.integers(-7, 7, size=(inputs, outputs),
                                                  endpoint=True).astype(np.int8))
        bias = const(f"b{index}", rng.integers(-64, 64, size=outputs).astype(np.int32))
        nodes += [helper.make_node("DequantizeLinear", [weights, const(f"ws{index}", scales
                                                                       .astype(np.float32)),
                                                        const(f"wz{index}", np.zeros(
                                                            outputs, np.int8))],
                                   [f"wd{index}"], axis=1),
                  helper.make_node("DequantizeLinear", [bias, const(
                      f"bs{index}", (scales * 2.0 ** -3).astype(np.float32)),
                      const(f"bz{index}", np.zeros(outputs, np.int32))], [f"bd{index}"], axis=0),
                  helper.make_node("MatMul", [x, f"wd{index}"], [f"m{index}"],
                                   name=f"dense{index}"),
                  helper.make_node("Add", [f"m{index}", f"bd{index}"], [f"a{index}"]),
                  helper.make_node("Relu", [f"a{index}"], [f"r{index}"])]
        x = quantize(f"r{index}", index, 2.0 ** -3)
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", sizes[0]])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, name) for name, value in constants.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return sum(a * b for a, b in zip(sizes, sizes[1:]))


def import_figures(echo=print):
    """Time ``systolix import``'s work (read, fold, check the accumulators, save) on a QCDQ MLP
    of about 100k weights; print it with ``echo`` and return ``{"weights", "import_s"}``
    (target: under 5 s)."""
    from systolix.sw.integerize import check_accumulators
    from systolix.sw.onnx_import import import_onnx

    with tempfile.TemporaryDirectory(prefix="systolix-bench-") as folder:
        path = Path(folder) / "mlp.onnx"
        weights = qcdq_mlp(path)

        def run():
            imported = check_accumulators(import_onnx(path), 16, widen=True)
            imported.program.save(Path(folder) / "program.npz")

        seconds = best_time(run)
    echo(format_table(["model", "weights", "import s", "target"],
                      [["QCDQ MLP 256-256-128-64-10", f"{weights:,}", f"{seconds:.2f}",
                        "< 5 s"]]))
    return {"weights": weights, "import_s": seconds}


def cnn_figures(echo=print, config=DEFAULT_CONFIG, batch=16):
    """The digits CNN at W4/A4: accuracy against the accumulator width, and the MAC utilisation
    of its convolution and pooling layers on the engine of ``config`` (``batch`` images a run,
    the workload's memories); print them with ``echo`` and return them. Quantized with the
    workload's options (the quantizers of its fine-tuning,
    :data:`~systolix.sw.default.WORKLOAD_OPTIONS`).

    Target: A2Q+ at its minimal ``P`` (the smallest at which the integer program stays within
    one point of the float model, searched from the smallest ``P`` A2Q+ admits up to the
    data-free width that plain rounding needs) within one point of the float accuracy; every
    convolution at 80 % MAC utilisation or more (ideal cycles, its tiles at full rate for every
    output position, over the layer's cycles in the exact cycle model, which ``make sim
    WORKLOAD=digits-cnn`` checks against the hardware's).

    Returns
    -------
    dict
        ``float_accuracy``, ``accuracy`` (``P`` to the A2Q+ program's accuracy, ``None`` where it
        admits no weight), ``plain_bits`` (the data-free width of plain rounding),
        ``plain_accuracy``, ``minimal_bits`` (``None`` if no ``P`` is within one point) and
        ``utilisation`` (layer index to the fraction, for the layers with a window).
    """
    model, data = digits_cnn()
    float_accuracy = accuracy(model.predict(data.x_test), data.y_test)
    options = WORKLOAD_OPTIONS["digits-cnn"]
    plain = quantize(model, data.x_train, 4, 4, 32, "none", **options)
    plain_bits = max(min_accumulator_bits(layer.weight_codes, layer.input.bits,
                                          layer.input.signed) for layer in plain.layers)
    figures = {"float_accuracy": float_accuracy, "plain_bits": plain_bits, "accuracy": {},
               "plain_accuracy": program_accuracy(lower(plain), data.x_test, data.y_test),
               "minimal_bits": None}
    for bits in range(min_feasible_accumulator_bits("a2q+", 4, False), plain_bits + 1):
        try:
            quantized = quantize(model, data.x_train, 4, 4, bits, "a2q+", **options)
        except ValueError:          # a pooling layer needs more bits
            figures["accuracy"][bits] = None
            continue
        value = program_accuracy(lower(quantized), data.x_test, data.y_test)
        figures["accuracy"][bits] = value
        if figures["minimal_bits"] is None and float_accuracy - value <= 0.01:
            figures["minimal_bits"] = bits
    cells = ("-" if value is None else f"{100 * value:.1f}"
             for value in figures["accuracy"].values())
    echo(format_table(["W4/A4 A2Q+", *(f"P={bits}" for bits in figures["accuracy"])],
                      [["digits CNN, %", *cells]]))
    minimal = figures["minimal_bits"]
    echo(f"digits CNN: float {100 * float_accuracy:.1f} %, plain rounding "
         f"{100 * figures['plain_accuracy']:.1f} % at its data-free P = {plain_bits}; A2Q+ at its "
         + ("minimal P: none within one point of the float accuracy (target missed)"
            if minimal is None else
            f"minimal P = {minimal}: {100 * figures['accuracy'][minimal]:.1f} % (target: within "
            f"1 point of float: met)"))
    program = default_program(config, "digits-cnn")[0]
    images = pack(program, config, WORKLOAD_MEMORIES["digits-cnn"])
    cycles = engine_cycles(config, images, batch).layers
    figures["utilisation"] = {}
    rows = []
    for index, ideal, measured in window_utilisation(program, config, [cycles], batch):
        layer = program.layers[index]
        figures["utilisation"][index] = ideal / measured
        rows.append([index, f"{layer.window.kernel_height}x{layer.window.kernel_width}/"
                            f"{layer.window.stride_height}", layer.window.positions,
                     f"{layer.weights.shape[0]}x{layer.weights.shape[1]}", ideal, measured,
                     f"{100 * ideal / measured:.0f} %"])
    echo(f"digits CNN on the {config.name} engine, {batch} images a run (target: 80 % or more "
         f"for each convolution):")
    echo(format_table(["layer", "window", "positions", "K x N", "ideal cycles", "cycles",
                       "MAC utilisation"], rows))
    return figures


def training_figures(echo=print, epochs=30, seeds=(0, 1, 2), network="mlp"):
    """Integer training (``systolix train``) of ``network`` (``"mlp"`` or ``"cnn"``): the final
    test accuracy of the float reference, WAGE 2-8-8-8 and DFP 10/12 after ``epochs`` epochs,
    averaged over ``seeds``, and the seconds per epoch; printed with ``echo``. The targets are
    the MLP's: WAGE within 3 points of float, DFP within 1. Returns ``{scheme: (accuracy,
    seconds)}``."""
    runs = [train_schemes(["float", "wage", "dfp"], digits_split(seed), epochs, seed, {},
                          report=None, network=network) for seed in seeds]
    figures = {scheme: (float(np.mean([run[scheme][1].accuracy[-1] for run in runs])),
                        float(np.mean([np.mean(run[scheme][1].seconds) for run in runs])))
               for scheme in ("float", "wage", "dfp")}
    reference = figures["float"][0]
    targets = {"wage": 3, "dfp": 1} if network == "mlp" else {}
    rows = []
    for scheme, widths in (("float", "float64"), ("wage", "2-8-8-8"),
                           ("dfp", "mult 10, update 12")):
        value, seconds = figures[scheme]
        gap = 100 * (reference - value)
        points = targets.get(scheme)
        rows.append([scheme, widths, f"{100 * value:.1f} %",
                     "-" if scheme == "float" else f"{gap:+.1f}",
                     "-" if points is None else f"<= {points} points",
                     "-" if points is None else ("met" if gap <= points else "MISSED"),
                     f"{seconds:.3f}"])
    echo(f"Integer training, {DESCRIPTIONS[network]}, {epochs} epochs, mean of seeds "
         f"{', '.join(map(str, seeds))}:")
    echo(format_table(["scheme", "widths", "test accuracy", "points below float", "target",
                       "", "s / epoch"], rows))
    return figures


def vit_figures(echo=print, settings=((4, 4), (3, 3), (2, 4), (8, 8))):
    """The digits ViT's test accuracies at each ``(weight bits, activation bits)`` of
    ``settings`` (float, dequantize before every matmul, integer-only golden model) and the
    errors of the integer nonlinearities; print them with ``echo`` and return the accuracies
    ``{(w, a): {"float": ..., "fake_quantized": ..., "integer": ...}}``."""
    model, data = digits_vit()
    results, rows = {}, []
    for weight_bits, activation_bits in settings:
        start = time.perf_counter()
        result = vit_accuracies(model, data, weight_bits, activation_bits)
        results[weight_bits, activation_bits] = result
        rows.append([f"W{weight_bits}/A{activation_bits}",
                     *(f"{100 * result[name]:.2f} %" for name in
                       ("float", "fake_quantized", "integer")),
                     f"{100 * (result['integer'] - result['float']):+.2f}",
                     f"{100 * (result['integer'] - result['fake_quantized']):+.2f}",
                     f"{time.perf_counter() - start:.1f} s"])
    echo(f"digits ViT ({len(data.y_test)} test images): float, dequantize before every matmul "
         f"(fake-quantized), integer-only golden model (operand reordering, integer softmax, "
         f"LayerNorm, GELU):")
    echo(format_table(["bits", "float", "dequantize-first", "integer-only", "int - float",
                       "int - dequantize-first", "quantize + lower + run"], rows))
    echo("integer nonlinearities against their float functions over the whole input code range:")
    echo(format_table(["function", "inputs", "max error", "mean error"],
                      [[name, inputs, f"{largest:.2e}", f"{mean:.2e}"]
                       for name, inputs, largest, mean in error_table()]))
    return results


def vit_engine_figures(echo=print, batch=16):
    """The digits ViT's program on the engine of its array
    (:data:`~systolix.sw.default.WORKLOAD_CONFIGS`, ``batch`` images a run, the workload's
    memories): cycles per image in the exact cycle model (which ``make sim
    WORKLOAD=digits-vit`` checks against the hardware's) against the ideal, and the MAC
    utilisation of each attention matmul (its tiles at full rate over its cycles); print them
    with ``echo`` and return ``{"cycles": per image, "ideal": per image, "utilisation": {layer
    index: fraction}}``."""
    config = WORKLOAD_CONFIGS["digits-vit"]
    program = default_program(config, "digits-vit")[0]
    images = pack(program, config, WORKLOAD_MEMORIES["digits-vit"])
    cycles = engine_cycles(config, images, batch)
    figures = {"cycles": cycles.compute / batch, "ideal": ideal_cycles(program, config),
               "utilisation": {}}
    rows = []
    for index, ideal, measured in array_utilisation(
            program, config, [cycles.layers], batch, lambda layer: isinstance(layer, MatMulLayer)):
        layer = program.layers[index]
        figures["utilisation"][index] = ideal / measured
        rows.append([index, "Q K^T" if layer.transpose else "softmax(.) V",
                     f"{layer.groups} x {layer.rows}x{layer.inner} @ {layer.inner}x{layer.cols}",
                     f"{ideal / batch:.1f}", f"{measured / batch:.1f}",
                     f"{100 * ideal / measured:.0f} %"])
    kinds = {}
    for layer, layer_cycles in zip(program.layers, cycles.layers):
        kinds[type(layer).__name__] = kinds.get(type(layer).__name__, 0) + layer_cycles
    echo(f"digits ViT on the {config.name} engine, {batch} images a run: "
         f"{figures['cycles']:,.1f} cycles an image ({figures['ideal']:,} ideal, "
         f"{100 * figures['ideal'] / figures['cycles']:.0f} % MAC utilisation; by layer kind: "
         + ", ".join(f"{kind} {total / batch:,.0f}" for kind, total in
                     sorted(kinds.items(), key=lambda item: -item[1]))
         + "); the attention matmuls:")
    echo(format_table(["layer", "product", "heads x a @ b", "ideal cycles an image",
                       "cycles an image", "MAC utilisation"], rows))
    return figures


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
    compiler_figures()
    print()
    accumulator_aware_figures()
    print()
    print("systolix import of a quantized ONNX model:")
    import_figures()
    print()
    cnn_figures()
    print()
    training_figures()
    print()
    training_figures(seeds=(0,), network="cnn")
    print()
    vit_figures()
    print()
    vit_engine_figures()
    return 0



def register(subparsers):
    """Add the ``bench`` subcommand to an :mod:`argparse` subparsers object."""
    bench = subparsers.add_parser("bench", help="print speed and size figures")
    bench.set_defaults(run=run_bench)

