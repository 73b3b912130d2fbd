"""``systolix errors``: the catalogue of bad inputs and faults (docs/errors.md), run.

Every :class:`Case` is one kind of bad input or fault: the files it starts from (made by its
``setup`` in an empty folder that is the working folder of the command), the ``systolix``
command line it runs (or, for the host link and the driver, the library call it makes), and the
one line it must end with. :func:`run_case` runs it and classifies what happened:

``ok``
    exit status as expected (2 for bad input, 130 for an interruption), exactly one line on
    standard error, starting ``systolix COMMAND:`` and holding the case's phrase, no traceback,
    nothing left behind, nothing changed;
``traceback``
    an exception escaped (or a traceback was printed, or a library call raised another
    exception than the case's);
``accepted``
    exit status 0 (or the library call returned): the bad input was silently accepted;
``partial``
    something new was left in the folder (a half-written output or a staging folder);
``overwritten``
    a file or folder that was there before changed or went away;
``hung``
    it did not finish within the case's time limit;
``wrong``
    another exit status, more than one line, or a line without the case's phrase.

Cases that need a real bitstream build (``needs="build"``) share one build of the iCEBreaker
(about a minute); ``systolix errors --no-build`` leaves them out. The tests
(``tests/cli/test_errors.py``) run every case. The summary line counts the tracebacks, silent
acceptances and partial artifacts (the aim is 0 / 0 / 0).
"""

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["Case", "Outcome", "CASES", "run_case", "make_resource", "summary", "register"]

BOARD = "icebreaker"
"""The board of the catalogue's bitstream build."""


@dataclass(frozen=True)
class Case:
    """One kind of bad input or fault.

    Attributes
    ----------
    name : str
        Identifier (the test's id).
    title : str
        What is wrong, in a few words (the catalogue's table).
    argv : tuple of str
        The ``systolix`` command line (run in the case's folder); empty for a library case.
    phrase : str
        Text the one line on standard error must hold.
    setup : callable, optional
        ``setup(folder, resources)`` makes the inputs in ``folder``; it may return a clean-up
        function.
    code : int
        The expected exit status (2: bad input; 130: interrupted).
    needs : tuple of str
        Shared resources: ``"build"`` (a bitstream build folder), ``"quantize"`` (an output of
        ``systolix quantize``).
    interrupt : tuple, optional
        ``(signal, ready)``: run the command in a subprocess and send it the signal once
        ``ready(folder)`` is true.
    call : callable, optional
        A library case: ``call(folder)`` must raise ``raises`` with ``phrase`` in its message.
    raises : type
    seconds : float
        Time limit.
    """

    name: str
    title: str
    argv: tuple = ()
    phrase: str = ""
    setup: object = None
    code: int = 2
    needs: tuple = ()
    interrupt: tuple = None
    call: object = None
    raises: type = ValueError
    seconds: float = 300


@dataclass
class Outcome:
    """What happened when a case ran."""
    case: Case
    verdict: str
    code: object = None
    lines: list = field(default_factory=list)
    detail: str = ""


class _Hung(BaseException):
    """A case ran past its time limit."""


# ---------------------------------------------------------------------------------------------
# Inputs.

def _base_program():
    """A small valid program for the iCEBreaker's array (16-8-4)."""
    from systolix.boards.tops import board
    from systolix.sw.stimulus import random_program
    return random_program(np.random.default_rng(0), board(BOARD).config, [16, 8, 4])


def _entries(path):
    """``(header, arrays)`` of an ``.npz`` file, read plainly (for making bad copies)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    return json.loads(str(arrays.pop("header"))), arrays


def _write_npz(path, header, arrays, header_text=None):
    entries = {"header": np.array(header_text if header_text is not None else
                                  json.dumps(header, sort_keys=True))}
    entries.update(arrays)
    with open(path, "wb") as file:
        np.savez(file, **entries)


def _program_file(folder, name="program.npz", header=None, arrays=None, header_text=None,
                  drop=()):
    """A program file in ``folder``, changed by ``header(h)`` and ``arrays(a)`` (functions that
    edit the parsed header and the arrays in place) and without the arrays ``drop``."""
    path = folder / "valid.npz"
    _base_program().save(path)
    parsed, entries = _entries(path)
    path.unlink()
    if header is not None:
        header(parsed)
    if arrays is not None:
        arrays(entries)
    for key in drop:
        del entries[key]
    _write_npz(folder / name, parsed, entries, header_text)


def _setter(function):
    """A setup from ``function(folder)``."""
    return lambda folder, resources: function(folder)


def _program(**changes):
    return _setter(lambda folder: _program_file(folder, **changes))


def _raw(content, name="program.npz"):
    return _setter(lambda folder: (folder / name).write_bytes(content))


def _truncated(folder):
    _program_file(folder)
    data = (folder / "program.npz").read_bytes()
    (folder / "program.npz").write_bytes(data[:len(data) // 2])


def _forged_shape(folder):
    """A program whose bias0 declares 2^40 int64 values but holds 8 bytes."""
    _program_file(folder)
    path = folder / "program.npz"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    header = {"descr": "<i8", "fortran_order": False, "shape": (1 << 40,)}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    members["bias0.npy"] = buffer.getvalue() + bytes(8)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def _zip_bomb(folder):
    """A small program file (deflated) whose bias0 holds 128 MiB of zeros."""
    _program_file(folder)
    path = folder / "program.npz"
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            if name == "bias0.npy":
                with archive.open(name, "w", force_zip64=True) as member:
                    np.lib.format.write_array_header_1_0(
                        member, {"descr": "<i8", "fortran_order": False, "shape": (1 << 24,)})
                    chunk = bytes(1 << 20)
                    for _ in range(128):
                        member.write(chunk)
            else:
                archive.writestr(name, data)


def _other_array(folder):
    """A program for an 8-bit-weight array: its weight codes do not fit the iCEBreaker's."""
    from systolix.config import ArrayConfig
    from systolix.sw.stimulus import random_program
    config = ArrayConfig(rows=8, cols=4, weight_bits=8, activation_bits=4, accumulator_bits=24)
    random_program(np.random.default_rng(1), config, [16, 8, 4]).save(folder / "program.npz")


