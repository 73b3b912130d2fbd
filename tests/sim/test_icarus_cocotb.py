"""The default model's accelerator on Icarus Verilog: the first run after reset, end to end
through the driver (what ``systolix sim --simulator icarus`` runs). Skipped without ``iverilog``.

cocotb compiles for Icarus with ``-g2012``, where declaration initializers are set before time 0
without an event, so the trigger Yosys's ``write_verilog`` gives every ``always @*`` block
(``reg trigger = 0;``, read in the block) never fires: a block whose inputs are all registers
keeps x until one of them changes. In the engine's writeback the address mux of the first
activation buffer (``input_addr`` while idle) stayed x until ``input_addr`` first moved, so the
first input word of the first run after reset was written to address x (nowhere) and vector 0
came out wrong. :mod:`systolix.sim.runner` compiles with ``-g2005``, the language of that Verilog.
"""

import shutil

import numpy as np
import pytest

from systolix.config import DEFAULT_CONFIG
from systolix.memory_map import MemoryConfig
from systolix.sim.golden.engine import engine_cycles
from systolix.sim.golden.program import run_program
from systolix.sim.transport import SimulationTransport
from systolix.sw.default import default_program
from systolix.sw.driver import Device
from systolix.sw.pack import pack

pytestmark = [
    pytest.mark.cocotb,
    pytest.mark.skipif(shutil.which("iverilog") is None or shutil.which("vvp") is None,
                       reason="Icarus Verilog is not installed (iverilog and vvp are not on "
                              "PATH; Debian: apt-get install iverilog)"),
]


def test_default_model_first_run_after_reset(tmp_path):
    config = DEFAULT_CONFIG
    program, data, _ = default_program(config)
    codes = program.encode_input(data.x_test)[:3]
    assert codes[0, :config.rows].any()     # the first input word is not zero
    images = pack(program, config, MemoryConfig())
    with SimulationTransport(config, images, simulator="icarus", stall=0.2,
                             build_root=tmp_path) as transport:
        device = Device(transport, program, config)
        first, second = device.run(codes), device.run(codes)
    expected = run_program(program, codes)
    np.testing.assert_array_equal(first.outputs, expected)
    np.testing.assert_array_equal(second.outputs, expected)
    assert first.cycles == second.cycles == (engine_cycles(config, images, 3).compute,)
