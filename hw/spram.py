"""A single-port memory: the iCE40 UltraPlus's SPRAM on that FPGA, a behavioural model
elsewhere."""

from amaranth.hdl import Cat, ClockSignal, Instance, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory, ReadPort, WritePort
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from systolix.config import check_int
from systolix.memory_map import MAX_WORDS, SPRAM_BITS, SPRAM_WORDS, spram_blocks

__all__ = ["SinglePortMemory", "uses_spram"]


def uses_spram(platform):
    """Whether ``platform`` (an Amaranth platform, or ``None`` in simulation) is an iCE40
    UltraPlus, whose ``SB_SPRAM256KA`` blocks a :class:`SinglePortMemory` instantiates."""
    return (getattr(platform, "family", None) == "iCE40"
            and getattr(platform, "device", "").startswith("iCE40UP"))


class SinglePortMemory(wiring.Component):
    """A memory of ``depth`` words of ``width`` bits with one address: a word is written or
    read in a cycle, not both; its contents are not initialised.

    On an iCE40 UltraPlus (:func:`uses_spram`) it is ``ceil(width / 16)`` ``SB_SPRAM256KA``
    blocks side by side (16K x 16 bits each) times ``ceil(depth / 16384)`` banks chosen by the
    address's high bits, a bank's data chosen by the bank of the last read. Elsewhere (and in
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
    blocks : int
        ``SB_SPRAM256KA`` blocks on an iCE40 UltraPlus.
    """

    def __init__(self, width, depth):
        self.width = check_int("width", width, 1, 1024)
        self.depth = check_int("depth", depth, 2, MAX_WORDS)
        self.blocks = spram_blocks(width, depth)
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

        addr = Signal(len(read.addr))
        m.d.comb += addr.eq(Mux(write.en, write.addr, read.addr))
        bank_bits = len(addr) - ceil_log2(SPRAM_WORDS)
        bank = addr[ceil_log2(SPRAM_WORDS):] if bank_bits > 0 else 0
        read_bank = Signal(max(bank_bits, 0))
        if bank_bits > 0:
            with m.If(read.en & ~write.en):
                m.d.sync += read_bank.eq(bank)
        address = Signal(ceil_log2(SPRAM_WORDS))
        m.d.comb += address.eq(addr[:ceil_log2(SPRAM_WORDS)])
        columns = -(-self.width // SPRAM_BITS)
        data_in = Signal(columns * SPRAM_BITS)
        m.d.comb += data_in.eq(write.data)
        banks = []
        for index in range(-(-self.depth // SPRAM_WORDS)):
            outputs = []
            for column in range(columns):
                data_out = Signal(SPRAM_BITS, name=f"spram_{index}_{column}_data")
                m.submodules[f"spram_{index}_{column}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=address,
                    i_DATAIN=data_in.word_select(column, SPRAM_BITS),
                    i_MASKWREN=0b1111, i_WREN=write.en,
                    i_CHIPSELECT=(write.en | read.en) & (bank == index),
                    i_CLOCK=ClockSignal("sync"), i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1,
                    o_DATAOUT=data_out)
                outputs.append(data_out)
            banks.append(Cat(*outputs))
        data = banks[0]
        for index, bank_data in enumerate(banks[1:], start=1):
            data = Mux(read_bank == index, bank_data, data)
        m.d.comb += read.data.eq(data[:self.width])
        return m
