"""cocotb testbench that puts :class:`systolix.hw.accelerator.SerialAccelerator` behind a
pseudo-terminal: a serial device the host opens like a board's (``systolix run --port``).

The test opens a pseudo-terminal in raw mode and writes the path of its device into the file
named by the spec (``SYSTOLIX_SPEC``: ``port_file``, ``stop_file``, ``divisor``, ``seconds``).
Every byte the host writes to that device is sent on the ``rx`` pin bit by bit (start bit,
eight data bits least significant first, stop bit, ``divisor`` clock cycles each); every byte
the design sends on ``tx`` is sampled in the middle of its bits and written back to the
host. The simulation runs until ``stop_file`` exists (or ``seconds`` of wall time have passed);
the report (``SYSTOLIX_REPORT``) counts the bytes each way, the cycles, the UART errors and the
framing errors seen on ``tx``.

While neither line carries a byte, the simulation advances in steps of :data:`IDLE_BITS` bit
times and waits up to a millisecond for the host between steps, so that a host that thinks does
not make the simulator spin.
"""

import json
import os
import pty
import select
import time
import tty
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import FallingEdge, RisingEdge, Timer

__all__ = ["PERIOD_NS", "IDLE_BITS", "send_byte", "receive_byte"]

PERIOD_NS = 10
"""The clock period of the simulation."""

IDLE_BITS = 200
"""Bit times the simulation advances at a time while both lines are idle."""


async def send_byte(rx, byte, bit_ns):
    """Drive one 8N1 frame of ``byte`` on the pin ``rx``, ``bit_ns`` a bit."""
    for bit in (0, *((byte >> index) & 1 for index in range(8)), 1):
        rx.value = bit
        await Timer(bit_ns, unit="ns")


async def receive_byte(tx, bit_ns):
    """Wait for a start bit on the pin ``tx`` and sample the frame in the middle of each bit;
    return ``(byte, stop_bit)``."""
    await FallingEdge(tx)
    await Timer(bit_ns * 3 // 2, unit="ns")
    byte = 0
    for index in range(8):
        byte |= int(tx.value) << index
        await Timer(bit_ns, unit="ns")
    return byte, int(tx.value)


@cocotb.test()
async def serve_pty(dut):
    """Bridge the pseudo-terminal and the design's UART pins until told to stop."""
    spec = json.loads(Path(os.environ["SYSTOLIX_SPEC"]).read_text())
    bit_ns = spec["divisor"] * PERIOD_NS
    controller, device = pty.openpty()
    tty.setraw(device)
    os.set_blocking(controller, False)
    counts = {"bytes_to_device": 0, "bytes_to_host": 0, "framing_errors_on_tx": 0,
              "uart_errors": 0}
    activity = {"at": time.monotonic()}

    dut.rx.value = 1
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    async def to_host():
        while True:
            byte, stop = await receive_byte(dut.tx, bit_ns)
            if not stop:
                counts["framing_errors_on_tx"] += 1
            os.write(controller, bytes([byte]))
            counts["bytes_to_host"] += 1
            activity["at"] = time.monotonic()

    async def count_errors():
        while True:
            await RisingEdge(dut.uart_error)
            counts["uart_errors"] += 1

    cocotb.start_soon(to_host())
    cocotb.start_soon(count_errors())
    Path(spec["port_file"]).write_text(os.ttyname(device))
    stop_file = Path(spec["stop_file"])
    deadline = time.monotonic() + spec["seconds"]
    started = time.perf_counter()
    pending = bytearray()
    while not stop_file.exists() and time.monotonic() < deadline:
        if not pending:
            quiet = time.monotonic() - activity["at"] > 0.05
            if select.select([controller], [], [], 0.001 if quiet else 0)[0]:
                try:
                    pending += os.read(controller, 4096)
                except (BlockingIOError, OSError):
                    pass    # no host has the device open: nothing to read
        if pending:
            await send_byte(dut.rx, pending.pop(0), bit_ns)
            counts["bytes_to_device"] += 1
            activity["at"] = time.monotonic()
        else:
            await Timer(IDLE_BITS * bit_ns, unit="ns")
    os.close(device)
    os.close(controller)
    cycles = round(get_sim_time("ns") / PERIOD_NS)
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({**counts, "stopped": stop_file.exists(), "cycles": cycles,
                   "seconds": time.perf_counter() - started}, report)
