"""``systolix formal``: SymbiYosys proofs of the accumulator bound and the stream contracts.

No partial sum of any weight tile of a model leaves the accumulator, and the engine's and the
link's streams keep the stream rules.

For each array configuration, the model (the default digits MLP quantized for that array, or
``--model``) is packed into its memory images; the weight tiles are read back from the weight
image and every distinct tile column is proved, per layer, by
:func:`systolix.sim.formal.prove_tiles`. Then the stream contracts: the stream rules of the
model's engine and link by k-induction, and, on a small engine and link (a one-layer program
on a 1x1 array, two vectors a run), the counting properties by bounded model checking to the
depth that covers a whole run (docs/formal.md). Prints the proof time per layer, per
configuration and per contract; exits 1 if anything is not proved.
"""

import os
import time
from pathlib import Path

import numpy as np

from systolix import protocol
from systolix.config import DEFAULT_CONFIG, ArrayConfig
from systolix.files import output_folder
from systolix.hw.engine import InferenceEngine
from systolix.memory_map import MemoryConfig, output_codes, vector_words
from systolix.sim.formal import (INDUCTION_DEPTH, EngineHarness, LinkHarness, engine_depth,
                                 image_tiles, link_depth, link_for, prove_streams, prove_tiles)
from systolix.sim.golden.engine import engine_cycles
from systolix.sw.default import default_program
from systolix.sw.pack import pack
from systolix.sw.program import IntegerProgram
from systolix.sw.stimulus import random_program

from .options import integer

__all__ = ["register", "small_model", "prove_model", "prove_contracts"]

TILE_COLUMNS = (("config", 22, "<"), ("layer", 5, ">"), ("tiles", 5, ">"),
                ("distinct columns", 16, ">"), ("result", 6, "<"), ("seconds", 7, ">"),
                ("counterexample", 0, "<"))
STREAM_COLUMNS = (("design", 6, "<"), ("model", 20, "<"), ("property", 26, "<"),
                  ("mode", 5, "<"), ("depth", 5, ">"), ("result", 6, "<"), ("seconds", 7, ">"))


def _line(columns, values):
    """One row of a table printed as it is proved (the rows come one by one)."""
    return "  ".join(f"{value!s:{align}{width}}"
                     for (_, width, align), value in zip(columns, values)).rstrip()


def _header(columns):
    return "\n".join([_line(columns, [name for name, _, _ in columns]),
                      _line(columns, ["-" * max(width, len(name))
                                      for name, width, _ in columns])])

SMALL_CONFIG = ArrayConfig(rows=1, cols=1, weight_bits=2, weight_signed=True, activation_bits=2,
                           activation_signed=False, accumulator_bits=8)
"""The array of the small engine whose counting properties are checked to a whole run."""

SMALL_BATCH = 2
"""Vectors in a run of the small engine (its ``max_batch``)."""


def small_model(config=SMALL_CONFIG, batch=SMALL_BATCH):
    """``(config, images)`` of the small engine: one layer of 1 input and 2 outputs (2 output
    tiles on a 1x1 array), memories just large enough for runs of ``batch`` vectors."""
    program = random_program(np.random.default_rng(0), config, (1, 2))
    memories = MemoryConfig(weight_words=4, requant_words=4, program_words=32,
                            activation_words=batch, batch=batch, output_codes=2 * batch)
    return config, pack(program, config, memories)


def prove_model(config, program, folder, *, jobs, chunk):
    """Prove every layer's tiles of ``program`` on an array of ``config``; returns the table
    rows and whether all were proved."""
    images = pack(program, config, MemoryConfig())
    rows, proved = [], True
    for index, tiles in enumerate(image_tiles(images, config)):
        proof = prove_tiles(config, tiles, Path(folder) / config.name / f"layer-{index}",
                            jobs=jobs, chunk=chunk)
        proved &= proof.status == "PASS"
        found = proof.counterexample
        note = "" if found is None else (
            f"column {list(found.column)}, codes {list(found.codes)}: sum {found.exact} after "
            f"cell {found.row}, held as {found.psum}")
        rows.append([config.name, index, proof.tiles, proof.columns, proof.status,
                     f"{proof.seconds:.1f}", note])
        print(_line(TILE_COLUMNS, rows[-1]), flush=True)
    return rows, proved


