"""Fuzzing with Hypothesis: random arrays x random programs through the packer, the inference
engine under Verilator and the golden and cycle models.

One property in two layers:

* ``test_pack_fuzz`` (unit: no simulator, hundreds of examples in CI): :func:`pack` refuses a
  program exactly when it should (a saturating layer that may overflow across K tiles, a memory
  too small), with its one-line :class:`ValueError`; otherwise the images hold the layers
  exactly (:func:`unpack`), :func:`~systolix.memory_map.packed_layers` through the golden model
  (:func:`run_images`) computes what :func:`run_program` computes, ``max_batch`` is what the
  memories allow, and the cycle model keeps its invariants (``first_output = compute + 2``, the
  layers add up to ``compute``, at least one array cycle per vector and tile, no fewer cycles
  for more vectors, cycles independent of weight and constant values).
* ``test_engine_fuzz`` (cocotb): each example packs its program and builds the inference engine
  with those images under Verilator (``run_engine``), runs its batches (1 and ``max_batch``
  among them) with random host stalls on both streams, and checks every output code against
  :func:`run_program` and every run's cycle count against :func:`engine_cycles`.

Examples draw arrays (rows, cols, code widths and signedness, accumulator width ``P``, wrap or
saturate), layer shapes, each layer's code widths and signedness within the array's ranges,
weights, requantization constants and clamps, memory depths (as tight as the model allows, or a
few words more; the batch limited by the accumulator buffer, the activation buffers or the
output memory), batch sizes and host stalls.

Tiers (profiles registered in tests/conftest.py): ``systolix-ci`` (``make test``: derandomized,
so every run draws the same examples: 15 engine examples in one test, small arrays; a
derandomized test draws the same examples whatever its parameters, so it is not split in shards)
and ``systolix-slow`` (``pytest -m slow``: 500 engine
examples over :data:`SLOW_SHARDS` tests, larger arrays and programs, a new random draw each run;
``--hypothesis-seed=N`` repeats one).

A failure: Hypothesis shrinks it (an engine example rebuilds the engine for each candidate, about
10 s; Hypothesis stops shrinking after 5 minutes) and prints the falsifying example,
``case=Case(config=ArrayConfig(...), layers=(Layer(...), ...), ...)``, and a
``@reproduce_failure(...)`` line. Keep it as a regression test: paste the ``Case(...)`` into
:data:`ENGINE_REGRESSIONS` (or :data:`PACK_REGRESSIONS` for ``test_pack_fuzz``); those run in
CI as plain parametrized cases. A bug not fixed yet goes in with
``pytest.param(Case(...), marks=pytest.mark.xfail(strict=True, reason=...))``.
(``@reproduce_failure`` replays the example in the test it came from, for debugging; it is not
meant to stay in the code.)

Shrinking was checked by making the golden requantization truncate instead of round (the
engine then disagrees with it wherever a dropped half is set): ``test_engine_fuzz[0]`` failed
at its third example (2x2 array, one layer of 8 x 7, 7-bit codes) and shrank, in 237 tries, to
a 1x1 array with one layer of one input, one vector, no stalls and a single channel that is not
all zeros: bias 1, multiplier 64, shift 7, i.e. exactly one half, 64 / 2^7, rounded up to 1 by
the engine and truncated to 0 by the broken model. (Under a load of 10 on 2 cores that took 40
minutes; with Hypothesis' 5-minute limit it stopped at 1 layer, 1 vector, no stalls, weights
of 8 x 7, still failing.)
"""

import dataclasses
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import Phase, currently_in_test_context, event, find, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from systolix.config import OVERFLOW_MODES, ArrayConfig, code_range
from systolix.memory_map import (HEADER_WORDS, RECORD_WORDS, MemoryConfig, packed_layers)
from systolix.numeric import BIAS_BITS, MAX_SHIFT, MULTIPLIER_BITS
from systolix.layer import IntegerLayer
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_images, run_program
from systolix.sim.transport import design_folder
from systolix.sw.pack import check_fit, ideal_cycles, layer_tiles, pack, unpack
from systolix.sw.stimulus import program_of

