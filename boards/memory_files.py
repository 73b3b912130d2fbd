"""Memory images as files: ``.hex`` (``$readmemh``, ``icebram``, ``ecpbram``) and ``.bin``.

A ``.hex`` file has one word a line, in lower-case hexadecimal zero-padded to the word width; a
``.bin`` file is the words one after the other, each little-endian in ``ceil(width / 8)`` bytes
(what :func:`systolix.protocol.image_checksum` sums). Every file is written atomically (a
temporary file renamed onto it).
"""

from pathlib import Path

from systolix.memory_map import MEMORY_WIDTHS, MemoryImages, baked_memories, memory_contents
from systolix.protocol import words_to_bytes
from systolix.sw.io import atomic_write

__all__ = ["write_hex", "read_hex", "write_images", "write_memory_files"]


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


def write_memory_files(images, folder, filler):
    """Write the whole contents of each memory whose image the bitstream holds
    (:func:`~systolix.memory_map.baked_memories`: not a weight memory loaded at run time),
    ``filler`` included (:func:`systolix.memory_map.memory_contents`), as
    ``<folder>/<name>.hex``: what the bitstream's block RAMs hold."""
    widths = dict(MEMORY_WIDTHS)
    for name in baked_memories(images.memories):
        write_hex(Path(folder) / f"{name}.hex", memory_contents(images, name, filler),
                  getattr(images, widths[name]))
