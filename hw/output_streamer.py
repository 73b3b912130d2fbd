"""The engine's output streamer: the run's codes from the output memory to the host."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from systolix.config import ArrayConfig
from systolix.memory_map import MemoryConfig, output_layout
from systolix.numeric import CODE_BITS

from .issuer import check_lanes
from .loops import Bounds
from .memory_stream import MemoryToStream

__all__ = ["OutputStreamer"]


class OutputStreamer(wiring.Component):
    """Sends a run's ``(batch_last + 1) * (outputs_last + 1)`` codes from the output memory.

    From the cycle after the ``start`` strobe it reads the output memory (``lanes`` codes a
    word) through a :class:`~systolix.hw.memory_stream.MemoryToStream` stage: vector by vector
    (``ceil((outputs_last + 1) / lanes)`` words each, the layout the
    :class:`~systolix.hw.issuer.RequantIssuer` writes), code by code, ``last`` on the final
    code; ``done`` is the strobe of the final transfer. ``batch_last`` and ``outputs_last``
    must hold until then.

    Latency: the first code is valid 2 cycles after ``start``. Throughput: one code a cycle
    while ``outputs`` is ready.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig
    lanes : int
        Codes in an output memory word (the requantization lanes).

    Attributes
    ----------
    start : In(1)
    batch_last, outputs_last : In(...)
        Shapes of :class:`~systolix.hw.loops.Bounds`.
    read : In(ReadPort.Signature(addr_width=ceil_log2(output_codes), shape=8 * lanes))
        The output memory (a synchronous read port).
    outputs : Out(stream.Signature(output_layout()))
    done : Out(1)
    """

    def __init__(self, config, memories, lanes):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        check_lanes(config, lanes)
        self.memories, self.lanes = memories, lanes
        self.bounds = bounds = Bounds(config, memories)
        self.addr_width = ceil_log2(memories.output_codes)
        super().__init__({
            "start": In(1),
            "batch_last": In(bounds.batch),
            "outputs_last": In(bounds.channels),
            "read": In(ReadPort.Signature(addr_width=self.addr_width, shape=CODE_BITS * lanes)),
            "outputs": Out(stream.Signature(output_layout())),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.lanes
        m.submodules.reader = reader = MemoryToStream(
            self.addr_width, CODE_BITS * lanes, fields={"lane": range(lanes), "last": 1})
        wiring.connect(m, reader.read, wiring.flipped(self.read))
        words, outputs = reader.words, self.outputs
        m.d.comb += [
            outputs.valid.eq(words.valid),
            outputs.payload.code.eq(words.payload.data.word_select(words.payload.lane,
                                                                   CODE_BITS)),
            outputs.payload.last.eq(words.payload.last),
            words.ready.eq(outputs.ready),
            self.done.eq(outputs.valid & outputs.ready & outputs.payload.last),
        ]

        addr = Signal(range(self.memories.output_codes + 1))
        lane = Signal(range(lanes))
        channel, index = Signal(self.bounds.channels), Signal(self.bounds.batch)
        streaming = Signal()
        request = reader.requests
        m.d.comb += [
            request.valid.eq(streaming),
            request.payload.addr.eq(addr),
            request.payload.lane.eq(lane),
            request.payload.last.eq((channel == self.outputs_last)
                                    & (index == self.batch_last)),
        ]
        with m.If(request.valid & request.ready):
            with m.If(channel != self.outputs_last):
                m.d.sync += channel.eq(channel + 1)
                with m.If(lane != lanes - 1):
                    m.d.sync += lane.eq(lane + 1)
                with m.Else():
                    m.d.sync += [lane.eq(0), addr.eq(addr + 1)]
            with m.Else():
                m.d.sync += [channel.eq(0), lane.eq(0), addr.eq(addr + 1), index.eq(index + 1)]
                with m.If(index == self.batch_last):
                    m.d.sync += streaming.eq(0)
        with m.If(self.start):
            m.d.sync += [streaming.eq(1), addr.eq(0), lane.eq(0), channel.eq(0), index.eq(0)]
        return m
