"""An 8N1 UART: byte streams to and from two pins, for the host link of a board.

One start bit (0), eight data bits, least significant first, one stop bit (1); the line idles at
1. Both directions count ``divisor`` clock cycles a bit: ``divisor = round(f_clk / baud)``.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from systolix.config import check_int

__all__ = ["UARTTransmitter", "UARTReceiver", "uart_divisor"]


def uart_divisor(clock_hz, baud):
    """Clock cycles a bit at ``baud`` from a ``clock_hz`` clock; refuses a rate more than 2 %
    away from ``baud`` (the most that two 8N1 ends tolerate between them with margin)."""
    check_int("baud", baud, 1, 100_000_000)
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) > 0.02 * baud:
        raise ValueError(f"baud must be within 2 % of clock / n for an integer n >= 4 "
                         f"(clock {clock_hz / 1e6:g} MHz), not {baud}")
    return divisor


class UARTTransmitter(wiring.Component):
    """Sends the bytes of ``data`` on ``tx``.

    Latency: the start bit begins the cycle after a byte is accepted. Throughput: one byte per
    ``10 * divisor`` cycles; ``data.ready`` is high only while the line is idle.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 2.

    Attributes
    ----------
    data : In(stream.Signature(8))
    tx : Out(1)
        The serial line, 1 when idle.
    """

    def __init__(self, divisor):
        check_int("divisor", divisor, 2, 1 << 24)
        self.divisor = divisor
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits_left = Signal(range(11))
        frame = Signal(10, init=1)      # stop bit, data (LSB first), start bit; shifted out LSB first
        # idle: bits_left == 0, registered (the ready reaches the engine's output streamer
        # through the link's transmitter, and with the compare in it was the iCEBreaker's
        # critical path).
        idle = Signal(init=1)
        m.d.comb += [self.data.ready.eq(idle), self.tx.eq(frame[0])]
        with m.If(idle):
            with m.If(self.data.valid):
                m.d.sync += [frame.eq((1 << 9) | (self.data.payload << 1)), bits_left.eq(10),
                             timer.eq(self.divisor - 1), idle.eq(0)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [frame.eq((1 << 9) | (frame >> 1)), bits_left.eq(bits_left - 1),
                         timer.eq(self.divisor - 1), idle.eq(bits_left == 1)]
        return m


class UARTReceiver(wiring.Component):
    """Receives bytes from ``rx`` onto ``data``.

    ``rx`` passes through a two-flip-flop synchronizer; a falling edge starts a frame (so a line
    held at 0 after a framing error starts none), each bit is sampled in its middle. A byte is offered on ``data`` from the cycle after its stop bit's
    middle until it is taken or the next byte replaces it; a byte replaced before being taken
    sets ``overrun`` for one cycle, a 0 where the stop bit should be sets ``framing_error`` for
    one cycle (and the byte is dropped).

    Latency: 9.5 bit times plus 4 cycles from the start bit's falling edge to ``data.valid``.
    Throughput: one byte per 10 bit times.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Attributes
    ----------
    rx : In(1)
    data : Out(stream.Signature(8))
    overrun, framing_error : Out(1)
    """

    def __init__(self, divisor):
        check_int("divisor", divisor, 4, 1 << 24)
        self.divisor = divisor
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "overrun": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        rx_last = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        m.d.sync += rx_last.eq(rx)
        timer = Signal(range(self.divisor + self.divisor // 2))
        bits_left = Signal(range(10))
        shift = Signal(8)               # the data bits, shifted in from the top
        with m.If(self.data.ready):
            m.d.sync += self.data.valid.eq(0)
        m.d.sync += [self.overrun.eq(0), self.framing_error.eq(0)]
        with m.If(bits_left == 0):
            with m.If(rx_last & ~rx):   # start bit: wait to the middle of the first data bit
                m.d.sync += [bits_left.eq(9), timer.eq(self.divisor + self.divisor // 2 - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [shift.eq((shift >> 1) | (rx << 7)), bits_left.eq(bits_left - 1),
                         timer.eq(self.divisor - 1)]
            with m.If(bits_left == 1):  # the stop bit
                with m.If(rx):
                    m.d.sync += [self.data.payload.eq(shift), self.data.valid.eq(1),
                                 self.overrun.eq(self.data.valid & ~self.data.ready)]
                with m.Else():
                    m.d.sync += self.framing_error.eq(1)
        return m