def _too_large(folder):
    from systolix.boards.tops import board
    from systolix.sw.stimulus import random_program
    random_program(np.random.default_rng(1), board(BOARD).config,
                   [700, 500, 10]).save(folder / "program.npz")


def _float_model(folder, change=None, inputs=64, dtype=np.float64):
    from systolix.sw.io import save_arrays
    rng = np.random.default_rng(0)
    arrays = {"weight0": rng.normal(size=(inputs, 8)).astype(dtype),
              "bias0": np.zeros(8, dtype=dtype),
              "weight1": rng.normal(size=(8, 10)).astype(dtype), "bias1": np.zeros(10, dtype=dtype)}
    if change is not None:
        change(arrays)
    dense = {"kind": "dense", "relu": True, "clip": None}
    save_arrays(folder / "float.npz", "systolix.FloatModel", 2,
                {"input_shape": [1, 1, inputs], "layers": [dense, {**dense, "relu": False}]},
                arrays)


def _onnx_model(weights="int8", shape=True, op="MatMul"):
    """Setup: ``model.onnx``, a QCDQ layer (4-bit inputs, 8x4 weights, 8-bit outputs) whose
    weights are int8 through DequantizeLinear or float (``weights="float"``), whose input has
    a shape or none, and whose layer is ``op`` (an unsupported one for that case)."""
    def setup(folder, resources):
        from onnx import TensorProto, helper, numpy_helper
        rng = np.random.default_rng(0)
        constants = {"s": np.float32(0.125), "z": np.uint8(0), "lo": np.uint8(0),
                     "hi": np.uint8(15), "ws": np.float32(0.25), "wz": np.int8(0),
                     "os": np.float32(0.5), "oz": np.int8(0),
                     "w": rng.integers(-7, 7, size=(8, 4), endpoint=True).astype(
                         np.int8 if weights == "int8" else np.float32)}
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="quant_in"),
                 helper.make_node("Clip", ["q", "lo", "hi"], ["c"], name="clip_in"),
                 helper.make_node("DequantizeLinear", ["c", "s", "z"], ["d"], name="dq_in")]
        if weights == "int8":
            nodes.append(helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"],
                                          name="dq_w"))
        nodes += [helper.make_node(op, ["d", "wd" if weights == "int8" else "w"], ["y"],
                                   name="dense"),
                  helper.make_node("QuantizeLinear", ["y", "os", "oz"], ["yq"], name="quant_out"),
                  helper.make_node("DequantizeLinear", ["yq", "os", "oz"], ["out"],
                                   name="dq_out")]
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8] if shape else None)
        out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
        graph = helper.make_graph(nodes, "layer", [x], [out],
                                  [numpy_helper.from_array(np.asarray(value), name)
                                   for name, value in constants.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        (folder / "model.onnx").write_bytes(model.SerializeToString())
    return setup


def _user_folder(name):
    def setup(folder, resources):
        (folder / name).mkdir()
        (folder / name / "notes.txt").write_text("the user's own notes\n")
    return setup


def _copy_resource(resource, name, edit=None):
    """Setup: a copy of a shared resource as ``name``, then ``edit(copy)``."""
    def setup(folder, resources):
        shutil.copytree(resources[resource], folder / name, symlinks=True)
        if edit is not None:
            edit(folder / name)
    return setup


def _edit_report(change):
    def edit(build):
        report = json.loads((build / "report.json").read_text())
        change(report)
        (build / "report.json").write_text(json.dumps(report))
    return edit


def _with_program(setup):
    """``setup`` and a valid program file."""
    def both(folder, resources):
        _program_file(folder)
        return setup(folder, resources)
    return both


def _both(*setups):
    def run(folder, resources):
        cleanups = [setup(folder, resources) for setup in setups]
        return lambda: [cleanup() for cleanup in cleanups if callable(cleanup)]
    return run


def _mount_tmpfs(where, size, read_only=False):
    """Mount a tmpfs of ``size`` at ``where`` (root only); return its unmount, or raise
    :class:`_Skip`."""
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        raise _Skip("needs root to mount a tmpfs")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise _Skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(where)], check=True)

    def unmount():
        subprocess.run(["umount", "-l", str(where)], check=False)
    return unmount


class _Skip(Exception):
    """The case cannot be made here (such as a mount without root)."""


def _read_only_folder(folder, resources):
    """``ro/``: a folder nobody can write (a read-only tmpfs as root, mode 0555 otherwise)."""
    if os.geteuid() == 0:
        return _mount_tmpfs(folder / "ro", "64k", read_only=True)
    (folder / "ro").mkdir()
    os.chmod(folder / "ro", 0o555)
    return lambda: os.chmod(folder / "ro", 0o755)


def _full_disk(folder, resources):
    """``small/``: a 64 KiB tmpfs, too small for a quantize's two files."""
    return _mount_tmpfs(folder / "small", "64k")


@contextlib.contextmanager
def _disk_full_at_write():
    """Every file :func:`systolix.files.atomic_write` writes fails with ENOSPC after 4 KiB."""
    import systolix.files as files

    class Full(io.FileIO):
        written = 0

        def write(self, data):
            self.written += len(data)
            if self.written > 4096:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    original = files.os.fdopen

    def fdopen(handle, mode="r", *args, **kwargs):
        if "w" in mode:
            return io.BufferedWriter(Full(handle, "wb"))
        return original(handle, mode, *args, **kwargs)

    files.os.fdopen = fdopen
    try:
        yield
    finally:
        files.os.fdopen = original


def _staging_appears(name, then=0.0):
    """``ready``: a staging folder of ``name`` (``.NAME.*.partial``) exists, ``then`` seconds
    after it first appeared."""
    seen = {}

    def ready(folder):
        parent = folder / Path(name).parent
        found = [path for path in parent.glob(f".{Path(name).name}.*.partial")]
        if found and "at" not in seen:
            seen["at"] = time.monotonic()
        return "at" in seen and time.monotonic() - seen["at"] >= then
    return ready


def _build_log_appears(name):
    """``ready``: the bitstream build in the staging folder of ``name`` has started its tools."""
    def ready(folder):
        return any(any(path.rglob("build.log")) for path in
                   folder.glob(f".{name}.*.partial"))
    return ready


# Library cases (the host link and the driver).

def _babbling_uart(folder):
    """A line that sends bytes other than SYNC for ever: read_frame gives up."""
    from systolix import protocol
    sent = [0]

    def read(count):
        sent[0] += count
        return b"\x00" * count
    protocol.read_frame(read)


