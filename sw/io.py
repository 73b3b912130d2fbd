"""Files of the compiler: one ``.npz`` per object, with a format name and version; atomic writes.

Every saved object (float model, quantized model, integer program) is one numpy ``.npz`` archive
holding its arrays and a ``header`` entry: a JSON object with ``format`` (for example
``"systolix.IntegerProgram"``), ``version`` and the object's scalar fields. Loading checks the
format name and the version, and never unpickles anything.
"""

import json

import numpy as np

from systolix.files import atomic_write

__all__ = ["save_arrays", "load_arrays"]


def save_arrays(path, format_name, version, header, arrays):
    """Write ``arrays`` (a dict of name to array) and the JSON ``header`` to one ``.npz`` file."""
    header = {"format": format_name, "version": version, **header}
    entries = {"header": np.array(json.dumps(header, sort_keys=True))}
    entries.update(arrays)
    atomic_write(path, lambda file: np.savez(file, **entries))


def load_arrays(path, format_name, version):
    """Read a file written by :func:`save_arrays`; return ``(header, arrays)``.

    Raises :class:`ValueError` if the file is not a ``format_name`` file of this ``version``.
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            entries = {name: archive[name] for name in archive.files}
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable .npz file: {error}") from None
    if "header" not in entries:
        raise ValueError(f"{path} is not a {format_name} file: it has no header")
    header = json.loads(str(entries.pop("header")))
    if header.get("format") != format_name:
        raise ValueError(f"{path} is not a {format_name} file but {header.get('format')!r}")
    if header.get("version") != version:
        raise ValueError(f"{path} is {format_name} version {header.get('version')!r}; this "
                         f"systolix reads version {version}")
    return header, entries
