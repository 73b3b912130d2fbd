"""The simulator runner's Verilog: written again only when it changes, so that a simulator
build of the same design is reused (Verilator's make rebuilds when a source is newer)."""

import os

from systolix.hw.uart import UARTTransmitter
from systolix.sim.runner import write_verilog


def test_unchanged_verilog_keeps_its_file(tmp_path):
    path = write_verilog(UARTTransmitter(4), tmp_path / "uart.v", "uart")
    os.utime(path, (1, 1))
    write_verilog(UARTTransmitter(4), path, "uart")
    assert path.stat().st_mtime == 1
    write_verilog(UARTTransmitter(5), path, "uart")
    assert path.stat().st_mtime > 1 and "uart" in path.read_text()