def _trickling_uart(folder):
    """A serial port that sends one byte every 50 ms (each read within its timeout): the
    frame deadline ends the wait."""
    import pty
    from systolix.sw.driver import SerialTransport
    controller, device = pty.openpty()
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.05):
            try:
                os.write(controller, b"\xa5")
            except OSError:
                return
    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        with SerialTransport(os.ttyname(device), timeout=1.0, frame_timeout=1.0) as transport:
            transport.exchange(b"\xa5\x02\x00\x00\x00\x00")
    finally:
        stop.set()
        thread.join()
        os.close(controller)
        os.close(device)


def _device():
    from systolix.boards.tops import board
    from systolix.sw.driver import Device, GoldenTransport
    program = _base_program()
    config = board(BOARD).config
    return Device(GoldenTransport(program, config), program, config), program


def _float_codes(folder):
    device, program = _device()
    device.run(np.full((2, program.layers[0].weights.shape[0]), 1.7))


def _huge_codes(folder):
    device, program = _device()
    device.run(np.full((2, program.layers[0].weights.shape[0]), 2 ** 64 - 1, dtype=np.uint64))


def _broadcast_bias(folder):
    from systolix.layer import IntegerLayer
    layer = _base_program().layers[0]
    IntegerLayer(**{**{name: getattr(layer, name) for name in layer.__dataclass_fields__},
                    "bias": np.array([5])})


def _quantized_nan_scale(folder):
    from systolix.sw.qmodel import QuantizedModel, quantize
    from systolix.sw.models import FloatModel
    rng = np.random.default_rng(0)
    model = FloatModel.mlp((rng.normal(size=(4, 3)),), (np.zeros(3),))
    quantize(model, rng.normal(size=(32, 4))).save(folder / "model.npz")
    header, arrays = _entries(folder / "model.npz")
    arrays["weight_scale0"] = np.array([np.nan, 1.0, 1.0])
    _write_npz(folder / "model.npz", header, arrays)
    try:
        QuantizedModel.load(folder / "model.npz")
    finally:
        (folder / "model.npz").unlink()


# ---------------------------------------------------------------------------------------------
# The catalogue.

def _bitstream(model="program.npz"):
    return ("bitstream", "--board", BOARD, "--model", model, "--out", "out")


def _header_layer(name, value):
    def change(header):
        header["layers"][0][name] = value
    return change


def _set(key, value):
    def change(entries):
        entries[key] = value
    return change


def _delete(key):
    def change(header):
        del header[key]
    return change


def _quantizer(name, part, value):
    def change(header):
        header[name][part] = value
    return change


def _patch(build="build", model="program.npz", out=None):
    return ("patch", "--build", build, "--model", model) + (("--out", out) if out else ())


