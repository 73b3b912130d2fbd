"""The ``systolix quantize`` subcommand: quantize and lower a model; optionally, the report.

Writes ``model.npz`` (the :class:`~systolix.sw.qmodel.QuantizedModel`) and ``program.npz`` (the
:class:`~systolix.sw.program.IntegerProgram`) into ``--out``, which other commands take as
``MODEL=path``, and prints each layer's widths and data-free minimal accumulator width and the
digits test accuracy of the float model, the quantized model and the integer program. The
weights are rounded after training (``--rounding``: each on its own, or ``axe``, with error
feedback, :mod:`systolix.sw.axe`) or fine-tuned for the accumulator bound (``--finetune``,
:mod:`systolix.sw.finetune`). With ``--report`` it also writes ``report.md`` and
``accuracy.png`` (:mod:`systolix.sw.report`).
"""

from pathlib import Path

from systolix.files import check_output_folder, output_folder

from systolix.sw.a2q import METHODS, min_accumulator_bits
from systolix.sw.default import WORKLOAD_OPTIONS, WORKLOADS, workload_model
from systolix.sw.lower import lower
from systolix.sw.finetune import EPOCHS, finetune
from systolix.sw.mixed import search
from systolix.sw.models import Conv2d, Dense, FloatModel, MaxPool2d, accuracy, digits_mlp, \
    digits_split
from systolix.sw.qmodel import WEIGHT_ROUNDINGS, quantize
from systolix.sw.report import program_accuracy, sweep, write_report

from .options import integer, number

__all__ = ["register"]


def register(subparsers):
    """Add the ``quantize`` subcommand to an :mod:`argparse` subparsers object."""
    parser = subparsers.add_parser(
        "quantize", help="quantize and lower a model to an integer program",
        description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--float-model", type=Path, metavar="PATH",
                        help="a FloatModel .npz with 64 inputs (default: the digits MLP)")
    source.add_argument("--workload", choices=WORKLOADS,
                        help="an embedded float model: digits-mlp (the default) or digits-cnn "
                             "(the shipped CNN, quantized with max clipping, the quantizers of "
                             "its fine-tuning)")
    parser.add_argument("--seed", type=integer(0, 2 ** 32 - 1), default=0,
                        help="seed of the digits split and of the MLP's training (default: 0)")
    parser.add_argument("--weight-bits", type=int, default=4, help="2..8 (default: 4)")
    parser.add_argument("--activation-bits", type=int, default=4, help="1..8 (default: 4)")
    parser.add_argument("--output-bits", type=int, default=8,
                        help="signed output codes of the last layer, 2..8 (default: 8)")
    parser.add_argument("--accumulator-bits", type=int, default=16,
                        help="accumulator width P, 2..32 (default: 16)")
    parser.add_argument("--method", default="a2q+", choices=METHODS,
                        help="weight constraint for P (default: a2q+)")
    parser.add_argument("--rounding", default="nearest", choices=WEIGHT_ROUNDINGS,
                        help="how weights are rounded: nearest, zero (toward zero) or axe (row "
                             "by row with error feedback from the training images, within the "
                             "accumulator bound; default: nearest)")
    parser.add_argument("--finetune", type=integer(1, 1000), metavar="EPOCHS",
                        const=EPOCHS, nargs="?",
                        help=f"A2Q+ quantization-aware fine-tuning of the model for "
                             f"EPOCHS epochs, 1..1000 (default when given without a value: "
                             f"{EPOCHS}), seeded by --seed; needs --method a2q+")
    parser.add_argument("--overflow", default="wrap", choices=("wrap", "saturate"),
                        help="accumulator overflow mode (default: wrap)")
    parser.add_argument("--pow2", action="store_true",
                        help="power-of-two scales (dynamic fixed point)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument("--mixed-sqnr", type=number(), metavar="DB",
                        help="mixed precision: least combined SQNR of every layer")
    target.add_argument("--mixed-drop", type=number(0, 1, low_open=False), metavar="FRACTION",
                        help="mixed precision: most training accuracy lost, 0..1 (0.01 = 1 "
                             "point)")
    parser.add_argument("--budget", type=integer(1), metavar="BITS",
                        help="mixed precision: most weight memory in bits")
    parser.add_argument("--out", type=Path, default=Path("build/quantize"),
                        help="output folder: new, empty or an earlier quantize's (default: "
                             "build/quantize)")
    parser.add_argument("--report", action="store_true",
                        help="also sweep P from 8 to 20 and write report.md and accuracy.png")
    parser.set_defaults(run=run_quantize)


