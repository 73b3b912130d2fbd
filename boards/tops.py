"""Board tops: the accelerator with its model baked in, a UART to the host, a clock and LEDs.

Every board of :data:`BOARDS` is an amaranth-boards platform plus what the top needs to know about
it: the array and memory depths that fit its FPGA, the clock the accelerator runs at (from a PLL
where the board's oscillator is slower than the design can go), the UART's rate and the LEDs.
The host talks to :class:`BoardTop` with :class:`systolix.sw.driver.SerialTransport` over the
board's USB serial port (docs/protocol.md); the same frames the simulation transport carries.

LEDs: a heartbeat (the clock runs: toggles every 2**24 cycles), ``busy`` (the engine runs a
batch or sends its outputs) and ``error`` (stays on after a UART framing error or overrun).
"""

from dataclasses import dataclass, field, replace

from amaranth.build import Attrs
from amaranth.hdl import Cat, ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer
from amaranth.vendor import LatticePlatform
from amaranth_boards.ice40_hx8k_b_evn import ICE40HX8KBEVNPlatform
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.orangecrab_r0_2 import OrangeCrabR0_2_25FPlatform
from amaranth_boards.resources import UARTResource
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from systolix.config import DEFAULT_CONFIG, ArrayConfig, check_choice
from systolix.hw.accelerator import Accelerator, SerialAccelerator
from systolix.hw.uart import uart_divisor
from systolix.memory_map import MemoryConfig, spram_weight_words

__all__ = ["Board", "BOARDS", "FILLER", "board", "BoardTop", "ice40_pll", "ecp5_pll",
           "ice40_pll_settings", "ecp5_pll_settings", "PLL_SETTINGS", "PLL_PARAMETERS",
           "fastest_pll_clock"]

FILLER = 0x5157
"""Seed of the pseudo-random words in the unused part of a board's weight, requantization and
program memories (:func:`systolix.sw.pack.memory_contents`), so that each block RAM of the
bitstream holds different contents and the bitstream patcher finds it."""


class _OrangeCrabPlatform(OrangeCrabR0_2_25FPlatform):
    """The OrangeCrab r0.2 (ECP5-25F) with a UART on its Feather header (pins 0: RX, 1: TX;
    a USB serial adapter there) and without the ``dfu-suffix`` step, which is not a YoWASP
    tool: ``dfu-suffix -v 1209 -p 5af0 -a top.bit`` makes the bitstream loadable by the DFU
    bootloader."""
    resources = OrangeCrabR0_2_25FPlatform.resources + [
        UARTResource(0, rx="0", tx="1", conn=("io", 0), attrs=Attrs(IO_TYPE="LVCMOS33")),
    ]
    required_tools = property(lambda self: LatticePlatform.required_tools.fget(self))
    command_templates = property(lambda self: LatticePlatform.command_templates.fget(self))


@dataclass(frozen=True)
class Board:
    """A board the accelerator is built for.

    Parameters
    ----------
    name : str
        As given to ``make bitstream BOARD=``.
    platform : type
        The amaranth-boards platform class.
    family : str
        ``"ice40"`` or ``"ecp5"``.
    config : ArrayConfig
        The array of its accelerator.
    memories : MemoryConfig
        The memory depths of its accelerator (what a model must fit in).
    clock_mhz : float
        The accelerator's clock; a PLL makes it when it differs from the oscillator's.
    baud : int
        The UART's rate.
    leds : tuple
        ``(resource, number, subsignal or None)`` of the heartbeat, busy and error LEDs.
    extra_high : tuple of str
        Output resources held at 1 (such as the ULX3S's ``uart_tx_enable``).
    requant_lanes : int or None
        Channels requantized a cycle (see :class:`~systolix.hw.engine.InferenceEngine`).
    synth_options : str
        More options of Yosys's ``synth_<family>`` (``-dsp``: multipliers into the iCE40UP's
        DSPs; ``-dff``: ABC9 maps the logic with the flip-flops in it, :data:`UP5K_SYNTH`).
    oscillator_on_pll_pad : bool
        iCE40: the oscillator's pin is a PLL's own input pad (``SB_PLL40_PAD``; the iCEBreaker's
        is, and the UP5K's one PLL can take its reference from no other pin there); otherwise
        the PLL takes the oscillator from its global buffer (``SB_PLL40_CORE``).
    loader_board : str
        openFPGALoader's name of the board (``openFPGALoader --list-boards``), which
        ``systolix prog`` programs it with (:mod:`systolix.boards.loader`).
    """
    name: str
    platform: type
    family: str
    config: ArrayConfig
    memories: MemoryConfig
    clock_mhz: float
    baud: int = 115200
    leds: tuple = ()
    extra_high: tuple = field(default=())
    requant_lanes: int = None
    synth_options: str = ""
    oscillator_on_pll_pad: bool = False
    loader_board: str = ""

    @property
    def oscillator_mhz(self):
        platform = self.platform()
        return platform.default_clk_frequency / 1e6

    @property
    def bitstream_suffix(self):
        return ".bin" if self.family == "ice40" else ".bit"


