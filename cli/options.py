"""Checked option types of the command line: each refuses a value out of its range with what is
allowed, before any work is done (argparse names the option: ``argument --images: must be an
integer >= 1, not '0'``)."""

import argparse
import math
from pathlib import Path

__all__ = ["integer", "number", "probability", "add_model_source", "print_verdict"]


def integer(low=None, high=None):
    """An ``int`` option in ``low..high`` (either end open when ``None``)."""
    if low is not None and high is not None:
        allowed = f"an integer in {low}..{high}"
    elif low is not None:
        allowed = f"an integer >= {low}"
    else:
        allowed = f"an integer <= {high}"

    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low=None, high=None, *, low_open=True):
    """A finite ``float`` option above ``low`` (at least ``low`` when not ``low_open``) and at
    most ``high``."""
    parts = ["a finite number"]
    if low is not None:
        parts.append(f"{'above' if low_open else 'at least'} {low:g}")
    if high is not None:
        parts.append(f"at most {high:g}")
    allowed = " ".join(parts[:2]) + (f" and {parts[2]}" if len(parts) > 2 else "")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}") from None
        if not math.isfinite(value) or (low is not None and (
                value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value
    parse.__name__ = "number"
    return parse


def probability(text):
    """A probability in ``0 <= p < 1`` (a stall probability of 1 would never end)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in 0 <= p < 1, not {text!r}")
    return value


def add_model_source(parser, quantized_for, workloads):
    """The mutually exclusive ``--model`` (an IntegerProgram file) and ``--workload`` (one of
    ``workloads``, embedded models quantized with A2Q+ for ``quantized_for``, such as "the
    board's array") options of ``parser``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", type=Path, help=f"an IntegerProgram file (default: the "
                        f"digits MLP, W4/A4, A2Q+ for {quantized_for})")
    source.add_argument("--workload", choices=workloads,
                        help=f"an embedded model quantized (A2Q+) for {quantized_for}: "
                             f"{' or '.join(workloads)} (the first is the default)")


def print_verdict(rows, mismatches, cycle_mismatches):
    """Print ``rows`` (pairs of a name and a value) as a table, then the verdict of a run
    checked against the golden and cycle models; return the command's exit status (1 on any
    mismatch)."""
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key:>{width}}  {value}" for key, value in rows))
    failed = mismatches + cycle_mismatches
    print(f"{'FAIL' if failed else 'OK'}: {mismatches} mismatches, {cycle_mismatches} cycle "
          f"mismatches")
    return 1 if failed else 0
