"""The ``systolix train`` subcommand: integer training of the digits MLP or CNN (WAGE or dynamic
fixed point), every multiplication an integer GEMM of the array's golden model.

Prints every GEMM of a training step with its data-free accumulator width, a progress bar per
epoch (standard error), the test accuracy and seconds of every epoch; writes the trained
network as ``program.npz`` (an :class:`~systolix.sw.program.IntegerProgram`, checked on the
golden model against the trainer's own forward) into ``--out`` and the array that runs it
(``make sim MODEL=OUT/program.npz CONFIG=...``). With ``--report`` it also trains the float
reference and the other scheme and writes ``report.md`` and ``accuracy.png`` (test accuracy per
epoch of float, WAGE and DFP).
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from systolix.files import atomic_write, output_folder, png_figure
from systolix.sim.golden import run_program
from systolix.sw.dfp import MULT_BITS, UPDATE_BITS, DfpMLP, dfp_rate
from systolix.sw.models import digits_split
from systolix.sw.train import NETWORKS, FloatMLP, array_config_for, describe_gemms, train
from systolix.sw.wage import DEFAULT_BITS, WageMLP, parse_bits

from .options import integer

__all__ = ["register", "make_model", "train_schemes", "markdown_table"]

SCHEMES = ("wage", "dfp")

DESCRIPTIONS = {"mlp": "digits MLP 64-64-32-10",
                "cnn": "digits CNN (conv 3x3 16, conv 3x3 stride 2 32, average pool, dense 10)"}


def _bits(text):
    try:
        return parse_bits(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def register(subparsers):
    """Add the ``train`` subcommand to an :mod:`argparse` subparsers object."""
    parser = subparsers.add_parser("train", help="train the digits MLP or CNN with integers only "
                                   "(WAGE or dynamic fixed point)",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", required=True, choices=SCHEMES,
                        help="wage (Wu et al.) or dfp (dynamic fixed point, Courbariaux et al.)")
    parser.add_argument("--model", choices=tuple(NETWORKS), default="mlp",
                        help="the network: mlp (64-64-32-10, default) or cnn (the digits CNN's "
                             "architecture, trained from scratch)")
    parser.add_argument("--bits", type=_bits, metavar="W-A-G-E",
                        help="wage: weight, activation, gradient and error bits, each 2..8 "
                             "(default: 2-8-8-8)")
    parser.add_argument("--mult-bits", type=integer(*MULT_BITS),
                        help=f"dfp: bits of the multiplications' operands, "
                             f"{MULT_BITS[0]}..{MULT_BITS[1]} (default: 10)")
    parser.add_argument("--update-bits", type=integer(MULT_BITS[0], UPDATE_BITS),
                        help=f"dfp: bits of the stored weights and their updates, "
                             f"--mult-bits..{UPDATE_BITS} (default: 12)")
    parser.add_argument("--epochs", type=integer(1, 1000), default=30,
                        help="epochs, 1..1000 (default: 30)")
    parser.add_argument("--seed", type=integer(0, 2 ** 32 - 1), default=0,
                        help="seed of the initial weights, the shuffles and the stochastic "
                             "rounding (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("build/train"),
                        help="output folder: new, empty or an earlier train's (default: "
                             "build/train)")
    parser.add_argument("--report", action="store_true",
                        help="also train the float reference and the other scheme; write "
                             "report.md and accuracy.png")
    parser.set_defaults(run=run_train)


def make_model(scheme, seed, epochs, bits=None, mult_bits=None, update_bits=None,
               network="mlp"):
    """A freshly initialised model of ``scheme`` (``"float"``, ``"wage"``, ``"dfp"``) for
    ``network`` (a key of :data:`~systolix.sw.train.NETWORKS`) and the generator that trains
    it, both from ``seed``."""
    rng = np.random.default_rng(seed)
    layers = NETWORKS[network]()
    if scheme == "float":
        model = FloatMLP(rng, lambda epoch: 2.0 ** -dfp_rate(epoch, epochs), layers)
    elif scheme == "wage":
        model = WageMLP(rng, DEFAULT_BITS if bits is None else bits, epochs, layers)
    else:
        model = DfpMLP(rng, 10 if mult_bits is None else mult_bits,
                       12 if update_bits is None else update_bits, epochs, layers)
    return model, rng


def _check_options(args):
    """Options of the other scheme are refused; ``--update-bits`` must be at least
    ``--mult-bits``."""
    other = ("--mult-bits", "--update-bits") if args.scheme == "wage" else ("--bits",)
    for option in other:
        if getattr(args, option[2:].replace("-", "_")) is not None:
            raise ValueError(f"{option} is an option of the other scheme, not of --scheme "
                             f"{args.scheme}")
    mult_bits = 10 if args.mult_bits is None else args.mult_bits
    update_bits = 12 if args.update_bits is None else args.update_bits
    if args.scheme == "dfp" and update_bits < mult_bits:
        raise ValueError(f"--update-bits {update_bits}: must be at least --mult-bits "
                         f"({mult_bits}), up to {UPDATE_BITS}")


def _exported(model, data):
    """The program of a trained integer ``model`` and its test accuracy on the golden model;
    raises :class:`RuntimeError` unless the golden model gives the trainer's own codes."""
    program = model.export()
    codes = program.encode_input(data.x_test)
    bits = {"bits": model.export_bits()} if isinstance(model, DfpMLP) else {}
    own = model.forward(model.encode(data.x_test, **bits), **bits)[0][-1]
    golden = run_program(program, codes)
    if not np.array_equal(golden, own):
        raise RuntimeError(f"the exported program differs from the {model.name} trainer's "
                           f"forward in {np.count_nonzero(golden != own)} output codes")
    return program, float(np.mean(golden.argmax(axis=1) == data.y_test))


