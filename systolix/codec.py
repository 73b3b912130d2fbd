"""The one codec between :mod:`amaranth.lib.data` layouts and Python integers and bytes.

Every word the accelerator stores or sends is described by a layout: the memory map's words
(:mod:`systolix.memory_map`), the host protocol's payloads (:mod:`systolix.protocol`) and the
array's stream payloads. The gateware views its signals with these layouts; everything in
Python (the packer, the driver, the golden models, the testbenches) turns values into words and
back with :func:`encode` and :func:`decode` here, so the two cannot disagree about a bit.

A :class:`~amaranth.lib.data.StructLayout` takes and gives a dict of field values, an
:class:`~amaranth.lib.data.ArrayLayout` a list; fields that are layouts themselves nest. A
signed field holds two's complement.
"""

import operator

from amaranth.hdl import Shape
from amaranth.lib import data

from .config import check_int, code_range

__all__ = ["encode", "decode", "to_bytes", "from_bytes"]


def _fields(layout):
    """``(key, field)`` of every field of ``layout``, with ``key`` a field name or index."""
    return list(layout)


def encode(layout, values, *, prefix=""):
    """The integer whose bits hold ``values`` in the fields of ``layout``.

    Parameters
    ----------
    layout : amaranth.lib.data.Layout
    values : dict or sequence
        A value for every field (by name for a struct, in order for an array); a field that is
        a layout takes a dict or sequence in turn.
    prefix : str
        Put before each field's name in error messages.

    Raises
    ------
    ValueError
        If a value is not an integer in its field's range; the message names the field.
    """
    layout = data.Layout.cast(layout)
    word = 0
    for key, field in _fields(layout):
        value = values[key]
        label = f"{prefix}{key}"
        if isinstance(field.shape, data.Layout):
            bits = encode(field.shape, value, prefix=f"{label}.")
        else:
            shape = Shape.cast(field.shape)
            low, high = code_range(shape.width, shape.signed)
            try:
                value = operator.index(value)      # an int, a bool or a numpy integer
            except TypeError:
                raise ValueError(f"{label} must be an integer in {low}..{high}, not "
                                 f"{value!r}") from None
            bits = check_int(label, value, low, high)
        word |= (bits & ((1 << field.width) - 1)) << field.offset
    return word


def decode(layout, word):
    """The field values held by the integer ``word`` in ``layout`` (the inverse of
    :func:`encode`): a dict for a struct layout, a list for an array layout."""
    layout = data.Layout.cast(layout)
    values = {}
    for key, field in _fields(layout):
        bits = (word >> field.offset) & ((1 << field.width) - 1)
        if isinstance(field.shape, data.Layout):
            values[key] = decode(field.shape, bits)
        else:
            if Shape.cast(field.shape).signed and field.width and bits >> (field.width - 1):
                bits -= 1 << field.width
            values[key] = bits
    if isinstance(layout, data.ArrayLayout):
        return [values[index] for index in range(layout.length)]
    return values


def to_bytes(layout, values):
    """:func:`encode`, as ``layout.size // 8`` bytes, least significant byte first (the
    layout must be whole bytes)."""
    layout = data.Layout.cast(layout)
    return encode(layout, values).to_bytes(-(-layout.size // 8), "little")


def from_bytes(layout, payload):
    """The field values of ``payload``, which must be exactly the bytes of ``layout``
    (:class:`ValueError` otherwise)."""
    layout = data.Layout.cast(layout)
    size = -(-layout.size // 8)
    if len(payload) != size:
        raise ValueError(f"a payload of {size} bytes was expected, not {len(payload)}")
    return decode(layout, int.from_bytes(payload, "little"))
