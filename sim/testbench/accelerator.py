"""cocotb testbench that serves :class:`systolix.hw.accelerator.Accelerator` to a host driver.

The test connects to the TCP port named in the spec (``SYSTOLIX_SPEC``: ``port``, ``stall``,
``seed``), reads request frames from it, sends each frame's bytes into ``host_in`` and returns
the bytes of the reply frame from ``host_out``, with random stalls on both streams, until the
driver closes the connection. :class:`systolix.sim.transport.SimulationTransport` is the other
end. The report (``SYSTOLIX_REPORT``) counts the frames and cycles.
"""

import json
import os
import socket
import time
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from systolix import protocol
from systolix.codec import from_bytes
from systolix.sim.testbench.array import reset

__all__ = ["exchange"]

_HEADER_BYTES = protocol.FRAME_HEADER_LAYOUT.size // 8


async def exchange(dut, request, rng, stall, cycle_limit):
    """Send ``request`` into ``host_in`` and collect one reply frame from ``host_out``;
    returns ``(reply, cycles)``."""
    sent, presenting, reply, cycles = 0, False, bytearray(), 0
    length = None
    while length is None or len(reply) < length:
        if not presenting and sent < len(request) and rng.random() >= stall:
            presenting = True
            dut.host_in__payload.value = request[sent]
        dut.host_in__valid.value = int(presenting)
        ready = rng.random() >= stall
        dut.host_out__ready.value = int(ready)
        await ReadOnly()
        if presenting and int(dut.host_in__ready.value):
            sent, presenting = sent + 1, False
        if ready and int(dut.host_out__valid.value):
            reply.append(int(dut.host_out__payload.value))
            if len(reply) == _HEADER_BYTES:
                header = from_bytes(protocol.FRAME_HEADER_LAYOUT, bytes(reply))
                length = _HEADER_BYTES + header["length"] + protocol.CRC_BYTES
        await RisingEdge(dut.clk)
        cycles += 1
        if cycles > cycle_limit:
            raise TimeoutError(f"no reply frame after {cycles} cycles ({len(reply)} bytes)")
    dut.host_in__valid.value = 0
    dut.host_out__ready.value = 0
    return bytes(reply), cycles


@cocotb.test()
async def serve_frames(dut):
    """Answer the driver's frames until it closes the connection."""
    spec = json.loads(Path(os.environ["SYSTOLIX_SPEC"]).read_text())
    rng = np.random.default_rng(spec["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut, sources=("host_in",), sinks=("host_out",))
    frames, cycles, started = 0, 0, time.perf_counter()
    with socket.create_connection(("127.0.0.1", spec["port"])) as connection:
        requests = connection.makefile("rb")
        while True:
            try:
                request = protocol.read_frame(requests.read)
            except protocol.ProtocolError:
                break   # the driver closed the connection
            reply, taken = await exchange(dut, request, rng, spec["stall"], spec["cycle_limit"])
            connection.sendall(reply)
            frames, cycles = frames + 1, cycles + taken
    with open(os.environ["SYSTOLIX_REPORT"], "w") as report:
        json.dump({"frames": frames, "cycles": cycles,
                   "seconds": time.perf_counter() - started}, report)
