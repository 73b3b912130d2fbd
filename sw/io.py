"""Files of the compiler: one ``.npz`` per object, with a format name and version; atomic writes.

Every saved object (float model, quantized model, integer program) is one numpy ``.npz`` archive
holding its arrays and a ``header`` entry: a JSON object with ``format`` (for example
``"systolix.IntegerProgram"``), ``version`` and the object's scalar fields. Loading checks the
format name and the version, and never unpickles anything.

Loading is strict, since a model file may come from anywhere: the archive must hold exactly the
members its header calls for; each member's ``.npy`` header is read first and its dtype kind,
number of dimensions and size (at most :data:`MAX_MEMBER_BYTES`, all of them together at most
:data:`MAX_TOTAL_BYTES`) checked before its data is read; integer arrays must be stored as
integers (no float truncated, no unsigned value wrapped) and float arrays as floats. Every
problem is a :class:`ValueError` naming the file, the member or header field, the value and
what is allowed.
"""

import json
import math
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from systolix.files import atomic_write

__all__ = ["MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES", "MAX_HEADER_BYTES", "MAX_LAYERS",
           "save_arrays", "load_arrays", "field", "layer_count"]

MAX_MEMBER_BYTES = 64 << 20
"""The most bytes one array of a model file may hold (64 MiB)."""

MAX_TOTAL_BYTES = 256 << 20
"""The most bytes all the arrays of a model file may hold together (256 MiB)."""

MAX_HEADER_BYTES = 1 << 20
"""The most bytes of the JSON header of a model file (1 MiB)."""

MAX_LAYERS = 256
"""The most layers a model file may declare."""

_KINDS = {"int": ("iu", "integers"), "float": ("f", "floats")}


def save_arrays(path, format_name, version, header, arrays):
    """Write ``arrays`` (a dict of name to array) and the JSON ``header`` to one ``.npz`` file."""
    header = {"format": format_name, "version": version, **header}
    entries = {"header": np.array(json.dumps(header, sort_keys=True))}
    entries.update(arrays)
    atomic_write(path, lambda file: np.savez(file, **entries))


def field(path, where, entry, name, kind, low=None, high=None):
    """The header field ``entry[name]`` of the file ``path`` (``where`` says which part of the
    header, such as ``"layer 0 "``), checked: ``kind`` is ``int`` (``low..high``), ``bool``,
    ``str``, ``float`` (finite, above ``low``), ``list`` or ``dict``."""
    label = f"{path}: header field {where}{name}"
    if not isinstance(entry, dict) or name not in entry:
        raise ValueError(f"{label}: is missing")
    value = entry[name]
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or \
                (low is not None and value < low) or (high is not None and value > high):
            allowed = "an integer" if low is None and high is None else \
                f"an integer in {low}..{high}" if low is not None and high is not None else \
                f"an integer >= {low}" if low is not None else f"an integer <= {high}"
            raise ValueError(f"{label}: must be {allowed}, not {value!r}")
    elif kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{label}: must be true or false, not {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not math.isfinite(value) or (low is not None and not value > low):
            raise ValueError(f"{label}: must be a finite number above {low}, not {value!r}")
    elif not isinstance(value, kind):
        raise ValueError(f"{label}: must be a JSON {kind.__name__}, not {value!r}")
    return value


def exact_keys(path, where, entry, names):
    """Raise :class:`ValueError` unless the header object ``entry`` has exactly ``names``."""
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: header field {where.strip()}: must be a JSON object, not "
                         f"{entry!r}")
    missing = [name for name in names if name not in entry]
    unknown = sorted(set(entry) - set(names))
    if missing:
        raise ValueError(f"{path}: header field {where}{missing[0]}: is missing")
    if unknown:
        raise ValueError(f"{path}: header field {where}{unknown[0]}: is not a field of this "
                         f"format; allowed: {', '.join(names)}")


def layer_count(path, header, name="layers"):
    """The number of layers of a header whose ``name`` field is a list of layers (1 to
    :data:`MAX_LAYERS`)."""
    layers = field(path, "", header, name, list)
    if not 1 <= len(layers) <= MAX_LAYERS:
        raise ValueError(f"{path}: header field {name}: must list 1..{MAX_LAYERS} layers, not "
                         f"{len(layers)}")
    return len(layers)


def _open_archive(path):
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a .npz file")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        size = path.stat().st_size
        what = "is empty" if size == 0 else f"is not a .npz file (a zip archive) of numpy " \
                                            f"arrays, or it is truncated ({size} bytes)"
        raise ValueError(f"{path}: {what}") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot be read ({error.strerror})") from None


def _member_header(archive, path, info):
    """``(shape, fortran_order, dtype, data_offset)`` of the ``.npy`` member ``info``, read
    without reading its data."""
    name = info.filename[:-4]
    try:
        with archive.open(info) as file:
            version = npy.read_magic(file)
            if version == (1, 0):
                shape, fortran, dtype = npy.read_array_header_1_0(file)
            elif version == (2, 0):
                shape, fortran, dtype = npy.read_array_header_2_0(file)
            else:
                raise ValueError(f"format version {version}")
            offset = file.tell()
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, SyntaxError) as error:
        raise ValueError(f"{path}: array {name}: is not a readable .npy array ({error})") \
            from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"{path}: array {name}: has dtype {dtype}; allowed: plain numbers")
    return shape, fortran, dtype, offset