CI = settings.get_profile("systolix-ci")
SLOW = settings.get_profile("systolix-slow")
CI_ENGINE_EXAMPLES = 15
"""The CI profile's engine examples, in one test (derandomized, Hypothesis seeds a test from
its function, so shards of it would draw the same examples)."""
SLOW_SHARDS = 4
"""The slow profile's engine examples are split over this many tests (random draws, each its
own)."""
PACK_EXAMPLES = 500
"""Examples of the cheap layer in CI (no builds: seconds)."""


# --- The examples: plain data whose repr is the Python that rebuilds it. ---------------------

@dataclass(frozen=True)
class Layer:
    """One layer of a :class:`Case`: the fields of an
    :class:`~systolix.layer.IntegerLayer` as plain tuples and ints (the array's accumulator)."""
    weights: tuple          # K tuples of N codes
    bias: tuple
    multiplier: tuple
    shift: tuple
    output_zero_point: int
    output_low: int
    output_high: int
    input_bits: int
    input_signed: bool
    weight_bits: int
    weight_signed: bool
    output_bits: int
    output_signed: bool

    def integer_layer(self, config):
        fields = dataclasses.asdict(self)
        weights = np.array(self.weights, dtype=np.int64).reshape(len(self.weights), -1)
        return IntegerLayer(**{**fields, "weights": weights},
                            accumulator_bits=config.accumulator_bits, overflow=config.overflow)


@dataclass(frozen=True)
class Case:
    """One example: an array, a program for it, memory depths, the batches of one engine run
    (``codes``: the input vectors, one tuple each, consecutive batches taking them in order)
    and the host's stall probabilities."""
    config: ArrayConfig
    layers: tuple
    memories: MemoryConfig
    batches: tuple = (1,)
    codes: tuple = ()
    input_stall: float = 0.0
    output_stall: float = 0.0
    seed: int = 0

    def program(self):
        return program_of([layer.integer_layer(self.config) for layer in self.layers])


# --- What pack must do, computed independently of it. ----------------------------------------

