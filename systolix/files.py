"""Files every part writes: atomically, so that a reader sees the old file or the new one, never
a partial one; output folders that replace only what systolix wrote; and PNG figures, all drawn
the same way.

Output folders (:func:`output_folder`): every command that writes a folder (``quantize --out``,
``bitstream``, ``patch``, ``report``, ``sweep``) builds it in a staging folder beside it and
renames it into place when it is complete, with a marker file (:data:`MARKER`) that says which
command wrote it and which files it holds. An existing folder is replaced only if it is empty or
a previous output of the same command holding nothing but what that command wrote; anything
else is refused before any work is done (:class:`OutputError`). A failure or an interruption
removes the staging folder and leaves the previous output as it was.
"""

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path

__all__ = ["MARKER", "OutputError", "umask", "atomic_write", "check_output_folder",
           "output_folder", "output_owner", "png_figure"]

MARKER = ".systolix-output"
"""The marker file of an output folder: JSON with the ``command`` that wrote the folder and the
``files`` it wrote (paths relative to the folder, the marker left out)."""

_MARKER_FORMAT = "systolix.OutputFolder"
_UMASK_LOCK = threading.Lock()


class OutputError(ValueError):
    """An output path that a command may not write: a file, a folder another command wrote, or
    one holding files that the command did not write; or a folder that cannot be written."""


def umask():
    """The process's file mode creation mask (read without changing it for long)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _with_filename(error, path):
    """``error`` (an :class:`OSError`) naming ``path`` when it names no file."""
    if isinstance(error, OSError) and error.filename is None and error.errno is not None:
        return type(error)(error.errno, error.strerror, str(path))
    return error


def atomic_write(path, write):
    """Create or replace the file ``path`` atomically.

    ``write(file)`` is called with a binary file object opened on a temporary file in the same
    folder, which is then renamed onto ``path``; readers see the old file or the new one, never
    a partial one. Missing parent folders are created. The file gets the usual permissions
    (``0o666`` less the umask). An :class:`OSError` while writing (a full disk) names ``path``
    and leaves no temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.chmod(temporary, 0o666 & ~umask())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        replaced = _with_filename(error, path)
        if replaced is not error:
            raise replaced from None
        raise


def output_owner(path):
    """The command named by the marker of the folder ``path``, or ``None`` when it has no
    readable marker."""
    marker = _read_marker(Path(path))
    return None if marker is None else marker["command"]


def _read_marker(path):
    try:
        text = (path / MARKER).read_text()
        marker = json.loads(text)
    except (OSError, ValueError):
        return None
    if (not isinstance(marker, dict) or marker.get("format") != _MARKER_FORMAT
            or not isinstance(marker.get("command"), str)
            or not isinstance(marker.get("files"), list)
            or not all(isinstance(name, str) for name in marker["files"])):
        return None
    return marker


def _files_in(folder):
    """Every file and link below ``folder``, as POSIX paths relative to it, the marker left
    out; empty folders as ``name/``."""
    found = []
    for root, folders, files in os.walk(folder):
        relative = Path(root).relative_to(folder)
        for name in files:
            found.append((relative / name).as_posix())
        for name in folders:
            if os.path.islink(os.path.join(root, name)):
                found.append((relative / name).as_posix())
        if not files and not folders and relative != Path("."):
            found.append(relative.as_posix() + "/")
    return sorted(name for name in found if name != MARKER)


def _count(items, one, many):
    return f"{len(items)} {one if len(items) == 1 else many}"


def _some(names):
    names = sorted(names)
    return ", ".join(repr(name) for name in names[:3]) + (", ..." if len(names) > 3 else "")


_ALLOWED = "allowed: a new folder, an empty one or a previous output of systolix {command}"


def check_output_folder(path, command, option="--out"):
    """Raise :class:`OutputError` unless ``path`` may become the output folder of ``command``:
    it does not exist, or it is an empty folder, or a previous output of ``command`` holding
    only the files that ``command`` wrote (its marker lists them)."""
    path = Path(path)
    allowed = _ALLOWED.format(command=command)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(f"{option} {path}: is a file, not a folder; {allowed}")
    if not path.exists():
        return
    try:
        entries = os.listdir(path)
    except OSError as error:
        raise OutputError(f"{option} {path}: cannot be read ({error.strerror}); {allowed}") \
            from None
    if not entries:
        return
    marker = _read_marker(path)
    if marker is None:
        raise OutputError(f"{option} {path}: is a folder that systolix did not write (no "
                          f"{MARKER}; it holds {_count(entries, 'entry', 'entries')}: "
                          f"{_some(entries)}); {allowed}")
    if marker["command"] != command:
        raise OutputError(f"{option} {path}: holds the output of systolix "
                          f"{marker['command']}, not of systolix {command}; {allowed}")
    extra = sorted(set(_files_in(path)) - set(marker["files"]))
    if extra:
        raise OutputError(f"{option} {path}: holds {_count(extra, 'file', 'files')} that "
                          f"systolix {command} did not write: {_some(extra)}; {allowed}")


