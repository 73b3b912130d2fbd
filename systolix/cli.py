"""The ``systolix`` command line: one subcommand per job; the Makefile targets call these.

Each area of the project registers its own subcommands (``register(subparsers)`` in its ``cli``
module). Bad input ends with one line naming the parameter, the value and what is allowed, and a
non-zero exit status.
"""

import argparse
import importlib
import sys

__all__ = ["main"]

# Modules that contribute subcommands, each with a ``register(subparsers)`` function.
_COMMAND_MODULES = ("systolix.sim.cli", "systolix.sw.cli")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="systolix", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name != name:
                raise
            continue
        module.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return args.run(args) or 0
    except ValueError as error:
        print(f"systolix {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