CASES = (
    # Options out of range.
    Case("sim-images-zero", "--images 0 (ran the whole test set)", ("sim", "--images", "0"),
         "argument --images: must be an integer >= 1, not '0'"),
    Case("sim-images-negative", "--images -5 (ran the whole test set)",
         ("sim", "--images", "-5"), "argument --images: must be an integer >= 1, not '-5'"),
    Case("sim-stall-above-one", "--stall 2 (accepted: every cycle stalls)",
         ("sim", "--stall", "2"), "argument --stall: must be a number in 0 <= p < 1, not '2'"),
    Case("sim-stall-nan", "--stall nan", ("sim", "--stall", "nan"),
         "argument --stall: must be a number in 0 <= p < 1, not 'nan'"),
    Case("sim-config-unknown", "--config that names no array", ("sim", "--config", "9x9-bogus"),
         "9x9-bogus"),
    Case("sim-config-serial-saturate", "--config of bit-serial cells that saturate",
         ("sim", "--config", "8x8-W4s-A4u-P12-saturate-serial"),
         "pe 'serial' needs overflow 'wrap' (a bit-serial sum is built plane by plane, so "
         "clamping after every addition cannot be exact), not 'saturate'"),
    Case("sim-config-dsp4-wide", "--config of four-product DSP cells whose operand no DSP takes",
         ("sim", "--config", "8x8-W8s-A8u-P16-wrap-dsp4"),
         "pe 'dsp4' needs a packed operand of at most 18 bits (a DSP multiplier's), not 32 "
         "(weight and activation bits 8 and 8); use pe 'dsp'"),
    Case("sim-config-dsp4-one-column", "--config of four-product DSP cells in one column",
         ("sim", "--config", "8x1-W4s-A4u-P12-wrap-dsp4"),
         "pe 'dsp4' needs at least 2 columns (a column alone would be a LUT cell a cycle "
         "faster), not 1"),
    Case("sim-config-narrow-accumulator", "--config whose accumulator no A2Q+ weight fits",
         ("sim", "--config", "8x8-W4s-A4u-P4-wrap"),
         "--config 8x8-W4s-A4u-P4-wrap: cannot quantize --workload digits-mlp for it: "
         "accumulator_bits=4 is too small"),
    Case("sim-arrays-jobs-zero", "sim-arrays --jobs 0", ("sim-arrays", "--jobs", "0"),
         "argument --jobs: must be an integer >= 1, not '0'"),
    Case("report-frequency-nan", "--frequency nan (gave NaN power)",
         ("report", "--frequency", "nan", "--out", "out"),
         "argument --frequency: must be a finite number above 0, not 'nan'"),
    Case("report-frequency-negative", "--frequency -100",
         ("report", "--frequency", "-100", "--out", "out"),
         "argument --frequency: must be a finite number above 0, not '-100'"),
    Case("report-requant-lanes-zero", "--requant-lanes 0",
         ("report", "--engine", "--requant-lanes", "0", "--out", "out"),
         "argument --requant-lanes: must be an integer >= 1, not '0'"),
    Case("report-cycles-zero", "--cycles-per-inference 0",
         ("report", "--cycles-per-inference", "0", "--out", "out"),
         "argument --cycles-per-inference: must be an integer >= 1, not '0'"),
    Case("report-width-zero", "--weight-bits 0", ("report", "--weight-bits", "0", "--out", "out"),
         "weight_bits must be an integer in 1..8, not 0"),
    Case("report-pe-unknown", "--pe that names no processing element",
         ("report", "--pe", "bits", "--out", "out"), "argument --pe: invalid choice: 'bits'"),
    Case("quantize-mixed-drop", "--mixed-drop 2 (more than all the accuracy)",
         ("quantize", "--mixed-drop", "2", "--out", "out"),
         "argument --mixed-drop: must be a finite number at least 0 and at most 1, not '2'"),
    Case("quantize-budget-zero", "--budget 0",
         ("quantize", "--mixed-drop", "0.01", "--budget", "0", "--out", "out"),
         "argument --budget: must be an integer >= 1, not '0'"),
    Case("quantize-weight-bits", "--weight-bits 9", ("quantize", "--weight-bits", "9",
                                                      "--out", "out"),
         "weight_bits must be an integer in 2..8, not 9"),
    Case("quantize-cnn-seed", "--seed 3 for the digits CNN (trained once, seed 0)",
         ("quantize", "--workload", "digits-cnn", "--seed", "3", "--out", "out"),
         "--seed: the digits-cnn workload is trained once, with seed 0; allowed: 0 (or leave it "
         "out)"),
    Case("quantize-workload", "--workload of no embedded model",
         ("quantize", "--workload", "imagenet", "--out", "out"),
         "argument --workload: invalid choice: 'imagenet' (choose from 'digits-mlp', 'digits-cnn')"),
    Case("quantize-rounding", "--rounding gptq (no such rounding)",
         ("quantize", "--rounding", "gptq", "--out", "out"),
         "argument --rounding: invalid choice: 'gptq' (choose from 'nearest', 'zero', 'axe')"),
    Case("quantize-finetune-method", "--finetune with --method a2q (it trains A2Q+ weights)",
         ("quantize", "--finetune", "5", "--method", "a2q", "--out", "out"),
         "--finetune: trains A2Q+ weights; allowed with --method a2q+ (the default), not a2q"),
    Case("train-scheme-typo", "--scheme wag (a typo)",
         ("train", "--scheme", "wag", "--out", "out"),
         "argument --scheme: invalid choice: 'wag'"),
    Case("train-bits-range", "--bits 2-8-8-9 (an error width above 8)",
         ("train", "--scheme", "wage", "--bits", "2-8-8-9", "--out", "out"),
         "argument --bits: must be four widths W-A-G-E, each an integer in 2..8, such as "
         "2-8-8-8, not '2-8-8-9'"),
    Case("train-bits-three", "--bits 2-8-8 (three widths)",
         ("train", "--scheme", "wage", "--bits", "2-8-8", "--out", "out"),
         "argument --bits: must be four widths W-A-G-E"),
    Case("train-mult-bits", "--mult-bits 20",
         ("train", "--scheme", "dfp", "--mult-bits", "20", "--out", "out"),
         "argument --mult-bits: must be an integer in 4..13, not '20'"),
    Case("train-cnn-mult-bits", "--mult-bits 12 for the CNN (a 33-bit gradient accumulator)",
         ("train", "--scheme", "dfp", "--model", "cnn", "--mult-bits", "12", "--update-bits",
          "14", "--out", "out"),
         "--mult-bits 12: the layer 0 gradient X^T E GEMM would need a 33-bit accumulator; the "
         "array's has at most 32"),
    Case("train-update-below-mult", "--update-bits 8 below --mult-bits 10",
         ("train", "--scheme", "dfp", "--mult-bits", "10", "--update-bits", "8", "--out", "out"),
         "--update-bits 8: must be at least --mult-bits (10), up to 24"),
    Case("train-other-scheme-option", "--mult-bits with --scheme wage (was ignored)",
         ("train", "--scheme", "wage", "--mult-bits", "10", "--out", "out"),
         "--mult-bits is an option of the other scheme, not of --scheme wage"),
    Case("train-out-read-only", "train --out in a read-only folder (before training)",
         ("train", "--scheme", "wage", "--out", "ro/out"),
         "--out ro/out: cannot be written", setup=_read_only_folder),
    Case("train-out-file", "train --out a file",
         ("train", "--scheme", "dfp", "--out", "notes.txt"),
         "--out notes.txt: is a file, not a folder",
         setup=_setter(lambda folder: (folder / "notes.txt").write_text("mine\n"))),
    Case("bitstream-seed-negative", "--seed -1",
         ("bitstream", "--board", BOARD, "--seed", "-1", "--out", "out"),
         "argument --seed: must be an integer in 0..2147483647, not '-1'"),
    Case("bitstream-unknown-board", "--board de10", ("bitstream", "--board", "de10",
                                                     "--out", "out"),
         "BOARD must be one of 'icebreaker'"),
    Case("sweep-shapes", "--shapes 8by8", ("sweep", "--shapes", "8by8", "--out", "out"),
         "--shapes must be ROWSxCOLS"),
    Case("sweep-build-inside-out", "--build inside --out (a sweep replaces --out)",
         ("sweep", "--shapes", "1x1", "--widths", "1", "--accumulator-bits", "8",
          "--build", "out/builds", "--out", "out"),
         "--build out/builds: is inside --out out"),

    # Model files (systolix bitstream reads the program before any tool runs).
    Case("model-missing", "a model file that does not exist", _bitstream("missing.npz"),
         "missing.npz: no such file"),
    Case("model-folder", "a folder given as the model file", _bitstream("models"),
         "models: is a folder, not a .npz file",
         setup=_setter(lambda folder: (folder / "models").mkdir())),
    Case("model-empty", "an empty model file", _bitstream(), "program.npz: is empty",
         setup=_raw(b"")),
    Case("model-truncated", "a truncated model file", _bitstream(),
         "program.npz: is not a .npz file (a zip archive) of numpy arrays, or it is truncated",
         setup=_setter(_truncated)),
    Case("model-not-a-zip", "a text file given as the model", _bitstream(),
         "program.npz: is not a .npz file", setup=_raw(b"weights = 1, 2, 3\n")),
    Case("model-other-format", "a FloatModel file given as a program", _bitstream("float.npz"),
         "float.npz: is not a systolix.IntegerProgram file but 'systolix.FloatModel'",
         setup=_setter(_float_model)),
    Case("model-other-version", "a program file of another format version", _bitstream(),
         "program.npz: is systolix.IntegerProgram version 3; this systolix reads version 2",
         setup=_program(header=_set("version", 3))),
    Case("model-header-not-json", "a header that is not JSON", _bitstream(),
         "program.npz: header: is not JSON", setup=_program(header_text="{layers: [")),
    Case("model-header-missing-field", "a header without its layers", _bitstream(),
         "program.npz: header field layers: is missing", setup=_program(header=_delete("layers"))),
    Case("model-header-field-type", "a header field of the wrong type (input_bits \"4\")",
         _bitstream(), "program.npz: header field layers[0].input_bits: must be an integer",
         setup=_program(header=_header_layer("input_bits", "4"))),
    Case("model-header-unknown-field", "a header field no format has",
         _bitstream(), "program.npz: header field layers[0].relu: is not a field of this format",
         setup=_program(header=_header_layer("relu", True))),
    Case("model-signed-not-bool", "a flag given as 1 (input_signed: 1)", _bitstream(),
         "program.npz: header field layers[0].input_signed: must be true or false, not 1",
         setup=_program(header=_header_layer("input_signed", 1))),
    Case("model-array-missing", "an array missing from the file", _bitstream(),
         "program.npz: array bias1: is missing", setup=_program(drop=("bias1",))),
    Case("model-array-unknown", "an array the format does not have", _bitstream(),
         "program.npz: array extra: is not an array of this systolix.IntegerProgram file",
         setup=_program(arrays=_set("extra", np.zeros(3, dtype=np.int64)))),
    Case("model-float-weights", "float weights (were truncated to integers)", _bitstream(),
         "program.npz: array weights0: must be stored as integers, not float64",
         setup=_program(arrays=lambda a: a.update(weights0=a["weights0"] + 0.5))),
    Case("model-uint64-bias", "an unsigned 2^64-1 (loaded as -1)", _bitstream(),
         "program.npz: array bias0: value 18446744073709551615 is out of range",
         setup=_program(arrays=lambda a: a.update(bias0=np.full(a["bias0"].shape, 2 ** 64 - 1,
                                                                dtype=np.uint64)))),
    Case("model-broadcast-bias", "a one-element bias (was broadcast to every channel)",
         _bitstream(), "program.npz: layer 0: bias must have shape (8,)",
         setup=_program(arrays=_set("bias0", np.array([7], dtype=np.int64)))),
    Case("model-weights-3d", "weights of three dimensions", _bitstream(),
         "program.npz: array weights0: must have 2 dimensions, not shape (16, 8, 1)",
         setup=_program(arrays=lambda a: a.update(weights0=a["weights0"][..., None]))),
    Case("model-negative-scale", "a negative input scale (made every code 0)", _bitstream(),
         "program.npz: header field input.scale: must be a finite number above 0, not -0.5",
         setup=_program(header=_quantizer("input", "scale", -0.5))),
    Case("model-nan-scale", "a NaN output scale (gave NaN outputs)", _bitstream(),
         "program.npz: header field output.scale: must be a finite number above 0, not nan",
         setup=_program(header=_quantizer("output", "scale", float("nan")))),
    Case("model-zero-point-range", "an input zero point outside its codes", _bitstream(),
         "program.npz: input.zero_point must be an integer in 0..15",
         setup=_program(header=_quantizer("input", "zero_point", 99))),
    Case("model-bounds-range", "output bounds outside the output codes", _bitstream(),
         "program.npz: layer 0: output_high must be an integer",
         setup=_program(header=_header_layer("output_high", 999))),
    Case("model-huge-shape", "an array declaring 2^40 values (MemoryError)", _bitstream(),
         "program.npz: array bias0: declares shape (1099511627776,) of int64",
         setup=_setter(_forged_shape)),
    Case("model-zip-bomb", "a small file with a 128 MiB array (every member was read)",
         _bitstream(), "program.npz: array bias0: declares shape (16777216,) of int64 "
                       "(134,217,728 bytes); allowed: at most 67,108,864 bytes",
         setup=_setter(_zip_bomb)),
    Case("model-layers-do-not-chain", "layers whose sizes do not chain", _bitstream(),
         "program.npz: layer 1 has 9 inputs but layer 0 has 8 outputs",
         setup=_program(arrays=lambda a: a.update(weights1=np.zeros((9, 4), dtype=np.int64)))),
    Case("model-other-array", "a model for another array (8-bit weights)", _bitstream(),
         "--model program.npz: does not fit the icebreaker's 8x5-W4s-A4u-P12-wrap accelerator: "
         "layer 0 has 8-bit signed (-128..127) weights", setup=_setter(_other_array)),
    Case("model-too-large", "a model larger than the board's memories", _bitstream(),
         "--model program.npz: does not fit the icebreaker's 8x5-W4s-A4u-P12-wrap accelerator: "
         "the model needs 71408 weight words", setup=_setter(_too_large)),
    Case("workload-too-large", "the digits CNN for the iCE40-HX8K (short of weight memory)",
         ("bitstream", "--board", "ice40-hx8k-evn", "--workload", "digits-cnn", "--out", "out"),
         "--workload digits-cnn: does not fit the ice40-hx8k-evn's 8x4-W4s-A4u-P12-wrap "
         "accelerator: the model needs"),
    Case("sim-unknown-board", "--board de10, through systolix sim", ("sim", "--board", "de10"),
         "BOARD must be one of 'icebreaker'"),
    Case("sim-board-and-config", "--board and --config (the board fixes the array)",
         ("sim", "--board", "icebreaker", "--config", "2x2-W4s-A4u-P12-wrap"),
         "argument --config: not allowed with argument --board"),
    Case("sim-workload-too-large", "the digits CNN on a 2x2 array (short of weight memory)",
         ("sim", "--workload", "digits-cnn", "--config", "2x2-W4s-A4u-P12-wrap"),
         "--workload digits-cnn: does not fit the 2x2-W4s-A4u-P12-wrap accelerator: the model "
         "needs 10800 weight words"),
    Case("sim-model-float-weights", "float weights, through systolix sim",
         ("sim", "--model", "program.npz", "--images", "1"),
         "program.npz: array weights0: must be stored as integers, not float64",
         setup=_program(arrays=lambda a: a.update(weights0=a["weights0"] * 1.0))),
    Case("float-model-nan", "a float model with NaN weights",
         ("quantize", "--float-model", "float.npz", "--out", "out"),
         "float.npz: layer 0: weight must be finite",
         setup=_setter(lambda folder: _float_model(
             folder, lambda a: a["weight0"].__setitem__((0, 0), np.nan)))),
    Case("float-model-inputs", "a float model of 65 inputs for the 64-pixel digits",
         ("quantize", "--float-model", "float.npz", "--out", "out"),
         "--float-model float.npz: has 65 inputs; allowed: 64",
         setup=_setter(lambda folder: _float_model(folder, inputs=65))),
    Case("float-model-integers", "a float model stored as integers",
         ("quantize", "--float-model", "float.npz", "--out", "out"),
         "float.npz: array weight0: must be stored as floats, not int64",
         setup=_setter(lambda folder: _float_model(folder, dtype=np.int64))),

    # ONNX models given to systolix import.
    Case("import-missing", "a model file that does not exist",
         ("import", "missing.onnx", "--out", "out"), "missing.onnx: does not exist"),
    Case("import-malformed", "a file that is not an ONNX model",
         ("import", "model.onnx", "--out", "out"), "model.onnx: is not an ONNX model",
         setup=_raw(b"\x08\x07junk \xff\xff\xff", "model.onnx")),
    Case("import-unsupported-op", "an op the importer does not read (MatMulInteger)",
         ("import", "model.onnx", "--out", "out"),
         "node 'dense': op type MatMulInteger is not supported; supported: Quant, BipolarQuant",
         setup=_onnx_model(op="MatMulInteger")),
    Case("import-float-weights", "a float weight tensor without a quantizer",
         ("import", "model.onnx", "--out", "out"),
         "its weight 'w' is a float tensor of shape [8, 4] with no quantizer",
         setup=_onnx_model(weights="float")),
    Case("import-no-input-shape", "a graph input without a shape",
         ("import", "model.onnx", "--out", "out"), "graph input 'x' has no shape",
         setup=_onnx_model(shape=False)),
    Case("import-accumulator-too-small", "integers that need more than --accumulator-bits",
         ("import", "model.onnx", "--accumulator-bits", "6", "--out", "out"),
         "needs an accumulator of 10 bits for its integers and input codes, but "
         "--accumulator-bits is 6", setup=_onnx_model()),
    Case("import-out-user-folder", "import --out a folder of the user's",
         ("import", "model.onnx", "--out", "mine"),
         "--out mine: is a folder that systolix did not write",
         setup=lambda folder, resources: (_onnx_model()(folder, resources),
                                          _user_folder("mine")(folder, resources))),
    Case("import-accumulator-bits-range", "--accumulator-bits 40",
         ("import", "model.onnx", "--accumulator-bits", "40", "--out", "out"),
         "argument --accumulator-bits: must be an integer in 2..32, not '40'",
         setup=_onnx_model()),
    # Output folders.
    Case("bitstream-out-user-folder", "--out a folder of the user's (was deleted)",
         ("bitstream", "--board", BOARD, "--out", "mine"),
         "--out mine: is a folder that systolix did not write", setup=_user_folder("mine")),
    Case("quantize-out-user-folder", "quantize --out a folder of the user's",
         ("quantize", "--out", "mine"), "--out mine: is a folder that systolix did not write",
         setup=_user_folder("mine")),
    Case("report-out-file", "--out a file", ("report", "--out", "notes.txt"),
         "--out notes.txt: is a file, not a folder",
         setup=_setter(lambda folder: (folder / "notes.txt").write_text("mine\n"))),
    Case("report-out-other-command", "--out the output of another command",
         ("report", "--out", "quantized"),
         "--out quantized: holds the output of systolix quantize, not of systolix report",
         setup=_copy_resource("quantize", "quantized"), needs=("quantize",)),
    Case("quantize-out-extra-file", "--out a previous output with a file of the user's added",
         ("quantize", "--out", "quantized"),
         "--out quantized: holds 1 file that systolix quantize did not write: 'notes.txt'",
         setup=_copy_resource("quantize", "quantized",
                              lambda path: (path / "notes.txt").write_text("mine\n")),
         needs=("quantize",)),
    Case("out-read-only", "--out in a read-only folder", ("quantize", "--out", "ro/out"),
         "--out ro/out: cannot be written (Read-only file system", setup=_read_only_folder),
    Case("out-disk-full", "a full disk (a 64 KiB tmpfs)", ("quantize", "--out", "small/out"),
         "--out small/out: cannot be written (No space left on device)", setup=_full_disk),
    Case("out-disk-full-injected", "a full disk (ENOSPC injected at the write)",
         ("quantize", "--out", "out"),
         "--out out: cannot be written (No space left on device)"),
    Case("quantize-sigterm", "SIGTERM while quantize writes (previous output kept)",
         ("quantize", "--report", "--out", "quantized"), "interrupted by SIGTERM",
         setup=_copy_resource("quantize", "quantized"), needs=("quantize",), code=130,
         interrupt=(signal.SIGTERM, _staging_appears("quantized", 1.0))),
    Case("quantize-sigint", "SIGINT (Ctrl-C) while quantize writes",
         ("quantize", "--report", "--out", "out"), "interrupted by SIGINT", code=130,
         interrupt=(signal.SIGINT, _staging_appears("out", 1.0))),

    # Build folders given to systolix patch.
    Case("patch-build-missing", "--build a folder that does not exist",
         _patch("nowhere"), "the build folder nowhere: does not exist",
         setup=_program()),
    Case("patch-build-no-report", "--build a folder without report.json",
         _patch("stuff"), "the build folder stuff: has no report.json",
         setup=_with_program(_user_folder("stuff"))),
    Case("patch-report-not-json", "a report.json that is not JSON", _patch(),
         "the build folder build: report.json: is not JSON",
         setup=_with_program(_setter(lambda folder: (
             (folder / "build").mkdir(), (folder / "build" / "report.json").write_text("{"))))),
    Case("patch-report-unknown-board", "a report.json of an unknown board", _patch(),
         "the build folder build: report.json field board: must be one of 'icebreaker'",
         setup=_with_program(_copy_resource("build", "build",
                                            _edit_report(lambda r: r.update(board="de10")))),
         needs=("build",)),
    Case("patch-wrong-board", "a build folder whose report names another board", _patch(),
         "the build folder build: has no top.config",
         setup=_with_program(_copy_resource("build", "build",
                                            _edit_report(lambda r: r.update(board="ulx3s-85f")))),
         needs=("build",)),
    Case("patch-report-missing-field", "a report.json without memory_widths", _patch(),
         "the build folder build: report.json field memory_widths: must give",
         setup=_with_program(_copy_resource("build", "build",
                                            _edit_report(lambda r: r.pop("memory_widths")))),
         needs=("build",)),
    Case("patch-no-placed-design", "a build folder without its placed design (top.asc)",
         _patch(), "the build folder build: has no top.asc",
         setup=_with_program(_copy_resource("build", "build",
                                            lambda path: (path / "top.asc").unlink())),
         needs=("build",)),
    Case("patch-corrupt-hex", "a build folder whose memory file is not hexadecimal", _patch(),
         "the build folder build: memories/requant.hex: is not one hexadecimal word a line",
         setup=_with_program(_copy_resource(
             "build", "build", lambda path: (path / "memories" / "requant.hex").write_text(
                 "zz\n"))), needs=("build",)),
    Case("patch-build-of-report", "--build the output of systolix report", _patch(),
         "the build folder build: holds the output of systolix report",
         setup=_with_program(_copy_resource(
             "quantize", "build", lambda path: (path / ".systolix-output").write_text(
                 (path / ".systolix-output").read_text().replace('"quantize"', '"report"')))),
         needs=("quantize",)),
    Case("patch-model-other-array", "patch a model for another array into a build", _patch(),
         "--model program.npz: does not fit the icebreaker's 8x5-W4s-A4u-P12-wrap accelerator: "
         "layer 0 has 8-bit signed (-128..127) weights", setup=_both(_copy_resource("build", "build"), _setter(_other_array)),
         needs=("build",)),
    Case("patch-out-user-folder", "patch --out a folder of the user's (was deleted)",
         _patch(out="mine"), "--out mine: is a folder that systolix did not write",
         setup=_both(_copy_resource("build", "build"), _program(), _user_folder("mine")),
         needs=("build",)),
    Case("patch-out-is-build", "patch --out the bitstream build itself", _patch(out="build"),
         "--out build: holds the output of systolix bitstream, not of systolix patch",
         setup=_both(_copy_resource("build", "build"), _program()), needs=("build",)),
    Case("bitstream-sigterm", "SIGTERM during a bitstream build (previous build kept)",
         ("bitstream", "--board", BOARD, "--out", "build"), "interrupted by SIGTERM",
         setup=_copy_resource("build", "build"), needs=("build",), code=130,
         interrupt=(signal.SIGTERM, _build_log_appears("build"))),

    # A board on the desk (systolix prog, systolix run).
    Case("prog-no-bitstream", "prog --build a folder without a bitstream",
         ("prog", "--board", BOARD, "--build", "nowhere"),
         "nowhere/top.bin: does not exist; build it with make bitstream BOARD=icebreaker"),
    Case("run-port-missing", "run --port a device that does not exist",
         ("run", "--port", "ttyNONE"),
         "--port ttyNONE: cannot be opened (No such file or directory)"),
    Case("run-port-not-serial", "run --port a file that is not a serial device",
         ("run", "--port", "notes.txt"), "--port notes.txt: cannot be opened",
         setup=_setter(lambda folder: (folder / "notes.txt").write_text("notes\n"))),
    Case("run-baud-zero", "run --baud 0", ("run", "--port", "ttyNONE", "--baud", "0"),
         "argument --baud: must be an integer in 1..100000000, not '0'"),

    # The host link and the driver (library calls).
    Case("link-babbling-uart", "a UART that babbles bytes without SYNC (hung the host)",
         phrase="bytes without SYNC 0xA5; at most 65541 are skipped",
         call=_babbling_uart, raises=ValueError, seconds=60),
    Case("link-trickling-uart", "a reply that trickles in byte by byte (hung the host)",
         phrase="within 1 s (frame_timeout)", call=_trickling_uart, raises=TimeoutError,
         seconds=30),
    Case("driver-float-codes", "float codes given to Device.run (were truncated)",
         phrase="codes must be integers (input codes), not float64 values",
         call=_float_codes),
    Case("driver-uint64-codes", "unsigned 2^64-1 codes given to Device.run",
         phrase="codes must lie in 0..15", call=_huge_codes),
    Case("layer-broadcast-bias", "an IntegerLayer with a one-element bias",
         phrase="bias must have shape (8,)", call=_broadcast_bias),
    Case("quantized-model-nan-scale", "a QuantizedModel file with a NaN weight scale",
         phrase="layer 0: weight scales must be finite numbers above 0, not nan",
         call=_quantized_nan_scale),
)
"""The catalogue (docs/errors.md lists it)."""

