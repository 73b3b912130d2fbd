"""Files of the compiler: one ``.npz`` per object, with a format name and version; atomic writes.

Every saved object (float model, quantized model, integer program) is one numpy ``.npz`` archive
holding its arrays and a ``header`` entry: a JSON object with ``format`` (for example
``"systolix.IntegerProgram"``), ``version`` and the object's scalar fields. Loading checks the
format name and the version, and never unpickles anything.
"""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "save_arrays", "load_arrays"]


def atomic_write(path, write):
    """Create or replace the file ``path`` atomically.

    ``write(file)`` is called with a binary file object opened on a temporary file in the same
    folder, which is then renamed onto ``path``; readers see the old file or the new one, never
    a partial one. Missing parent folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


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
