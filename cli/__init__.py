"""The ``systolix`` command line: one subcommand per job; the Makefile targets call these.

Each module of this package registers its own subcommands (``register(subparsers)``). This is
the top layer of the project: it may import every other part, and no part imports it. Bad input
ends with one line naming the parameter, the value and what is allowed, and a non-zero exit
status.
"""

import argparse
import sys

from . import bench, boards, quantize, sim

__all__ = ["main"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="systolix", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sim, quantize, boards, bench):
        module.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except ValueError as error:
        print(f"systolix {args.command}: error: {error}", file=sys.stderr)
        return 2