_INJECTED = {"out-disk-full-injected": _disk_full_at_write}


# ---------------------------------------------------------------------------------------------
# Running.

def _snapshot(folder):
    """Every path below ``folder`` with a digest of its contents."""
    state = {}
    for root, folders, files in os.walk(folder):
        for name in folders:
            state[os.path.relpath(os.path.join(root, name), folder)] = "folder"
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as file:
                    state[os.path.relpath(path, folder)] = hashlib.sha1(file.read()).hexdigest()
            except OSError as error:
                state[os.path.relpath(path, folder)] = f"unreadable: {error}"
    return state


@contextlib.contextmanager
def _time_limit(seconds):
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(number, frame):
        raise _Hung()
    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextlib.contextmanager
def _working_folder(folder):
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def _run_in_process(case, folder):
    from . import main
    out, err = io.StringIO(), io.StringIO()
    injected = _INJECTED.get(case.name, contextlib.nullcontext)
    try:
        with _time_limit(case.seconds), _working_folder(folder), injected(), \
                contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(case.argv))
    except _Hung:
        return "hung", None, err.getvalue(), ""
    except BaseException as error:  # noqa: BLE001 -- what escapes is the finding
        import traceback
        return "traceback", None, err.getvalue(), "".join(
            traceback.format_exception(type(error), error, error.__traceback__))
    return None, code, err.getvalue(), ""


