"""Cycle model of :class:`systolix.hw.engine.InferenceEngine`: the exact cycles of a run.

:func:`engine_cycles` joins the cycle models of the engine's components
(:mod:`systolix.sim.golden.components`: sequencer, weight, stationary and activation feeders,
the array's handshakes through :class:`~systolix.sim.golden.cycles.ArrayModel`, the K-tile
accumulator, the result queue, the requantization issuer, the post-op unit, the row unit, the
requantization units, the writeback and the output streamer) as the gateware joins the
components, and steps them one cycle at a time; the data itself is the business of
:func:`systolix.sim.golden.program.run_program`. A run does not depend on the host once it has
started, so its cycle count depends only on the program, the array, the memory depths and the
batch size.
"""

from typing import NamedTuple

from systolix.memory_map import LAYER_KINDS, layer_records
from systolix.timing import array_timing, default_requant_lanes, vector_planes

from .components import (ActivationFeeder, Bounds, KTileAccumulator, OutputStreamer, PostOps,
                         Queue, Requantizer, RequantIssuer, RowOps, Sequencer,
                         StationaryFeeder, WeightFeeder, Writeback)
from .cycles import ArrayModel

__all__ = ["EngineCycles", "engine_cycles"]


class EngineCycles(NamedTuple):
    """Cycle counts of one run of an :class:`~systolix.hw.engine.InferenceEngine`.

    Attributes
    ----------
    compute : int
        What the engine's ``cycles`` output holds after the run: the cycles from the one after
        ``start`` was accepted to the one in which the last output code is written.
    layers : tuple of int
        The cycles of each layer, its record read included (the header is in layer 0's).
    first_output : int
        Cycles from the ``start`` transfer to the first valid ``outputs`` beat:
        ``compute + 2``. With ``outputs`` always ready, the last code is sent
        ``batch * outputs - 1`` cycles later.
    """
    compute: int
    layers: tuple
    first_output: int


def engine_cycles(config, images, batch, requant_lanes=None):
    """The :class:`EngineCycles` of a run of ``batch`` vectors on an engine of ``config`` with
    ``images`` that requantizes ``requant_lanes`` channels a cycle (default:
    :func:`~systolix.hw.engine.default_requant_lanes`)."""
    lanes = requant_lanes or default_requant_lanes(config)
    records = layer_records(images)
    sequencer = Sequencer(records)
    weight_feeder, activation_feeder = WeightFeeder(), ActivationFeeder()
    # An engine with matmul layers has a stationary feeder between the weight feeder and the
    # array; without, the weight feeder's words go straight to the array.
    stationary = (StationaryFeeder(config.rows)
                  if any(LAYER_KINDS[r["kind"]] == "matmul" for r in records) else None)
    array = ArrayModel(config)
    accumulator = KTileAccumulator()
    queue = Queue(images.memories.batch + 1)
    issuer = RequantIssuer(config.cols, lanes)
    postops = PostOps(config.rows, lanes)
    row_kinds = (LAYER_KINDS.index("softmax"), LAYER_KINDS.index("layernorm"))
    rowops = RowOps(max([record["channels"] for record in records
                         if record["kind"] == row_kinds[1]], default=0))
    requantizer, writeback = Requantizer(), Writeback()
    output_streamer = OutputStreamer(lanes)
    total = len(images.weights)
    # More than any run takes: every result a cycle per channel (per bit-plane too with
    # bit-serial cells), and the pipelines' fill.
    interval = array_timing(config).interval
    limit = 1000 * len(records) + 4 * total + sum(
        batch * record["positions"] * (record["k_tiles"] * record["n_tiles"] * config.cols
                                       * interval
                                       + record["c_tiles"] * (record["kernel_height"]
                                                              * record["kernel_width"]
                                                              + 2 + config.rows)
                                       + 3 * record["channels"] + 100)
        + batch * record["groups"] * (1000 + record["k_tiles"] * record["n_tiles"]
                                      * 4 * config.rows)
        for record in records)

    # The cycle of the start transfer (cycle -1), then cycle 0, the first of the header, on.
    cycle, start, layer_ends, first_output = -1, batch, [], None
    while first_output is None:
        if cycle > limit:
            raise RuntimeError(f"the cycle model did not finish a run of {batch} vectors in "
                               f"{limit} cycles")
        if output_streamer.valid:
            first_output = cycle + 1
        # Combinational: the handshakes of this cycle.
        running, bounds, record = sequencer.running, sequencer.bounds, sequencer.record
        weights_ready, activations_ready = array.weights_ready, array.activations_ready
        matmul = sequencer.matmul
        if stationary is None:
            take_weight = gemm_take = weight_feeder.valid and weights_ready
            gemm_ready = weights_ready
        else:
            take_weight = stationary.valid(weight_feeder.valid) and weights_ready
            gemm_ready = stationary.gemm_ready(weights_ready)
            gemm_take = weight_feeder.valid and gemm_ready
        accept = activation_feeder.valid and activations_ready
        accept_last = accept and activation_feeder.last
        results_ready = accumulator.ready(running, queue.w_rdy, bounds)
        sink_take = array.results_valid and results_ready
        sums_valid = accumulator.sums_valid(array.results_valid, running, bounds)
        vectors_ready = issuer.ready(running)
        take_vector = queue.r_rdy and vectors_ready
        layer_done = writeback.layer_done(requantizer.output or rowops.final)
        if layer_done and sequencer.last_pass:
            layer_ends.append(cycle + 1)
        issued_final = issuer.issued and issuer.final or postops.final
        row = record["kind"] in row_kinds
        on_array = record["kind"] == 0 or matmul
        issues = Bounds(bounds.batch - matmul, bounds.k_tiles, bounds.n_tiles)

        # Registers.
        weight_feeder.step(sequencer.header_done, total, gemm_ready)
        if stationary is not None:
            stationary.step(sequencer.layer_start, record, batch, gemm_take, weights_ready)
        activation_feeder.step(sequencer.layer_start and on_array or sequencer.repeat, running,
                               activations_ready, record, 1 if matmul else batch)
        array.step(take_weight, accept, accept_last, results_ready,
                   vector_planes(config, record["input_bits"], record["input_signed"]))
        accumulator.step(sink_take, running, bounds)
        queue.step(sums_valid, vectors_ready)
        issuer.step(take_vector, running, issues, matmul)
        postops.step(sequencer.layer_start and not on_array and not row, record, batch)
        rowops.step(sequencer.layer_start and row, record, batch)
        requantizer.step(issued_final)
        writeback.step(sequencer.idle, False, cycle == -1)
        output_streamer.step(layer_done and record["last"], True,
                             batch * record["positions"], record["outputs"])
        sequencer.step(start, layer_done)
        start, cycle = 0, cycle + 1
    layers = tuple(end - begin for begin, end in zip([0] + layer_ends, layer_ends))
    return EngineCycles(compute=sequencer.cycles, layers=layers, first_output=first_output)
