"""The UART: a transmitter looped back into a receiver, bit timing, errors."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from systolix.hw.uart import UARTReceiver, UARTTransmitter, uart_divisor

DIVISOR = 6


def loopback():
    m = Module()
    m.submodules.tx = tx = UARTTransmitter(DIVISOR)
    m.submodules.rx = rx = UARTReceiver(DIVISOR)
    m.d.comb += rx.rx.eq(tx.tx)
    return m, tx, rx


def test_loopback_carries_every_byte_value():
    m, tx, rx = loopback()
    sent = list(range(256)) + [random.Random(1).randrange(256) for _ in range(32)]
    received, errors = [], []

    async def send(ctx):
        for byte in sent:
            ctx.set(tx.data.payload, byte)
            ctx.set(tx.data.valid, 1)
            await ctx.tick().until(tx.data.ready)
        ctx.set(tx.data.valid, 0)

    async def receive(ctx):
        ctx.set(rx.data.ready, 1)
        while len(received) < len(sent):
            await ctx.tick()
            if ctx.get(rx.data.valid):
                received.append(ctx.get(rx.data.payload))
            if ctx.get(rx.overrun) or ctx.get(rx.framing_error):
                errors.append(len(received))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(send, background=True)
    sim.add_testbench(receive)
    sim.run()
    assert received == sent and errors == []


def test_transmitter_bit_timing():
    tx = UARTTransmitter(DIVISOR)
    line = []

    async def bench(ctx):
        ctx.set(tx.data.payload, 0b1011_0010)
        ctx.set(tx.data.valid, 1)
        await ctx.tick()
        ctx.set(tx.data.valid, 0)
        for _ in range(11 * DIVISOR):
            line.append(ctx.get(tx.tx))
            await ctx.tick()

    sim = Simulator(tx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    bits = [0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1]     # start, LSB first, stop, idle
    assert line == [bit for bit in bits for _ in range(DIVISOR)]


def drive_line(rx, bits, taken=True):
    """Drive ``bits`` (one per bit time) into ``rx``; return the bytes and error flags seen."""
    seen = {"bytes": [], "overrun": 0, "framing_error": 0}

    async def bench(ctx):
        ctx.set(rx.data.ready, int(taken))
        for bit in bits + [1] * 3:
            ctx.set(rx.rx, bit)
            for _ in range(DIVISOR):
                await ctx.tick()
                if ctx.get(rx.data.valid) and taken:
                    seen["bytes"].append(ctx.get(rx.data.payload))
                seen["overrun"] += ctx.get(rx.overrun)
                seen["framing_error"] += ctx.get(rx.framing_error)

    sim = Simulator(rx)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


def frame(byte, stop=1):
    return [0] + [(byte >> bit) & 1 for bit in range(8)] + [stop]


def test_receiver_reports_framing_error_and_drops_the_byte():
    seen = drive_line(UARTReceiver(DIVISOR), frame(0x5A, stop=0) + [1] + frame(0xC3))
    assert seen == {"bytes": [0xC3], "overrun": 0, "framing_error": 1}


def test_receiver_reports_overrun_when_a_byte_is_not_taken():
    rx = UARTReceiver(DIVISOR)
    seen = drive_line(rx, frame(0x11) + frame(0x22), taken=False)
    assert seen["overrun"] == 1 and seen["framing_error"] == 0


@pytest.mark.parametrize("clock_hz, baud, divisor", [(12e6, 115200, 104), (48e6, 1_000_000, 48),
                                                     (25e6, 115200, 217)])
def test_divisor(clock_hz, baud, divisor):
    assert uart_divisor(clock_hz, baud) == divisor


def test_divisor_refuses_an_unreachable_rate():
    with pytest.raises(ValueError, match=r"^baud must be within 2 % of clock / n for an integer "
                                         r"n >= 4 \(clock 12 MHz\), not 5000000$"):
        uart_divisor(12e6, 5_000_000)