UP5K_SYNTH = "-dsp -dff"
"""``synth_ice40``'s options of the iCEBreaker: multipliers into the UP5K's DSPs (the
requantization lane's), and ABC9 mapping the logic with the flip-flops in view (``-dff``: it
optimises across them rather than stopping at each; every register has the board's reset, and
the gate-level simulation runs this netlist): 56 logic cells fewer on the 8x5 build, fmax within
the spread of placements (docs/boards.md)."""

_ICE40_ARRAY = replace(DEFAULT_CONFIG, cols=4)
"""The array of the iCE40 HX8K board: 8x4 4-bit MACs."""

_ICEBREAKER_ARRAY = replace(DEFAULT_CONFIG, cols=5)
"""The largest array of 4-bit MACs whose accelerator fits the iCE40UP5K with the default model
and whose weight memory in its SPRAM holds models of 200,000 4-bit weights (``systolix bench``:
8x6 needs more logic cells, and its 24-bit words two a row of the 4 SPRAMs, 196,608 weights)."""
# batch 256 so that the accumulator buffer and the queue of finished sums go to block RAM
# (smaller memories become flip-flops); the activation buffers limit a run of the default
# model to 32 vectors; 128 program words (5 layer records of memory map version 6) take the
# same two block RAMs as 64. 29 of the UP5K's 30 block RAMs.
_ICE40_MEMORIES = MemoryConfig(weight_words=2048, requant_words=128, program_words=128,
                               activation_words=256, batch=256, output_codes=256)


def _spram_memories(config, memories, blocks=4):
    """``memories`` with the weight memory in the ``blocks`` SPRAMs of an iCE40 UltraPlus
    (the UP5K's 4: 128 KB, not initialised by the bitstream, so the host loads the weights at
    run time): as many weight words of ``config``'s array as they hold
    (:func:`~systolix.memory_map.spram_weight_words`), 49,152 20-bit words (245,760 4-bit
    weights) for 5 columns. The 56-bit requantization words take 4 block RAMs
    for 128 words or 256, so the UltraPlus gets 256 (a model of up to 256 output channels)."""
    return replace(memories, weight_words=spram_weight_words(config, blocks), requant_words=256,
                   upload_weights=True)
_ECP5_MEMORIES = MemoryConfig()

BOARDS = {board.name: board for board in (
    Board("icebreaker", ICEBreakerPlatform, "ice40", _ICEBREAKER_ARRAY,
          _spram_memories(_ICEBREAKER_ARRAY, _ICE40_MEMORIES),
          clock_mhz=24.0, oscillator_on_pll_pad=True, requant_lanes=1, synth_options=UP5K_SYNTH,
          loader_board="ice40_generic",
          leds=(("led_g", 0, None), ("led_r", 0, None), ("led_r", 0, None))),
    Board("ice40-hx8k-evn", ICE40HX8KBEVNPlatform, "ice40", _ICE40_ARRAY, _ICE40_MEMORIES,
          clock_mhz=36.0, requant_lanes=1, loader_board="ice40_generic",
          leds=(("led", 0, None), ("led", 1, None), ("led", 2, None))),
    Board("ulx3s-85f", ULX3S_85F_Platform, "ecp5", DEFAULT_CONFIG, _ECP5_MEMORIES,
          clock_mhz=50.0, leds=(("led", 0, None), ("led", 1, None), ("led", 2, None)),
          extra_high=("uart_tx_enable",), loader_board="ulx3s"),
    Board("orangecrab", _OrangeCrabPlatform, "ecp5", DEFAULT_CONFIG, _ECP5_MEMORIES,
          clock_mhz=48.0, synth_options="-nodsp", loader_board="orangeCrab",
          leds=(("rgb_led", 0, "g"), ("rgb_led", 0, "b"), ("rgb_led", 0, "r"))),
)}
"""The boards ``make bitstream`` builds for."""


def board(name):
    """The :class:`Board` called ``name``; the message of the error lists the valid names."""
    check_choice("BOARD", name, tuple(BOARDS))
    return BOARDS[name]


