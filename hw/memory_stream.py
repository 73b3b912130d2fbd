"""A memory read port (or any source that answers an address) as a stream."""

from amaranth.hdl import Module, Shape, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out

__all__ = ["MemoryToStream"]

_RESERVED = ("addr", "data")


class MemoryToStream(wiring.Component):
    """Reads the word at each requested address into a stream, through one register stage.

    Each transfer on ``requests`` reads ``read`` at its ``addr``; the word leaves on ``words``
    in the next cycle, with the request's ``fields`` beside it, and stays there unchanged until
    it is taken. The stage takes a request in every cycle in which it is empty or its word is
    taken::

        requests.ready = read.en = ~words.valid | words.ready

    so a producer that keeps ``requests.valid`` high streams without bubbles, and the only
    combinational path through the stage is ``words.ready`` to ``requests.ready`` (and to
    ``read.en``). ``requests.valid`` and the fields only reach registers, the address only
    ``read.addr``.

    The source is read in every cycle the stage advances, with or without a request. With
    ``registered=False`` it is a synchronous read port (:class:`amaranth.lib.memory.ReadPort`
    of the ``sync`` domain) whose data appears in the cycle after ``en`` and holds while ``en``
    is low: the port's output register is the stage's data register. With ``registered=True``
    the source answers ``read.addr`` in the same cycle (a table of constants, a multiplexer of
    registers, an asynchronous read port) and the stage keeps the word in a register of its own.

    Latency: 1 cycle from a request transfer to its word on ``words``. Throughput: one word a
    cycle.

    Parameters
    ----------
    addr_width : int
        Bits of an address.
    data_shape : shape-castable
        Shape of a word on ``words``; ``read.data`` carries its bits (``unsigned(width)``).
    fields : dict of str to shape-castable, optional
        Fields that travel with a request from ``requests`` to its word on ``words`` (for
        example a ``last`` flag); none by default. Neither may be named ``addr`` or ``data``.
    registered : bool, optional
        Whether the stage registers ``read.data`` itself (see above); ``False`` by default.

    Attributes
    ----------
    requests : In(stream.Signature(...))
        The address (``unsigned(addr_width)``), or with ``fields`` a struct of ``addr`` and the
        fields.
    read : In(ReadPort.Signature(addr_width=addr_width, shape=unsigned(width)))
        To the source: ``addr`` and ``en`` out, ``data`` in; ``wiring.connect`` it to a
        :meth:`Memory.read_port() <amaranth.lib.memory.Memory.read_port>`.
    words : Out(stream.Signature(...))
        The word (``data_shape``), or with ``fields`` a struct of ``data`` and the fields.
    """

    def __init__(self, addr_width, data_shape, *, fields=None, registered=False):
        if isinstance(addr_width, bool) or not isinstance(addr_width, int) or addr_width < 0:
            raise TypeError(f"addr_width must be a non-negative integer, not {addr_width!r}")
        try:
            width = Shape.cast(data_shape).width
        except TypeError:
            raise TypeError(f"data_shape must be a shape-castable object, not "
                            f"{data_shape!r}") from None
        fields = {} if fields is None else fields
        if not isinstance(fields, dict):
            raise TypeError(f"fields must be a dict of names to shapes, not {fields!r}")
        for name, shape in fields.items():
            if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
                raise ValueError(f"field names must be identifiers other than 'addr' and "
                                 f"'data', not {name!r}")
            try:
                Shape.cast(shape)
            except TypeError:
                raise TypeError(f"the shape of field {name!r} must be shape-castable, not "
                                f"{shape!r}") from None
        if not isinstance(registered, bool):
            raise TypeError(f"registered must be a bool, not {registered!r}")
        self.fields = dict(fields)
        self.registered = bool(registered)
        self.width = width
        if self.fields:
            request_shape = data.StructLayout({"addr": unsigned(addr_width), **self.fields})
            word_shape = data.StructLayout({"data": data_shape, **self.fields})
        else:
            request_shape, word_shape = unsigned(addr_width), data_shape
        super().__init__({
            "requests": In(stream.Signature(request_shape)),
            "read": In(ReadPort.Signature(addr_width=addr_width, shape=unsigned(width))),
            "words": Out(stream.Signature(word_shape)),
        })

    def elaborate(self, platform):
        m = Module()
        requests, words = self.requests, self.words
        addr = requests.payload.addr if self.fields else requests.payload
        word = words.payload.data if self.fields else words.payload
        advance = Signal()
        valid = Signal()
        m.d.comb += [
            advance.eq(~valid | words.ready),
            requests.ready.eq(advance),
            self.read.en.eq(advance),
            self.read.addr.eq(addr),
            words.valid.eq(valid),
        ]
        taken = {}
        if self.fields:
            taken = Signal(data.StructLayout(self.fields))
            m.d.comb += [words.payload[name].eq(taken[name]) for name in self.fields]
        if self.registered:
            held = Signal(self.width)
            m.d.comb += word.eq(held)
        else:
            m.d.comb += word.eq(self.read.data)
        with m.If(advance):
            m.d.sync += valid.eq(requests.valid)
            with m.If(requests.valid):
                m.d.sync += [taken[name].eq(requests.payload[name]) for name in self.fields]
                if self.registered:
                    m.d.sync += held.eq(self.read.data)
        return m