def prove_contracts(config, images, folder):
    """The stream contracts of the engine and link of ``images`` (rules) and of the small
    engine and link (counting, to a whole run); prints a row per SymbiYosys job as it ends and
    returns the rows and whether all were proved."""
    folder = Path(folder)
    small_config, small_images = small_model()
    word_bits = small_config.rows * small_config.activation_bits
    run = engine_cycles(small_config, small_images, SMALL_BATCH)
    request = 4 + protocol.run_length(SMALL_BATCH, vector_words(small_images), word_bits) \
        + protocol.CRC_BYTES
    proofs = [
        (config.name, lambda: prove_streams(
            lambda count: EngineHarness(InferenceEngine(config, images), count=count),
            "engine", folder / "engine")),
        (config.name, lambda: prove_streams(
            lambda count: LinkHarness(link_for(config, images), count=count), "link",
            folder / "link")),
        (small_config.name, lambda: prove_streams(
            lambda count: EngineHarness(InferenceEngine(small_config, small_images),
                                        count=count),
            "engine", folder / "small-engine", rules=False, script=["memory_map", "opt -fast"],
            count_depth=engine_depth(run.first_output, SMALL_BATCH, vector_words(small_images),
                                     output_codes(small_images)))),
        (small_config.name, lambda: prove_streams(
            lambda count: LinkHarness(link_for(small_config, small_images, timeout_cycles=8),
                                      count=count), "link", folder / "small-link", rules=False,
            count_depth=link_depth(request))),
    ]
    rows = []
    for model, prove in proofs:
        proof = prove()
        counted = "stream rules, count, last" if proof.name == "engine" else \
            "stream rules, batch, words"
        for what, result in (("stream rules", proof.rules), (counted, proof.count),
                             ("a whole run reached", proof.reach)):
            if result is not None:
                rows.append([proof.name, model, what, result.mode, result.depth, result.status,
                             f"{result.seconds:.1f}"])
                print(_line(STREAM_COLUMNS, rows[-1]), flush=True)
    return rows, all(row[5] == "PASS" for row in rows)


def run_formal(args):
    configs = [ArrayConfig.from_name(name) for name in args.config] or [DEFAULT_CONFIG]
    loaded = None if args.model is None else IntegerProgram.load(args.model)
    started = time.perf_counter()
    proved, totals = True, []
    with output_folder(args.out, "formal") as folder:
        print(f"systolix formal: no partial sum of any weight tile leaves P bits (each layer's "
              f"distinct tile columns, k-induction of depth {INDUCTION_DEPTH}, yowasp-sby with "
              f"smtbmc z3, {args.jobs} jobs at a time)", flush=True)
        print(_header(TILE_COLUMNS), flush=True)
        programs = {}
        for config in configs:
            programs[config] = program = (loaded if loaded is not None
                                          else default_program(config)[0])
            config_started = time.perf_counter()
            rows, ok = prove_model(config, program, folder / "tiles", jobs=args.jobs,
                                   chunk=args.chunk)
            proved &= ok
            totals.append([config.name, "all", sum(row[2] for row in rows),
                           sum(row[3] for row in rows), "PASS" if ok else "FAIL",
                           f"{time.perf_counter() - config_started:.1f}", ""])
            print(_line(TILE_COLUMNS, totals[-1]), flush=True)
        if not args.no_streams:
            print("\nstream contracts: the inputs assumed to keep the stream rules, the outputs "
                  "proved to keep them (valid held until ready, payload stable)", flush=True)
            print(_header(STREAM_COLUMNS), flush=True)
            images = pack(programs[configs[0]], configs[0], MemoryConfig())
            _, ok = prove_contracts(configs[0], images, folder / "streams")
            proved &= ok
    print(f"{'OK' if proved else 'FAIL'}: {time.perf_counter() - started:.0f} s; "
          + ", ".join(f"{row[0]} tiles {row[5]} s" for row in totals)
          + f"; proofs and traces in {args.out}")
    return 0 if proved else 1


def register(subparsers):
    """Add the ``formal`` subcommand to an :mod:`argparse` subparsers object."""
    parser = subparsers.add_parser(
        "formal", help="prove the accumulator bound of a model's tiles and the stream "
                       "contracts (SymbiYosys)", description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", default=[], metavar="NAME",
                        help="an array configuration such as 8x8-W4s-A4u-P12-wrap; may be "
                             f"given more than once (default: {DEFAULT_CONFIG.name})")
    parser.add_argument("--model", type=Path,
                        help="an IntegerProgram file (default: the digits MLP, W4/A4, A2Q+ "
                             "for each array's accumulator)")
    parser.add_argument("--jobs", type=integer(1), default=min(2, os.cpu_count() or 1),
                        help="SymbiYosys jobs run in parallel (default: 2)")
    parser.add_argument("--chunk", type=integer(1), default=128,
                        help="tile columns per SymbiYosys job (default: 128)")
    parser.add_argument("--no-streams", action="store_true",
                        help="only the tiles, not the stream contracts")
    parser.add_argument("--out", type=Path, default=Path("build/formal"),
                        help="output folder for the proofs and traces: new, empty or an "
                             "earlier formal's (default: build/formal)")
    parser.set_defaults(run=run_formal)
