"""Measure the designs that :data:`systolix.boards.estimate.COEFFICIENTS` are fitted to, fit them
and print the iCE40 entry (to paste into ``boards/estimate.py``).

    python scripts/fit_estimate.py [--build build/fit-estimate]

Processing elements (:class:`~systolix.hw.mac.ProcessingElement`, any ``P``-bit partial sum)
synthesized alone: every ``W, A`` in 1..8 with signed weights and unsigned activations at
``P = 16``, the other signedness pairs at ``W, A`` in 1, 2, 4, 6, 8, and ``P`` from 8 to 32,
wrapping and saturating, at W4/A4 (150 designs, Yosys only). Arrays (:data:`ARRAYS`, none a
configuration of the default sweep, :mod:`systolix.boards.sweep`, on which the estimate is
checked) synthesized, placed and routed on the iCE40UP5K as the sweep builds them. Both with the
YoWASP tools of the virtual environment, one design per CPU core: about four minutes on two.
"""

import argparse
import os
import pprint
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from itertools import product
from pathlib import Path

from systolix.boards.estimate import fit_coefficients
from systolix.boards.synth import array_synth_options, synthesize
from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.hw.mac import ProcessingElement

BASE = ArrayConfig(rows=1, cols=1, weight_bits=4, activation_bits=4, accumulator_bits=16)

PROCESSING_ELEMENTS = (
    [replace(BASE, weight_bits=w, activation_bits=a) for w, a in product(range(1, 9), repeat=2)]
    + [replace(BASE, weight_bits=w, activation_bits=a, weight_signed=ws, activation_signed=as_)
       for ws, as_ in ((False, False), (True, True), (False, True))
       for w, a in product((1, 2, 4, 6, 8), repeat=2)]
    + [replace(BASE, accumulator_bits=p, overflow=overflow)
       for p in (8, 12, 20, 24, 32) for overflow in ("wrap", "saturate")]
    + [replace(BASE, overflow="saturate")])
"""The processing elements synthesized alone."""

ARRAYS = tuple(
    ArrayConfig(rows=r, cols=c, weight_bits=w, activation_bits=a, accumulator_bits=p,
                overflow=overflow, weight_signed=ws, activation_signed=as_)
    for r, c, w, a, p, overflow, ws, as_ in (
        (1, 1, 4, 4, 16, "wrap", True, False), (1, 2, 4, 4, 16, "wrap", True, False),
        (2, 2, 2, 3, 8, "wrap", True, False), (3, 2, 3, 3, 12, "wrap", True, False),
        (2, 5, 5, 5, 20, "wrap", True, False), (3, 3, 1, 1, 16, "wrap", True, False),
        (3, 5, 1, 2, 16, "wrap", True, False), (5, 3, 2, 1, 12, "wrap", True, False),
        (6, 6, 2, 2, 10, "wrap", True, False), (4, 6, 1, 1, 16, "wrap", True, False),
        (5, 5, 3, 2, 14, "wrap", True, False), (6, 4, 4, 4, 16, "saturate", True, False),
        (7, 1, 4, 4, 14, "wrap", True, False), (8, 6, 4, 4, 16, "wrap", True, False),
        (8, 6, 2, 2, 16, "wrap", True, False), (6, 8, 1, 1, 16, "wrap", True, False),
        (8, 5, 4, 4, 12, "wrap", True, False), (3, 7, 8, 8, 24, "wrap", True, False),
        (5, 3, 6, 6, 32, "wrap", True, False), (8, 8, 3, 2, 18, "wrap", True, False),
        (4, 5, 2, 6, 16, "wrap", True, False), (2, 6, 6, 2, 16, "wrap", True, False),
        (3, 4, 4, 4, 16, "wrap", True, True), (4, 3, 4, 4, 16, "wrap", False, False),
        (5, 4, 2, 2, 12, "wrap", True, True), (7, 7, 1, 1, 16, "wrap", True, False),
        (2, 3, 1, 1, 16, "wrap", True, False), (3, 2, 2, 2, 16, "wrap", True, False),
        (2, 4, 1, 2, 12, "wrap", True, False), (1, 4, 2, 2, 16, "wrap", True, False),
        (2, 2, 1, 2, 16, "wrap", True, False), (8, 7, 3, 3, 16, "wrap", True, False),
        (7, 8, 3, 3, 14, "wrap", True, False), (6, 8, 3, 4, 16, "wrap", True, False)))
"""The arrays placed and routed (1x1 to 8x8, every width 1 to 8)."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=Path("build/fit-estimate"))
    args = parser.parse_args()

    def element(config):
        return config, synthesize(ProcessingElement(config), place=False, name="pe",
                                  build_dir=args.build / "pe" / config.name)

    def array(config):
        return config, synthesize(SystolicArray(config), name="array",
                                  build_dir=args.build / "array" / config.name,
                                  synth_options=array_synth_options(config, "ice40"))

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        elements = list(pool.map(element, PROCESSING_ELEMENTS))
        arrays = list(pool.map(array, ARRAYS))
    pprint.pprint(fit_coefficients(elements, arrays), width=99, sort_dicts=True)


if __name__ == "__main__":
    main()