def run_quantize(args):
    """Carry out ``systolix quantize``; returns the exit status."""
    check_output_folder(args.out, "quantize")
    if args.workload == "digits-cnn":
        if args.seed:
            raise ValueError("--seed: the digits-cnn workload is trained once, with seed 0; "
                             "allowed: 0 (or leave it out)")
        model, data = workload_model(args.workload)
    elif args.float_model is None:
        model, data = digits_mlp(args.seed)
    else:
        model, data = FloatModel.load(args.float_model), digits_split(args.seed)
        if model.inputs != data.x_train.shape[1]:
            raise ValueError(f"--float-model {args.float_model}: has {model.inputs} inputs; "
                             f"allowed: {data.x_train.shape[1]} (the digits images)")
    if args.finetune is not None:
        _check_finetune(args)
    options = dict(accumulator_bits=args.accumulator_bits, method=args.method,
                   overflow=args.overflow, output_bits=args.output_bits, pow2=args.pow2,
                   rounding=args.rounding,
                   **WORKLOAD_OPTIONS.get(args.workload, {}))
    weight_bits, activation_bits, mixed = args.weight_bits, args.activation_bits, None
    if args.mixed_sqnr is not None or args.mixed_drop is not None:
        mixed = search(model, data.x_train, args.mixed_sqnr, args.mixed_drop,
                       (data.x_train, data.y_train), args.budget, **options)
        weight_bits = activation_bits = mixed.widths
        print(mixed.table())
    elif args.budget is not None:
        raise ValueError("--budget needs a mixed-precision target: --mixed-sqnr or --mixed-drop")
    if args.finetune is None:
        quantized = quantize(model, data.x_train, weight_bits, activation_bits, **options)
    else:
        options = {name: options[name] for name in options if name not in ("method", "rounding")}
        quantized = finetune(model, data.x_train, data.y_train, weight_bits, activation_bits,
                             epochs=args.finetune, seed=args.seed, **options)
    program = lower(quantized)
    with output_folder(args.out, "quantize") as folder:
        quantized.save(folder / "model.npz")
        program.save(folder / "program.npz")
        _print_figures(args, model, data, quantized, program)
        if args.report:
            result = sweep(model, data)
            print(result.markdown())
            write_report(folder, result, mixed)
    print(f"wrote {args.out / 'model.npz'} and {args.out / 'program.npz'}"
          + (f", {args.out / 'report.md'} and {args.out / 'accuracy.png'}" if args.report
             else ""))
    return 0


def _check_finetune(args):
    """Refuse the options that ``--finetune`` cannot honour, naming them."""
    if args.method != "a2q+":
        raise ValueError(f"--finetune: trains A2Q+ weights; allowed with --method a2q+ (the "
                         f"default), not {args.method}")
    if args.rounding != "nearest":
        raise ValueError(f"--finetune: trains the weights; --rounding {args.rounding} is a "
                         f"post-training rounding (leave it out)")
    if args.pow2:
        raise ValueError("--finetune: learns one scale per channel; --pow2 is a post-training "
                         "option (leave it out)")


def _describe(float_layer, layer):
    """The kind and GEMM of a layer: ``dense 64x64``, ``conv 3x3/2 8x8x16 -> 4x4x32 (K=144,
    N=32)``, ``GlobalAvgPool 4x4x32 -> 1x1x32``."""
    inputs, outputs = layer.weight_codes.shape
    if isinstance(float_layer, Dense):
        return f"dense {inputs}x{outputs}"
    window = layer.window
    maps = (f"{window.height}x{window.width}x{window.channels} -> {window.output_height}x"
            f"{window.output_width}x{outputs}")
    if isinstance(float_layer, Conv2d):
        groups = f", {window.groups} groups" if window.groups > 1 else ""
        return (f"conv {window.kernel_height}x{window.kernel_width}/{window.stride_height} "
                f"{maps} (K={inputs}, N={outputs}{groups})")
    return f"{type(float_layer).__name__} {maps}"


def _print_figures(args, model, data, quantized, program):
    for index, (float_layer, layer) in enumerate(zip(model.layers, quantized.layers)):
        if isinstance(float_layer, MaxPool2d):
            window = layer.window
            print(f"layer {index}: MaxPool2d {window.height}x{window.width}x{window.channels} -> "
                  f"{window.output_height}x{window.output_width}x{window.channels}, "
                  f"A{layer.input.bits}{'s' if layer.input.signed else 'u'}, no accumulator")
            continue
        inputs, outputs = layer.weight_codes.shape
        safe = min_accumulator_bits(layer.weight_codes, layer.input.bits, layer.input.signed)
        print(f"layer {index}: {_describe(float_layer, layer)}, W{layer.weight_bits} "
              f"A{layer.input.bits}{'s' if layer.input.signed else 'u'}, needs P >= {safe} "
              f"(data-free), runs at P = {quantized.accumulator_bits}")
    float_accuracy = accuracy(model.predict(data.x_test), data.y_test)
    reference = accuracy(quantized.predict(data.x_test), data.y_test)
    integer_accuracy = program_accuracy(program, data.x_test, data.y_test)
    print(f"digits test accuracy: float {100 * float_accuracy:.1f} %, quantized "
          f"{100 * reference:.1f} %, integer program ({args.method}, P = "
          f"{args.accumulator_bits}, {args.overflow}"
          f"{'' if args.rounding == 'nearest' else f', {args.rounding} rounding'}"
          f"{'' if args.finetune is None else f', fine-tuned {args.finetune} epochs'}) "
          f"{100 * integer_accuracy:.1f} %")
