"""The ``systolix`` command line: one subcommand per job; the Makefile targets call these.

Each area of the project registers its own subcommands (``register(subparsers)`` in its ``cli``
module). Bad input ends with one line naming the parameter, the value and what is allowed, and a
non-zero exit status.
"""

import argparse
import sys

from systolix.boards import cli as boards_cli
from systolix.sim import cli as sim_cli
from systolix.sw import cli as sw_cli

__all__ = ["main"]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="systolix", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (sim_cli, sw_cli, boards_cli):
        module.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except ValueError as error:
        print(f"systolix {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
