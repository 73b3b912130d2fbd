"""Files every part writes: atomically, so that a reader sees the old file or the new one, never
a partial one; and PNG figures, all drawn the same way."""

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write", "png_figure"]


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