def _run_interrupted(case, folder):
    number, ready = case.interrupt
    command = [sys.executable, "-m", "systolix.cli", *case.argv]
    process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + case.seconds
    sent = False
    while process.poll() is None and time.monotonic() < deadline:
        if not sent and ready(folder):
            process.send_signal(number)
            sent = True
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.communicate()
        return "hung", None, "", "no exit within the time limit"
    stderr = process.communicate()[1]
    if not sent:
        return "wrong", process.returncode, stderr, "it ended before the signal could be sent"
    verdict = "traceback" if "Traceback (most recent call last)" in stderr else None
    return verdict, process.returncode, stderr, ""


def _run_call(case, folder):
    try:
        with _time_limit(case.seconds), _working_folder(folder):
            case.call(folder)
    except _Hung:
        return Outcome(case, "hung", detail=f"no answer within {case.seconds:g} s")
    except case.raises as error:
        line = " ".join(str(error).split())
        return Outcome(case, "ok" if case.phrase in line else "wrong",
                       lines=[f"{type(error).__name__}: {line}"])
    except Exception as error:  # noqa: BLE001 -- another exception is the finding
        return Outcome(case, "traceback", lines=[f"{type(error).__name__}: {error}"])
    return Outcome(case, "accepted", detail="the call returned")