class BoardTop(Elaboratable):
    """The accelerator of ``board`` for ``images``, its UART, clock and LEDs.

    Parameters
    ----------
    board : Board
    images : MemoryImages
        Packed for ``board.config`` and ``board.memories``.

    Attributes
    ----------
    accelerator : Accelerator
    divisor : int
        Clock cycles of a UART bit at ``board.clock_mhz`` and ``board.baud``.
    """

    def __init__(self, board, images):
        self.board = board
        self.images = images
        self.accelerator = Accelerator(board.config, images, requant_lanes=board.requant_lanes,
                                       filler=FILLER)
        self.divisor = uart_divisor(board.clock_mhz * 1e6, board.baud)

    def elaborate(self, platform):
        m = Module()
        self._clock(m, platform)
        board = self.board
        m.submodules.serial = serial = SerialAccelerator(self.accelerator, divisor=self.divisor)
        uart = _buffered(m, platform, "uart", 0)
        m.d.comb += [serial.rx.eq(uart["rx"].i), uart["tx"].o.eq(serial.tx)]
        for name in board.extra_high:
            m.d.comb += _buffered(m, platform, name, 0).o.eq(1)

        heartbeat = Signal(25)
        error = Signal()
        m.d.sync += heartbeat.eq(heartbeat + 1)
        with m.If(serial.uart_error):
            m.d.sync += error.eq(1)
        driven = {}
        for (name, number, subsignal), value in zip(board.leds,
                                                    (heartbeat[-1], serial.busy, error)):
            driven.setdefault((name, number, subsignal), []).append(value)
        resources = {}
        for (name, number, subsignal), values in driven.items():
            if (name, number) not in resources:
                resources[name, number] = _buffered(m, platform, name, number)
            led = resources[name, number]
            led = led[subsignal] if subsignal else led
            m.d.comb += led.o.eq(Cat(*values).any())
        return m

    def _clock(self, m, platform):
        """The ``sync`` domain at ``board.clock_mhz``: the oscillator's (platform default) or a
        PLL's, held in reset until the PLL locks."""
        board = self.board
        if board.clock_mhz == board.oscillator_mhz:
            return
        m.domains.sync = ClockDomain("sync")
        clock, locked = Signal(name="pll_clock"), Signal(name="pll_locked")
        m.d.comb += ClockSignal("sync").eq(clock)
        oscillator = board.oscillator_mhz
        if board.family == "ice40":
            divr, divf, divq, filter_range = ice40_pll(oscillator, board.clock_mhz)
            settings = dict(p_FEEDBACK_PATH="SIMPLE", p_DIVR=divr, p_DIVF=divf, p_DIVQ=divq,
                            p_FILTER_RANGE=filter_range, i_RESETB=1, i_BYPASS=0,
                            o_PLLOUTGLOBAL=clock, o_LOCK=locked)
            if board.oscillator_on_pll_pad:
                pin = platform.request(platform.default_clk, dir="-")
                m.submodules.pll = Instance("SB_PLL40_PAD", i_PACKAGEPIN=pin.io, **settings)
            else:
                # Fed from the oscillator's global buffer.
                oscillator_pin = _buffered(m, platform, platform.default_clk, 0)
                m.submodules.pll = Instance("SB_PLL40_CORE", i_REFERENCECLK=oscillator_pin.i,
                                            **settings)
        else:
            clki_div, clkfb_div, clkop_div = ecp5_pll(oscillator, board.clock_mhz)
            m.submodules.pll = Instance(
                "EHXPLLL", p_CLKI_DIV=clki_div, p_CLKFB_DIV=clkfb_div, p_CLKOP_DIV=clkop_div,
                p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=clkop_div - 1, p_FEEDBK_PATH="CLKOP",
                i_CLKI=_buffered(m, platform, platform.default_clk, 0).i, i_CLKFB=clock,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0,
                i_PHASELOADREG=0, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clock, o_LOCK=locked)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        platform.add_clock_constraint(clock, board.clock_mhz * 1e6)


def _buffered(m, platform, name, number):
    """Resource ``name`` ``number`` of ``platform`` with every pin behind an
    :class:`amaranth.lib.io.Buffer` of the pin's direction (what ``platform.request`` without
    ``dir="-"`` made: outputs the design does not drive, such as a UART's modem lines, are
    driven low): the buffer, or a dict of the subsignals' buffers."""
    def buffers(port, path):
        if isinstance(port, io.PortLike):
            m.submodules[path] = buffer = io.Buffer(port.direction, port)
            return buffer
        return {subsignal: buffers(member, f"{path}_{subsignal}")
                for subsignal, member in vars(port).items()}
    return buffers(platform.request(name, number, dir="-"), f"{name}_{number}")


