"""The whole accelerator: the inference engine behind the host link's byte streams, and the
same behind an 8N1 UART's two pins (what a board's top and the serial simulation hold)."""

from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .engine import InferenceEngine
from .link import FrameLink
from .uart import UARTReceiver, UARTTransmitter

__all__ = ["Accelerator", "SerialAccelerator"]


class Accelerator(wiring.Component):
    """An :class:`~systolix.hw.engine.InferenceEngine` for ``images`` behind a
    :class:`~systolix.hw.link.FrameLink`: the host sends RUN and STATUS frames on ``host_in``
    and reads RESULT, STATUS_REPLY and ERROR frames on ``host_out`` (docs/protocol.md), one byte
    a cycle each way at most. Boards connect a UART to the two byte streams.

    Latency of a RUN: the frame's bytes (one a cycle at most; the engine takes the input words
    as they arrive), the CRC check, the engine's run
    (:func:`systolix.sim.golden.engine.engine_cycles`), then the RESULT frame.

    Parameters
    ----------
    config : ArrayConfig
    images : MemoryImages
        From :func:`systolix.sw.pack.pack`; baked into the memories (but for weights loaded
        at run time, ``images.memories.upload_weights``: the host sends them in LOAD frames).
    requant_lanes, filler : int, optional
        See :class:`~systolix.hw.engine.InferenceEngine`; ``filler`` seeds the link's status
        memory too (:class:`~systolix.hw.link.FrameLink`).
    timeout_cycles : int or None
        Cycles the link waits for the rest of a frame before it answers ERROR (see
        :class:`~systolix.hw.link.FrameLink`).

    Attributes
    ----------
    host_in : In(stream.Signature(8))
    host_out : Out(stream.Signature(8))
    busy : Out(1)
        The engine is running a batch or sending its outputs.
    engine : InferenceEngine
    link : FrameLink
    """

    def __init__(self, config, images, *, requant_lanes=None, filler=None,
                 timeout_cycles=1 << 24):
        self.engine = InferenceEngine(config, images, requant_lanes=requant_lanes, filler=filler)
        self.link = FrameLink.for_engine(self.engine, timeout_cycles=timeout_cycles,
                                         filler=filler)
        self.config, self.images = config, images
        super().__init__({
            "host_in": In(stream.Signature(8)),
            "host_out": Out(stream.Signature(8)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = self.engine
        m.submodules.link = self.link
        wiring.connect(m, self.link.engine, self.engine)
        wiring.connect(m, wiring.flipped(self.host_in), self.link.host_in)
        wiring.connect(m, self.link.host_out, wiring.flipped(self.host_out))
        m.d.comb += self.busy.eq(self.engine.busy)
        return m


class SerialAccelerator(wiring.Component):
    """An :class:`Accelerator` behind an 8N1 UART (:mod:`systolix.hw.uart`): the host's bytes
    arrive on ``rx`` and the replies leave on ``tx``, ``divisor`` clock cycles a bit.

    Latency and throughput: those of :class:`Accelerator`, with every byte taking 10 bit times
    (``10 * divisor`` cycles) on its pin, plus the receiver's 9.5 bit times and 4 cycles from a
    byte's start bit to the link.

    Parameters
    ----------
    accelerator : Accelerator
    divisor : int
        Clock cycles a bit, at least 4 (:func:`~systolix.hw.uart.uart_divisor`).

    Attributes
    ----------
    rx : In(1)
        The serial line from the host, 1 when idle.
    tx : Out(1)
        The serial line to the host, 1 when idle.
    busy : Out(1)
        The engine is running a batch or sending its outputs.
    uart_error : Out(1)
        A byte was lost (receiver overrun) or badly framed, for one cycle.
    """

    def __init__(self, accelerator, *, divisor):
        if not isinstance(accelerator, Accelerator):
            raise TypeError(f"accelerator must be an Accelerator, not {accelerator!r}")
        self.accelerator = accelerator
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "uart_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.accelerator = accelerator = self.accelerator
        m.submodules.receiver = receiver = UARTReceiver(self.divisor)
        m.submodules.transmitter = transmitter = UARTTransmitter(self.divisor)
        wiring.connect(m, receiver.data, accelerator.host_in)
        wiring.connect(m, accelerator.host_out, transmitter.data)
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx),
                     self.busy.eq(accelerator.busy),
                     self.uart_error.eq(receiver.overrun | receiver.framing_error)]
        return m