def _make_parents(folder):
    """Create ``folder`` and its missing parents; return those this call created, deepest
    first. A folder that another thread or process creates meanwhile is taken as it is (and
    not returned: it is not this call's to remove)."""
    missing = []
    folder = Path(folder)
    while not folder.exists():
        missing.append(folder)
        if folder.parent == folder:
            break
        folder = folder.parent
    created = []
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            if not folder.is_dir():
                raise
        else:
            created.insert(0, folder)
    return created


def _remove_empty(folders):
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


@contextlib.contextmanager
def _signals_deferred():
    """SIGINT and SIGTERM held back (in the main thread) while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    blocked = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def output_folder(path, command, option="--out"):
    """Build the output folder ``path`` of ``command`` (such as ``"bitstream"``) atomically.

    ``with output_folder(out, "bitstream") as staging: ...`` checks ``out`` first
    (:func:`check_output_folder`, naming ``option`` in the error) and gives a new staging folder
    beside it (same file system, an absolute path, so that the threads of a program can each
    build one); the block writes the output there. When the block ends
    without an exception, the marker (:data:`MARKER`) is written, an existing ``out`` is moved
    aside, the staging folder is renamed onto ``out`` and the old folder removed, with SIGINT
    and SIGTERM held back meanwhile. On an exception or an interruption the staging folder (and
    any parent folder made for it) is removed and ``out`` is left as it was.

    An :class:`OSError` on a file in the staging folder (a read-only or full file system)
    becomes an :class:`OutputError` naming ``option`` and ``path``.
    """
    path = Path(path)
    check_output_folder(path, command, option)
    try:
        created = _make_parents(path.parent)
    except OSError as error:
        raise OutputError(f"{option} {path}: its folder cannot be made ({error.strerror}); "
                          f"allowed: a folder that can be written") from None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial",
                                        dir=path.parent)).absolute()
        os.chmod(staging, 0o777 & ~umask())
    except OSError as error:
        _remove_empty(created)
        raise OutputError(f"{option} {path}: cannot be written ({error.strerror}); allowed: a "
                          f"folder that can be written") from None
    try:
        try:
            yield staging
            files = _files_in(staging)
            atomic_write(staging / MARKER, lambda file: file.write(json.dumps(
                {"format": _MARKER_FORMAT, "command": command, "files": files},
                indent=1).encode() + b"\n"))
        except OSError as error:
            name = error.filename if isinstance(error.filename, str) else None
            if name is not None and Path(os.path.abspath(name)).is_relative_to(
                    os.path.abspath(staging)):
                raise OutputError(f"{option} {path}: cannot be written ({error.strerror}); "
                                  f"allowed: a folder that can be written") from None
            raise
        with _signals_deferred():
            check_output_folder(path, command, option)
            aside = None
            if path.exists():
                aside = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old",
                                              dir=path.parent))
                os.rename(path, aside / "output")
            try:
                os.rename(staging, path)
            except BaseException:
                if aside is not None:
                    os.rename(aside / "output", path)
                    aside.rmdir()
                raise
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_empty(created)
        raise


@contextlib.contextmanager
def png_figure(path, rows=1, cols=1, **options):
    """Draw a matplotlib figure and write it to ``path`` as a PNG (100 dpi, atomically).

    ``with png_figure(path, 1, 2, figsize=(10, 4)) as (figure, axes): ...`` gives the figure and
    the axes of :func:`matplotlib.pyplot.subplots` (``rows``, ``cols``, ``options``); when the
    block ends without an exception the layout is tightened and the file written. The figure
    is closed either way. Matplotlib is imported here, with its non-interactive ``Agg``
    back end, only when a figure is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(rows, cols, **options)
    try:
        yield figure, axes
        figure.tight_layout()
        atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=100))
    finally:
        pyplot.close(figure)