def _ice40_filter_range(pfd):
    """The loop filter setting of an iCE40 PLL for a phase detector at ``pfd`` MHz."""
    return next((index + 1 for index, limit in enumerate((17, 26, 44, 66, 101)) if pfd < limit),
                6)


def ice40_pll_settings(input_mhz):
    """Every ``(output_mhz, (DIVR, DIVF, DIVQ, FILTER_RANGE))`` an iCE40 PLL in simple feedback
    mode makes from ``input_mhz`` (iCE40 sysCLOCK PLL Design and Usage Guide, FPGA-TN-02052:
    PFD 10..133 MHz, VCO 533..1066 MHz, output 16..275 MHz; what ``icepll`` searches), in the
    order of DIVR, DIVF, DIVQ."""
    for divr in range(16):
        pfd = input_mhz / (divr + 1)
        if not 10 <= pfd <= 133:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533 <= vco <= 1066:
                continue
            for divq in range(1, 7):
                output = vco / (1 << divq)
                if 16 <= output <= 275:
                    yield output, (divr, divf, divq, _ice40_filter_range(pfd))


def ecp5_pll_settings(input_mhz):
    """Every ``(output_mhz, (CLKI_DIV, CLKFB_DIV, CLKOP_DIV))`` of an ECP5 PLL with CLKOP
    feedback from ``input_mhz`` (ECP5 sysCLOCK PLL/DLL Design and Usage Guide, TN1263: PFD
    3.125..400 MHz, VCO 400..800 MHz, output 3.125..400 MHz; what ``ecppll`` searches), the
    smallest CLKOP_DIV whose VCO is in range, in the order of CLKI_DIV and CLKFB_DIV."""
    for clki_div in range(1, 129):
        pfd = input_mhz / clki_div
        if not 3.125 <= pfd <= 400:
            continue
        for clkfb_div in range(1, 129):
            output = pfd * clkfb_div
            if not 3.125 <= output <= 400:
                continue
            clkop_div = max(1, -(-400 // output))
            if clkop_div <= 128 and output * clkop_div <= 800:
                yield output, (clki_div, clkfb_div, int(clkop_div))


PLL_SETTINGS = {"ice40": ice40_pll_settings, "ecp5": ecp5_pll_settings}
"""Each family's enumeration of PLL settings."""

PLL_PARAMETERS = {"ice40": ("DIVR", "DIVF", "DIVQ", "FILTER_RANGE"),
                  "ecp5": ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV")}
"""The names of the PLL parameters of each family's settings."""


def _exact(family, input_mhz, output_mhz):
    for output, settings in PLL_SETTINGS[family](input_mhz):
        if abs(output - output_mhz) < 1e-9:
            return settings
    name = "an iCE40" if family == "ice40" else "an ECP5"
    raise ValueError(f"clock_mhz must be a frequency {name} PLL makes exactly from "
                     f"{input_mhz:g} MHz, not {output_mhz:g}")


def ice40_pll(input_mhz, output_mhz):
    """``(DIVR, DIVF, DIVQ, FILTER_RANGE)`` of an iCE40 PLL in simple feedback mode making
    exactly ``output_mhz`` from ``input_mhz`` (the first of :func:`ice40_pll_settings`)."""
    return _exact("ice40", input_mhz, output_mhz)


def ecp5_pll(input_mhz, output_mhz):
    """``(CLKI_DIV, CLKFB_DIV, CLKOP_DIV)`` of an ECP5 PLL with CLKOP feedback making exactly
    ``output_mhz`` from ``input_mhz`` (the first of :func:`ecp5_pll_settings`)."""
    return _exact("ecp5", input_mhz, output_mhz)


def fastest_pll_clock(board, at_most_mhz):
    """The highest clock at most ``at_most_mhz`` that ``board``'s PLL makes from its oscillator
    and from which its UART's rate divides within 2 % (:func:`~systolix.hw.uart.uart_divisor`),
    with the PLL's settings: ``(clock_mhz, settings)``, or ``None`` if there is none."""
    best = None
    for output, settings in PLL_SETTINGS[board.family](board.oscillator_mhz):
        if output > at_most_mhz + 1e-9 or (best is not None and output <= best[0]):
            continue
        try:
            uart_divisor(output * 1e6, board.baud)
        except ValueError:
            continue
        best = output, settings
    return best
