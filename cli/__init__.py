"""The ``systolix`` command line: one subcommand per job; the Makefile targets call these.

Each module of this package registers its own subcommands (``register(subparsers)``). This is
the top layer of the project: it may import every other part, and no part imports it.

Bad input (an option out of range, a missing, empty, truncated or malformed file, an output
folder that is not the command's to replace or cannot be written) ends with one line on
standard error naming the option or file, the field, the value and what is allowed, and exit
status 2, before anything is written; a tool or device failure with exit status 1; SIGINT or
SIGTERM with one line and exit status 130, the staging folder removed and earlier outputs as
they were. docs/errors.md is the catalogue (``systolix errors`` runs it).
"""

import argparse
import os
import signal
import sys
import threading

from systolix.boards.loader import LoaderError
from systolix.boards.synth import SynthesisError
from systolix.sw.driver import DeviceError, DeviceMismatch

from . import bench, boards, device, errors, formal, importer, quantize, sim, train

__all__ = ["main", "Interrupted"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signal_name`` says which."""

    def __init__(self, signal_name):
        super().__init__(signal_name)
        self.signal_name = signal_name


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line (``systolix sim: error: argument --images: ...``), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _one_line(text):
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _describe(error):
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return _one_line(error)


def _raise_interrupt(number, frame):
    raise Interrupted(signal.Signals(number).name)


def main(argv=None):
    """Run the ``systolix`` command line on ``argv``; return the exit status."""
    parser = _Parser(prog="systolix", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sim, quantize, importer, boards, device, bench, errors, formal, train):
        module.register(subparsers)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else 0 if exit.code is None else 2
    name = f"systolix {args.command}"
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {}
    if in_main_thread:
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, _raise_interrupt)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt as interrupt:
        which = interrupt.signal_name if isinstance(interrupt, Interrupted) else "SIGINT"
        print(f"{name}: interrupted by {which}; its unfinished output was removed and earlier "
              f"outputs are as they were", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of the output went away (``systolix ... | head``): stop quietly, as a
        # command killed by SIGPIPE does, with nothing more written to the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except (ValueError, OSError) as error:
        print(f"{name}: error: {_describe(error)}", file=sys.stderr)
        return 2
    except (SynthesisError, LoaderError, DeviceError, DeviceMismatch) as error:
        print(f"{name}: error: {_describe(error)}", file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