def train_schemes(schemes, data, epochs, seed, options, progress=None, report=print,
                  network="mlp"):
    """Train each scheme of ``schemes`` on ``network`` from ``seed``: ``{scheme: (model,
    History)}``."""
    results = {}
    for scheme in schemes:
        model, rng = make_model(scheme, seed, epochs, network=network,
                                **options.get(scheme, {}))
        results[scheme] = model, train(model, data, epochs, rng, progress, report)
    return results


def markdown_table(results, exported):
    """The report's table: per scheme its widths, final and best test accuracy, the exported
    program's accuracy and the seconds per epoch."""
    rows = ["| scheme | widths | final test accuracy | best | exported program | s / epoch |",
            "| --- | --- | --- | --- | --- | --- |"]
    for scheme, (model, history) in results.items():
        rows.append(f"| {model.name} | {_widths(model)} | {100 * history.accuracy[-1]:.1f} % | "
                    f"{100 * max(history.accuracy):.1f} % | "
                    + (f"{100 * exported[scheme]:.1f} %" if scheme in exported else "-")
                    + f" | {np.mean(history.seconds):.3f} |")
    return "\n".join(rows)


def _widths(model):
    if isinstance(model, WageMLP):
        return "W-A-G-E " + "-".join(map(str, model.bits))
    if isinstance(model, DfpMLP):
        return (f"mult {model.mult_bits}, update {model.update_bits} (exported at "
                f"{model.export_bits()})")
    return "float64"


def _plot(path, results, title):
    with png_figure(path, figsize=(7, 4)) as (figure, axes):
        for model, history in results.values():
            epochs = np.arange(1, len(history.accuracy) + 1)
            axes.plot(epochs, 100 * np.array(history.accuracy), marker=".", label=model.name)
        axes.set_xlabel("epoch")
        axes.set_ylabel("test accuracy (%)")
        axes.set_title(f"{title}: integer training")
        axes.grid(True, alpha=0.3)
        axes.legend()


def run_train(args):
    """Carry out ``systolix train``; returns the exit status."""
    _check_options(args)
    options = {"wage": {"bits": args.bits},
               "dfp": {"mult_bits": args.mult_bits, "update_bits": args.update_bits}}
    data = digits_split(args.seed)
    with output_folder(args.out, "train") as folder:
        model, _ = make_model(args.scheme, args.seed, args.epochs, network=args.model,
                              **options[args.scheme])
        print(f"systolix train: {model.name} ({_widths(model)}) on the "
              f"{DESCRIPTIONS[args.model]}, {args.epochs} epochs, seed {args.seed}; every GEMM "
              f"of a step and its accumulator width:")
        print("\n".join(f"  {line}" for line in describe_gemms(model.gemms())), flush=True)
        schemes = ["float", *SCHEMES] if args.report else [args.scheme]
        results = train_schemes(schemes, data, args.epochs, args.seed, options, sys.stderr,
                                network=args.model)
        model, history = results[args.scheme]
        program, accuracy = _exported(model, data)
        exported = {args.scheme: accuracy}
        for scheme in SCHEMES:
            if scheme in results and scheme != args.scheme:
                exported[scheme] = _exported(results[scheme][0], data)[1]
        config = array_config_for(program)
        program.save(folder / "program.npz")
        table = markdown_table(results, exported)
        print(table)
        if args.report:
            text = [f"# Integer training: {DESCRIPTIONS[args.model]}", "",
                    f"Test accuracy after each of {args.epochs} epochs (seed {args.seed}); the "
                    f"exported program runs on the golden model of the array.", "", table, "",
                    "![test accuracy per epoch](accuracy.png)", ""]
            atomic_write(folder / "report.md", lambda file: file.write("\n".join(text).encode()))
            _plot(folder / "accuracy.png", results, DESCRIPTIONS[args.model])
    print(f"{model.name}: test accuracy {100 * history.accuracy[-1]:.1f} % (trainer), "
          f"{100 * accuracy:.1f} % (exported program on the golden model); "
          f"{np.mean(history.seconds):.3f} s per epoch; runs on the array {config.name}")
    print(f"wrote {args.out / 'program.npz'}"
          + (f", {args.out / 'report.md'} and {args.out / 'accuracy.png'}" if args.report
             else "")
          + f"; run it: make sim MODEL={args.out / 'program.npz'} CONFIG={config.name}")
    return 0
