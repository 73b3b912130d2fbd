"""A single-port memory: the iCE40 UltraPlus's SPRAM on that FPGA, a behavioural model
elsewhere."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from systolix.config import check_int
from systolix.memory_map import MAX_WORDS, SPRAM_BITS, SPRAM_WORDS, spram_layout

__all__ = ["SinglePortMemory", "uses_spram"]


def uses_spram(platform):
    """Whether ``platform`` (an Amaranth platform, or ``None`` in simulation) is an iCE40
    UltraPlus, whose ``SB_SPRAM256KA`` blocks a :class:`SinglePortMemory` instantiates."""
    return (getattr(platform, "family", None) == "iCE40"
            and getattr(platform, "device", "").startswith("iCE40UP"))


class SinglePortMemory(wiring.Component):
    """A memory of ``depth`` words of ``width`` bits with one address: a word is written or
    read in a cycle, not both; its contents are not initialised.

    On an iCE40 UltraPlus (:func:`uses_spram`) it is ``SB_SPRAM256KA`` blocks (16K x 16 bits
    each) as :func:`~systolix.memory_map.spram_layout` arranges them: groups of blocks side by
    side, a row of a group holding one word or several, each in a field of whole nibbles that
    the blocks' write masks write alone (3 words of 20 bits in a row of 4 blocks); the address's
    high bits (its bank) choose the group and the field, the bank of the last read the data
    read. Elsewhere (and in
    simulation) it is an :class:`amaranth.lib.memory.Memory` with a write port and a read port
    that share the address in the same way: the same words, reads and writes cycle for cycle,
    so that Verilator and cocotb simulate the engine bit-exactly with either.

    The two ports look like a memory's: ``write`` (address, data, ``en``) and ``read`` (a
    synchronous read port: the word at ``addr`` in the cycle after ``en``, held while ``en`` is
    low). A write takes the address: in a cycle with ``write.en`` the read port does not read
    (its data holds in the model; it is undefined on the SPRAM, as ``SB_SPRAM256KA``'s model
    says), so a user writes only while it does not need the read data.

    Latency: 1 cycle from ``read.en`` to ``read.data``. Throughput: one read or one write a
    cycle.

    Parameters
    ----------
    width : int
        Bits of a word, 1..1024.
    depth : int
        Words, 2..:data:`~systolix.memory_map.MAX_WORDS`.

    Attributes
    ----------
    read : Out(ReadPort.Signature(addr_width=ceil_log2(depth), shape=width))
    write : Out(WritePort.Signature(addr_width=ceil_log2(depth), shape=width))
        The ports as a :class:`~amaranth.lib.memory.Memory` has them (``wiring.connect`` a
        user's ``In(ReadPort.Signature(...))`` to ``read``).
    layout : SpramLayout
        Where the words lie in ``SB_SPRAM256KA`` blocks on an iCE40 UltraPlus.
    blocks : int
        ``SB_SPRAM256KA`` blocks on an iCE40 UltraPlus (``layout.blocks``).
    """

    def __init__(self, width, depth):
        self.width = check_int("width", width, 1, 1024)
        self.depth = check_int("depth", depth, 2, MAX_WORDS)
        self.layout = spram_layout(width, depth)
        self.blocks = self.layout.blocks
        addr_width = ceil_log2(depth)
        super().__init__({
            "read": Out(ReadPort.Signature(addr_width=addr_width, shape=width)),
            "write": Out(WritePort.Signature(addr_width=addr_width, shape=width)),
        })

    def elaborate(self, platform):
        m = Module()
        read, write = self.read, self.write
        if not uses_spram(platform):
            m.submodules.memory = memory = Memory(shape=self.width, depth=self.depth, init=[])
            write_port = memory.write_port()
            read_port = memory.read_port()
            m.d.comb += [
                write_port.addr.eq(write.addr), write_port.data.eq(write.data),
                write_port.en.eq(write.en),
                read_port.addr.eq(read.addr), read_port.en.eq(read.en & ~write.en),
                read.data.eq(read_port.data),
            ]
            return m

        layout = self.layout
        addr = Signal(len(read.addr))
        m.d.comb += addr.eq(Mux(write.en, write.addr, read.addr))
        row_bits = ceil_log2(SPRAM_WORDS)
        bank = Signal(range(layout.banks))
        if layout.banks > 1:
            m.d.comb += bank.eq(addr[row_bits:])
        read_bank = Signal.like(bank)
        with m.If(read.en & ~write.en):
            m.d.sync += read_bank.eq(bank)

        def bank_in(banks):
            """Whether the address is in one of ``banks``."""
            return Cat(bank == index for index in banks).any()

        # A word is written into its field of a row: the word in every field, the write mask
        # on the nibbles of its own.
        fields = range(layout.fields)
        field_nibbles = layout.field_bits // 4
        data_in = Signal(layout.columns * SPRAM_BITS)
        nibble_enables = Signal(layout.columns * SPRAM_BITS // 4)
        m.d.comb += [
            data_in.eq(Cat(Cat(write.data, Const(0, layout.field_bits - self.width))
                           .replicate(layout.fields))),
            nibble_enables.eq(Cat(bank_in(range(field, layout.banks, layout.fields))
                                  .replicate(field_nibbles) for field in fields)),
        ]
        rows = []
        for group in range(layout.groups):
            outputs = []
            for column in range(layout.columns):
                data_out = Signal(SPRAM_BITS, name=f"spram_{group}_{column}_data")
                m.submodules[f"spram_{group}_{column}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:row_bits],
                    i_DATAIN=data_in.word_select(column, SPRAM_BITS),
                    i_MASKWREN=nibble_enables.word_select(column, 4),
                    i_WREN=write.en,
                    i_CHIPSELECT=(write.en | read.en)
                    & bank_in(range(group * layout.fields, (group + 1) * layout.fields)),
                    i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=data_out)
                outputs.append(data_out)
            rows.append(Cat(*outputs))
        # The word read: from the group and field of the bank of the last read.
        words = [rows[index // layout.fields].word_select(index % layout.fields,
                                                          layout.field_bits)[:self.width]
                 for index in range(layout.banks)]
        data = words[0]
        for index, word in enumerate(words[1:], start=1):
            data = Mux(read_bank == index, word, data)
        m.d.comb += read.data.eq(data)
        return m
