"""Cycle model of :class:`systolix.hw.engine.InferenceEngine`: the exact cycles of a run.

:func:`engine_cycles` joins the cycle models of the engine's components
(:mod:`systolix.sim.golden.components`: sequencer, weight and activation feeders, the array's
handshakes through :class:`~systolix.sim.golden.cycles.ArrayModel`, the K-tile accumulator, the
result queue, the requantization issuer, the post-op unit, the row unit, the requantization
units, the writeback and the output streamer) as the gateware joins the components, and steps
them one cycle at a time; the data itself is the business of
:func:`systolix.sim.golden.program.run_program`. A run does not depend on the host once it has
started, so its cycle count depends only on the program, the array, the memory depths and the
batch size.
"""

from typing import NamedTuple

from systolix.memory_map import LAYER_KINDS, layer_records
from systolix.timing import array_timing, default_requant_lanes, vector_planes

from .components import (ActivationFeeder, KTileAccumulator, OutputStreamer, PostOps,
                         Requantizer, RequantIssuer, RowOps, Sequencer, SyncFIFOBuffered,
                         WeightFeeder, Writeback)
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
    array = ArrayModel(config)
    accumulator = KTileAccumulator()
    queue = SyncFIFOBuffered(images.memories.batch + 1)
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
        take_weight = weight_feeder.valid and weights_ready
        accept = activation_feeder.valid and activations_ready
        accept_last = accept and activation_feeder.last
        results_ready = accumulator.ready(running, queue.w_rdy, bounds)
        sink_take = array.results_valid and results_ready
        sums_valid = accumulator.sums_valid(array.results_valid, running, bounds)
        vectors_ready = issuer.ready(running)
        take_vector = queue.r_rdy and vectors_ready
        layer_done = writeback.layer_done(requantizer.output or rowops.final)
        if layer_done:
            layer_ends.append(cycle + 1)
        issued_final = issuer.issued and issuer.final or postops.final
        gemm, row = record["kind"] == 0, record["kind"] in row_kinds

        # Registers.
        weight_feeder.step(sequencer.header_done, total, weights_ready)
        activation_feeder.step(sequencer.layer_start and gemm, running, activations_ready,
                               record, batch)
        array.step(take_weight, accept, accept_last, results_ready,
                   vector_planes(config, record["input_bits"], record["input_signed"]))
        accumulator.step(sink_take, running, bounds)
        queue.step(sums_valid, vectors_ready)
        issuer.step(take_vector, running, bounds)
        postops.step(sequencer.layer_start and not gemm and not row, record, batch)
        rowops.step(sequencer.layer_start and row, record, batch)
        requantizer.step(issued_final)
        writeback.step(sequencer.idle, False, cycle == -1)
        output_streamer.step(layer_done and record["last"], True,
                             batch * record["positions"], record["outputs"])
        sequencer.step(start, layer_done)
        start, cycle = 0, cycle + 1
    layers = tuple(end - begin for begin, end in zip([0] + layer_ends, layer_ends))
    return EngineCycles(compute=sequencer.cycles, layers=layers, first_output=first_output)