def _check_size(path, name, shape, dtype, info, offset, limit):
    size = math.prod(shape) * dtype.itemsize
    if size > limit:
        raise ValueError(f"{path}: array {name}: declares shape {shape} of {dtype} ({size:,} "
                         f"bytes); allowed: at most {limit:,} bytes")
    if info.file_size != offset + size:
        raise ValueError(f"{path}: array {name}: declares {size:,} bytes of data but holds "
                         f"{info.file_size - offset:,}")
    return size


def _read_member(archive, path, info, shape, fortran, dtype, offset, size):
    name = info.filename[:-4]
    try:
        with archive.open(info) as file:
            file.read(offset)
            data = file.read(size)
    except (OSError, EOFError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{path}: array {name}: cannot be read ({error})") from None
    if len(data) != size:
        raise ValueError(f"{path}: array {name}: holds {len(data)} of its {size} bytes")
    array = np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran else "C")
    return array.astype(dtype.newbyteorder("="), copy=True)


def _as_kind(path, name, array, kind):
    kinds, description = _KINDS[kind]
    if array.dtype.kind not in kinds:
        raise ValueError(f"{path}: array {name}: must be stored as {description}, not "
                         f"{array.dtype}")
    if kind == "float":
        return array.astype(np.float64)
    if array.dtype.kind == "u" and array.size and int(array.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{path}: array {name}: value {int(array.max())} is out of range; "
                         f"allowed: at most {np.iinfo(np.int64).max}")
    return array.astype(np.int64)


def load_arrays(path, format_name, version, members):
    """Read a file written by :func:`save_arrays`; return ``(header, arrays)``.

    ``members(header)`` (called once the header's format and version are checked) returns the
    arrays the file must hold: ``{name: (kind, ndim)}``, ``kind`` ``"int"`` (returned as
    int64) or ``"float"`` (float64). The file must hold exactly those and the header.

    Raises :class:`ValueError`, naming the file, for a missing or unreadable file, another
    format or version, a bad header, a missing or unknown member, a member of another kind or
    number of dimensions, or one larger than :data:`MAX_MEMBER_BYTES`.
    """
    with _open_archive(path) as archive:
        infos = archive.infolist()
        names = [info.filename for info in infos]
        if len(set(names)) != len(names):
            raise ValueError(f"{path}: holds two members of one name; allowed: each once")
        strange = [name for name in names if not name.endswith(".npy")]
        if strange:
            raise ValueError(f"{path}: member {strange[0]!r}: is not a .npy array; allowed: "
                             f"the arrays of a {format_name} file")
        by_name = {info.filename[:-4]: info for info in infos}
        if "header" not in by_name:
            raise ValueError(f"{path}: is not a {format_name} file: it has no header")
        shape, fortran, dtype, offset = _member_header(archive, path, by_name["header"])
        if dtype.kind != "U" or shape != ():
            raise ValueError(f"{path}: array header: must be a JSON string, not {dtype} of "
                             f"shape {shape}")
        size = _check_size(path, "header", shape, dtype, by_name["header"], offset,
                           MAX_HEADER_BYTES)
        text = str(_read_member(archive, path, by_name["header"], shape, fortran, dtype,
                                offset, size)[()])
        try:
            header = json.loads(text)
        except ValueError as error:
            raise ValueError(f"{path}: header: is not JSON ({error})") from None
        if not isinstance(header, dict):
            raise ValueError(f"{path}: header: must be a JSON object, not {type(header).__name__}")
        if header.get("format") != format_name:
            raise ValueError(f"{path}: is not a {format_name} file but "
                             f"{header.get('format')!r}")
        if header.get("version") != version:
            raise ValueError(f"{path}: is {format_name} version {header.get('version')!r}; "
                             f"this systolix reads version {version}")
        wanted = members(header)
        unknown = sorted(set(by_name) - set(wanted) - {"header"})
        if unknown:
            raise ValueError(f"{path}: array {unknown[0]}: is not an array of this "
                             f"{format_name} file")
        missing = [name for name in wanted if name not in by_name]
        if missing:
            raise ValueError(f"{path}: array {missing[0]}: is missing")
        plans, total = {}, 0
        for name, (kind, ndim) in wanted.items():
            info = by_name[name]
            shape, fortran, dtype, offset = _member_header(archive, path, info)
            if dtype.kind not in _KINDS[kind][0]:
                raise ValueError(f"{path}: array {name}: must be stored as {_KINDS[kind][1]}, "
                                 f"not {dtype}")
            if len(shape) != ndim:
                raise ValueError(f"{path}: array {name}: must have {ndim} dimensions, not "
                                 f"shape {shape}")
            size = _check_size(path, name, shape, dtype, info, offset, MAX_MEMBER_BYTES)
            total += size
            if total > MAX_TOTAL_BYTES:
                raise ValueError(f"{path}: arrays: hold more than {MAX_TOTAL_BYTES:,} bytes "
                                 f"together; allowed: at most that")
            plans[name] = (info, shape, fortran, dtype, offset, size)
        arrays = {name: _as_kind(path, name, _read_member(archive, path, *plan),
                                 wanted[name][0])
                  for name, plan in plans.items()}
    return header, arrays
