"""Memory images as files: ``.hex`` (``$readmemh``, ``icebram``, ``ecpbram``) and ``.bin``.

A ``.hex`` file has one word a line, in lower-case hexadecimal zero-padded to the word width; a
``.bin`` file is the words one after the other, each little-endian in ``ceil(width / 8)`` bytes
(what :func:`systolix.protocol.image_checksum` sums). Every file is written atomically (a
temporary file renamed onto it).
"""

from pathlib import Path

from systolix.hw.reply_transmitter import status_memory_contents
from systolix.memory_map import MEMORY_WIDTHS, MemoryImages, baked_memories, memory_contents
from systolix.protocol import model_status, words_to_bytes
from systolix.sw.io import atomic_write

__all__ = ["STATUS_MEMORY", "write_hex", "read_hex", "write_images", "bitstream_memories",
           "bitstream_memory_contents", "write_memory_files"]

STATUS_MEMORY = "status"
"""The name of the host link's status memory (8-bit words: the model's fields of a
STATUS_REPLY, :func:`~systolix.hw.reply_transmitter.status_memory_contents`) among the
memories of :func:`bitstream_memories`."""


def _hex_lines(words, width):
    digits = -(-width // 4)
    return "".join(f"{word:0{digits}x}\n" for word in words).encode("ascii")


def write_hex(path, words, width):
    """Write ``words`` to ``path`` atomically, one a line in lower-case hexadecimal zero-padded
    to ``width`` bits; returns the path."""
    content = _hex_lines(words, width)
    atomic_write(Path(path), lambda file: file.write(content))
    return Path(path)


def read_hex(path):
    """The words of a hex file of one word a line (:func:`write_hex`)."""
    return [int(line, 16) for line in Path(path).read_text().split()]


def write_images(images, folder):
    """Write each memory image as ``<name>.hex`` and ``<name>.bin`` in ``folder`` (created if
    needed); ``<name>`` is ``weights``, ``requant`` or ``program``.

    Returns
    -------
    tuple of pathlib.Path
        The files written.
    """
    if not isinstance(images, MemoryImages):
        raise TypeError(f"images must be MemoryImages, not {type(images).__name__}")
    paths = []
    for name, width in MEMORY_WIDTHS:
        words, width = getattr(images, name), getattr(images, width)
        for suffix, content in ((".hex", _hex_lines(words, width)),
                                (".bin", words_to_bytes(words, width))):
            path = Path(folder) / f"{name}{suffix}"
            atomic_write(path, lambda file: file.write(content))
            paths.append(path)
    return tuple(paths)


def bitstream_memories(memories):
    """The names of the memories whose contents the bitstream of an engine with ``memories``
    (a :class:`~systolix.memory_map.MemoryConfig`) holds and a model changes: those of
    :func:`~systolix.memory_map.baked_memories` and the link's :data:`STATUS_MEMORY`."""
    return (*baked_memories(memories), STATUS_MEMORY)


def bitstream_memory_contents(images, name, filler):
    """The whole contents of the memory ``name`` of :func:`bitstream_memories` for ``images``,
    ``filler`` included (:func:`systolix.memory_map.memory_contents`,
    :func:`~systolix.hw.reply_transmitter.status_memory_contents`), and its word width: a tuple
    ``(words, width)``."""
    if name == STATUS_MEMORY:
        return status_memory_contents(model_status(images), filler), 8
    return memory_contents(images, name, filler), getattr(images, dict(MEMORY_WIDTHS)[name])


def write_memory_files(images, folder, filler):
    """Write the whole contents of each memory of :func:`bitstream_memories` (not a weight
    memory loaded at run time), ``filler`` included (:func:`bitstream_memory_contents`), as
    ``<folder>/<name>.hex``: what the bitstream's block RAMs hold."""
    for name in bitstream_memories(images.memories):
        write_hex(Path(folder) / f"{name}.hex", *bitstream_memory_contents(images, name, filler))
