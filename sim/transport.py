"""The driver's transport to a simulated accelerator: the same frames a board's UART carries,
through the Verilog of :class:`systolix.hw.accelerator.Accelerator` in cocotb; and a simulated
board's serial port: :class:`SerialSimulation`, a pseudo-terminal whose other end is the UART
pins of :class:`systolix.hw.accelerator.SerialAccelerator`."""

import socket
import tempfile
import threading
import time
from pathlib import Path

from systolix import protocol
from systolix.hw.accelerator import Accelerator, SerialAccelerator
from systolix.sim.runner import run_cocotb

__all__ = ["design_folder", "SimulationTransport", "SerialSimulation"]


def design_folder(root, config, images):
    """The build folder of a design whose memories hold ``images``: named after the array and
    the images' checksum, so that a later run of the same model reuses its simulator build."""
    return Path(root) / f"{config.name}-{protocol.image_checksum(images):08x}"


class SimulationTransport:
    """A :class:`systolix.sw.driver.Transport` to an accelerator simulated by cocotb.

    The simulation starts on creation (building the Verilog and the simulator unless a build of
    the same design exists) and serves frames over a local TCP connection until :meth:`close`:
    each :meth:`exchange` sends a request frame's bytes into ``host_in`` and returns the reply
    frame from ``host_out``, with random stalls on both streams.

    Parameters
    ----------
    config : ArrayConfig
    images : MemoryImages
    simulator : str
        ``"verilator"`` or ``"icarus"``.
    build_root : path-like
    stall : float
        Probability that a host stream stalls in a cycle.
    seed : int
    cycle_limit : int
        Cycles an exchange may take before the simulation gives up.
    start_timeout : float
        Seconds to wait for the simulation to start (the build included).
    """

    def __init__(self, config, images, *, simulator="verilator",
                 build_root="build/sim/accelerator", stall=0.0, seed=0, cycle_limit=10_000_000,
                 start_timeout=900.0):
        self.report, self.error = None, None
        listener = socket.create_server(("127.0.0.1", 0))
        spec = {"port": listener.getsockname()[1], "stall": stall, "seed": seed,
                "cycle_limit": cycle_limit}
        self._thread = threading.Thread(target=self._simulate, daemon=True, args=(
            Accelerator(config, images), spec, simulator,
            design_folder(build_root, config, images)))
        self._thread.start()
        listener.settimeout(1.0)
        deadline = time.monotonic() + start_timeout
        with listener:
            while True:
                try:
                    self._socket, _ = listener.accept()
                    break
                except TimeoutError:
                    if not self._thread.is_alive() or time.monotonic() > deadline:
                        raise RuntimeError(f"the simulation did not start: "
                                           f"{self.error or 'timed out'}") from self.error
        self._socket.settimeout(None)
        self._replies = self._socket.makefile("rb")

    def _simulate(self, accelerator, spec, simulator, build_dir):
        try:
            self.report = run_cocotb(accelerator, "accelerator",
                                     "systolix.sim.testbench.accelerator", spec,
                                     simulator=simulator, build_dir=build_dir)
        except Exception as error:     # reported by __init__ or close()
            self.error = error

    def exchange(self, request):
        """Send the frame ``request``; return the bytes of the reply frame."""
        self._socket.sendall(request)
        return protocol.read_frame(self._replies.read)

    def close(self):
        """End the simulation; return its report (frames, cycles, seconds)."""
        self._socket.shutdown(socket.SHUT_WR)
        self._thread.join()
        self._replies.close()
        self._socket.close()
        if self.error is not None:
            raise RuntimeError(f"the simulation failed: {self.error}") from self.error
        return self.report

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class SerialSimulation:
    """A serial device whose other end is an accelerator's UART in a cocotb simulation.

    The simulation (:mod:`systolix.sim.testbench.serial`) starts on creation, building the
    Verilog of :class:`~systolix.hw.accelerator.SerialAccelerator` and the simulator unless a
    build of the same design exists, and opens a pseudo-terminal: :attr:`port` is its device,
    which a host opens as it would a board's USB serial port (``systolix run --port``,
    :class:`~systolix.sw.driver.SerialTransport`). The bytes written to it reach the design's
    ``rx`` pin bit by bit, and its ``tx`` pin's bytes come back; the baud rate a host sets on
    the device means nothing here: a bit takes ``divisor`` clock cycles.

    Parameters
    ----------
    config : ArrayConfig
    images : MemoryImages
    divisor : int
        Clock cycles a UART bit, at least 4 (few, so that the simulation is quick).
    simulator : str
    build_root : path-like
    seconds : float
        Wall time after which the simulation stops by itself.
    start_timeout : float
        Seconds to wait for the simulation to start (the build included).
    """

    def __init__(self, config, images, *, divisor=4, simulator="verilator",
                 build_root="build/sim/serial", seconds=600.0, start_timeout=900.0):
        self.report, self.error = None, None
        self._folder = tempfile.TemporaryDirectory(prefix="systolix-serial-")
        folder = Path(self._folder.name)
        self._stop_file = folder / "stop"
        port_file = folder / "port"
        spec = {"port_file": str(port_file), "stop_file": str(self._stop_file),
                "divisor": divisor, "seconds": seconds}
        design = SerialAccelerator(Accelerator(config, images), divisor=divisor)
        self._thread = threading.Thread(target=self._simulate, daemon=True, args=(
            design, spec, simulator, design_folder(build_root, config, images)))
        self._thread.start()
        deadline = time.monotonic() + start_timeout
        while not port_file.exists():
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self._stop_file.touch()
                self._thread.join()
                self._folder.cleanup()
                raise RuntimeError(f"the simulation did not start: "
                                   f"{self.error or 'timed out'}") from self.error
            time.sleep(0.05)
        self.port = port_file.read_text()

    def _simulate(self, design, spec, simulator, build_dir):
        try:
            self.report = run_cocotb(design, "serial_accelerator",
                                     "systolix.sim.testbench.serial", spec,
                                     simulator=simulator, build_dir=build_dir)
        except Exception as error:     # reported by __init__ or close()
            self.error = error

    def close(self):
        """End the simulation; return its report (bytes each way, cycles, UART errors,
        seconds)."""
        self._stop_file.touch()
        self._thread.join()
        self._folder.cleanup()
        if self.error is not None:
            raise RuntimeError(f"the simulation failed: {self.error}") from self.error
        return self.report

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