def run_case(case, folder, resources=None):
    """Run ``case`` in the empty folder ``folder`` with the shared ``resources`` (name to
    path); return its :class:`Outcome`."""
    folder = Path(folder)
    resources = resources or {}
    cleanup = None
    try:
        if case.setup is not None:
            cleanup = case.setup(folder, resources)
    except _Skip as skip:
        return Outcome(case, "skipped", detail=str(skip))
    try:
        if case.call is not None:
            before = _snapshot(folder)
            outcome = _run_call(case, folder)
            after = _snapshot(folder)
        else:
            before = _snapshot(folder)
            runner = _run_interrupted if case.interrupt else _run_in_process
            verdict, code, stderr, detail = runner(case, folder)
            after = _snapshot(folder)
            lines = stderr.splitlines()
            if verdict is None:
                prefix = f"systolix {case.argv[0]}: "
                if code == 0:
                    verdict = "accepted"
                elif "Traceback (most recent call last)" in stderr:
                    verdict = "traceback"
                elif code != case.code or len(lines) != 1 or not lines[0].startswith(prefix) \
                        or case.phrase not in lines[0]:
                    verdict = "wrong"
                else:
                    verdict = "ok"
            outcome = Outcome(case, verdict, code, lines, detail)
        new = sorted(set(after) - set(before))
        changed = sorted(path for path in before if after.get(path) != before[path])
        if outcome.verdict in ("ok", "wrong") and new:
            outcome.verdict, outcome.detail = "partial", f"left behind: {', '.join(new[:5])}"
        elif outcome.verdict in ("ok", "wrong") and changed:
            outcome.verdict, outcome.detail = "overwritten", \
                f"changed or removed: {', '.join(changed[:5])}"
        return outcome
    finally:
        if callable(cleanup):
            cleanup()


