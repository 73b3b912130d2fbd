"""What the engine's components share: the widths of their counters (:class:`Bounds`) and the
loop counters of a layer (:class:`LoopCounters`)."""

from amaranth.hdl import Shape, Signal

from systolix.config import ArrayConfig
from systolix.memory_map import MemoryConfig

__all__ = ["Bounds", "LoopCounters"]


class Bounds:
    """Shapes of the engine's counters and addresses: as wide as its memories need.

    A program that packs into the memories (:func:`systolix.sw.pack.check_fit`) has at most
    as many K tiles in a layer as the weight memory holds (``rows`` words each; a convolution's
    K tiles may outnumber the words of its input map); at most ``requant_words`` channels and
    so ``requant_words // cols`` output tiles; every buffer word address and output memory
    word address lies below the larger of the two depths.

    Parameters
    ----------
    config : ArrayConfig
    memories : MemoryConfig

    Attributes
    ----------
    k_tiles, n_tiles, batch, channels : Shape
        Of a K tile, an output tile, a vector of the batch and a channel index.
    channels_end : Shape
        Of a count of channels (one more than the largest index).
    address : Shape
        Of an activation buffer or output memory word address, and one past the last.
    """

    def __init__(self, config, memories):
        if not isinstance(config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {config!r}")
        if not isinstance(memories, MemoryConfig):
            raise TypeError(f"memories must be a MemoryConfig, not {memories!r}")
        weight_tiles = max(1, memories.weight_words // config.rows)
        self.k_tiles = Shape.cast(range(weight_tiles))
        self.n_tiles = Shape.cast(range(max(1, min(memories.requant_words // config.cols,
                                                   weight_tiles))))
        self.batch = Shape.cast(range(memories.batch))
        self.channels = Shape.cast(range(memories.requant_words))
        self.channels_end = Shape.cast(range(memories.requant_words + 1))
        self.address = Shape.cast(range(max(memories.activation_words,
                                            memories.output_codes) + 1))


class LoopCounters:
    """The loop counters of a layer: output tile, K tile and vector of the batch, innermost
    last (the order of :mod:`systolix.memory_map`'s weight tiles and of the feeders).

    With ``registered``, the registers ``index_last`` and ``k_tile_last`` say that the vector
    is the tile's last and the K tile ``k_last``, each set a cycle ahead, so that no compare
    lies between the counters and what the last vector of a tile enables; ``index`` then counts
    down, the vectors left in the tile (from ``batch_last``), and ``index_last`` is set from
    ``index == 1`` as it steps (a compare with a constant: with ``index + 1 == batch_last``, the
    adder and the compare were the iCEBreaker's critical path), from ``batch_last == 0`` as it
    wraps and on :meth:`reset`; ``k_tile_last`` from ``k_tile + 1 == k_last`` and ``k_last ==
    0``. ``batch_last`` and ``k_last`` must then hold from the last cycle of :meth:`reset`
    on."""

    def __init__(self, name, bounds, *, registered=False):
        self.index = Signal(bounds.batch, name=f"{name}_index")
        self.k_tile = Signal(bounds.k_tiles, name=f"{name}_k_tile")
        self.n_tile = Signal(bounds.n_tiles, name=f"{name}_n_tile")
        self.registered = registered
        if registered:
            self.index_last = Signal(name=f"{name}_index_last")
            self.k_tile_last = Signal(name=f"{name}_k_tile_last")

    def at_batch_last(self, batch_last):
        """Whether the vector is the tile's last (``index`` is ``batch_last``)."""
        return self.index_last if self.registered else self.index == batch_last

    def at_k_last(self, k_last):
        """Whether ``k_tile`` is ``k_last``."""
        return self.k_tile_last if self.registered else self.k_tile == k_last

    def is_last(self, batch_last, k_last, n_last):
        """Whether this is the last vector of the layer's last tile (``k_last`` and ``n_last``
        are the last K tile and output tile)."""
        return (self.at_batch_last(batch_last) & self.at_k_last(k_last)
                & (self.n_tile == n_last))

    def reset(self, m, batch_last=None, k_last=None):
        """Restart from the layer's first vector (``batch_last``, ``k_last``: with
        ``registered``, the layer's)."""
        m.d.sync += [self.k_tile.eq(0), self.n_tile.eq(0)]
        if self.registered:
            m.d.sync += [self.index.eq(batch_last), self.index_last.eq(batch_last == 0),
                         self.k_tile_last.eq(k_last == 0)]
        else:
            m.d.sync += self.index.eq(0)

    def step(self, m, batch_last, k_last, n_last, *, on_vector=(), on_k_tile=(), on_n_tile=(),
             on_layer=()):
        """Advance by one vector; the ``on_*`` statements run when the vector index, the K tile,
        the output tile or the whole layer (its last vector) moves on."""
        registered = self.registered
        with m.If(~self.at_batch_last(batch_last)):
            m.d.sync += on_vector
            if registered:
                m.d.sync += [self.index.eq(self.index - 1), self.index_last.eq(self.index == 1)]
            else:
                m.d.sync += self.index.eq(self.index + 1)
        with m.Else():
            if registered:
                m.d.sync += [self.index.eq(batch_last), self.index_last.eq(batch_last == 0)]
            else:
                m.d.sync += self.index.eq(0)
            with m.If(~self.at_k_last(k_last)):
                m.d.sync += [self.k_tile.eq(self.k_tile + 1), *on_k_tile]
                if registered:
                    m.d.sync += self.k_tile_last.eq(self.k_tile + 1 == k_last)
            with m.Else():
                m.d.sync += self.k_tile.eq(0)
                if registered:
                    m.d.sync += self.k_tile_last.eq(k_last == 0)
                with m.If(self.n_tile != n_last):
                    m.d.sync += [self.n_tile.eq(self.n_tile + 1), *on_n_tile]
                with m.Else():
                    m.d.sync += [self.n_tile.eq(0), *on_layer]
