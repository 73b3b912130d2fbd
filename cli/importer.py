"""The ``systolix import`` subcommand: a quantized ONNX model (QONNX or QCDQ) into an integer
program.

Writes ``program.npz`` (the :class:`~systolix.sw.program.IntegerProgram`, which other commands
take as ``--model``), ``report.txt`` and ``report.json`` (per layer: kind, node, widths,
declared, true and used accumulator widths, whether the requantization is exact) into
``--out``, and prints the report. A layer whose integers need a wider accumulator than
``--accumulator-bits`` (or than the model declares) is refused, or widened with ``--widen``.
"""

from pathlib import Path

from systolix.files import atomic_write, check_output_folder, output_folder
from systolix.sw.integerize import check_accumulators, report_json, report_text
from systolix.sw.onnx_import import import_onnx

from .options import integer

__all__ = ["register", "run_import"]


def register(subparsers):
    """Add the ``import`` subcommand to an :mod:`argparse` subparsers object."""
    parser = subparsers.add_parser(
        "import", help="import a quantized ONNX model (QONNX or QCDQ) as an integer program",
        description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, metavar="MODEL.onnx",
                        help="the model: QONNX (Quant nodes) or QCDQ (QuantizeLinear / Clip / "
                             "DequantizeLinear)")
    parser.add_argument("--out", type=Path, default=Path("build/import"),
                        help="output folder: new, empty or an earlier import's (default: "
                             "build/import)")
    parser.add_argument("--accumulator-bits", type=integer(2, 32), metavar="P",
                        help="the accumulator width every layer must fit, 2..32 (default: the "
                             "width the model declares, else 32)")
    parser.add_argument("--widen", action="store_true",
                        help="raise the accumulator width of a layer that needs more than P "
                             "instead of refusing it (the report says so)")
    parser.set_defaults(run=run_import)


def run_import(args):
    """Carry out ``systolix import``; returns the exit status."""
    check_output_folder(args.out, "import")
    imported = check_accumulators(import_onnx(args.model), args.accumulator_bits, args.widen)
    text = report_text(imported, args.accumulator_bits)
    with output_folder(args.out, "import") as folder:
        imported.program.save(folder / "program.npz")
        atomic_write(folder / "report.txt", lambda file: file.write(text.encode()))
        json_text = report_json(imported, args.accumulator_bits)
        atomic_write(folder / "report.json", lambda file: file.write(json_text.encode()))
    print(text, end="")
    print(f"wrote {args.out / 'program.npz'}, {args.out / 'report.txt'} and "
          f"{args.out / 'report.json'}")
    return 0