def ceil_div(a, b):
    return -(-a // b)


def needed_bits(weights, input_bits, input_signed):
    """The narrowest accumulator that no partial sum of any column, in any order, leaves: the
    extremes are the sums of the positive (negative) extremes of the products."""
    weights = np.asarray(weights, dtype=np.int64).reshape(len(weights), -1)
    low, high = code_range(input_bits, input_signed)
    products = np.stack([weights * low, weights * high])
    top = int(products.max(0).clip(min=0).sum(0).max(initial=0))
    bottom = int(products.min(0).clip(max=0).sum(0).min(initial=0))
    bits = 1
    while not -(1 << (bits - 1)) <= bottom <= top < 1 << (bits - 1):
        bits += 1
    return bits


def needs(case):
    """The words each memory needs, as pack's message states them."""
    config, layers = case.config, case.layers
    tiles = [(ceil_div(len(layer.weights), config.rows), ceil_div(len(layer.bias), config.cols))
             for layer in layers]
    return {
        "weight": sum(k * n * config.rows for k, n in tiles),
        "requant": sum(n * config.cols for _, n in tiles),
        "program": HEADER_WORDS + RECORD_WORDS * len(layers),
        "activation": max(k for k, _ in tiles),
        "output": len(layers[-1].bias),
    }


def expected_max_batch(case):
    need = needs(case)
    return min(case.memories.batch, case.memories.activation_words // need["activation"],
               case.memories.output_codes // need["output"])


def expected_refusal(case):
    """The start of the one line pack must refuse ``case`` with (a regular expression), or
    ``None`` if it must pack it."""
    config = case.config
    if config.overflow == "saturate":
        for index, layer in enumerate(case.layers):
            inputs = len(layer.weights)
            bits = needed_bits(layer.weights, layer.input_bits, layer.input_signed)
            if inputs > config.rows and bits > config.accumulator_bits:
                return (rf"layer {index} may overflow its {config.accumulator_bits}-bit "
                        rf"accumulator \(it needs {bits} bits\) and its {inputs} inputs span "
                        rf"{ceil_div(inputs, config.rows)} K tiles: ")
    need, memories = needs(case), case.memories
    problems = [rf"the model needs {need['weight']} weight words \(.*\), the weight memory "
                rf"has {memories.weight_words}: {need['weight'] - memories.weight_words} words "
                rf"short" * (need["weight"] > memories.weight_words),
                rf"the model needs {need['requant']} requant words \(.*\), the requant memory "
                rf"has {memories.requant_words}: {need['requant'] - memories.requant_words} "
                rf"words short" * (need["requant"] > memories.requant_words),
                rf"the model needs {need['program']} program words \(.*\), the memory has "
                rf"{memories.program_words}" * (need["program"] > memories.program_words),
                rf"the model needs {need['activation']} activation words per input \(.*\), each "
                rf"buffer has {memories.activation_words}: "
                rf"{need['activation'] - memories.activation_words} words short"
                * (need["activation"] > memories.activation_words),
                rf"the model needs {need['output']} output codes per input \(.*\), the output "
                rf"memory has {memories.output_codes}" * (need["output"] > memories.output_codes)]
    problems = [problem for problem in problems if problem]
    return "; ".join(problems) + "$" if problems else None


def pack_case(case):
    """``pack`` of the case's program, or ``None`` after checking that it refuses the case as
    it must; raises if it packs a case it must refuse or refuses one it must pack."""
    program, refusal = case.program(), expected_refusal(case)
    if refusal is None:
        return program, pack(program, case.config, case.memories)
    with pytest.raises(ValueError) as error:
        pack(program, case.config, case.memories)
    message = str(error.value)
    assert "\n" not in message and re.match(refusal, message), message
    with pytest.raises(ValueError, match=re.escape(message)):
        check_fit(program, case.config, case.memories)
    return program, None


# --- Strategies. -----------------------------------------------------------------------------

def within(bits, signed):
    """Code types ``(bits, signed)`` whose range lies within that of ``bits``-bit codes: the
    array's own first (what an example shrinks to)."""
    types = [(bits, signed)] + [(b, signed) for b in range(1, bits)]
    return types + ([(b, False) for b in range(1, bits)] if signed else [])


ANY_CODES = [(bits, signed) for bits in range(1, 9) for signed in (False, True)]


@st.composite
def layers(draw, inputs, outputs, input_codes, weight_codes, output_codes):
    """A :class:`Layer` whose constants mostly bring the accumulator into the output range
    (a shift near the accumulator's and multiplier's width less the output's), sometimes not."""
    weights = draw(arrays(np.int64, (inputs, outputs),
                          elements=st.integers(*code_range(*weight_codes))))
    bits = needed_bits(weights, *input_codes)
    multiplier = draw(st.lists(st.integers(0, (1 << MULTIPLIER_BITS) - 1), min_size=outputs,
                               max_size=outputs))
    bias = draw(st.lists(st.one_of(st.integers(-(1 << bits), 1 << bits),
                                   st.integers(*code_range(BIAS_BITS, True))),
                         min_size=outputs, max_size=outputs))
    shift = []
    for m in multiplier:
        near = max(bits + m.bit_length() - output_codes[0], 0)
        shift.append(draw(st.one_of(st.integers(max(near - 2, 0), min(near + 2, MAX_SHIFT)),
                                    st.integers(0, MAX_SHIFT))))
    low, high = code_range(*output_codes)
    clamp = draw(st.one_of(st.just((low, high)),
                           st.tuples(st.integers(low, high), st.integers(low, high)).map(sorted)))
    return Layer(weights=tuple(map(tuple, weights.tolist())), bias=tuple(bias),
                 multiplier=tuple(multiplier), shift=tuple(shift),
                 output_zero_point=draw(st.integers(low, high)), output_low=clamp[0],
                 output_high=clamp[1], input_bits=input_codes[0], input_signed=input_codes[1],
                 weight_bits=weight_codes[0], weight_signed=weight_codes[1],
                 output_bits=output_codes[0], output_signed=output_codes[1])


@st.composite
def cases(draw, *, max_dim=4, max_layers=3, max_size=9, max_vectors=6, refusals=False):
    """A :class:`Case`: arrays of ``1..max_dim`` rows and columns, ``1..max_layers`` layers of
    ``1..max_size`` inputs and outputs, memories for ``1..max_vectors`` vectors.

    Without ``refusals``, every case packs: saturating arrays get a ``P`` wide enough for every
    layer that spans K tiles, memories at least what the model needs. With ``refusals``, about
    one case in four draws ``P`` regardless, and one in four draws memories a word short or
    without room for one vector.
    """
    rows, cols = draw(st.integers(1, max_dim)), draw(st.integers(1, max_dim))
    weight_bits, weight_signed = draw(st.integers(1, 8)), draw(st.booleans())
    activation_bits, activation_signed = draw(st.integers(1, 8)), draw(st.booleans())
    overflow = draw(st.sampled_from(OVERFLOW_MODES))
    sizes = draw(st.lists(st.integers(1, max_size), min_size=2, max_size=max_layers + 1))
    hidden = within(activation_bits, activation_signed)
    codes = draw(st.sampled_from(hidden))
    program = []
    for index, (inputs, outputs) in enumerate(zip(sizes, sizes[1:])):
        last = index == len(sizes) - 2
        output = draw(st.sampled_from([hidden[0]] + ANY_CODES if last else hidden))
        weight = draw(st.sampled_from(within(weight_bits, weight_signed)))
        program.append(draw(layers(inputs, outputs, codes, weight, output)))
        codes = output
    spanning = [needed_bits(layer.weights, layer.input_bits, layer.input_signed)
                for layer in program if len(layer.weights) > rows]
    # With refusals, one case in four may have too narrow a P or too small memories.
    tight_p, tight_memories = (refusals and draw(st.integers(0, 3)) == 3 for _ in range(2))
    if tight_p:         # narrower than some layer that spans K tiles needs, where possible
        accumulator_bits = draw(st.integers(2, max(max(spanning, default=3) - 1, 2)))
    else:               # wide enough for every layer that spans K tiles if it saturates
        lowest = max(spanning, default=2) if overflow == "saturate" else 2
        accumulator_bits = draw(st.integers(max(lowest, 2), 32))
    config = ArrayConfig(rows=rows, cols=cols, weight_bits=weight_bits,
                         weight_signed=weight_signed, activation_bits=activation_bits,
                         activation_signed=activation_signed, accumulator_bits=accumulator_bits,
                         overflow=overflow)

    case = Case(config, tuple(program), MemoryConfig())
    need = needs(case)
    short = -1 if tight_memories else 0

    def depth(words):
        return max(words + draw(st.integers(short, 2)), 1)

    vectors = st.integers(0 if tight_memories else 1, max_vectors)
    memories = MemoryConfig(
        weight_words=depth(need["weight"]), requant_words=depth(need["requant"]),
        program_words=depth(need["program"]),
        activation_words=max(need["activation"] * draw(vectors)
                             + draw(st.integers(0, need["activation"] - 1)), 1),
        batch=draw(st.integers(1, max_vectors)),
        output_codes=max(need["output"] * draw(vectors) + draw(st.integers(0, need["output"] - 1)),
                         1))
    case = dataclasses.replace(case, memories=memories)
    if expected_refusal(case) is not None:
        return case
    most = expected_max_batch(case)
    batches = draw(st.lists(st.one_of(st.just(1), st.just(most), st.integers(1, most)),
                            min_size=1, max_size=3))
    low, high = code_range(program[0].input_bits, program[0].input_signed)
    vectors = draw(arrays(np.int64, (sum(batches), len(program[0].weights)),
                          elements=st.integers(low, high)))
    stalls = st.sampled_from((0.0, 0.3, 0.6))
    return dataclasses.replace(case, batches=tuple(batches),
                               codes=tuple(map(tuple, vectors.tolist())),
                               input_stall=draw(stalls), output_stall=draw(stalls),
                               seed=draw(st.integers(0, 2**16 - 1)))


CI_CASES = cases()
SLOW_CASES = cases(max_dim=8, max_layers=4, max_size=20, max_vectors=12)
PACK_CASES = cases(max_dim=6, max_layers=3, max_size=12, max_vectors=8, refusals=True)
SLOW_PACK_CASES = cases(max_dim=12, max_layers=5, max_size=40, max_vectors=16, refusals=True)


# --- The cheap layer: packer, memory map, golden and cycle models. ----------------------------

def check_pack(case):
    program, images = pack_case(case)
    if currently_in_test_context():
        event(f"refused: {expected_refusal(case)[:15]}" if images is None else
              f"packed, {case.config.overflow}")
    if images is None:
        return
    config = case.config
    assert images.max_batch == expected_max_batch(case) >= 1
    assert check_fit(program, config, case.memories) == layer_tiles(program, config)
    layers = unpack(images, config)
    for layer, original in zip(layers, program.layers):
        for field in dataclasses.fields(IntegerLayer):
            value, expected = getattr(layer, field.name), getattr(original, field.name)
            assert np.array_equal(value, expected) and type(value) is type(expected), field.name
    codes = np.array(case.codes, dtype=np.int64).reshape(-1, len(case.layers[0].weights))
    expected = run_program(program, codes)
    np.testing.assert_array_equal(run_images(images, config, codes), expected)
    assert len(packed_layers(images, config)) == len(case.layers)
    assert expected.shape == (len(codes), len(case.layers[-1].bias))
    if all(needed_bits(layer.weights, layer.input_bits, layer.input_signed)
           <= config.accumulator_bits for layer in case.layers):
        # No partial sum leaves P bits: wrapping and saturating accumulators agree.
        other = dict(zip(OVERFLOW_MODES, reversed(OVERFLOW_MODES)))[config.overflow]
        flipped = program_of([dataclasses.replace(layer, overflow=other)
                              for layer in program.layers])
        np.testing.assert_array_equal(run_program(flipped, codes), expected)

    # The cycle model: only shapes count, never the values of weights and constants.
    zeroed = dataclasses.replace(case, layers=tuple(dataclasses.replace(
        layer, weights=tuple((0,) * len(row) for row in layer.weights),
        bias=(0,) * len(layer.bias), multiplier=(0,) * len(layer.bias),
        shift=(0,) * len(layer.bias), output_zero_point=layer.output_low)
        for layer in case.layers))
    blank = pack(zeroed.program(), config, case.memories)
    ideal = ideal_cycles(program, config)
    previous = 0
    for batch in sorted({1, 2, images.max_batch - 1, images.max_batch} - {0}):
        if batch > images.max_batch:
            continue
        model = engine_cycles(config, images, batch)
        assert model.first_output == model.compute + 2
        assert sum(model.layers) == model.compute and len(model.layers) == len(case.layers)
        assert model.compute > batch * ideal
        assert model.compute >= previous
        assert engine_cycles(config, blank, batch) == model
        previous = model.compute


SMALLEST = Case(
    config=ArrayConfig(rows=1, cols=1, weight_bits=1, weight_signed=False, activation_bits=1,
                       activation_signed=False, accumulator_bits=2, overflow="wrap"),
    layers=(Layer(weights=((1,),), bias=(0,), multiplier=(1,), shift=(0,),
                  output_zero_point=0, output_low=0, output_high=1, input_bits=1,
                  input_signed=False, weight_bits=1, weight_signed=False, output_bits=1,
                  output_signed=False),),
    memories=MemoryConfig(weight_words=1, requant_words=1, program_words=10, activation_words=1,
                          batch=1, output_codes=1),
    batches=(1,), codes=((1,),))
"""The smallest engine: a 1x1 array, one layer of one weight, one vector."""

PACK_REGRESSIONS = [SMALLEST]
"""Falsifying examples of ``test_pack_fuzz`` (a ``Case(...)`` each, as Hypothesis prints it)."""


@settings(CI, max_examples=PACK_EXAMPLES)
@given(case=PACK_CASES)
def test_pack_fuzz(case):
    check_pack(case)


@pytest.mark.slow
@settings(SLOW, max_examples=4 * SLOW.max_examples)
@given(case=SLOW_PACK_CASES)
def test_pack_fuzz_slow(case):
    check_pack(case)


@pytest.mark.parametrize("case", PACK_REGRESSIONS)
def test_pack_regressions(case):
    check_pack(case)


@pytest.mark.parametrize("refusal", ["layer", "the model needs"])
def test_refusals_are_drawn(refusal):
    """The cheap layer draws programs that pack must refuse, of both kinds."""
    find(PACK_CASES, lambda case: (expected_refusal(case) or "").startswith(refusal),
         settings=settings(CI, max_examples=1000, phases=[Phase.generate]))


# --- The engine under Verilator. --------------------------------------------------------------

class EngineBuilds:
    """Builds of the engine in one folder, each example in its own (``design_folder``: the
    array and a hash of the images), removed once its example passes.

    Every build compiles the same Verilator runtime (``verilated*.cpp``: three quarters of the
    compile time of a small engine); after the first, its objects are copied into each new build
    folder, dated ahead so that make takes them as up to date (make only checks that they are
    newer than their sources and the generated makefile). Everything is compiled without
    optimisation (``OPT_*=-O0`` to Verilator's makefile): the runs are short.
    """

    RUNTIME = ("verilated", "verilated_dpi", "verilated_vpi", "verilated_threads")

    def __init__(self, root):
        self.root = root
        self.runtime = None

    @contextmanager
    def _unoptimised(self):
        previous = os.environ.get("MAKEFLAGS")
        os.environ["MAKEFLAGS"] = f"{previous or ''} OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("MAKEFLAGS", None)
            else:
                os.environ["MAKEFLAGS"] = previous

    def _copy_runtime(self, source, target, mtime=None):
        target.mkdir(parents=True, exist_ok=True)
        for name in self.RUNTIME:
            for suffix in (".o", ".d"):
                shutil.copyfile(source / (name + suffix), target / (name + suffix))
                if mtime is not None:
                    os.utime(target / (name + suffix), (mtime, mtime))

    def run(self, case, images):
        from systolix.sim.testbench.suite import run_engine
        folder = design_folder(self.root, case.config, images)
        if self.runtime is not None and not folder.exists():
            self._copy_runtime(self.runtime, folder / "verilator", time.time() + 3600)
        with self._unoptimised():
            report = run_engine(images, case.config, np.array(case.codes, dtype=np.int64),
                                list(case.batches), build_root=self.root,
                                input_stall=case.input_stall, output_stall=case.output_stall,
                                seed=case.seed)
        if self.runtime is None:
            self._copy_runtime(folder / "verilator", self.root / "runtime")
            self.runtime = self.root / "runtime"
        return report, folder


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    return EngineBuilds(tmp_path_factory.mktemp("fuzz-engine"))


def check_engine(case, builds):
    program, images = pack_case(case)
    if images is None:  # refused as it must be: no engine to build
        if currently_in_test_context():
            reject()
        return
    assert images.max_batch == expected_max_batch(case)
    report, folder = builds.run(case, images)
    runs = report["runs"]
    assert [run["batch"] for run in runs] == list(case.batches)
    codes, offset = np.array(case.codes, dtype=np.int64), 0
    for run in runs:
        batch = run["batch"]
        expected = run_program(program, codes[offset:offset + batch]).reshape(-1).tolist()
        offset += batch
        model = engine_cycles(case.config, images, batch)
        assert (run["outputs"], run["mismatches"]) == (expected, 0), f"batch of {batch}"
        assert (run["cycles_measured"], run["cycle_mismatches"]) == (model.compute, 0), \
            f"batch of {batch}"
    shutil.rmtree(folder)


ENGINE_REGRESSIONS = [
    SMALLEST,
]
"""Falsifying examples of the engine fuzz tests (a ``Case(...)`` each, as Hypothesis prints
it), run in CI."""


@pytest.mark.cocotb
@pytest.mark.parametrize("case", ENGINE_REGRESSIONS)
def test_engine_regressions(case, builds):
    check_engine(case, builds)


@pytest.mark.cocotb
@settings(CI, max_examples=CI_ENGINE_EXAMPLES)
@given(case=CI_CASES)
def test_engine_fuzz(case, builds):
    check_engine(case, builds)


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("shard", range(SLOW_SHARDS))
@settings(SLOW, max_examples=SLOW.max_examples // SLOW_SHARDS)
@given(case=SLOW_CASES)
def test_engine_fuzz_slow(shard, case, builds):
    check_engine(case, builds)