def make_resource(name, folder):
    """Make the shared resource ``name`` in ``folder`` (which must not exist) and return its
    path: ``"build"``, the default model's bitstream build for the iCEBreaker (``systolix
    bitstream --clock fixed``, one place and route, about a minute); ``"quantize"``, an output
    of ``systolix quantize`` for that board's 12-bit accumulator (its ``program.npz`` patches
    into the build)."""
    from . import main
    folder = Path(folder)
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink):
        if name == "build":
            code = main(["bitstream", "--board", BOARD, "--clock", "fixed", "--out",
                         str(folder)])
        elif name == "quantize":
            code = main(["quantize", "--accumulator-bits", "12", "--out", str(folder)])
        else:
            raise ValueError(f"resource must be 'build' or 'quantize', not {name!r}")
    if code != 0:
        raise RuntimeError(f"making the {name} resource failed with exit status {code}")
    return folder


def summary(outcomes):
    """The summary line of a run of the catalogue."""
    count = {verdict: sum(outcome.verdict == verdict for outcome in outcomes)
             for verdict in ("ok", "traceback", "accepted", "partial", "overwritten", "hung",
                             "wrong", "skipped")}
    run = len(outcomes) - count["skipped"]
    return (f"{run} cases run ({count['skipped']} skipped): {count['traceback']} tracebacks, "
            f"{count['accepted']} silent acceptances, {count['partial']} partial artifacts; "
            f"{count['overwritten']} overwritten, {count['hung']} hung, {count['wrong']} "
            f"wrong messages or exit codes; {count['ok']} ok")


def run_errors(args):
    """``systolix errors``: run the catalogue, print a line per case and the summary."""
    cases = [case for case in CASES if not (args.no_build and "build" in case.needs)]
    if args.only:
        cases = [case for case in cases if args.only in case.name]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="systolix-errors-") as root:
        root = Path(root)
        resources = {}
        for name in sorted({need for case in cases for need in case.needs}):
            print(f"making the shared {name} resource ...", flush=True)
            resources[name] = make_resource(name, root / "resources" / name)
        for index, case in enumerate(cases):
            folder = root / f"case{index}"
            folder.mkdir()
            outcome = run_case(case, folder, resources)
            outcomes.append(outcome)
            line = outcome.lines[0] if outcome.lines else ""
            print(f"{outcome.verdict:>11}  {case.name:<28} {outcome.code if outcome.code is not None else '-':>3}  "
                  f"{line}{'  [' + outcome.detail + ']' if outcome.detail else ''}", flush=True)
    print(summary(outcomes))
    bad = sum(outcome.verdict not in ("ok", "skipped") for outcome in outcomes)
    return 1 if bad else 0


def register(subparsers):
    """Add the ``errors`` subcommand to an :mod:`argparse` subparsers object."""
    parser = subparsers.add_parser(
        "errors", help="run the catalogue of bad inputs and faults (docs/errors.md)",
        description="Run every case of the catalogue of bad inputs and faults and print how "
                    "each ended and the counts of tracebacks, silent acceptances and partial "
                    "artifacts.")
    parser.add_argument("--no-build", action="store_true",
                        help="leave out the cases that need a bitstream build (about a minute)")
    parser.add_argument("--only", metavar="TEXT", help="only the cases whose name holds TEXT")
    parser.set_defaults(run=run_errors)


if __name__ == "__main__":
    from . import main as _main
    sys.exit(_main(["errors", *sys.argv[1:]]))
